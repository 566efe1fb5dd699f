//! Payload mappings: stations behind a vendor gateway or a heat-meter bridge that publish their
//! own JSON, or one value per topic, instead of the contract's telemetry.
//!
//! Where it sits: beside [`super::decode`]. The config (`[[mapping]]`, checked in
//! `config/mapping.rs`) compiles into a [`Mapping`]; [`super::messages`] matches each message's
//! topic against the mappings' [`Pattern`]s, and [`Mapping::translate`] (a JSON payload) or
//! [`assemble::Assembler`] (values on separate topics) turns what arrived into a
//! contract-shaped telemetry object: fields picked by path or topic segment, converted to the
//! contract's units ([`units::Unit`]), the timestamp read in its format or taken at arrival.
//! That object then goes through the same [`super::decode::decode`] as a native payload, so
//! validation, storage and control cannot differ. On the way out, [`CommandTemplate`] writes a
//! command in the station's own field names and units.

pub mod assemble;
pub mod units;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::decode::Reject;
use crate::model::{Command, Mode};
use units::Unit;

/// A compiled `[[mapping]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub name: String,
    pub topic: Pattern,
    /// Prepended to the topic's `{station}` segment to form the station id.
    pub station_prefix: String,
    pub payload: PayloadKind,
    pub timestamp: Timestamp,
    /// Reading fields: contract name, where the value is, its unit.
    pub fields: Vec<FieldMap>,
    /// `None`: monitor only, no command is sent.
    pub command: Option<CommandTemplate>,
}

/// How a mapping's messages carry the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// One JSON object per message, fields found by path.
    Json,
    /// One number per message; the topic's `{field}` segment says which.
    Value,
}

/// Where a reading's time comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Timestamp {
    /// When the engine received the message.
    Arrival,
    /// A field of the JSON payload.
    Field { path: Vec<String>, format: TsFormat },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsFormat {
    UnixS,
    UnixMs,
    Rfc3339,
}

/// One mapped field: the contract's name, where the station has it (a JSON path, or the
/// topic's `{field}` segment as a one-element path), and its unit there.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMap {
    pub field: String,
    pub path: Vec<String>,
    pub unit: Unit,
}

/// A topic pattern: literal segments, the station id, and (value per topic) the field name.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern(pub Vec<Segment>);

#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Literal(String),
    Station,
    Field,
}

/// What a topic said: the station id (with the mapping's prefix) and the `{field}` segment.
#[derive(Debug, PartialEq)]
pub struct Matched<'a> {
    pub station: String,
    pub field: Option<&'a str>,
}

impl Pattern {
    /// Parses `a/{station}/b` or `a/{station}/{field}`; `None` if a `{…}` is unknown or the
    /// segment holds more than the placeholder.
    pub fn parse(s: &str) -> Option<Self> {
        s.split('/')
            .map(|seg| match seg {
                "{station}" => Some(Segment::Station),
                "{field}" => Some(Segment::Field),
                _ if seg.contains(['{', '}', '+', '#']) => None,
                _ => Some(Segment::Literal(seg.to_owned())),
            })
            .collect::<Option<Vec<_>>>()
            .map(Pattern)
    }

    /// The MQTT filter for every station (`+` for each placeholder), or for one station.
    pub fn filter(&self, station: Option<&str>) -> String {
        let segs: Vec<&str> = self
            .0
            .iter()
            .map(|s| match (s, station) {
                (Segment::Literal(l), _) => l.as_str(),
                (Segment::Station, Some(id)) => id,
                _ => "+",
            })
            .collect();
        segs.join("/")
    }

    /// The topic for one station (commands; the pattern holds no `{field}`).
    pub fn topic(&self, station: &str) -> String {
        self.filter(Some(station))
    }

    /// Matches a concrete topic; `prefix` is prepended to the station segment.
    pub fn matches<'a>(&self, topic: &'a str, prefix: &str) -> Option<Matched<'a>> {
        let mut station = None;
        let mut field = None;
        let mut parts = topic.split('/');
        for seg in &self.0 {
            let part = parts.next()?;
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Station => station = Some(part),
                Segment::Field => field = Some(part),
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(Matched {
            station: format!("{prefix}{}", station?),
            field,
        })
    }
}

