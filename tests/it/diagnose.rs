//! Diagnosis in the running engine: a fault injected into a running simulator is named in
//! the station's status, raises `fault_suspected` through the alarm book, and shows in the
//! API and `heatgrid diagnose`; a healthy station beside it stays clean.

use std::time::Duration;

use heatgrid::app;
use heatgrid::diagnose::Kind;
use heatgrid_sim::faults::{Fault, FaultKind};
use heatgrid_sim::SimConfig;

use crate::util;

/// Plant seconds per wall second: the diagnosis works in plant hours.
const SPEED: f64 = 240.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_supply_sensor_injected_into_the_simulator_is_named() {
    let broker = util::mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (1..=2).map(|n| format!("st-{n:03}")).collect();
    let mut cfg = util::engine_config(&ids, broker.port, "3.1.1", SPEED, dir.path(), None);
    util::with_viewer(&mut cfg);
    // With the district coordinator: it must hold the offset of a station whose sensor is
    // suspected.
    cfg.coordinator = Some(Default::default());
    let engine = app::start(cfg).await.unwrap();
    let api = format!("http://{}", engine.api_addr().unwrap());
    let cli = |args: &[&str]| util::viewer_cli(&api, args);
    assert!(cli(&["diagnose"]).starts_with("no fault suspected on any of 2 stations"));
    assert!(
        engine.wait_subscribed(Duration::from_secs(20)).await,
        "engine never subscribed"
    );
    // The simulator warms its plants up for 6 h before going online; the fault starts
    // 12 plant minutes after that (the station's clock counts the warm-up).
    let sim_cfg = SimConfig {
        port: broker.port,
        stations: 2,
        speed: SPEED,
        seed: 3,
        faults: vec![(
            1,
            Fault {
                kind: FaultKind::SupplySensorFrozen,
                onset_s: 6.2 * 3600.0,
                severity: 1.0,
            },
        )],
        ..SimConfig::default()
    };
    let sim = heatgrid_sim::spawn(sim_cfg).await;
    // An hour to close, two to persist: at most about 3.5 plant hours (53 s here).
    let named = util::eventually(Duration::from_secs(120), || {
        engine.status().iter().any(|s| {
            s.id.as_str() == "st-002" && s.findings.iter().any(|f| f.kind == Kind::SensorFrozen)
        })
    })
    .await;
    // The alarm follows on the alarm task's next round.
    let mut alarm = serde_json::Value::Null;
    for _ in 0..50 {
        let v: serde_json::Value = serde_json::from_str(&cli(&["alarms", "--json"])).unwrap();
        if let Some(a) = v["active"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["kind"] == "fault_suspected")
        {
            alarm = a.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed = cli(&["diagnose"]);
    let station = cli(&["station", "st-002"]);
    let listed_json: serde_json::Value =
        serde_json::from_str(&cli(&["diagnose", "--json"])).unwrap();
    let status = engine.status();
    sim.stop().await;
    engine.shutdown().await;
    let st = |id: &str| status.iter().find(|s| s.id.as_str() == id).unwrap().clone();
    assert!(named, "st-002: {:?}", st("st-002").findings);
    let f = &st("st-002").findings[0];
    assert!(f.evidence.contains("supply reads"), "{f:?}");
    assert!((0.5..=0.99).contains(&f.confidence));
    assert!(
        st("st-001").findings.is_empty(),
        "{:?}",
        st("st-001").findings
    );
    // The alarm: a warning on st-002 naming the kind and its evidence.
    assert_eq!(alarm["station"], "st-002", "{alarm}");
    assert_eq!(alarm["severity"], "warning");
    let message = alarm["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("suspected sensor_frozen") && message.contains("supply reads"),
        "{message}"
    );
    // The verb: st-002 alone, with its kind and evidence.
    assert!(
        listed.contains("st-002") && listed.contains("sensor_frozen") && !listed.contains("st-001"),
        "{listed}"
    );
    // The coordinator holds st-002's offset, and says so; st-001 it follows.
    assert!(st("st-002").district_held && !st("st-001").district_held);
    assert!(
        station.contains("(held: sensor fault suspected)")
            && station.contains("suspect   sensor_frozen"),
        "{station}"
    );
    let rows = listed_json["stations"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed_json}");
    assert_eq!(rows[0]["findings"][0]["kind"], "sensor_frozen");
    // The finding is stored as a point, with its evidence.
    let stored = util::stored_lines(dir.path(), "finding");
    assert!(
        stored.iter().any(|l| l
            .starts_with("finding,station=st-002,kind=sensor_frozen active=true,confidence=")
            && l.contains("evidence=\"supply reads")),
        "{stored:?}"
    );
    assert!(
        stored.iter().all(|l| !l.contains("station=st-001")),
        "{stored:?}"
    );
}

/// A station that sends only the required fields (supply, return, flow, heated area): the
/// faults its telemetry cannot show are listed for it, with what each needs, in the API and
/// `heatgrid diagnose`, instead of the station passing for healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_with_only_the_required_fields_is_told_apart_from_a_healthy_one() {
    let broker = util::mosquitto();
    let dir = tempfile::tempdir().unwrap();
    // An hour of plant time per wall second.
    let ids = vec!["bare-1".to_owned()];
    let mut cfg = util::engine_config(&ids, broker.port, "3.1.1", 3600.0, dir.path(), None);
    cfg.tick = Duration::from_millis(100);
    let (engine, api) = util::start_viewed(cfg).await;
    let (client, poller) = util::publisher(broker.port, "bare-station");
    let told = util::eventually(Duration::from_secs(30), || {
        let payload = format!(
            "{{\"ts\":{},\"supply_temp_c\":55.0,\"return_temp_c\":40.0,\"flow_m3h\":3.0,\"heated_area_m2\":9000}}",
            heatgrid::clock::now_ms()
        );
        let _ = client.try_publish(
            "heating/station/bare-1/telemetry",
            rumqttc::QoS::AtMostOnce,
            false,
            payload.into_bytes(),
        );
        engine
            .status()
            .iter()
            .any(|s| s.id.as_str() == "bare-1" && !s.unjudged.is_empty())
    })
    .await;
    poller.abort();
    assert!(told, "{:?}", engine.status());
    let text = util::viewer_cli(&api, &["diagnose"]);
    assert!(
        text.starts_with("no fault suspected on any of 1 stations"),
        "{text}"
    );
    for part in [
        "not judged for lack of telemetry",
        "fouling (needs heat_kw, primary_supply_temp_c, primary_return_temp_c)",
        "sensor_offset (needs heat_kw)",
        "valve_stuck (needs valve_pct)",
        "bare-1",
    ] {
        assert!(text.contains(part), "{part:?} not in:\n{text}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&util::viewer_cli(&api, &["diagnose", "--json"])).unwrap();
    assert_eq!(v["unjudged"][0]["stations"][0], "bare-1", "{v}");
    assert_eq!(v["needs"]["valve_stuck"][0], "valve_pct", "{v}");
    engine.shutdown().await;
}
