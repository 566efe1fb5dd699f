//! A station's history read back from the database, for the web control room's trend when
//! the engine's own memory has little (after a restart).
//!
//! Where it sits: beside the writer, on the read side; the API's history handler calls it.
//! Two readers:
//! - VictoriaMetrics' export API (`POST /api/v1/export`), where the InfluxDB line protocol the
//!   writer sends becomes one series per `<measurement>_<field>` with the tags as labels; used
//!   when `[storage.influxdb] history_url` names such an API.
//! - InfluxQL (`GET /query`) on an InfluxDB 1.x written with `api = "v1"`: the last value of
//!   each field per step, from the database and retention policy written to.
//!
//! InfluxDB 2's own query language (Flux) is not read (see docs/web.md).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::influx::{InfluxApi, InfluxConfig};

/// The series a trend sample is made of: (series, field in the sample).
const SERIES: [(&str, &str); 8] = [
    ("telemetry_supply_temp_c", "supply_temp_c"),
    ("command_supply_setpoint_c", "supply_setpoint_c"),
    ("telemetry_return_temp_c", "return_temp_c"),
    ("telemetry_flow_m3h", "flow_m3h"),
    ("command_flow_setpoint_m3h", "flow_setpoint_m3h"),
    ("telemetry_valve_pct", "valve_pct"),
    ("telemetry_pump_pct", "pump_pct"),
    ("telemetry_outdoor_temp_c", "outdoor_temp_c"),
];

/// At most this many samples in one answer.
const MAX_POINTS: i64 = 1_000;

/// Reads station histories from one database.
#[derive(Debug, Clone)]
pub struct History {
    url: String,
    http: reqwest::Client,
    /// `None`: VictoriaMetrics' export API at `url`.
    influxql: Option<InfluxQl>,
}

/// Where an InfluxDB 1.x keeps the points, and who reads them (also for the reports).
#[derive(Debug, Clone)]
pub struct InfluxQl {
    url: String,
    api: InfluxApi,
    database: String,
    retention_policy: Option<String>,
}

/// One answer of `/query`: a result per statement, a series per measurement (and group).
#[derive(Debug, Deserialize)]
struct QueryAnswer {
    #[serde(default)]
    results: Vec<QueryResult>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct QueryResult {
    #[serde(default)]
    pub(crate) series: Vec<QuerySeries>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct QuerySeries {
    #[serde(default)]
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) columns: Vec<String>,
    pub(crate) values: Vec<Vec<Value>>,
}

impl InfluxQl {
    /// The InfluxQL reader of an InfluxDB 1.x written with `api = "v1"` (`None` for v2).
    pub(crate) fn for_config(cfg: &InfluxConfig) -> Option<Self> {
        let InfluxApi::V1 {
            database,
            retention_policy,
            ..
        } = &cfg.api
        else {
            return None;
        };
        Some(Self {
            url: cfg.url.clone(),
            api: cfg.api.clone(),
            database: database.clone(),
            retention_policy: retention_policy.clone(),
        })
    }

    /// Where the database is.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// `"rp".` when a retention policy is named, to put before a measurement.
    pub(crate) fn rp_prefix(&self) -> String {
        match &self.retention_policy {
            Some(rp) => format!("{}.", quote_ident(rp)),
            None => String::new(),
        }
    }

    /// The results of `query` (statements separated by `;`), or the database's error.
    pub(crate) async fn query(
        &self,
        http: &reqwest::Client,
        query: &str,
    ) -> Result<Vec<QueryResult>, String> {
        let req = http.get(format!("{}/query", self.url)).query(&[
            ("db", self.database.as_str()),
            ("q", query),
            ("epoch", "ms"),
        ]);
        let answer: QueryAnswer = self
            .api
            .authorize(req)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("database: {e}"))?
            .json()
            .await
            .map_err(|e| format!("database answer: {e}"))?;
        if let Some(e) = answer
            .error
            .or_else(|| answer.results.iter().find_map(|r| r.error.clone()))
        {
            return Err(format!("database: {e}"));
        }
        Ok(answer.results)
    }
}

#[derive(Debug, Deserialize)]
struct Exported {
    metric: BTreeMap<String, String>,
    values: Vec<f64>,
    timestamps: Vec<i64>,
}

