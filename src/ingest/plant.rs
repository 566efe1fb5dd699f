//! Decoding the heat plant's telemetry (contract §7, `heating/plant/{id}/telemetry`) and a
//! pressure point's (`heating/network/{point}/telemetry`) into validated readings, with the
//! same rules and [`Reject`] reasons as a station's ([`super::decode`]).
//!
//! Where it sits: beside the station decoder, between the broker and the plant loop
//! ([`crate::control::plant`]) and storage. What was accepted is kept in the [`PlantFeed`],
//! which the plant task, the alarms and the API read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::decode::{number, parse_ts, DecodeLimits, Reject, TEMP_MAX_C, TEMP_MIN_C};

const FLOW_MAX_M3H: f64 = 1_000_000.0;
const HEAT_MAX_KW: f64 = 100_000_000.0;
const DP_MAX_KPA: f64 = 2_500.0;

pub use crate::model::{PlantReading, PointReading};

/// What ingest knows of the plant and the network's pressure points.
#[derive(Debug, Clone, Default)]
pub struct PlantSeen {
    /// The latest accepted plant reading, and when it arrived (Unix ms).
    pub reading: Option<PlantReading>,
    pub received_ms: Option<i64>,
    /// The last acknowledgement: (seq, the plant's reason when it refused).
    pub ack: Option<(u64, Option<String>)>,
    /// The plant's presence (`…/state`): `Some(true)` online, `Some(false)` offline.
    pub online: Option<bool>,
    /// Each pressure point's latest reading.
    pub points: BTreeMap<String, PointReading>,
    /// Payloads refused.
    pub rejects: u64,
    /// A plant polled over Modbus: why its last request failed, until one succeeds.
    pub comm_error: Option<String>,
}

/// The shared [`PlantSeen`], written by ingest.
pub type PlantFeed = Arc<Mutex<PlantSeen>>;

fn object(payload: &[u8], limits: &DecodeLimits) -> Result<serde_json::Map<String, Value>, Reject> {
    if payload.len() > limits.max_payload_bytes {
        return Err(Reject::TooLarge(payload.len()));
    }
    match serde_json::from_slice(payload).map_err(|e| Reject::NotJson(e.to_string()))? {
        Value::Object(o) => Ok(o),
        _ => Err(Reject::NotObject),
    }
}

fn timestamp(
    obj: &serde_json::Map<String, Value>,
    now_ms: i64,
    limits: &DecodeLimits,
) -> Result<i64, Reject> {
    let ts = match obj.get("ts") {
        None | Some(Value::Null) => now_ms,
        Some(v) => parse_ts(v)?,
    };
    if ts > now_ms + limits.future_tolerance_ms {
        return Err(Reject::BadTimestamp(format!(
            "ts is {} s in the future",
            (ts - now_ms) / 1000
        )));
    }
    Ok(ts)
}

fn field(
    obj: &serde_json::Map<String, Value>,
    name: &'static str,
    min: f64,
    max: f64,
) -> Result<f64, Reject> {
    let v = obj.get(name).ok_or(Reject::Missing(name))?;
    number(name, v, min, max)
}

/// Decodes a plant telemetry payload received at `now_ms`.
pub fn decode_plant(
    payload: &[u8],
    now_ms: i64,
    limits: &DecodeLimits,
) -> Result<PlantReading, Reject> {
    let obj = object(payload, limits)?;
    let ts_ms = timestamp(&obj, now_ms, limits)?;
    let mut units = BTreeMap::new();
    if let Some(u) = obj.get("units") {
        let Value::Object(map) = u else {
            return Err(Reject::WrongType("units".to_owned()));
        };
        for (name, v) in map.iter().take(super::decode::MAX_EXTRA_FIELDS) {
            units.insert(name.clone(), number("units", v, -HEAT_MAX_KW, HEAT_MAX_KW)?);
        }
    }
    let int = |name: &str| obj.get(name).and_then(Value::as_u64);
    Ok(PlantReading {
        ts_ms,
        supply_temp_c: field(&obj, "supply_temp_c", TEMP_MIN_C, TEMP_MAX_C)?,
        return_temp_c: field(&obj, "return_temp_c", TEMP_MIN_C, TEMP_MAX_C)?,
        flow_m3h: field(&obj, "flow_m3h", 0.0, FLOW_MAX_M3H)?,
        heat_kw: field(&obj, "heat_kw", -HEAT_MAX_KW, HEAT_MAX_KW)?,
        diff_pressure_kpa: field(&obj, "diff_pressure_kpa", -DP_MAX_KPA, DP_MAX_KPA)?,
        pump_pct: field(&obj, "pump_pct", 0.0, 100.0)?,
        units,
        applied: int("applied_seq").map(|seq| (int("applied_epoch").unwrap_or(0), seq)),
    })
}

/// Decodes a pressure point's telemetry payload received at `now_ms`.
pub fn decode_point(
    payload: &[u8],
    now_ms: i64,
    limits: &DecodeLimits,
) -> Result<PointReading, Reject> {
    let obj = object(payload, limits)?;
    Ok(PointReading {
        ts_ms: timestamp(&obj, now_ms, limits)?,
        diff_pressure_kpa: field(&obj, "diff_pressure_kpa", -DP_MAX_KPA, DP_MAX_KPA)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_262_800_000;

    #[test]
    fn a_plant_payload_decodes_and_a_bad_one_says_why() {
        let ok = br#"{"ts":1764262800000,"supply_temp_c":95.2,"return_temp_c":48.0,"flow_m3h":5400,"heat_kw":290000,"diff_pressure_kpa":310,"pump_pct":62,"units":{"base":250000,"peak":40000},"applied_epoch":3,"applied_seq":17}"#;
        let r = decode_plant(ok, NOW, &DecodeLimits::default()).unwrap();
        assert_eq!(r.supply_temp_c, 95.2);
        assert_eq!(
            r.units,
            BTreeMap::from([("base".into(), 250000.0), ("peak".into(), 40000.0)])
        );
        assert_eq!(r.applied, Some((3, 17)));
        let no_dp = br#"{"supply_temp_c":95.2,"return_temp_c":48.0,"flow_m3h":5400,"heat_kw":1,"pump_pct":62}"#;
        assert_eq!(
            decode_plant(no_dp, NOW, &DecodeLimits::default()),
            Err(Reject::Missing("diff_pressure_kpa"))
        );
        let hot = br#"{"supply_temp_c":950,"return_temp_c":48.0,"flow_m3h":5400,"heat_kw":1,"diff_pressure_kpa":1,"pump_pct":62}"#;
        assert!(matches!(
            decode_plant(hot, NOW, &DecodeLimits::default()),
            Err(Reject::OutOfRange { .. })
        ));
        let units = br#"{"supply_temp_c":95,"return_temp_c":48,"flow_m3h":1,"heat_kw":1,"diff_pressure_kpa":1,"pump_pct":6,"units":[1]}"#;
        assert_eq!(
            decode_plant(units, NOW, &DecodeLimits::default()),
            Err(Reject::WrongType("units".into()))
        );
        let point = decode_point(
            br#"{"diff_pressure_kpa":62.5}"#,
            NOW,
            &DecodeLimits::default(),
        );
        assert_eq!(
            point,
            Ok(PointReading {
                ts_ms: NOW,
                diff_pressure_kpa: 62.5
            })
        );
    }
}
