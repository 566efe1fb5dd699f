//! An outside implementation: a Python station emulator (paho-mqtt) that speaks only the
//! contract, over mosquitto, controlled by the engine and stored in VictoriaMetrics.

use std::process::{Command, Stdio};
use std::time::Duration;

use heatgrid::app;
use heatgrid::config::Config;
use heatgrid::stats::Stats;

use crate::util::{self, error_k};

fn python() -> String {
    std::env::var("HEATGRID_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
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

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/station.py");
    let mut child = Command::new(python())
        .args([
            script,
            "--port",
            &broker.port.to_string(),
            "--duration",
            "60",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python station emulator (python3 with paho-mqtt; see scripts/test.sh)");

    // Supply at -5 °C outdoor on the default curve: 53.8 °C. Within ±1 K for 5 s running.
    let mut held_since = None;
    let settled = util::eventually(Duration::from_secs(55), || {
        let st = engine.status();
        let ok = st.first().and_then(error_k).is_some_and(|e| e <= 1.0);
        let now = std::time::Instant::now();
        match (ok, held_since) {
            (true, None) => held_since = Some(now),
            (false, _) => held_since = None,
            _ => {}
        }
        held_since.is_some_and(|t| now - t >= Duration::from_secs(5))
    })
    .await;
    let last = engine.status().first().cloned();
    drop(child.stdin.take()); // asks the peer to stop and print its summary
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("peer summary JSON");
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
    let stored = util::vm_wait_total(
        vm.port,
        "telemetry_supply_temp_c",
        published as usize,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(stored as u64, published);
}
