//! Unit tests of the mapping core: topic patterns, JSON translation, command templates.

use super::units::Unit;
use super::*;
use crate::ingest::decode::{decode, DecodeLimits};
use crate::model::StationId;

fn field(name: &str, path: &str, unit: Option<&str>) -> FieldMap {
    FieldMap {
        field: name.into(),
        path: path.split('.').map(str::to_owned).collect(),
        unit: unit.map_or(Unit::contract(name), |u| Unit::parse(u, name).unwrap()),
    }
}

fn gateway(ts: Timestamp) -> Mapping {
    Mapping {
        name: "acme".into(),
        topic: Pattern::parse("acme/gw1/{station}/data").unwrap(),
        station_prefix: "acme-".into(),
        payload: PayloadKind::Json,
        timestamp: ts,
        fields: vec![
            field("supply_temp_c", "flow.temperature_k", Some("K")),
            field("return_temp_c", "return.temperature_k", Some("K")),
            field("flow_m3h", "flow.volume_lh", Some("l/h")),
            field("heat_kw", "meter.power_w", Some("W")),
            field("heat_energy_gj", "meter.energy_mwh", Some("MWh")),
        ],
        command: None,
    }
}

const NOW: i64 = 1_764_262_800_000;

#[test]
fn patterns_match_topics_and_make_filters() {
    let p = Pattern::parse("acme/gw1/{station}/data").unwrap();
    assert_eq!(
        p.matches("acme/gw1/7/data", "acme-"),
        Some(Matched {
            station: "acme-7".into(),
            field: None
        })
    );
    assert_eq!(p.matches("acme/gw1/7/data/x", ""), None);
    assert_eq!(p.matches("acme/gw2/7/data", ""), None);
    assert_eq!(p.matches("acme/gw1/7", ""), None);
    assert_eq!(p.filter(None), "acme/gw1/+/data");
    assert_eq!(p.filter(Some("7")), "acme/gw1/7/data");
    let v = Pattern::parse("bridge/station/{station}/{field}").unwrap();
    let m = v.matches("bridge/station/7/tSupply", "").unwrap();
    assert_eq!((m.station.as_str(), m.field), ("7", Some("tSupply")));
    assert_eq!(v.filter(Some("7")), "bridge/station/7/+");
    assert!(Pattern::parse("a/{id}/b").is_none());
    assert!(Pattern::parse("a/+/b").is_none());
}

#[test]
fn nested_json_in_other_units_becomes_a_contract_reading() {
    let m = gateway(Timestamp::Field {
        path: vec!["time".into()],
        format: TsFormat::UnixS,
    });
    let payload = br#"{"time": 1764262790, "flow": {"temperature_k": 334.35, "volume_lh": "2400"},
        "return": {"temperature_k": 313.15}, "meter": {"power_w": 44600, "energy_mwh": 10},
        "status": "ok"}"#;
    let contract = m.translate(payload, 65_536).unwrap();
    let st = StationId::new("acme-7").unwrap();
    let r = decode(&st, &contract, NOW, &DecodeLimits::default()).unwrap();
    assert_eq!(r.ts_ms, 1_764_262_790_000);
    assert!((r.supply_temp_c - 61.2).abs() < 1e-9);
    assert!((r.return_temp_c - 40.0).abs() < 1e-9);
    assert_eq!(r.flow_m3h, 2.4);
    assert_eq!(r.heat_kw, Some(44.6));
    assert_eq!(
        r.extra,
        vec![("heat_energy_gj".to_owned(), 36.0)],
        "energy in GJ"
    );
}

#[test]
fn timestamps_in_every_format_and_payloads_that_do_not_fit_are_refused() {
    let body = r#""flow": {"temperature_k": 334.35, "volume_lh": 2400}, "return": {"temperature_k": 313.15}"#;
    for (format, ts) in [
        (TsFormat::UnixMs, "1764262790000"),
        (TsFormat::UnixS, "1764262790"),
        (TsFormat::Rfc3339, "\"2025-11-27T16:59:50Z\""),
    ] {
        let m = gateway(Timestamp::Field {
            path: vec!["t".into()],
            format,
        });
        let out = m
            .translate(format!(r#"{{"t": {ts}, {body}}}"#).as_bytes(), 65_536)
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["ts"], 1_764_262_790_000_i64, "{format:?}");
    }
    let m = gateway(Timestamp::Arrival);
    let no_ts = m
        .translate(format!("{{{body}}}").as_bytes(), 65_536)
        .unwrap();
    let v: Value = serde_json::from_slice(&no_ts).unwrap();
    assert!(v.get("ts").is_none(), "arrival: the decoder stamps it");
    // Not JSON, not an object, a mapped field of the wrong type, a missing timestamp.
    assert!(matches!(
        m.translate(b"{oops", 65_536),
        Err(Reject::NotJson(_))
    ));
    assert_eq!(m.translate(b"[1]", 65_536), Err(Reject::NotObject));
    assert_eq!(
        m.translate(br#"{"flow": {"temperature_k": true}}"#, 65_536),
        Err(Reject::WrongType("flow.temperature_k".into()))
    );
    assert!(matches!(
        m.translate(&[b' '; 100], 10),
        Err(Reject::TooLarge(100))
    ));
    let needs_ts = gateway(Timestamp::Field {
        path: vec!["t".into()],
        format: TsFormat::UnixS,
    });
    assert!(matches!(
        needs_ts.translate(format!("{{{body}}}").as_bytes(), 65_536),
        Err(Reject::BadTimestamp(_))
    ));
    // A required field the payload lacks: the decoder names it.
    let partial = m
        .translate(br#"{"flow": {"volume_lh": 1}}"#, 65_536)
        .unwrap();
    let st = StationId::new("acme-7").unwrap();
    assert_eq!(
        decode(&st, &partial, NOW, &DecodeLimits::default()).unwrap_err(),
        Reject::Missing("supply_temp_c")
    );
}

#[test]
fn a_command_goes_out_in_the_stations_names_and_units() {
    let t = CommandTemplate {
        topic: Pattern::parse("acme/gw1/{station}/set").unwrap(),
        fields: vec![
            field("supply_setpoint_c", "setpoint.flow_temp_k", Some("K")),
            field("pump_pct", "pump.speed", Some("fraction")),
            field("mode", "mode", None),
            field("seq", "id", None),
            field("valid_for_s", "validity_s", None),
        ],
    };
    let cmd = Command {
        seq: 42,
        ts: NOW,
        mode: Mode::Auto,
        supply_setpoint_c: 58.5,
        valve_pct: 40.0,
        pump_pct: 65.0,
        flow_setpoint_m3h: 30.0,
        valid_for_s: 300,
        epoch: None,
    };
    let v: Value = serde_json::from_slice(&t.payload(&cmd)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"setpoint": {"flow_temp_k": 331.65}, "pump": {"speed": 0.65},
            "mode": "auto", "id": 42, "validity_s": 300})
    );
    assert_eq!(t.topic.topic("7"), "acme/gw1/7/set");
}
