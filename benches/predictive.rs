//! Predictive control at fleet scale: 50,000 stations, each learning its building from one
//! reading per 10 s of plant time and replanning its 36 h horizon every 15 plant minutes (the
//! defaults), on one shared 48 h forecast. Prints the cost of learning per reading, of one
//! optimisation per station, the share of one core both take in real time, and the memory
//! per station. Run: `cargo bench --bench predictive` (HEATGRID_BENCH_STATIONS,
//! HEATGRID_BENCH_HOURS to change the fleet and the span).

use std::hint::black_box;
use std::time::{Duration, Instant};

use heatgrid::model::{Reading, StationId};
use heatgrid::predict::forecast::Forecast;
use heatgrid::predict::{Design, Predictor, Settings};

mod common;

const PERIOD_S: i64 = 10;
const START_MS: i64 = 1_768_435_200_000;

fn outdoor(t: i64) -> f64 {
    -4.0 + 5.0 * (std::f64::consts::TAU * (t as f64 / 3600.0 - 15.0) / 24.0).cos()
}

/// Station `i`'s reading at plant second `t`: a load following the weather with a wobble
/// (so the model has something to learn), an indoor temperature near 20 °C.
fn reading(id: &StationId, i: usize, t: i64) -> Reading {
    let o = outdoor(t);
    let wobble = 1.0 + 0.1 * (((i * 7) as i64 + t / 1800) % 5) as f64 / 5.0;
    Reading {
        station: id.clone(),
        ts_ms: START_MS + t * 1000,
        supply_temp_c: 50.0,
        return_temp_c: 38.0,
        flow_m3h: 200.0,
        heated_area_m2: Some(100_000.0),
        outdoor_temp_c: Some(o),
        indoor_temp_c: Some(20.0 + 0.2 * (t as f64 / 7200.0).sin() + (i % 3) as f64 * 0.1),
        valve_pct: Some(50.0),
        pump_pct: Some(70.0),
        heat_kw: Some(160.0 * (20.0 - o) * wobble),
        extra: Vec::new(),
    }
}

fn main() {
    let stations: usize = common::env("HEATGRID_BENCH_STATIONS", 50_000);
    let hours: i64 = common::env("HEATGRID_BENCH_HOURS", 2);
    let s = Settings {
        enabled: true,
        min_fit_hours: 2,
        max_rmse_k: 2.0,
        ..Settings::default()
    };
    let design = Design {
        design_kw: 4500.0,
        span_k: 28.0,
    };
    let ids: Vec<StationId> = (0..stations)
        .map(|i| StationId::new(&format!("st-{i:05}")).unwrap())
        .collect();
    let mut fleet = vec![Predictor::new(&design, 100_000.0); stations];
    let points: Vec<String> = (0..=60)
        .map(|h| {
            let t = h * 3600;
            format!(
                r#"{{"ts": {}, "outdoor_temp_c": {:.2}, "solar_w_m2": 0}}"#,
                START_MS + t * 1000,
                outdoor(t) - if h > 20 { 6.0 } else { 0.0 }
            )
        })
        .collect();
    // Learning: three plant hours, readings every minute (untimed).
    for t in (0..3 * 3600).step_by(60) {
        for (i, (p, id)) in fleet.iter_mut().zip(&ids).enumerate() {
            let r = reading(id, i, t);
            p.observe(&r, r.ts_ms, r.outdoor_temp_c.unwrap_or(0.0), 0.0);
        }
    }
    let start_t = 3 * 3600;
    let forecast = Forecast::decode(
        format!("[{}]", points.join(",")).as_bytes(),
        START_MS + start_t * 1000,
    )
    .expect("the bench's forecast");
    let (mut learn, mut plan) = (Duration::ZERO, Duration::ZERO);
    let (mut readings, mut plans) = (0u64, 0u64);
    let steps = hours * 3600 / PERIOD_S;
    let replan_every = (s.replan_s as i64) / PERIOD_S;
    for k in 0..steps {
        let t = start_t + k * PERIOD_S;
        let batch: Vec<Reading> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| reading(id, i, t))
            .collect();
        let began = Instant::now();
        for (p, r) in fleet.iter_mut().zip(&batch) {
            p.observe(black_box(r), r.ts_ms, r.outdoor_temp_c.unwrap_or(0.0), 0.0);
        }
        learn += began.elapsed();
        readings += stations as u64;
        // The shift is asked on every reading; it plans only when a plan is due.
        let began = Instant::now();
        for (p, r) in fleet.iter_mut().zip(&batch) {
            let o = r.outdoor_temp_c.unwrap_or(0.0);
            black_box(p.shift_k(r.ts_ms, r.indoor_temp_c, o, Some(&forecast), &design, &s));
        }
        plan += began.elapsed();
        if k % replan_every == 0 {
            plans += stations as u64;
        }
    }
    let active = fleet
        .iter()
        .filter(|p| p.status().state.is_active())
        .count();
    let per_reading_ns = learn.as_nanos() as f64 / readings as f64;
    let per_plan_us = plan.as_secs_f64() * 1e6 / plans.max(1) as f64;
    let span_s = (hours * 3600) as f64;
    let core_share = (learn + plan).as_secs_f64() / span_s;
    println!(
        "predictive: {stations} stations, {hours} plant hours, a reading per {PERIOD_S} s and a \
         plan per {:.0} s: learning {per_reading_ns:.0} ns per reading; planning {per_plan_us:.1} µs \
         per station per optimisation (the shift asked on every reading included); together \
         {:.2} % of one core in real time; {active} of {stations} stations planning; {} bytes \
         per station inline (+ the current plan, {} bytes on the heap)",
        s.replan_s,
        core_share * 100.0,
        std::mem::size_of::<Predictor>(),
        2 * s.horizon_h * 8 + 8
    );
    let (_, rss_mib, _) = common::usage(std::process::id());
    println!("process RSS {rss_mib:.0} MiB (the fleet's state and one period's readings)");
}
