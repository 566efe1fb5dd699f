//! The InfluxDB v2 write-API client: one `POST /api/v2/write` per batch, with a timeout, and
//! the server's answer classified for the write-error policy in [`super::Writer`].
//!
//! Built on reqwest rather than the `influxdb2` crate: the policy needs the `Retry-After`
//! header of a 429/503 and the exact status (413 → split a batch), which `influxdb2` 0.5 hides
//! (it keeps only status and body), and it drops any path prefix of the URL (a database
//! behind a reverse proxy at `/influx`). Its other traps (no request timeout, a panic on a
//! malformed URL) are avoided here too: the URL is parsed once at start-up.

use std::time::Duration;

/// Where and how to write (`[storage.influxdb]`); the token comes from the environment.
#[derive(Debug, Clone)]
pub struct InfluxConfig {
    pub url: String,
    pub org: String,
    pub bucket: String,
    pub token: String,
    pub timeout: Duration,
    /// Where station histories are read back from (a VictoriaMetrics export API), if set.
    pub history_url: Option<String>,
}

/// Why the writer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("storage.influxdb.url {url:?}: {detail}")]
    Url { url: String, detail: String },
    #[error("HTTP client: {0}")]
    Client(reqwest::Error),
}

/// Why a write did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("HTTP {status}: {body}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        body: String,
    },
    #[error("{0}")]
    Network(String),
}

/// Writes line-protocol batches (millisecond timestamps) to one bucket.
pub struct InfluxWriter {
    http: reqwest::Client,
    write_url: reqwest::Url,
    display_url: String,
    auth: Option<String>,
}

impl std::fmt::Debug for InfluxWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs.
        f.debug_struct("InfluxWriter")
            .field("url", &self.display_url)
            .finish_non_exhaustive()
    }
}

impl InfluxWriter {
    pub fn new(cfg: &InfluxConfig) -> Result<Self, SetupError> {
        let bad_url = |e: &dyn std::fmt::Display| SetupError::Url {
            url: cfg.url.clone(),
            detail: e.to_string(),
        };
        let base = reqwest::Url::parse(&format!("{}/", cfg.url.trim_end_matches('/')))
            .map_err(|e| bad_url(&e))?;
        let mut write_url = base.join("api/v2/write").map_err(|e| bad_url(&e))?;
        write_url
            .query_pairs_mut()
            .append_pair("org", &cfg.org)
            .append_pair("bucket", &cfg.bucket)
            .append_pair("precision", "ms");
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(SetupError::Client)?;
        Ok(Self {
            http,
            write_url,
            display_url: cfg.url.clone(),
            auth: (!cfg.token.is_empty()).then(|| format!("Token {}", cfg.token)),
        })
    }

    pub fn url(&self) -> &str {
        &self.display_url
    }

    /// One write. 2xx is success; everything else is classified for the caller.
    pub async fn write(&self, body: Vec<u8>) -> Result<(), WriteError> {
        let mut req = self
            .http
            .post(self.write_url.clone())
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body);
        if let Some(auth) = &self.auth {
            req = req.header("Authorization", auth);
        }
        let resp = req.send().await.map_err(|e| {
            WriteError::Network(if e.is_timeout() {
                "no answer within the timeout".into()
            } else {
                format!("{e}")
            })
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(300)));
        let mut text = resp.text().await.unwrap_or_default();
        text.truncate(500);
        Err(WriteError::Status {
            status: status.as_u16(),
            retry_after,
            body: text,
        })
    }
}
