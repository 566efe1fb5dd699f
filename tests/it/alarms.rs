//! Every alarm kind, raised by provoking its cause with the simulator (or a hostile publisher,
//! or a database that is down), acknowledged with the CLI, and cleared when the cause is gone.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use heatgrid::app;
use heatgrid::config::Config;
use heatgrid_sim::{Fault, SimConfig};

use crate::util;

const TOKEN: &str = "carol-operator-token-0123456789";

fn cli(api: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_heatgrid"))
        .args(args)
        .env("HEATGRID_API", api)
        .env("HEATGRID_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_alarm_kind_is_raised_acknowledged_and_cleared() {
    let broker = util::mosquitto();
    let vm_dir = tempfile::tempdir().unwrap();
    let vm_port = util::free_port(); // the database is down at first
    let dir = tempfile::tempdir().unwrap();
    let speed = 20.0;
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = {}\nstaleness_s = 2\ncommand_valid_for_s = 30\ntime_scale = {speed}\n\
         [mqtt]\nport = {}\nclient_id = \"engine-alarms\"\n[storage]\nflush_interval_ms = 200\n\
         [storage.influxdb]\nurl = \"http://127.0.0.1:{vm_port}\"\norg = \"o\"\nbucket = \"b\"\ntimeout_s = 2\n\
         [api]\nlisten = \"127.0.0.1:0\"\n[[api.token]]\nname = \"carol\"\nrole = \"operator\"\ntoken_env = \"T\"\n\
         [alarms]\ndeviation_for_s = 2\nreturn_high_for_s = 2\nvalve_saturated_for_s = 2\nlow_delta_t_for_s = 2\n\
         rejected_per_min = 20\nout_of_range_margin_k = 5\n",
        dir.path().display().to_string(),
        5.0 / speed,
        broker.port,
    );
    for i in 1..=6 {
        text.push_str(&format!("[[station]]\nid = \"st-{i:03}\"\n"));
    }
    let cfg = Config::parse(&text, &|k| (k == "T").then(|| TOKEN.to_owned())).unwrap();
    let engine = app::start(cfg).await.unwrap();
    let api = format!("http://{}", engine.api_addr().unwrap());
    let sim = heatgrid_sim::spawn(SimConfig {
        port: broker.port,
        stations: 6,
        speed,
        ..SimConfig::default()
    })
    .await;
    assert!(
        util::eventually(Duration::from_secs(20), || engine
            .status()
            .iter()
            .all(|s| !s.stale))
        .await
    );

    // Provoke every cause.
    sim.set_silenced("st-001", true); // stale
    sim.set_presence("st-002", false); // comm_lost
    sim.set_fault("st-004", Fault::SensorOffsetK(30.0)); // out_of_range (+ deviation)
    sim.set_fault("st-005", Fault::PrimarySupplyC(Some(52.0))); // supply_deviation + valve_saturated
    sim.set_fault("st-006", Fault::Bypass(0.8)); // return_high + low_delta_t
    let mut opts = rumqttc::MqttOptions::new("hostile-alarms", "127.0.0.1", broker.port);
    opts.set_inflight(20);
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 100);
    let poller = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    for _ in 0..40 {
        client
            .publish(
                "heating/station/st-003/telemetry",
                rumqttc::QoS::AtLeastOnce,
                false,
                b"{broken".to_vec(),
            )
            .await
            .unwrap();
    }

    let kinds = |e: &app::EngineHandle| -> BTreeSet<(String, String)> {
        e.alarms()
            .active
            .iter()
            .map(|a| (a.station.clone(), a.kind.as_str().to_owned()))
            .collect()
    };
    // Raised at some point (active now, or already cleared by the controller's own reaction,
    // e.g. the return limiter bringing the return back under its limit).
    let ever = |e: &app::EngineHandle| -> BTreeSet<(String, String)> {
        let v = e.alarms();
        v.active
            .iter()
            .chain(v.recent.iter())
            .map(|a| (a.station.clone(), a.kind.as_str().to_owned()))
            .collect()
    };
    let expected: BTreeSet<(String, String)> = [
        ("st-001", "stale"),
        ("st-002", "comm_lost"),
        ("st-003", "rejected_repeatedly"),
        ("st-004", "out_of_range"),
        ("st-005", "supply_deviation"),
        ("st-005", "valve_saturated"),
        ("st-006", "return_high"),
        ("st-006", "low_delta_t"),
        ("engine", "storage"),
    ]
    .iter()
    .map(|(s, k)| (s.to_string(), k.to_string()))
    .collect();
    let all_raised = util::eventually(Duration::from_secs(45), || {
        ever(&engine).is_superset(&expected)
    })
    .await;
    assert!(
        all_raised,
        "missing: {:?}",
        expected.difference(&ever(&engine)).collect::<Vec<_>>()
    );

    // The operator lists and acknowledges them with the CLI.
    let api2 = api.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || cli(&api2, &["alarms"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("storage") && out.contains("ACTIVE"), "{out}");
    assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
    for a in engine.alarms().active.clone() {
        let api2 = api.clone();
        let (code, out, err) =
            tokio::task::spawn_blocking(move || cli(&api2, &["alarms", "ack", &a.id.to_string()]))
                .await
                .unwrap();
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("acknowledged by carol"), "{out}");
    }
    assert!(engine
        .alarms()
        .active
        .iter()
        .all(|a| a.acked_by.as_deref() == Some("carol")));
    let api2 = api.clone();
    let (code, _, err) =
        tokio::task::spawn_blocking(move || cli(&api2, &["alarms", "ack", "9999"]))
            .await
            .unwrap();
    assert!(code == 4 && err.contains("no active alarm"), "{err}");

    // Remove every cause: all alarms clear.
    let _vm = util::start_victoria_metrics(vm_dir.path(), vm_port);
    sim.set_silenced("st-001", false);
    sim.set_presence("st-002", true);
    sim.set_fault("st-004", Fault::SensorOffsetK(0.0));
    sim.set_fault("st-005", Fault::PrimarySupplyC(None));
    sim.set_fault("st-006", Fault::Bypass(0.0));
    let cleared = util::eventually(Duration::from_secs(150), || {
        engine.alarms().active.is_empty()
    })
    .await;
    assert!(cleared, "still active: {:?}", kinds(&engine));
    let recent: BTreeSet<(String, String)> = engine
        .alarms()
        .recent
        .iter()
        .map(|a| (a.station.clone(), a.kind.as_str().to_owned()))
        .collect();
    assert!(recent.is_superset(&expected));

    // Raises and clears are stored as `alarm` points (value field), acks as operator actions.
    let stored = util::vm_wait_total(
        vm_port,
        "alarm_value",
        2 * expected.len(),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        stored >= 2 * expected.len(),
        "alarm points stored: {stored}"
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(audit.lines().filter(|l| l.contains("ack_alarm")).count() >= expected.len());

    client.disconnect().await.ok();
    poller.abort();
    sim.stop().await;
    engine.shutdown().await;
}
