//! `[[mapping]]`: payload mappings for stations that publish their own JSON or one value per
//! topic (docs/mappings.md), checked into [`Mapping`]s with every problem at its place.
//!
//! Where it sits: [`super::Config::parse_in`] compiles the mappings before the stations, so a
//! station's `mapping = "name"` is checked against them; ingest and command dispatch use the
//! compiled form (`ingest/mapping/`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::Errors;
use crate::ingest::mapping::units::Unit;
use crate::ingest::mapping::{
    CommandTemplate, FieldMap, Mapping, Pattern, PayloadKind, Segment, Timestamp, TsFormat,
};
use crate::ingest::modbus::map::{READ_FIELDS, WRITE_FIELDS};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMapping {
    name: String,
    topic: String,
    #[serde(default)]
    station_prefix: String,
    #[serde(default = "json")]
    payload: String,
    timestamp: Option<RawTimestamp>,
    #[serde(default)]
    fields: BTreeMap<String, RawField>,
    command: Option<RawCommand>,
}

impl RawMapping {
    pub(super) fn name(&self) -> &str {
        &self.name
    }
}

fn json() -> String {
    "json".into()
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawTimestamp {
    Word(String),
    Field(RawTsField),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTsField {
    path: String,
    format: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    path: Option<String>,
    segment: Option<String>,
    unit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    topic: String,
    #[serde(default)]
    fields: BTreeMap<String, RawField>,
}

/// The compiled `[[mapping]]`s by name.
pub(super) type Mappings = BTreeMap<String, Arc<Mapping>>;

/// Every `[[mapping]]`, by name; problems go to `v`.
pub(super) fn mappings(raw: &[RawMapping], v: &mut Errors) -> BTreeMap<String, Arc<Mapping>> {
    let mut out = BTreeMap::new();
    for (i, m) in raw.iter().enumerate() {
        let place = format!("mapping[{i}] {:?}", m.name);
        let n = v.0.len();
        let mapping = mapping(m, &place, v);
        if out.contains_key(&m.name) {
            v.push(format!("{place}.name: another mapping has this name"));
        }
        if let (Some(mapping), true) = (mapping, v.0.len() == n) {
            out.insert(m.name.clone(), Arc::new(mapping));
        }
    }
    out
}

fn mapping(m: &RawMapping, place: &str, v: &mut Errors) -> Option<Mapping> {
    v.check(
        !m.name.is_empty(),
        format!("{place}.name: must not be empty"),
    );
    let payload = match m.payload.as_str() {
        "json" => PayloadKind::Json,
        "value" => PayloadKind::Value,
        p => {
            v.push(format!(
                "{place}.payload: {p:?} is neither \"json\" (one object per message) nor \"value\" (one number per topic)"
            ));
            return None;
        }
    };
    let topic = pattern(
        &m.topic,
        payload == PayloadKind::Value,
        &format!("{place}.topic"),
        v,
    );
    v.check(
        m.station_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        format!("{place}.station_prefix: only A-Z a-z 0-9 _ - (it begins station ids)"),
    );
    let timestamp = timestamp(m.timestamp.as_ref(), payload, place, v);
    let reads = fields(
        &m.fields,
        Some(payload),
        READ_FIELDS,
        &format!("{place}.fields"),
        v,
    );
    for required in ["supply_temp_c", "return_temp_c", "flow_m3h"] {
        v.check(
            m.fields.contains_key(required),
            format!(
                "{place}.fields.{required}: required in telemetry (contract §1) but not mapped"
            ),
        );
    }
    let command = m.command.as_ref().and_then(|c| {
        let cplace = format!("{place}.command");
        let topic = pattern(&c.topic, false, &format!("{cplace}.topic"), v);
        let writes = fields(&c.fields, None, WRITE_FIELDS, &format!("{cplace}.fields"), v);
        v.check(
            !c.fields.is_empty(),
            format!("{cplace}.fields: map at least supply_setpoint_c, or leave [command] out (monitor only)"),
        );
        Some(CommandTemplate {
            topic: topic?,
            fields: writes,
        })
    });
    Some(Mapping {
        name: m.name.clone(),
        topic: topic?,
        station_prefix: m.station_prefix.clone(),
        payload,
        timestamp,
        fields: reads,
        command,
    })
}

/// A topic pattern with one `{station}`, and one `{field}` exactly when `value_per_topic`.
fn pattern(text: &str, value_per_topic: bool, place: &str, v: &mut Errors) -> Option<Pattern> {
    let Some(p) = Pattern::parse(text) else {
        v.push(format!(
            "{place}: {text:?} may hold literal segments, {{station}} and {{field}} only (no MQTT wildcards)"
        ));
        return None;
    };
    let count = |s: &Segment| p.0.iter().filter(|x| *x == s).count();
    v.check(
        count(&Segment::Station) == 1,
        format!("{place}: {text:?} needs exactly one {{station}} segment"),
    );
    v.check(
        count(&Segment::Field) == usize::from(value_per_topic),
        format!(
            "{place}: {text:?} {}",
            if value_per_topic {
                "needs one {field} segment (payload = \"value\")"
            } else {
                "has a {field} segment, which only payload = \"value\" uses"
            }
        ),
    );
    Some(p)
}

fn timestamp(
    t: Option<&RawTimestamp>,
    payload: PayloadKind,
    place: &str,
    v: &mut Errors,
) -> Timestamp {
    let place = format!("{place}.timestamp");
    match t {
        None => Timestamp::Arrival,
        Some(RawTimestamp::Word(w)) if w == "arrival" => Timestamp::Arrival,
        Some(RawTimestamp::Word(w)) => {
            v.push(format!(
                "{place}: {w:?}: \"arrival\", or {{ path = \"…\", format = \"unix_s\" | \"unix_ms\" | \"rfc3339\" }}"
            ));
            Timestamp::Arrival
        }
        Some(RawTimestamp::Field(f)) => {
            v.check(
                payload == PayloadKind::Json,
                format!("{place}: a value per topic carries no timestamp; use \"arrival\""),
            );
            let format = match f.format.as_str() {
                "unix_s" => TsFormat::UnixS,
                "unix_ms" => TsFormat::UnixMs,
                "rfc3339" => TsFormat::Rfc3339,
                x => {
                    v.push(format!(
                        "{place}.format: {x:?} is not unix_s, unix_ms or rfc3339"
                    ));
                    TsFormat::UnixMs
                }
            };
            Timestamp::Field {
                path: path(&f.path, &format!("{place}.path"), v),
                format,
            }
        }
    }
}

/// Field maps: known contract names, one place each (`path` in JSON, `segment` per topic;
/// commands are JSON), units of the field's quantity.
fn fields(
    raw: &BTreeMap<String, RawField>,
    payload: Option<PayloadKind>,
    known: &[&str],
    place: &str,
    v: &mut Errors,
) -> Vec<FieldMap> {
    let mut out = Vec::new();
    for (name, f) in raw {
        let fplace = format!("{place}.{name}");
        if !known.contains(&name.as_str()) {
            v.push(format!(
                "{fplace}: not a contract field (known: {})",
                known.join(", ")
            ));
            continue;
        }
        let at = match (payload, &f.path, &f.segment) {
            (Some(PayloadKind::Value), None, Some(seg)) if !seg.is_empty() => vec![seg.clone()],
            (Some(PayloadKind::Value), _, _) => {
                v.push(format!(
                    "{fplace}: give `segment`, the topic's {{field}} text that carries it"
                ));
                continue;
            }
            (_, Some(p), None) => path(p, &format!("{fplace}.path"), v),
            _ => {
                v.push(format!(
                    "{fplace}: give `path`, where the value is in the JSON (a.b.c)"
                ));
                continue;
            }
        };
        let unit = match &f.unit {
            None => Unit::contract(name),
            Some(u) => Unit::parse(u, name).unwrap_or_else(|e| {
                v.push(format!("{fplace}.unit: {e}"));
                Unit::contract(name)
            }),
        };
        out.push(FieldMap {
            field: name.clone(),
            path: at,
            unit,
        });
    }
    out
}

/// A dotted JSON path: non-empty keys.
fn path(p: &str, place: &str, v: &mut Errors) -> Vec<String> {
    let keys: Vec<String> = p.split('.').map(str::to_owned).collect();
    v.check(
        keys.iter().all(|k| !k.is_empty()),
        format!("{place}: {p:?} is not a path like \"meter.flow_temperature\""),
    );
    keys
}

/// A station's `mapping = "name"`: a usable mapping whose topics can yield the station's id.
/// `id`: the station's; `polled`: it has a `modbus` or `opcua` table; `declared`: whether some
/// `[[mapping]]` of the file has this name (compiled or not).
pub(super) fn station_mapping(
    id: &str,
    polled: bool,
    name: &str,
    declared: bool,
    mappings: &Mappings,
    place: &str,
    v: &mut Errors,
) -> Option<Arc<Mapping>> {
    let place = format!("{place}.mapping");
    v.check(
        !polled,
        format!("{place}: a Modbus or OPC UA station's values come from its register or node map, not a mapping"),
    );
    let Some(m) = mappings.get(name) else {
        v.push(if declared {
            format!("{place}: mapping {name:?} is not usable (see its errors)")
        } else {
            format!("{place}: no [[mapping]] is named {name:?}")
        });
        return None;
    };
    if !id.starts_with(&m.station_prefix) || id.len() == m.station_prefix.len() {
        v.push(format!(
            "{place}: the id must begin with the mapping's station_prefix {:?} (ids come from its topics as prefix + {{station}})",
            m.station_prefix
        ));
        return None;
    }
    Some(m.clone())
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    const STATIONS: &str = "[[station]]\nid = \"acme-7\"\nmapping = \"acme\"\n";

    #[test]
    fn a_good_mapping_compiles_and_its_station_uses_it() {
        let text = format!(
            "[[mapping]]\nname = \"acme\"\ntopic = \"acme/{{station}}/data\"\nstation_prefix = \"acme-\"\n\
             timestamp = {{ path = \"time\", format = \"rfc3339\" }}\n\
             fields.supply_temp_c = {{ path = \"flow.t\", unit = \"K\" }}\n\
             fields.return_temp_c = {{ path = \"return.t\", unit = \"K\" }}\n\
             fields.flow_m3h = {{ path = \"flow.v\", unit = \"l/h\" }}\n\
             [mapping.command]\ntopic = \"acme/{{station}}/set\"\n\
             fields.supply_setpoint_c = {{ path = \"sp\" }}\n{STATIONS}"
        );
        let c = Config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e:#?}"));
        let m = c.stations[0].mapping.as_ref().unwrap();
        assert_eq!(m.name, "acme");
        assert_eq!(m.fields.len(), 3);
        assert!(m.command.is_some());
        assert_eq!(c.mappings.len(), 1);
    }

    #[test]
    fn every_problem_of_a_mapping_is_reported_with_its_place() {
        let text =
            "[[mapping]]\nname = \"bad\"\ntopic = \"bridge/+/{station}\"\npayload = \"value\"\n\
             timestamp = { path = \"t\", format = \"unix_ns\" }\n\
             fields.supply_temp_c = { path = \"x\" }\n\
             fields.flow_m3h = { segment = \"flow\", unit = \"kW\" }\n\
             fields.suply_temp_c = { segment = \"s\" }\n\
             [mapping.command]\ntopic = \"bridge/{station}/{field}\"\n\
             [[station]]\nid = \"gw-1\"\nmapping = \"nope\"\n\
             [[station]]\nid = \"x-2\"\nmapping = \"bad\"\n";
        let errs = Config::parse(text, &|_| None).unwrap_err();
        let all = errs.join("\n");
        for needle in [
            "mapping[0] \"bad\".topic: \"bridge/+/{station}\" may hold literal segments",
            "mapping[0] \"bad\".timestamp: a value per topic carries no timestamp",
            "mapping[0] \"bad\".timestamp.format: \"unix_ns\" is not unix_s",
            "mapping[0] \"bad\".fields.supply_temp_c: give `segment`",
            "mapping[0] \"bad\".fields.flow_m3h.unit: \"kW\" is not a unit of flow_m3h",
            "mapping[0] \"bad\".fields.suply_temp_c: not a contract field",
            "mapping[0] \"bad\".fields.return_temp_c: required in telemetry",
            "mapping[0] \"bad\".command.topic: \"bridge/{station}/{field}\" has a {field} segment",
            "mapping[0] \"bad\".command.fields: map at least supply_setpoint_c",
            "station[0] \"gw-1\".mapping: no [[mapping]] is named \"nope\"",
        ] {
            assert!(all.contains(needle), "{needle}\nnot in:\n{all}");
        }
    }
}
