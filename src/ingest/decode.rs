//! Telemetry decoding and validation (contract §2.1): bytes in, [`Reading`] or [`Reject`] out.
//!
//! First stage after the MQTT event loop. Pure: no I/O, no clock reads (the caller passes
//! `now_ms`), so it is the target of unit tests, property tests and benchmarks. A rejected
//! payload never reaches a controller; the reason is a stable label for counters and logs.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::{Reading, StationId};

/// Physical bounds: anything outside is a broken sensor or a broken gateway.
pub const TEMP_MIN_C: f64 = -50.0;
pub const TEMP_MAX_C: f64 = 200.0;
const FLOW_MAX_M3H: f64 = 100_000.0;
/// Largest plausible differential pressure across a station, kPa (25 bar: PN25).
const DP_MAX_KPA: f64 = 2_500.0;
const AREA_MAX_M2: f64 = 100_000_000.0;
const HEAT_MAX_KW: f64 = 10_000_000.0;
/// Unknown numeric fields kept per payload; more are ignored (never an error).
pub const MAX_EXTRA_FIELDS: usize = 32;
const MAX_FIELD_NAME_LEN: usize = 64;
/// 2000-01-01T00:00:00Z: an earlier `ts` is a unit mistake (seconds instead of ms).
const TS_MIN_MS: i64 = 946_684_800_000;

/// Limits that come from configuration.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_payload_bytes: usize,
    /// How far in the future a `ts` may lie (clock skew) before it is refused.
    pub future_tolerance_ms: i64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 64 * 1024,
            future_tolerance_ms: 60_000,
        }
    }
}

/// Why a payload was refused. `label()` is the stable counter/log key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reject {
    #[error("payload of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    #[error("payload is not a JSON object")]
    NotObject,
    #[error("required field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{0}` has the wrong type")]
    WrongType(String),
    #[error("field `{field}` = {value} is outside {min}..{max}")]
    OutOfRange {
        field: String,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("timestamp is invalid: {0}")]
    BadTimestamp(String),
    /// An OPC UA value whose status is Bad or Uncertain.
    #[error("field `{field}` has status {status}")]
    BadStatus { field: String, status: String },
}

impl Reject {
    pub fn label(&self) -> &'static str {
        match self {
            Reject::TooLarge(_) => "too_large",
            Reject::NotJson(_) => "not_json",
            Reject::NotObject => "not_object",
            Reject::Missing(_) => "missing_field",
            Reject::WrongType(_) => "wrong_type",
            Reject::OutOfRange { .. } => "out_of_range",
            Reject::BadTimestamp(_) => "bad_timestamp",
            Reject::BadStatus { .. } => "bad_status",
        }
    }
}

/// Known numeric fields and their physical range. Everything else numeric is an "extra".
const KNOWN: &[(&str, f64, f64)] = &[
    ("supply_temp_c", TEMP_MIN_C, TEMP_MAX_C),
    ("return_temp_c", TEMP_MIN_C, TEMP_MAX_C),
    ("flow_m3h", 0.0, FLOW_MAX_M3H),
    ("heated_area_m2", 0.0, AREA_MAX_M2),
    ("outdoor_temp_c", TEMP_MIN_C, TEMP_MAX_C),
    ("indoor_temp_c", TEMP_MIN_C, TEMP_MAX_C),
    ("primary_supply_temp_c", TEMP_MIN_C, TEMP_MAX_C),
    ("primary_return_temp_c", TEMP_MIN_C, TEMP_MAX_C),
    ("primary_flow_m3h", 0.0, FLOW_MAX_M3H),
    ("primary_diff_pressure_kpa", -DP_MAX_KPA, DP_MAX_KPA),
    ("valve_pct", 0.0, 100.0),
    ("pump_pct", 0.0, 100.0),
    ("heat_kw", -HEAT_MAX_KW, HEAT_MAX_KW),
    ("heat_energy_gj", 0.0, 1e12),
];

