//! Stations that do not speak the contract: a Python emulator (tests/peers/station.py) speaking
//! a vendor gateway's nested JSON in other units, and one speaking a heat-meter bridge's value
//! per topic, both behind `[[mapping]]`s, over mosquitto, controlled to their setpoints by
//! commands in their own terms and stored in VictoriaMetrics like native stations.

use std::time::Duration;

use heatgrid::app;
use heatgrid::config::Config;
use heatgrid::stats::Stats;

use crate::peer::{emulator, summary};
use crate::util;

const MAPPINGS: &str = r#"
[[mapping]]
name = "acme"
topic = "acme/gw1/{station}/data"
station_prefix = "acme-"
timestamp = { path = "time", format = "unix_s" }
fields.supply_temp_c = { path = "flow.temperature_k", unit = "K" }
fields.return_temp_c = { path = "return.temperature_k", unit = "K" }
fields.flow_m3h = { path = "flow.volume_lh", unit = "l/h" }
fields.heat_kw = { path = "meter.power_w", unit = "W" }
fields.heat_energy_gj = { path = "meter.energy_mwh", unit = "MWh" }
fields.valve_pct = { path = "actuators.valve", unit = "fraction" }
fields.pump_pct = { path = "actuators.pump", unit = "fraction" }
[mapping.command]
topic = "acme/gw1/{station}/set"
fields.supply_setpoint_c = { path = "setpoint.flow_temp_k", unit = "K" }
fields.valve_pct = { path = "valve.position", unit = "fraction" }
fields.pump_pct = { path = "pump.speed", unit = "fraction" }
fields.seq = { path = "id" }
fields.valid_for_s = { path = "validity_s" }

[[mapping]]
name = "bridge"
topic = "bridge/station/{station}/{field}"
payload = "value"
fields.supply_temp_c = { segment = "tSupply" }
fields.return_temp_c = { segment = "tReturn" }
fields.flow_m3h = { segment = "flow", unit = "l/h" }
fields.valve_pct = { segment = "valve" }
fields.pump_pct = { segment = "pump" }
[mapping.command]
topic = "bridge/station/{station}/cmd"
fields.valve_pct = { path = "valvePct" }
fields.pump_pct = { path = "pumpPct" }
fields.seq = { path = "seq" }
fields.valid_for_s = { path = "validFor" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_behind_a_gateway_and_a_meter_bridge_are_controlled_and_stored() {
    let broker = util::mosquitto();
    let vm = util::victoria_metrics();
    let dir = tempfile::tempdir().unwrap();
    let tuning = "setpoint_ramp_k_per_min = 30\nvalve_kp_pct_per_k = 3.0\nvalve_ti_s = 15\n";
    let text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = 0.5\nstaleness_s = 5\ncommand_valid_for_s = 10\n\
         [mqtt]\nport = {}\nclient_id = \"engine-mapping\"\n\
         [storage]\nflush_interval_ms = 200\n\
         [storage.influxdb]\nurl = \"http://127.0.0.1:{}\"\norg = \"o\"\nbucket = \"b\"\n\
         [weather]\ndefault_outdoor_temp_c = -5.0\n[api]\nlisten = \"\"\n{MAPPINGS}\n\
         [[station]]\nid = \"acme-7\"\nmapping = \"acme\"\nheated_area_m2 = 80000\n{tuning}\
         [[station]]\nid = \"b1\"\nmapping = \"bridge\"\nheated_area_m2 = 60000\n{tuning}",
        dir.path().display().to_string(),
        broker.port,
        vm.port
    );
    let cfg = Config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e:#?}"));
    let engine = app::start(cfg).await.unwrap();
    assert!(
        engine.wait_subscribed(Duration::from_secs(20)).await,
        "engine never subscribed"
    );
    let acme = emulator(broker.port, "7", "acme");
    let bridge = emulator(broker.port, "b1", "bridge");

    // Both within ±1 K of their setpoint for 5 s running (supply at −5 °C on the default
    // curve: 53.8 °C).
    let settled = util::all_held_within_1k(&engine, 2, Duration::from_secs(80)).await;
    let status = engine.status();
    // A payload that does not fit the mapping: refused and counted like any bad payload,
    // while the stations carry on.
    let mut opts = rumqttc::MqttOptions::new("odd-gateway", "127.0.0.1", broker.port);
    opts.set_inflight(10);
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 10);
    let poller = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let qos = rumqttc::QoS::AtLeastOnce;
    let odd: [(&str, &[u8]); 3] = [
        ("acme/gw1/7/data", br#"{"flow": {"temperature_k": "hot"}}"#),
        ("acme/gw1/9/data", br#"{"flow": {"temperature_k": 330}}"#),
        ("bridge/station/b1/tSupply", b"warm"),
    ];
    for (topic, payload) in odd {
        client
            .publish(topic, qos, false, payload.to_vec())
            .await
            .unwrap();
    }
    let stats = engine.stats().clone();
    let counted = util::eventually(Duration::from_secs(10), || {
        let by = stats.rejects_by_reason.lock().unwrap();
        by.get("wrong_type").copied().unwrap_or(0) >= 2
            && by.get("unknown_station").copied().unwrap_or(0) >= 1
    })
    .await;
    poller.abort();

    let acme_out = summary(acme).await;
    let bridge_out = summary(bridge).await;
    assert!(settled, "not controlled to setpoint: {status:?}");
    assert!(
        counted,
        "odd payloads not refused: {:?}",
        stats.rejects_by_reason
    );
    for (name, out) in [("acme", &acme_out), ("bridge", &bridge_out)] {
        assert!(out["commands"].as_u64().unwrap() > 0, "{name}: {out}");
        assert_eq!(out["refused"].as_u64().unwrap(), 0, "{name}: {out}");
    }
    // The readings in contract units: the gateway's K, l/h, W, MWh and fractions converted.
    let acme_st = status.iter().find(|s| s.id.as_str() == "acme-7").unwrap();
    let r = acme_st.reading.as_ref().unwrap();
    let flow = r.flow_m3h;
    assert!(
        (r.supply_temp_c - r.return_temp_c - 12.0).abs() < 0.01,
        "{r:?}"
    );
    assert!(
        (r.heat_kw.unwrap() - 1.163 * flow * 12.0).abs() < 0.1,
        "{r:?}"
    );
    assert!(
        r.extra.contains(&("heat_energy_gj".to_owned(), 4444.2)),
        "{r:?}"
    );
    assert!((0.0..=100.0).contains(&r.valve_pct.unwrap()), "{r:?}");
    assert!(acme_st.link.contains("mapping acme"), "{}", acme_st.link);
    let b = status.iter().find(|s| s.id.as_str() == "b1").unwrap();
    let r = b.reading.as_ref().unwrap();
    assert!(r.valve_pct.is_some() && r.pump_pct.is_some(), "{r:?}");
    assert_eq!(b.area_m2, Some(60_000.0));

    // Stored like native stations: every accepted reading is in the TSDB, for both.
    let accepted = Stats::get(&stats.readings_accepted);
    engine.shutdown().await;
    util::assert_all_telemetry_stored(vm.port, accepted).await;
    let per_station = util::vm_count(vm.port, "telemetry_supply_temp_c").await;
    assert_eq!(per_station.len(), 2, "{per_station:?}");
}
