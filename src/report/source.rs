//! Where a report's hourly means come from: the database the engine writes to, or its local
//! line-protocol files when it has none.
//!
//! - VictoriaMetrics (`[storage.influxdb] history_url`): PromQL over its query API,
//!   `avg_over_time(telemetry_<field>[1h])` per station at each hour's end, the readings
//!   counted with `count_over_time`, alarm raises with `sum_over_time(alarm_active)`;
//! - InfluxDB 1.x (`api = "v1"`): InfluxQL, `mean(<field>)` and `count()` `GROUP BY
//!   time(1h), station`, alarms `count()` of `active = true`;
//! - no database: `data_dir/lp/points-YYYY-MM-DD.lp` parsed here, off the async workers.
//!
//! Where it sits: under [`super::Report::build`], called by the API's report handler.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{Data, Hour, HOUR_MS};
use crate::store::history::{quote_ident, InfluxQl};
use crate::store::StorageConfig;

/// The telemetry fields a report reads, and where each goes in an [`Hour`].
const FIELDS: [&str; 6] = [
    "heat_kw",
    "supply_temp_c",
    "return_temp_c",
    "outdoor_temp_c",
    "indoor_temp_c",
    "heated_area_m2",
];

fn set(h: &mut Hour, field: &str, v: f64) {
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

/// A report's source.
#[derive(Debug, Clone)]
pub enum Source {
    VictoriaMetrics { url: String, http: reqwest::Client },
    InfluxQl { q: InfluxQl, http: reqwest::Client },
    Files { dir: PathBuf },
}

impl Source {
    /// The source of an engine with `storage` and `data_dir`; `Err` when its database cannot
    /// be read (an InfluxDB 2 without `history_url`: Flux is not read).
    pub fn for_config(storage: &StorageConfig, data_dir: &Path) -> Result<Self, String> {
        // A month of hourly means takes a while on a large fleet.
        let http = || {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .map_err(|e| format!("HTTP client: {e}"))
        };
        match &storage.influxdb {
            None => Ok(Source::Files {
                dir: data_dir.join("lp"),
            }),
            Some(i) => match (&i.history_url, InfluxQl::for_config(i)) {
                (Some(url), _) => Ok(Source::VictoriaMetrics {
                    url: url.clone(),
                    http: http()?,
                }),
                (None, Some(q)) => Ok(Source::InfluxQl { q, http: http()? }),
                (None, None) => Err("reports read the database through [storage.influxdb] \
                                     history_url (a VictoriaMetrics) or an InfluxDB 1.x (api = \
                                     \"v1\"); InfluxDB 2's Flux is not read"
                    .into()),
            },
        }
    }

    /// Said in the report: where its figures come from.
    pub fn describe(&self) -> String {
        match self {
            Source::VictoriaMetrics { url, .. } => format!("the database at {url} (PromQL)"),
            Source::InfluxQl { q, .. } => format!("the database at {} (InfluxQL)", q.url()),
            Source::Files { dir } => format!("the line-protocol files in {}", dir.display()),
        }
    }

    /// Each station's hours and alarm raises in `[from_ms, to_ms)` (whole hours).
    pub async fn read(&self, from_ms: i64, to_ms: i64) -> Result<Data, String> {
        match self {
            Source::VictoriaMetrics { url, http } => vm(http, url, from_ms, to_ms).await,
            Source::InfluxQl { q, http } => influxql(http, q, from_ms, to_ms).await,
            Source::Files { dir } => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || files(&dir, from_ms, to_ms))
                    .await
                    .map_err(|e| format!("reading the files: {e}"))?
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct PromAnswer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<PromData>,
}

#[derive(Debug, Deserialize)]
struct PromData {
    result: Vec<PromSeries>,
}

#[derive(Debug, Deserialize)]
struct PromSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

async fn prom(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    form: &[(&str, String)],
) -> Result<Vec<PromSeries>, String> {
    let a: PromAnswer = http
        .post(format!("{}/api/v1/{path}", url.trim_end_matches('/')))
        .form(form)
        .send()
        .await
        .map_err(|e| format!("database: {e}"))?
        .json()
        .await
        .map_err(|e| format!("database answer: {e}"))?;
    if a.status != "success" {
        return Err(format!("database: {}", a.error.unwrap_or(a.status)));
    }
    Ok(a.data.map(|d| d.result).unwrap_or_default())
}

async fn vm(http: &reqwest::Client, url: &str, from_ms: i64, to_ms: i64) -> Result<Data, String> {
    let mut data = Data::default();
    // Each value at an hour's end is of the hour before it.
    let range = |q: String| {
        vec![
            ("query", q),
            ("start", ((from_ms + HOUR_MS) / 1000).to_string()),
            ("end", (to_ms / 1000).to_string()),
            ("step", "3600".to_owned()),
            ("nocache", "1".to_owned()),
        ]
    };
    // Per station, per hour (its start): the hour being filled.
    let mut hours: BTreeMap<(String, i64), Hour> = BTreeMap::new();
    let mut series = vec![(
        "readings",
        "sum by (station) (count_over_time(telemetry_supply_temp_c[1h]))".to_owned(),
    )];
    series.extend(FIELDS.map(|f| {
        (
            f,
            format!("avg by (station) (avg_over_time(telemetry_{f}[1h]))"),
        )
    }));
    for (field, q) in series {
        for s in prom(http, url, "query_range", &range(q)).await? {
            let Some(station) = s.metric.get("station") else {
                continue;
            };
            for (end_s, v) in &s.values {
                let Ok(v) = v.parse::<f64>() else { continue };
                let hour_ms = (end_s * 1000.0) as i64 - HOUR_MS;
                let h = hours
                    .entry((station.clone(), hour_ms))
                    .or_insert_with(|| Hour {
                        hour_ms,
                        ..Hour::default()
                    });
                if field == "readings" {
                    h.readings = v as u64;
                } else {
                    set(h, field, v);
                }
            }
        }
    }
    for ((station, _), h) in hours {
        data.hours.entry(station).or_default().push(h);
    }
    let raised = format!(
        "sum by (station) (sum_over_time(alarm_active[{}s]))",
        ((to_ms - from_ms) / 1000).max(1)
    );
    let instant = vec![
        ("query", raised),
        ("time", (to_ms / 1000).to_string()),
        ("nocache", "1".to_owned()),
    ];
    for s in prom(http, url, "query", &instant).await? {
        if let (Some(station), Some((_, v))) = (s.metric.get("station"), &s.value) {
            data.alarms
                .insert(station.clone(), v.parse::<f64>().map_or(0, |n| n as u64));
        }
    }
    Ok(data)
}

async fn influxql(
    http: &reqwest::Client,
    q: &InfluxQl,
    from_ms: i64,
    to_ms: i64,
) -> Result<Data, String> {
    let rp = q.rp_prefix();
    let means: Vec<String> = FIELDS
        .iter()
        .map(|f| format!("mean({}) AS {}", quote_ident(f), quote_ident(f)))
        .collect();
    let when = format!("time >= {from_ms}ms AND time < {to_ms}ms");
    let query = format!(
        "SELECT count(\"supply_temp_c\") AS \"readings\", {} FROM {rp}\"telemetry\" WHERE {when} \
         GROUP BY time(1h), \"station\" fill(none); \
         SELECT count(\"value\") AS \"raised\" FROM {rp}\"alarm\" WHERE \"active\" = true AND {when} \
         GROUP BY \"station\"",
        means.join(", ")
    );
    let results = q.query(http, &query).await?;
    let mut data = Data::default();
    for (n, r) in results.iter().enumerate() {
        for s in &r.series {
            let Some(station) = s.tags.get("station") else {
                continue;
            };
            for row in &s.values {
                let cell = |name: &str| {
                    s.columns
                        .iter()
                        .position(|c| c == name)
                        .and_then(|i| row.get(i))
                        .and_then(Value::as_f64)
                };
                if n == 1 {
                    *data.alarms.entry(station.clone()).or_default() +=
                        cell("raised").unwrap_or(0.0) as u64;
                    continue;
                }
                let Some(t) = row.first().and_then(Value::as_i64) else {
                    continue;
                };
                let mut h = Hour {
                    hour_ms: t,
                    readings: cell("readings").unwrap_or(0.0) as u64,
                    ..Hour::default()
                };
                for f in FIELDS {
                    if let Some(v) = cell(f) {
                        set(&mut h, f, v);
                    }
                }
                data.hours.entry(station.clone()).or_default().push(h);
            }
        }
    }
    Ok(data)
}

/// Sums and counts of one hour's fields, from the files.
#[derive(Debug, Default)]
struct Sums {
    readings: u64,
    fields: [(f64, u32); FIELDS.len()],
}

/// The hours and alarms in the files of the days of `[from_ms, to_ms)`.
fn files(dir: &Path, from_ms: i64, to_ms: i64) -> Result<Data, String> {
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

    #[tokio::test]
    async fn hours_and_alarms_from_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_796_601_600_000; // 2026-12-07T00:00Z
        let mut text = String::new();
        for (m, heat) in [(10, 100.0), (40, 300.0), (70, 50.0)] {
            text.push_str(&format!(
                "telemetry,station=a supply_temp_c=70,return_temp_c=50,heat_kw={heat},heated_area_m2=1000 {}\n",
                t0 + m * 60_000
            ));
        }
        text.push_str(&format!(
            "alarm,station=a,kind=stale active=true,value=1 {}\n",
            t0 + 5
        ));
        text.push_str(&format!(
            "alarm,station=a,kind=stale active=false,value=0 {}\n",
            t0 + 9
        ));
        std::fs::write(dir.path().join("points-2026-12-07.lp"), text).unwrap();
        std::fs::write(
            dir.path().join("points-2026-12-09.lp"),
            "telemetry,station=a heat_kw=1 1\n",
        )
        .unwrap();
        let data = Source::Files {
            dir: dir.path().into(),
        }
        .read(t0, t0 + 2 * HOUR_MS)
        .await
        .unwrap();
        let a = &data.hours["a"];
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].readings, a[0].heat_kw), (2, Some(200.0)));
        assert_eq!((a[1].hour_ms, a[1].heat_kw), (t0 + HOUR_MS, Some(50.0)));
        assert_eq!(data.alarms["a"], 1, "the raise, not the clear");
    }
}