/// Decodes and validates one telemetry payload for `station`, received at `now_ms`.
pub fn decode(
    station: &StationId,
    payload: &[u8],
    now_ms: i64,
    limits: &DecodeLimits,
) -> Result<Reading, Reject> {
    if payload.len() > limits.max_payload_bytes {
        return Err(Reject::TooLarge(payload.len()));
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| Reject::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(Reject::NotObject);
    };

    let ts_ms = match obj.get("ts") {
        None | Some(Value::Null) => now_ms,
        Some(v) => parse_ts(v)?,
    };
    if ts_ms > now_ms + limits.future_tolerance_ms {
        return Err(Reject::BadTimestamp(format!(
            "ts is {} s in the future",
            (ts_ms - now_ms) / 1000
        )));
    }

    let mut known = [None; KNOWN.len()];
    for (slot, (name, min, max)) in known.iter_mut().zip(KNOWN) {
        if let Some(v) = obj.get(*name) {
            *slot = Some(number(name, v, *min, *max)?);
        }
    }
    let [supply, ret, flow, area, outdoor, indoor, p_sup, p_ret, p_flow, p_dp, valve, pump, heat, energy] =
        known;
    let required = |v: Option<f64>, name| v.ok_or(Reject::Missing(name));

    let mut extra = Vec::new();
    for (name, opt) in [
        ("primary_supply_temp_c", p_sup),
        ("primary_return_temp_c", p_ret),
        ("primary_flow_m3h", p_flow),
        ("primary_diff_pressure_kpa", p_dp),
        ("heat_energy_gj", energy),
    ] {
        if let Some(v) = opt {
            extra.push((name.to_owned(), v));
        }
    }
    collect_extras(&obj, &mut extra);

    Ok(Reading {
        station: station.clone(),
        ts_ms,
        supply_temp_c: required(supply, "supply_temp_c")?,
        return_temp_c: required(ret, "return_temp_c")?,
        flow_m3h: required(flow, "flow_m3h")?,
        heated_area_m2: area,
        outdoor_temp_c: outdoor,
        indoor_temp_c: indoor,
        valve_pct: valve,
        pump_pct: pump,
        heat_kw: heat,
        extra,
    })
}

pub(crate) fn number(name: &str, v: &Value, min: f64, max: f64) -> Result<f64, Reject> {
    let x = v
        .as_f64()
        .ok_or_else(|| Reject::WrongType(name.to_owned()))?;
    // serde_json never yields NaN/inf from valid JSON, but a bound check covers 1e308 too.
    if !x.is_finite() || x < min || x > max {
        return Err(Reject::OutOfRange {
            field: name.to_owned(),
            value: x,
            min,
            max,
        });
    }
    Ok(x)
}

pub(crate) fn parse_ts(v: &Value) -> Result<i64, Reject> {
    let ms = match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            Reject::BadTimestamp(format!("{n} is not an integer of milliseconds"))
        })?,
        Value::String(s) => {
            let t = OffsetDateTime::parse(s, &Rfc3339)
                .map_err(|e| Reject::BadTimestamp(format!("{s:?}: {e}")))?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| Reject::BadTimestamp(format!("{s:?} is out of range")))?
        }
        _ => return Err(Reject::WrongType("ts".to_owned())),
    };
    if ms < TS_MIN_MS {
        return Err(Reject::BadTimestamp(format!(
            "{ms} is before 2000-01-01; ts is Unix time in milliseconds"
        )));
    }
    Ok(ms)
}

