//! The district coordinator in the running engine: an unbalanced simulated fleet over the
//! embedded broker, the coordinator equalising heat per design m² in accelerated time.

use std::time::Duration;

use heatgrid::app;
use heatgrid_sim::{Fleet, SimConfig};

use crate::util;

const SPEED: f64 = 60.0;
const MAX_OFFSET_K: f64 = 1.5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_lowers_the_oversized_station_raises_the_undersized_within_bounds() {
    let ports = heatgrid::demo::start_embedded_broker().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sim_cfg = SimConfig {
        port: ports.v311,
        stations: 4,
        seed: 21,
        speed: SPEED,
        fleet: Fleet::Unbalanced,
        ..SimConfig::default()
    };
    // The stations' design data as the centre has them, and (unknown to the engine) how far
    // each one's radiators are off their design.
    let fleet = sim_cfg.build_stations();
    let factor: Vec<f64> = fleet
        .iter()
        .map(|s| s.plant.p.radiator_design_w / s.plant.p.design_heat_w)
        .collect();
    let hot = (0..4)
        .max_by(|&a, &b| factor[a].total_cmp(&factor[b]))
        .unwrap();
    let cold = (0..4)
        .min_by(|&a, &b| factor[a].total_cmp(&factor[b]))
        .unwrap();
    assert!(
        factor[hot] - factor[cold] > 0.2,
        "seed gives a spread: {factor:?}"
    );

    // One coordinator period per simulated minute (a wall second), 10 K/h at most; a high gain
    // so that the offsets reach the rate limit within seconds of wall time.
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = {}\nstaleness_s = 2\ncommand_valid_for_s = 30\ntime_scale = {SPEED}\n\
         [mqtt]\nport = {}\nclient_id = \"engine-coordinator\"\n[storage]\nflush_interval_ms = 200\n[api]\nlisten = \"\"\n\
         [coordinator]\nenabled = true\nperiod_s = 60\nfilter_tau_s = 120\nmax_offset_k = {MAX_OFFSET_K}\nmax_rate_k_per_h = 10\ngain_k_per_h = 200\n",
        dir.path().display().to_string(),
        5.0 / SPEED,
        ports.v311,
    );
    for s in &fleet {
        text.push_str(&format!(
            "[[station]]\nid = {:?}\nheat_index_w_m2 = {}\n",
            s.id,
            s.plant.p.design_heat_w / s.plant.p.area_m2
        ));
    }
    let cfg = heatgrid::config::Config::parse(&text, &|_| None).unwrap();
    let engine = app::start(cfg).await.unwrap();
    assert!(engine.wait_subscribed(Duration::from_secs(20)).await);
    let sim = heatgrid_sim::spawn(sim_cfg).await;

    // Within bounds at every look; apart in the expected directions in the end.
    let mut largest = 0.0f64;
    let apart = util::eventually(Duration::from_secs(90), || {
        let status = engine.status();
        for s in status.iter() {
            largest = largest.max(s.district_offset_k.abs());
            if let Some(o) = &s.outputs {
                assert!((30.0..=75.0).contains(&o.supply_setpoint_c), "{o:?}");
            }
        }
        assert!(largest <= MAX_OFFSET_K + 1e-9, "offset {largest} K");
        let (h, c) = (
            status[hot].district_offset_k,
            status[cold].district_offset_k,
        );
        h <= -1.0 && c >= 1.0
    })
    .await;
    let offsets: Vec<f64> = engine
        .status()
        .iter()
        .map(|s| s.district_offset_k)
        .collect();
    assert!(
        apart,
        "oversized {hot} and undersized {cold} not apart: {offsets:?} (radiators {factor:?})"
    );

    sim.stop().await;
    engine.shutdown().await;
    // Every update is stored, per station, with the figures it acted on.
    let lines = util::stored_lines(dir.path(), "coordinator");
    let hot_id = format!("station={}", fleet[hot].id);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&hot_id) && l.contains("offset_k=-") && l.contains("load_ratio=")),
        "{lines:?}"
    );

    // A restart on the same data directory starts from the kept offsets, not from zero.
    let kept: std::collections::BTreeMap<String, f64> =
        serde_json::from_slice(&std::fs::read(dir.path().join("coordinator.json")).unwrap())
            .unwrap();
    assert!(
        kept[&fleet[hot].id] < 0.0 && kept[&fleet[cold].id] > 0.0,
        "{kept:?}"
    );
    let cfg = heatgrid::config::Config::parse(&text, &|_| None).unwrap();
    let engine = app::start(cfg).await.unwrap();
    assert!(util::eventually(Duration::from_secs(10), || engine.status().len() == 4).await);
    for s in engine.status().iter() {
        assert_eq!(s.district_offset_k, kept[s.id.as_str()], "{}", s.id);
    }
    engine.shutdown().await;
}
