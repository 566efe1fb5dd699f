//! The station diagnosis at fleet scale: 50,000 stations, one reading each per 10 s of plant
//! time (the readings and commands the control task hands it), for a few plant hours, with
//! the hourly closes and the fleet's yardsticks once per hour as in the engine.
//! Prints the cost per reading, the share of one core it takes in real time, and the memory
//! per station. Run: `cargo bench --bench diagnosis` (HEATGRID_BENCH_STATIONS,
//! HEATGRID_BENCH_HOURS to change the fleet and the span).

use std::hint::black_box;
use std::time::Instant;

use heatgrid::diagnose::{Design, Diagnosis, Fleet, Settings};
use heatgrid::model::{Command, Mode, Reading, StationId};

mod common;

const PERIOD_S: i64 = 10;
const START_MS: i64 = 1_768_435_200_000;

/// Station `i`'s reading and command at plant second `t`: a daily weather swing, a load that
/// follows it, small differences between stations.
fn sample(id: &StationId, i: usize, t: i64) -> (Reading, Command, Design) {
    let h = t as f64 / 3600.0;
    let outdoor = -4.0 + 5.0 * (std::f64::consts::TAU * h / 24.0).cos();
    let load = ((18.0 - outdoor) / 28.0).clamp(0.05, 1.2);
    let wobble = ((i * 7 + t as usize / 10) % 13) as f64 * 0.01;
    let supply = 33.0 + 27.0 * load + wobble;
    let flow = 150.0 + 100.0 * load + wobble;
    let heat = 4500.0 * load * (1.0 + (i % 5) as f64 * 0.01);
    let ret = supply - heat / (1.163 * flow);
    let ts_ms = START_MS + t * 1000;
    let reading = Reading {
        station: id.clone(),
        ts_ms,
        supply_temp_c: supply,
        return_temp_c: ret,
        flow_m3h: flow,
        heated_area_m2: Some(100_000.0),
        outdoor_temp_c: Some(outdoor),
        indoor_temp_c: None,
        valve_pct: Some(20.0 + 60.0 * load + wobble),
        pump_pct: Some(60.0 + 30.0 * load),
        heat_kw: Some(heat),
        extra: vec![
            ("primary_supply_temp_c".into(), 75.0 + 35.0 * load),
            ("primary_return_temp_c".into(), ret + 4.0),
        ],
    };
    let cmd = Command {
        seq: t as u64,
        ts: ts_ms,
        mode: Mode::Auto,
        supply_setpoint_c: supply,
        valve_pct: 20.0 + 60.0 * load,
        pump_pct: 60.0 + 30.0 * load,
        flow_setpoint_m3h: flow,
        valid_for_s: 300,
        epoch: None,
    };
    let design = Design {
        design_kw: 4500.0,
        span_k: 28.0,
        curve_c: Some(33.0 + 27.0 * load),
    };
    (reading, cmd, design)
}

fn main() {
    let stations: usize = common::env("HEATGRID_BENCH_STATIONS", 50_000);
    let hours: i64 = common::env("HEATGRID_BENCH_HOURS", 3);
    let s = Settings::default();
    let ids: Vec<StationId> = (0..stations)
        .map(|i| StationId::new(&format!("st-{i:05}")).unwrap())
        .collect();
    let mut fleet = vec![Diagnosis::default(); stations];
    // The samples are built outside the timed part: the control task has them already.
    let steps = hours * 3600 / PERIOD_S;
    let (mut busy, mut observed) = (std::time::Duration::ZERO, 0u64);
    let mut hour = -1;
    for k in 0..steps {
        let t = k * PERIOD_S;
        let batch: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| sample(id, i, t))
            .collect();
        let start = Instant::now();
        if t / 3600 != hour {
            hour = t / 3600;
            let yardsticks = Fleet::of(fleet.iter());
            for d in &mut fleet {
                d.set_fleet(yardsticks);
            }
        }
        for (d, (r, cmd, design)) in fleet.iter_mut().zip(&batch) {
            d.observe(black_box(r), Some(cmd), design, r.ts_ms, &s);
        }
        busy += start.elapsed();
        observed += stations as u64;
    }
    let per_reading_ns = busy.as_nanos() as f64 / observed as f64;
    // In real time each station reports once per PERIOD_S.
    let core_share = per_reading_ns * 1e-9 * stations as f64 / PERIOD_S as f64;
    let heap: usize = fleet.iter().map(Diagnosis::heap_bytes).sum();
    let per_station = std::mem::size_of::<Diagnosis>() + heap / stations;
    println!(
        "diagnosis: {stations} stations, {hours} plant hours at one reading per {PERIOD_S} s: \
         {observed} readings in {:.2} s of CPU, {per_reading_ns:.0} ns per reading (hour closes \
         and fleet yardsticks included) = {:.2} % of one core in real time; {per_station} bytes \
         per station ({} inline + {} on the heap)",
        busy.as_secs_f64(),
        core_share * 100.0,
        std::mem::size_of::<Diagnosis>(),
        heap / stations
    );
    let findings: usize = fleet.iter().map(|d| d.findings().len()).sum();
    let (_, rss_mib, _) = common::usage(std::process::id());
    println!(
        "findings raised on the synthetic fleet: {findings}; process RSS {rss_mib:.0} MiB \
         (the fleet's state and one period's samples)"
    );
}