/// A command in the station's own terms: its topic, and each command field's path and unit.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandTemplate {
    pub topic: Pattern,
    pub fields: Vec<FieldMap>,
}

impl CommandTemplate {
    /// The JSON payload for `cmd`: each mapped field at its path, in its unit; `mode` as the
    /// contract's word (`auto`, `manual`, `hold`).
    pub fn payload(&self, cmd: &Command) -> Vec<u8> {
        let mut root = Value::Object(Map::new());
        for f in &self.fields {
            let v = match f.field.as_str() {
                "mode" => Value::from(match cmd.mode {
                    Mode::Auto => "auto",
                    Mode::Manual => "manual",
                    Mode::Hold => "hold",
                }),
                name => match cmd.field_value(name) {
                    // Counters and durations go out as integers (`"id": 42`, not 42.0).
                    Some(x) if f.unit.quantity == units::Quantity::Plain && x.fract() == 0.0 => {
                        Value::from(x as i64)
                    }
                    Some(x) => Value::from(round6(f.unit.from_contract(x))),
                    None => continue,
                },
            };
            put(&mut root, &f.path, v);
        }
        serde_json::to_vec(&root).unwrap_or_default()
    }
}

/// Trims binary noise of a unit conversion (61.2 + 273.15 = 334.34999999999997).
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Sets `v` at `path` in `root`, creating objects on the way.
fn put(root: &mut Value, path: &[String], v: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = root;
    for p in parents {
        let Value::Object(m) = at else { return };
        at = m
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(m) = at {
        m.insert(last.clone(), v);
    }
}

/// The value at `path` in `v`, if any.
fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |at, p| at.get(p.as_str()))
}

/// A number, or a string holding one (gateways often quote their numbers).
pub fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

impl Mapping {
    /// A JSON payload in the station's terms → a contract telemetry object (to be decoded
    /// and validated like a native payload). A mapped field that is absent is left out (the
    /// decoder then names a missing required field); one that is not a number is refused.
    pub fn translate(&self, payload: &[u8], max_bytes: usize) -> Result<Vec<u8>, Reject> {
        if payload.len() > max_bytes {
            return Err(Reject::TooLarge(payload.len()));
        }
        let v: Value =
            serde_json::from_slice(payload).map_err(|e| Reject::NotJson(e.to_string()))?;
        if !v.is_object() {
            return Err(Reject::NotObject);
        }
        let mut out = Map::new();
        for f in &self.fields {
            let Some(x) = get(&v, &f.path) else { continue };
            let x = numeric(x).ok_or_else(|| Reject::WrongType(f.path.join(".")))?;
            out.insert(f.field.clone(), Value::from(round6(f.unit.to_contract(x))));
        }
        if let Timestamp::Field { path, format } = &self.timestamp {
            let name = path.join(".");
            let raw = get(&v, path).ok_or(Reject::BadTimestamp(format!("`{name}` is missing")))?;
            out.insert("ts".into(), Value::from(timestamp_ms(raw, *format, &name)?));
        }
        Ok(serde_json::to_vec(&Value::Object(out)).unwrap_or_default())
    }
}

/// A timestamp field in its format → Unix milliseconds.
fn timestamp_ms(v: &Value, format: TsFormat, name: &str) -> Result<i64, Reject> {
    let bad = |why: String| Reject::BadTimestamp(format!("`{name}`: {why}"));
    match format {
        TsFormat::UnixS | TsFormat::UnixMs => {
            let x = numeric(v).ok_or_else(|| bad(format!("{v} is not a number")))?;
            let ms = if format == TsFormat::UnixS {
                x * 1000.0
            } else {
                x
            };
            if !(0.0..9e15).contains(&ms) {
                return Err(bad(format!("{v} is out of range")));
            }
            Ok(ms.round() as i64)
        }
        TsFormat::Rfc3339 => {
            let s = v
                .as_str()
                .ok_or_else(|| bad(format!("{v} is not a string")))?;
            let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| bad(format!("{s:?}: {e}")))?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| bad(format!("{s:?} is out of range")))
        }
    }
}

#[cfg(test)]
mod tests;
