//! The webhook channel: each notification a JSON `POST`, signed with HMAC-SHA256 over its body
//! (`X-Heatgrid-Signature: sha256=<hex>`) when a secret is configured, and named by a delivery
//! id that stays the same on every retry (`X-Heatgrid-Delivery`), so a receiver can drop a
//! repeat.
//!
//! Where it sits: called by the channel's delivery task (`deliver.rs`), which builds the body
//! from the message.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::message::SendError;

/// `[[notify.webhook]]`.
#[derive(Clone)]
pub struct WebhookConfig {
    pub url: String,
    /// From `secret_env`; `None`: the body is not signed.
    pub secret: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // An HMAC takes a key of any length: this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in tag {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// One webhook.
#[derive(Debug)]
pub(super) struct Webhook {
    cfg: WebhookConfig,
    http: reqwest::Client,
}

impl Webhook {
    pub(super) fn new(cfg: &WebhookConfig) -> Result<Self, String> {
        reqwest::Url::parse(&cfg.url).map_err(|e| format!("url {:?}: {e}", cfg.url))?;
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            cfg: cfg.clone(),
            http,
        })
    }

    /// One attempt. 2xx is delivered; 408, 429, 5xx and network errors are worth another try;
    /// any other answer is not (the receiver refuses this message).
    pub(super) async fn post(&self, delivery: &str, body: &[u8]) -> Result<(), SendError> {
        let mut req = self
            .http
            .post(&self.cfg.url)
            .header("Content-Type", "application/json")
            .header("X-Heatgrid-Delivery", delivery)
            .body(body.to_vec());
        if let Some(secret) = &self.cfg.secret {
            req = req.header("X-Heatgrid-Signature", signature(secret, body));
        }
        let resp = req.send().await.map_err(|e| {
            SendError::Retry(if e.is_timeout() {
                "no answer within the timeout".into()
            } else {
                format!("{e}")
            })
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let mut text = resp.text().await.unwrap_or_default();
        text.truncate(200);
        let why = format!("HTTP {}: {text}", status.as_u16());
        if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
            Err(SendError::Retry(why))
        } else {
            Err(SendError::Permanent(why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231s_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
