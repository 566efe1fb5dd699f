//! One value per topic (`…/station/7/tSupply = 61.2`): the values of a station collect here
//! until they make a reading.
//!
//! Where it sits: [`super::super::messages`] hands each matched value message to
//! [`Assembler::value`]. A reading is complete when the three values the contract requires
//! (supply, return, flow) have arrived since the last reading; it then carries every value
//! that arrived since, and the time of the message that completed it. Values that arrive
//! after a reading go into the next one; a station whose required values stop arriving makes
//! no reading and goes stale, as a silent one does.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{numeric, FieldMap};
use crate::ingest::decode::Reject;

/// The contract's required fields: a reading waits for these.
const REQUIRED: [&str; 3] = ["supply_temp_c", "return_temp_c", "flow_m3h"];

/// Values received per station since its last reading.
#[derive(Debug, Default)]
pub struct Assembler {
    pending: HashMap<String, Map<String, Value>>,
}

impl Assembler {
    /// Takes one value message for `station`, mapped by `field`. `Ok(Some(object))`: a
    /// complete contract telemetry object (without `ts`: the arrival time applies).
    pub fn value(
        &mut self,
        station: &str,
        field: &FieldMap,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, Reject> {
        let text = std::str::from_utf8(payload)
            .map_err(|_| Reject::WrongType(format!("{} (not UTF-8)", field.field)))?;
        // A bare number, or a JSON number or quoted number.
        let v = text
            .trim()
            .parse::<f64>()
            .ok()
            .or_else(|| {
                serde_json::from_str::<Value>(text)
                    .ok()
                    .as_ref()
                    .and_then(numeric)
            })
            .filter(|x| x.is_finite())
            .ok_or_else(|| Reject::WrongType(field.path.join(".")))?;
        let v = (field.unit.to_contract(v) * 1e6).round() / 1e6;
        let values = self.pending.entry(station.to_owned()).or_default();
        values.insert(field.field.clone(), Value::from(v));
        if !REQUIRED.iter().all(|f| values.contains_key(*f)) {
            return Ok(None);
        }
        let done = std::mem::take(values);
        Ok(Some(
            serde_json::to_vec(&Value::Object(done)).unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::units::Unit;
    use super::*;

    fn field(name: &str, seg: &str, unit: Option<&str>) -> FieldMap {
        FieldMap {
            field: name.into(),
            path: vec![seg.into()],
            unit: unit.map_or(Unit::contract(name), |u| Unit::parse(u, name).unwrap()),
        }
    }

    #[test]
    fn a_reading_is_made_when_the_required_values_have_arrived() {
        let mut a = Assembler::default();
        let sup = field("supply_temp_c", "tSupply", None);
        let ret = field("return_temp_c", "tReturn", None);
        let flow = field("flow_m3h", "flow", Some("l/h"));
        let valve = field("valve_pct", "valve", None);
        assert_eq!(a.value("7", &sup, b"61.2").unwrap(), None);
        assert_eq!(a.value("7", &valve, b"\"40\"").unwrap(), None);
        // Another station's values do not mix in.
        assert_eq!(a.value("8", &ret, b"40").unwrap(), None);
        assert_eq!(a.value("7", &ret, b" 41.5\n").unwrap(), None);
        let done = a.value("7", &flow, b"2400").unwrap().unwrap();
        let v: Value = serde_json::from_slice(&done).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"supply_temp_c": 61.2, "return_temp_c": 41.5, "flow_m3h": 2.4, "valve_pct": 40.0})
        );
        // The next reading starts empty.
        assert_eq!(a.value("7", &flow, b"2300").unwrap(), None);
        assert!(matches!(
            a.value("7", &sup, b"hot"),
            Err(Reject::WrongType(_))
        ));
        assert!(a.value("7", &sup, b"NaN").is_err());
    }
}
