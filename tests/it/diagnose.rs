//! Diagnosis in the running engine: a fault injected into a running simulator is named in
//! the station's status (and so in the API and `heatgrid station`), and a healthy station
//! beside it stays clean.

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
    let cfg = util::engine_config(&ids, broker.port, "3.1.1", SPEED, dir.path(), None);
    let engine = app::start(cfg).await.unwrap();
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
}
