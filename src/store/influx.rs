//! The InfluxDB write client: one `POST` per batch, with a timeout, and the server's answer
//! classified for the write-error policy in [`super::Writer`]. Two dialects of one line
//! protocol: the v2 write API (`/api/v2/write`, org and bucket, a token; InfluxDB 2 and 3,
//! VictoriaMetrics) and the 1.x one (`/write`, database and retention policy, a user and
//! password; InfluxDB 1.x as Debian ships it). The body is the same in both.
//!
//! Built on reqwest rather than the `influxdb2` crate: the policy needs the `Retry-After`
//! header of a 429/503 and the exact status (413 → split a batch), which `influxdb2` 0.5 hides
//! (it keeps only status and body), and it drops any path prefix of the URL (a database
//! behind a reverse proxy at `/influx`). Its other traps (no request timeout, a panic on a
//! malformed URL) are avoided here too: the URL is parsed once at start-up.

use std::time::Duration;

/// Where and how to write (`[storage.influxdb]`); secrets come from the environment.
#[derive(Debug, Clone)]
pub struct InfluxConfig {
    pub url: String,
    pub api: InfluxApi,
    pub timeout: Duration,
    /// Where station histories are read back from (a VictoriaMetrics export API), if set.
    pub history_url: Option<String>,
}

/// Which write API the server speaks (`api = "v2"` or `"v1"`), with its own addressing and
/// credentials.
#[derive(Clone, PartialEq)]
pub enum InfluxApi {
    /// `POST /api/v2/write?org=&bucket=`, `Authorization: Token …` (empty: none).
    V2 {
        org: String,
        bucket: String,
        token: String,
    },
    /// `POST /write?db=&rp=`, HTTP basic authentication when a user is given.
    V1 {
        database: String,
        /// `None`: the database's default retention policy.
        retention_policy: Option<String>,
        credentials: Option<(String, String)>,
    },
}

impl std::fmt::Debug for InfluxApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs.
        match self {
            Self::V2 { org, bucket, .. } => f
                .debug_struct("V2")
                .field("org", org)
                .field("bucket", bucket)
                .finish_non_exhaustive(),
            Self::V1 {
                database,
                retention_policy,
                credentials,
            } => f
                .debug_struct("V1")
                .field("database", database)
                .field("retention_policy", retention_policy)
                .field("user", &credentials.as_ref().map(|(u, _)| u))
                .finish_non_exhaustive(),
        }
    }
}

impl InfluxApi {
    /// Adds this API's authentication to `req`.
    pub fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::V2 { token, .. } if !token.is_empty() => {
                req.header("Authorization", format!("Token {token}"))
            }
            Self::V1 {
                credentials: Some((user, password)),
                ..
            } => req.basic_auth(user, Some(password)),
            _ => req,
        }
    }
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
    api: InfluxApi,
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
        let mut write_url = match &cfg.api {
            InfluxApi::V2 { org, bucket, .. } => {
                let mut u = base.join("api/v2/write").map_err(|e| bad_url(&e))?;
                u.query_pairs_mut()
                    .append_pair("org", org)
                    .append_pair("bucket", bucket);
                u
            }
            InfluxApi::V1 {
                database,
                retention_policy,
                ..
            } => {
                let mut u = base.join("write").map_err(|e| bad_url(&e))?;
                u.query_pairs_mut().append_pair("db", database);
                if let Some(rp) = retention_policy {
                    u.query_pairs_mut().append_pair("rp", rp);
                }
                u
            }
        };
        write_url.query_pairs_mut().append_pair("precision", "ms");
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(SetupError::Client)?;
        Ok(Self {
            http,
            write_url,
            display_url: cfg.url.clone(),
            api: cfg.api.clone(),
        })
    }

    pub fn url(&self) -> &str {
        &self.display_url
    }

    /// One write. 2xx is success; everything else is classified for the caller.
    pub async fn write(&self, body: Vec<u8>) -> Result<(), WriteError> {
        let req = self
            .http
            .post(self.write_url.clone())
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body);
        let resp = self.api.authorize(req).send().await.map_err(|e| {
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
