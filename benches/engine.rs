//! Micro-benchmarks of the engine's hot paths: telemetry decode + validate, one control tick
//! of one station, and line-protocol encoding. Run: `cargo bench --bench engine`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use heatgrid::config::Config;
use heatgrid::control::StationController;
use heatgrid::decode::{decode, DecodeLimits};
use heatgrid::model::StationId;
use heatgrid::store::line_protocol;

const PAYLOAD: &[u8] = br#"{"ts": 1764262800000, "supply_temp_c": 52.4, "return_temp_c": 39.8,
 "flow_m3h": 240.5, "heated_area_m2": 100000, "outdoor_temp_c": -6.5, "valve_pct": 41.0, "pump_pct": 78.0}"#;
const NOW: i64 = 1_764_262_801_000;

fn benches(c: &mut Criterion) {
    let id = StationId::new("st-001").unwrap();
    let limits = DecodeLimits::default();
    c.bench_function("decode_telemetry", |b| {
        b.iter(|| decode(black_box(&id), black_box(PAYLOAD), NOW, &limits).unwrap())
    });

    let cfg = Config::parse("[[station]]\nid = \"st-001\"\n", &|_| None).unwrap();
    let mut ctrl = StationController::new(cfg.stations[0].params.clone(), 5.0);
    let mut reading = decode(&id, PAYLOAD, NOW, &limits).unwrap();
    let mut now = NOW;
    c.bench_function("control_tick", |b| {
        b.iter(|| {
            now += 5000;
            reading.ts_ms = now;
            ctrl.tick(Some(black_box(&reading)), -5.0, now)
        })
    });

    let tags = BTreeMap::from([("district".to_owned(), "north".to_owned())]);
    c.bench_function("line_protocol_telemetry", |b| {
        b.iter(|| line_protocol::telemetry(black_box(&reading), &tags, None))
    });
}

criterion_group!(engine, benches);
criterion_main!(engine);