/// Keeps unknown numeric fields with storable names; ignores everything else.
fn collect_extras(obj: &Map<String, Value>, extra: &mut Vec<(String, f64)>) {
    let mut kept = 0;
    for (name, v) in obj {
        if kept == MAX_EXTRA_FIELDS {
            break;
        }
        if name == "ts" || KNOWN.iter().any(|(k, _, _)| k == name) {
            continue;
        }
        let storable_name = !name.is_empty()
            && name.len() <= MAX_FIELD_NAME_LEN
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if let (true, Some(x)) = (storable_name, v.as_f64()) {
            if x.is_finite() && v.is_number() {
                extra.push((name.clone(), x));
                kept += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_262_800_000;

    fn st() -> StationId {
        StationId::new("st-1").unwrap()
    }

    fn ok(payload: &str) -> Reading {
        decode(&st(), payload.as_bytes(), NOW, &DecodeLimits::default()).unwrap()
    }

    fn reject(payload: &[u8]) -> Reject {
        decode(&st(), payload, NOW, &DecodeLimits::default()).unwrap_err()
    }

    #[test]
    fn contract_example_decodes() {
        let r = ok(
            r#"{"ts": 1764262800000, "supply_temp_c": 52.4, "return_temp_c": 39.8,
            "flow_m3h": 240.5, "heated_area_m2": 100000, "outdoor_temp_c": -6.5,
            "valve_pct": 41.0, "pump_pct": 78.0}"#,
        );
        assert_eq!(r.ts_ms, 1_764_262_800_000);
        assert_eq!(r.supply_temp_c, 52.4);
        assert_eq!(r.heated_area_m2, Some(100_000.0));
        assert_eq!(r.outdoor_temp_c, Some(-6.5));
        assert!((r.delta_t_k() - 12.6).abs() < 1e-9);
        assert!((r.heat_kw() - 1.163 * 240.5 * 12.6).abs() < 1e-9);
    }

    #[test]
    fn missing_ts_is_receive_time_and_rfc3339_is_accepted() {
        let r = ok(r#"{"supply_temp_c": 50, "return_temp_c": 40, "flow_m3h": 1}"#);
        assert_eq!(r.ts_ms, NOW);
        let r = ok(
            r#"{"ts": "2025-11-27T17:00:00Z", "supply_temp_c": 50, "return_temp_c": 40, "flow_m3h": 1}"#,
        );
        assert_eq!(r.ts_ms, 1_764_262_800_000);
    }

    #[test]
    fn unknown_fields_are_kept_if_numeric_and_never_an_error() {
        let r = ok(r#"{"supply_temp_c": 50, "return_temp_c": 40, "flow_m3h": 1,
            "dp_kpa": 120.5, "note": "hello", "nested": {"a": 1}, "primary_flow_m3h": 80,
            "bad name": 3}"#);
        assert!(r.extra.contains(&("dp_kpa".to_owned(), 120.5)));
        assert!(r.extra.contains(&("primary_flow_m3h".to_owned(), 80.0)));
        assert_eq!(r.extra.len(), 2);
    }

    #[test]
    fn bad_payloads_are_rejected_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "not_json"),
            (b"[1,2]", "not_object"),
            (b"{\"supply_temp_c\": NaN}", "not_json"),
            (br#"{"supply_temp_c": 50, "return_temp_c": 40}"#, "missing_field"),
            (br#"{"supply_temp_c": "50", "return_temp_c": 40, "flow_m3h": 1}"#, "wrong_type"),
            (br#"{"supply_temp_c": 1e308, "return_temp_c": 40, "flow_m3h": 1}"#, "out_of_range"),
            (br#"{"supply_temp_c": 250, "return_temp_c": 40, "flow_m3h": 1}"#, "out_of_range"),
            (br#"{"supply_temp_c": 50, "return_temp_c": 40, "flow_m3h": -1}"#, "out_of_range"),
            (br#"{"supply_temp_c": 50, "return_temp_c": 40, "flow_m3h": 1, "heated_area_m2": -5}"#, "out_of_range"),
            (br#"{"ts": 1764262800, "supply_temp_c": 50, "return_temp_c": 40, "flow_m3h": 1}"#, "bad_timestamp"),
            (br#"{"ts": 1.5e12, "supply_temp_c": 50, "return_temp_c": 40, "flow_m3h": 1}"#, "bad_timestamp"),
            (br#"{"ts": 1864262800000, "supply_temp_c": 50, "return_temp_c": 40, "flow_m3h": 1}"#, "bad_timestamp"),
            (b"\xff\xfe", "not_json"),
        ];
        for (payload, label) in cases {
            assert_eq!(
                reject(payload).label(),
                *label,
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
        let deep = "[".repeat(10_000);
        assert_eq!(reject(deep.as_bytes()).label(), "not_json");
        let big = vec![b' '; 70_000];
        assert_eq!(reject(&big).label(), "too_large");
    }
}

#[cfg(test)]
#[path = "decode_props.rs"]
mod props;
