//! The engine's own line-protocol files (`data_dir/lp/points-YYYY-MM-DD.lp`, what it stores
//! without a database) read back into a report's hourly means and alarm raises, and the
//! line-protocol parser they need (the reverse of `store/line_protocol.rs` for the engine's
//! own lines: escapes, quoted strings, integers, booleans, millisecond timestamps).
//!
//! Where it sits: under `source.rs`, which runs it off the async workers.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Data, Hour, HOUR_MS};

/// The telemetry fields a report reads, and where each goes in an [`Hour`].
pub(super) const FIELDS: [&str; 6] = [
    "heat_kw",
    "supply_temp_c",
    "return_temp_c",
    "outdoor_temp_c",
    "indoor_temp_c",
    "heated_area_m2",
];

pub(super) fn set(h: &mut Hour, field: &str, v: f64) {
    let slot = match field {
        "heat_kw" => &mut h.heat_kw,
        "supply_temp_c" => &mut h.supply_c,
        "return_temp_c" => &mut h.return_c,
        "outdoor_temp_c" => &mut h.outdoor_c,
        "indoor_temp_c" => &mut h.indoor_c,
        "heated_area_m2" => &mut h.area_m2,
        _ => return,
    };
    *slot = Some(v);
}

/// Sums and counts of one hour's fields, from the files.
#[derive(Debug, Default)]
struct Sums {
    readings: u64,
    fields: [(f64, u32); FIELDS.len()],
}

/// The hours and alarms in the files of the days of `[from_ms, to_ms)`.
pub(super) fn read(dir: &Path, from_ms: i64, to_ms: i64) -> Result<Data, String> {
    let day = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .map(|t| t.date())
            .ok()
    };
    let (Some(first), Some(last)) = (day(from_ms - HOUR_MS * 24), day(to_ms)) else {
        return Err("the period is out of range".into());
    };
    let mut sums: BTreeMap<(String, i64), Sums> = BTreeMap::new();
    let mut data = Data::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // No file yet: nothing stored.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(data),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(date) = name
            .strip_prefix("points-")
            .and_then(|n| n.strip_suffix(".lp"))
            .and_then(|d| {
                time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).ok()
            })
        else {
            continue;
        };
        if date < first || date > last {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).map_err(|e| format!("{name}: {e}"))?;
        for line in text.lines() {
            let Some(p) = parse(line) else { continue };
            if !(from_ms..to_ms).contains(&p.ts_ms) {
                continue;
            }
            let Some(station) = p
                .tags
                .iter()
                .find(|(k, _)| k == "station")
                .map(|(_, v)| v.clone())
            else {
                continue;
            };
            match p.measurement.as_str() {
                "telemetry" => {
                    let hour_ms = p.ts_ms - p.ts_ms.rem_euclid(HOUR_MS);
                    let s = sums.entry((station, hour_ms)).or_default();
                    s.readings += 1;
                    for (i, f) in FIELDS.iter().enumerate() {
                        if let Some(Field::Float(v)) = p.field(f) {
                            s.fields[i].0 += v;
                            s.fields[i].1 += 1;
                        }
                    }
                }
                "alarm" if p.field("active") == Some(Field::Bool(true)) => {
                    *data.alarms.entry(station).or_default() += 1;
                }
                _ => {}
            }
        }
    }
    for ((station, hour_ms), s) in sums {
        let mut h = Hour {
            hour_ms,
            readings: s.readings,
            ..Hour::default()
        };
        for (i, f) in FIELDS.iter().enumerate() {
            let (sum, n) = s.fields[i];
            if n > 0 {
                set(&mut h, f, sum / f64::from(n));
            }
        }
        data.hours.entry(station).or_default().push(h);
    }
    Ok(data)
}

/// A field's value in a line.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Float(f64),
    Int(i64),
    Bool(bool),
    Str(String),
}

/// One parsed line of line protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, Field)>,
    pub ts_ms: i64,
}

impl Line {
    fn field(&self, name: &str) -> Option<Field> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Splits `s` at each unescaped `sep` outside double quotes (when `quotes`), keeping the
/// escapes (for [`unescape`] later).
fn split(s: &str, sep: char, quotes: bool) -> Vec<String> {
    let mut out = vec![String::new()];
    let (mut escaped, mut quoted) = (false, false);
    for c in s.chars() {
        let cur = out
            .last_mut()
            .unwrap_or_else(|| unreachable!("never empty"));
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
            cur.push(c);
        } else if quotes && c == '"' {
            quoted = !quoted;
            cur.push(c);
        } else if c == sep && !quoted {
            out.push(String::new());
        } else {
            cur.push(c);
        }
    }
    out
}

/// One line of line protocol as the engine writes it (millisecond timestamps); `None` for a
/// comment, a blank or a malformed line.
pub fn parse(line: &str) -> Option<Line> {
    let line = line.trim_end();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let parts = split(line, ' ', true);
    let [head, fields, ts] = parts.as_slice() else {
        return None;
    };
    let mut head = split(head, ',', false).into_iter();
    let measurement = unescape(&head.next()?);
    let tags = head
        .map(|kv| match split(&kv, '=', false).as_slice() {
            [k, v] => Some((unescape(k), unescape(v))),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let fields = split(fields, ',', true)
        .into_iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let value = if let Some(s) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Field::Str(s.replace("\\\"", "\"").replace("\\\\", "\\"))
            } else if let Some(i) = v.strip_suffix('i') {
                Field::Int(i.parse().ok()?)
            } else if matches!(v, "t" | "T" | "true" | "True" | "TRUE") {
                Field::Bool(true)
            } else if matches!(v, "f" | "F" | "false" | "False" | "FALSE") {
                Field::Bool(false)
            } else {
                Field::Float(v.parse().ok()?)
            };
            Some((unescape(k), value))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Line {
        measurement,
        tags,
        fields,
        ts_ms: ts.trim().parse().ok()?,
    })
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(n) => out.push(n),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::line_protocol::LineBuilder;

    #[test]
    fn the_engines_own_lines_are_read_back() {
        let line = LineBuilder::new("alarm")
            .tag("station", "st 1,a=b")
            .tag("kind", "stale")
            .boolean("active", true)
            .string("message", "no \"fresh\" telemetry, for 62 s = long")
            .float("value", 62.5)
            .int("id", 7)
            .finish(1_796_659_200_000)
            .unwrap();
        let p = parse(&line).unwrap_or_else(|| panic!("{line}"));
        assert_eq!(p.measurement, "alarm");
        assert_eq!(p.tags[0], ("station".into(), "st 1,a=b".into()));
        assert_eq!(p.field("active"), Some(Field::Bool(true)));
        assert_eq!(
            p.field("message"),
            Some(Field::Str("no \"fresh\" telemetry, for 62 s = long".into()))
        );
        assert_eq!(p.field("value"), Some(Field::Float(62.5)));
        assert_eq!(p.field("id"), Some(Field::Int(7)));
        assert_eq!(p.ts_ms, 1_796_659_200_000);
        assert_eq!(parse("# HTTP 400: bad"), None);
        assert_eq!(parse("telemetry,station=a supply_temp_c=x 1"), None);
    }
}
