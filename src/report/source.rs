//! Where a report's hourly means come from: the database the engine writes to, or its local
//! line-protocol files when it has none.
//!
//! - VictoriaMetrics (`[storage.influxdb] history_url`): PromQL over its query API,
//!   `avg_over_time(telemetry_<field>[1h])` per station at each hour's end, the readings
//!   counted with `count_over_time`, alarm raises with `sum_over_time(alarm_active)`;
//! - InfluxDB 1.x (`api = "v1"`): InfluxQL, `mean(<field>)` and `count()` `GROUP BY
//!   time(1h), station`, alarms `count()` of `active = true`;
//! - no database: `data_dir/lp/points-YYYY-MM-DD.lp` read by `files.rs`, off the async
//!   workers.
//!
//! Where it sits: under [`super::Report::build`], called by the API's report handler.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::files::{self, set, FIELDS};
use super::{Data, Hour, HOUR_MS};
use crate::store::history::{quote_ident, InfluxQl};
use crate::store::StorageConfig;

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
                tokio::task::spawn_blocking(move || files::read(&dir, from_ms, to_ms))
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

#[cfg(test)]
mod tests {
    use super::*;

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
