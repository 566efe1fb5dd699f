//! Micro-benchmarks of the engine's hot paths: telemetry decode + validate, one control tick
//! of one station, line-protocol encoding (one line and a batch), and command encoding (the
//! MQTT topic + JSON payload + stored line, and the Modbus write plan).
//! Run: `cargo bench --bench engine`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use heatgrid::config::Config;
use heatgrid::control::StationController;
use heatgrid::ingest::decode::{decode, DecodeLimits};
use heatgrid::ingest::modbus::map::RegisterMap;
use heatgrid::model::{Command, Mode, StationId};
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
    // Lines per second per core = 1,000 / this time in ms.
    let batch: Vec<_> = (0..1000)
        .map(|k| {
            let mut r = reading.clone();
            r.ts_ms += k;
            r
        })
        .collect();
    c.bench_function("line_protocol_telemetry_x1000", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for r in black_box(&batch) {
                bytes += line_protocol::telemetry(r, &tags, None).len();
            }
            bytes
        })
    });

    let cmd = Command {
        seq: 123_456,
        ts: NOW,
        mode: Mode::Auto,
        supply_setpoint_c: 53.21,
        valve_pct: 43.57,
        pump_pct: 76.0,
        flow_setpoint_m3h: 236.4,
        valid_for_s: 300,
        epoch: None,
    };
    // What the engine does per MQTT command: topic, JSON payload, the stored line.
    c.bench_function("command_encode_mqtt", |b| {
        b.iter(|| {
            let c = black_box(&cmd);
            let topic = format!("heating/station/{}/command", id.as_str());
            let payload = serde_json::to_vec(c).unwrap_or_default();
            let line = line_protocol::command(&id, &tags, c);
            topic.len() + payload.len() + line.len()
        })
    });
    let map = RegisterMap::parse(include_str!("../config/modbus/heatgrid-sim.toml")).unwrap();
    c.bench_function("command_encode_modbus", |b| {
        b.iter(|| map.write_plan(|f| black_box(&cmd).field_value(f)).unwrap())
    });
}

criterion_group!(engine, benches);
criterion_main!(engine);