impl History {
    /// A reader of the export API at `url` (validated by the config). Fails only if the HTTP
    /// client cannot be built: a start error, never a client without timeouts.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().timeout(timeout).build()?,
            influxql: None,
        })
    }

    /// The reader for `[storage.influxdb]`: its `history_url` when given, else InfluxQL on an
    /// InfluxDB 1.x; `None` for a v2 server without one (Flux is not read).
    pub fn for_config(cfg: &InfluxConfig) -> Result<Option<Self>, reqwest::Error> {
        if let Some(url) = &cfg.history_url {
            return Self::new(url, cfg.timeout).map(Some);
        }
        let Some(q) = InfluxQl::for_config(cfg) else {
            return Ok(None);
        };
        let mut h = Self::new(&cfg.url, cfg.timeout)?;
        h.influxql = Some(q);
        Ok(Some(h))
    }

    /// Station `station`'s samples from `from_ms` to `to_ms`, one per `step_ms` (the last
    /// value of each series in each step), oldest first, in the shape of the engine's trend.
    pub async fn station(
        &self,
        station: &str,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<Value>, String> {
        let step_ms = step_ms.max((to_ms - from_ms) / MAX_POINTS).max(1_000);
        if let Some(q) = &self.influxql {
            return self
                .station_influxql(q, station, from_ms, to_ms, step_ms)
                .await;
        }
        let names: Vec<&str> = SERIES.iter().map(|(s, _)| *s).collect();
        let selector = format!(
            "{{__name__=~\"{}\",station=\"{}\"}}",
            names.join("|"),
            station.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let body = self
            .http
            .post(format!("{}/api/v1/export", self.url))
            .form(&[
                ("match[]", selector.as_str()),
                ("start", &(from_ms / 1000).to_string()),
                ("end", &(to_ms / 1000 + 1).to_string()),
            ])
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("database: {e}"))?
            .text()
            .await
            .map_err(|e| format!("database: {e}"))?;
        let mut steps: BTreeMap<i64, Value> = BTreeMap::new();
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let e: Exported =
                serde_json::from_str(line).map_err(|e| format!("database answer: {e}"))?;
            let name = e.metric.get("__name__").map(String::as_str).unwrap_or("");
            let Some((_, field)) = SERIES.iter().find(|(s, _)| *s == name) else {
                continue;
            };
            for (t, v) in e.timestamps.iter().zip(&e.values) {
                if !(from_ms..=to_ms).contains(t) || !v.is_finite() {
                    continue;
                }
                let step = t.div_euclid(step_ms);
                let sample = steps.entry(step).or_insert_with(|| json!({}));
                // The last value of the step wins; the sample is dated by its newest value.
                if sample["t_ms"].as_i64().is_none_or(|old| *t >= old) {
                    sample["t_ms"] = json!(t);
                }
                sample[*field] = json!(v);
            }
        }
        Ok(steps.into_values().collect())
    }

    /// The same samples by InfluxQL: one statement per measurement, `last()` of each field per
    /// step (a sample is dated by its step's start), empty steps left out.
    async fn station_influxql(
        &self,
        q: &InfluxQl,
        station: &str,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<Value>, String> {
        let from = q.rp_prefix();
        let station = station.replace('\\', "\\\\").replace('\'', "\\'");
        let statement = |measurement: &str| {
            let fields: Vec<String> = SERIES
                .iter()
                .filter_map(|(s, f)| {
                    let field = s.strip_prefix(measurement)?.strip_prefix('_')?;
                    Some(format!(
                        "last({}) AS {}",
                        quote_ident(field),
                        quote_ident(f)
                    ))
                })
                .collect();
            format!(
                "SELECT {} FROM {from}{} WHERE station = '{station}' AND time >= {from_ms}ms \
                 AND time <= {to_ms}ms GROUP BY time({step_ms}ms) fill(none)",
                fields.join(", "),
                quote_ident(measurement),
            )
        };
        let query = format!("{}; {}", statement("telemetry"), statement("command"));
        let results = q.query(&self.http, &query).await?;
        let mut steps: BTreeMap<i64, Value> = BTreeMap::new();
        for series in results.iter().flat_map(|r| &r.series) {
            for row in &series.values {
                let Some(t) = row.first().and_then(Value::as_i64) else {
                    continue;
                };
                let sample = steps.entry(t).or_insert_with(|| json!({ "t_ms": t }));
                for (column, v) in series.columns.iter().zip(row).skip(1) {
                    if let Some(v) = v.as_f64().filter(|v| v.is_finite()) {
                        sample[column.as_str()] = json!(v);
                    }
                }
            }
        }
        Ok(steps.into_values().collect())
    }
}

/// An InfluxQL identifier in double quotes.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}
