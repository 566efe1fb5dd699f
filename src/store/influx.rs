//! The InfluxDB v2 write-API writer, on the `influxdb2` crate, made safe to use.
//!
//! Called by the store's writer task with one batch at a time. The crate has no request timeout
//! (every call is wrapped here), panics in `Client::new` on a malformed URL (we build through
//! `ClientBuilder`, which returns an error) and counts only HTTP 204 as success.

use std::time::Duration;

use influxdb2::api::write::TimestampPrecision;

use crate::config::InfluxConfig;

/// Writes line-protocol batches (millisecond timestamps) to one bucket.
pub struct InfluxWriter {
    client: influxdb2::Client,
    url: String,
    org: String,
    bucket: String,
    timeout: Duration,
}

impl std::fmt::Debug for InfluxWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs.
        f.debug_struct("InfluxWriter")
            .field("url", &self.url)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl InfluxWriter {
    pub fn new(cfg: &InfluxConfig) -> Result<Self, String> {
        let client = influxdb2::ClientBuilder::new(&cfg.url, &cfg.org, &cfg.token)
            .build()
            .map_err(|e| format!("storage.influxdb.url {:?}: {e}", cfg.url))?;
        Ok(Self {
            client,
            url: cfg.url.clone(),
            org: cfg.org.clone(),
            bucket: cfg.bucket.clone(),
            timeout: cfg.timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn write(&self, body: &str) -> Result<(), String> {
        let call = self.client.write_line_protocol_with_precision(
            &self.org,
            &self.bucket,
            body.to_owned(),
            TimestampPrecision::Milliseconds,
        );
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}
