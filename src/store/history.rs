//! A station's history read back from the database, for the web control room's trend when
//! the engine's own memory has little (after a restart).
//!
//! Where it sits: beside the writer, on the read side; the API's history handler calls it.
//! It reads VictoriaMetrics' export API (`POST /api/v1/export`), where the InfluxDB line
//! protocol the writer sends becomes one series per `<measurement>_<field>` with the tags as
//! labels. It is only used when `[storage.influxdb] history_url` names such an API: InfluxDB
//! 2's own query language (Flux) is not read (see docs/web.md).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

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
        })
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
}
