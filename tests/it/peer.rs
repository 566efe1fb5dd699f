//! An outside implementation: a Python station emulator (paho-mqtt) that speaks only the
//! contract, over mosquitto, controlled by the engine and stored in VictoriaMetrics.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use heatgrid::app;
use heatgrid::config::Config;
use heatgrid::stats::Stats;

use crate::util;

/// The Python station emulator (`tests/peers/station.py`) speaking `format` (native, acme,
/// bridge) as station `id`, for at most 90 s.
pub fn emulator(port: u16, id: &str, format: &str) -> Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/station.py");
    Command::new(util::python())
        .args([script, "--port", &port.to_string(), "--duration", "90"])
        .args(["--id", id, "--format", format])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python station emulator (python3 with paho-mqtt; see scripts/test.sh)")
}

/// Stops an emulator (closing its stdin) and returns its summary.
pub async fn summary(mut child: Child) -> serde_json::Value {
    drop(child.stdin.take());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "emulator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("emulator summary JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_station_emulator_is_controlled_and_stored() {
    let broker = util::mosquitto();
    let vm = util::victoria_metrics();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = 0.5\nstaleness_s = 5\ncommand_valid_for_s = 10\n\
         [mqtt]\nport = {}\nclient_id = \"engine-peer\"\n\
         [storage]\nflush_interval_ms = 200\n\
         [storage.influxdb]\nurl = \"http://127.0.0.1:{}\"\norg = \"o\"\nbucket = \"b\"\n\
         [weather]\ndefault_outdoor_temp_c = -5.0\n[api]\nlisten = \"\"\n\
         [[station]]\nid = \"peer-01\"\nsetpoint_ramp_k_per_min = 30\nvalve_kp_pct_per_k = 3.0\nvalve_ti_s = 15\n",
        dir.path().display().to_string(),
        broker.port,
        vm.port
    );
    let cfg = Config::parse(&text, &|_| None).unwrap();
    let engine = app::start(cfg).await.unwrap();
    assert!(
        engine.wait_subscribed(Duration::from_secs(20)).await,
        "engine never subscribed"
    );

    let child = emulator(broker.port, "peer-01", "native");

    // Supply at -5 °C outdoor on the default curve: 53.8 °C. Within ±1 K for 5 s running.
    let settled = util::all_held_within_1k(&engine, 1, Duration::from_secs(55)).await;
    let last = engine.status().first().cloned();
    let summary = summary(child).await;
    assert!(
        settled,
        "peer not controlled to its setpoint: {last:?}, peer {summary}"
    );
    let published = summary["published"].as_u64().unwrap();
    assert!(summary["commands"].as_u64().unwrap() > 0);
    assert_eq!(summary["refused"].as_u64().unwrap(), 0);

    let stats = engine.stats().clone();
    assert!(
        util::eventually(Duration::from_secs(10), || Stats::get(
            &stats.readings_accepted
        ) >= published)
        .await
    );
    engine.shutdown().await;
    util::assert_all_telemetry_stored(vm.port, published).await;
}
