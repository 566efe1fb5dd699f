//! The forecast from a file or an HTTP URL (`[predictive] forecast_file` / `forecast_url`),
//! for installations whose forecast service does not publish on MQTT.
//!
//! Where it sits: a task of the engine's ingest side; every `forecast_poll_s` it reads the
//! source and, when the content changed, decodes it exactly as the retained
//! `heating/weather/forecast` message and puts it into the shared weather feed, where the
//! control task's predictors find it. A source that fails or a content that does not decode is
//! logged once per change of the reason, and the last good forecast stays until it goes stale.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ingest::Weather;
use crate::predict::forecast::Forecast;

/// Where the forecast comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    File(std::path::PathBuf),
    Url(String),
}

impl Source {
    async fn read(&self, http: &reqwest::Client) -> Result<Vec<u8>, String> {
        match self {
            Source::File(p) => tokio::fs::read(p)
                .await
                .map_err(|e| format!("reading {}: {e}", p.display())),
            Source::Url(u) => {
                let resp = http
                    .get(u)
                    .send()
                    .await
                    .map_err(|e| format!("GET {u}: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("GET {u}: HTTP {}", resp.status()));
                }
                resp.bytes()
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| format!("GET {u}: {e}"))
            }
        }
    }
}

/// The HTTP client of [`poll`]: a 10 s limit per fetch.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
}

/// Polls `source` every `every` until `stop`.
pub async fn poll(
    source: Source,
    http: reqwest::Client,
    every: Duration,
    weather: Weather,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    let (mut last, mut failing): (Option<Vec<u8>>, Option<String>) = (None, None);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let got = source.read(&http).await.and_then(|bytes| {
            if last.as_ref() == Some(&bytes) {
                return Ok(None);
            }
            let f = Forecast::decode(&bytes, crate::clock::now_ms()).map_err(|e| e.to_string())?;
            Ok(Some((bytes, f)))
        });
        match got {
            Ok(new) => {
                if failing.take().is_some() {
                    info!(source = ?source, "Forecast source readable again.");
                }
                if let Some((bytes, f)) = new {
                    weather.lock().unwrap_or_else(|p| p.into_inner()).forecast = Some(Arc::new(f));
                    last = Some(bytes);
                }
            }
            Err(e) => {
                if failing.as_ref() != Some(&e) {
                    warn!(source = ?source, error = %e,
                        "Forecast source failed; the last good forecast stays until it is stale.");
                    failing = Some(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_forecast_file_is_read_when_it_changes_and_a_bad_one_keeps_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forecast.json");
        let now = crate::clock::now_ms();
        let good = |t: f64| {
            format!(
                r#"[{{"ts": {now}, "outdoor_temp_c": {t}}}, {{"ts": {}, "outdoor_temp_c": {t}}}]"#,
                now + 3_600_000
            )
        };
        std::fs::write(&path, good(-3.0)).unwrap();
        let weather = Weather::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn(poll(
            Source::File(path.clone()),
            client().unwrap(),
            Duration::from_millis(20),
            weather.clone(),
            stop.clone(),
        ));
        let first = |w: &Weather| {
            w.lock()
                .unwrap()
                .forecast
                .as_ref()
                .map(|f| f.points[0].outdoor_c)
        };
        let wait = |want: f64| {
            let w = weather.clone();
            async move {
                for _ in 0..250 {
                    if first(&w) == Some(want) {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                false
            }
        };
        assert!(wait(-3.0).await);
        std::fs::write(&path, good(-7.5)).unwrap();
        assert!(wait(-7.5).await);
        // Not a forecast: refused, the last good one stays.
        std::fs::write(&path, "[{\"ts\": 1}]").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(first(&weather), Some(-7.5));
        stop.cancel();
        task.await.unwrap();
    }
}
