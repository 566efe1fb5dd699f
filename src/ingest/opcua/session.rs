//! One server's session: the certificate store made from the config (only the configured
//! server certificate is trusted), the client built from it, the connect, and the session's
//! event loop run on a task of its own that reports the link's changes.
//!
//! Where it sits: [`super::server`] calls [`connect`] until it succeeds (with backoff) and
//! then reads [`LinkEvent`]s; after a first connect the async-opcua event loop re-establishes
//! the channel and session itself (retrying with backoff forever) and re-creates the
//! subscription on a new session.

use std::sync::Arc;

use futures::StreamExt;
use opcua::client::{ClientBuilder, IdentityToken, Session, SessionPollResult};
use opcua::crypto::CertificateStore;
use opcua::types::{EndpointDescription, MessageSecurityMode, UserTokenPolicy};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Identity, Security, ServerConfig};

/// What the session's event loop reports.
#[derive(Debug)]
pub(super) enum LinkEvent {
    /// Connected: a new session (`true`: the server forgot the old one) or the old one again.
    Up { new_session: bool },
    /// The connection was lost, or a reconnect failed, with the server's or the channel's
    /// status.
    Down(String),
    /// A publish response (data or keep-alive) arrived: the subscription is alive.
    Published,
}

/// Makes `pki_dir` hold exactly what the config says: the configured server certificate as
/// the only trusted one (a certificate rejected on an earlier run is forgotten, so trusting
/// it later is a config change and not a file to move).
pub(super) fn prepare_pki(cfg: &ServerConfig) -> Result<(), String> {
    let store = CertificateStore::new(&cfg.pki_dir);
    store.ensure_pki_path()?;
    for dir in [store.trusted_certs_dir(), store.rejected_certs_dir()] {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(path) = &cfg.server_certificate {
        let cert = CertificateStore::read_cert(path)?;
        let der = cert
            .to_der()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let to = store
            .trusted_certs_dir()
            .join(CertificateStore::cert_file_name(&cert));
        std::fs::write(&to, der).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    Ok(())
}

/// Connects (discovery, then the matching endpoint) and starts the session's event loop.
/// Returns the session, the link's events and the loop's task (abort it to drop the link).
pub(super) async fn connect(
    cfg: &ServerConfig,
) -> Result<
    (
        Arc<Session>,
        mpsc::UnboundedReceiver<LinkEvent>,
        JoinHandle<()>,
    ),
    String,
> {
    let mut builder = ClientBuilder::new()
        .application_name("heatgrid")
        .application_uri(&cfg.application_uri)
        .product_uri("urn:heatgrid")
        .pki_dir(&cfg.pki_dir)
        .create_sample_keypair(cfg.client_certificate.is_none())
        .trust_server_certs(false)
        .session_retry_limit(-1)
        .session_retry_initial(std::time::Duration::from_millis(500))
        .session_retry_max(std::time::Duration::from_secs(30))
        .request_timeout(cfg.timeout)
        .publish_timeout(cfg.timeout + cfg.interval * 3)
        .recreate_subscriptions(false)
        .max_array_length(100_000)
        .keep_alive_interval(cfg.interval.max(std::time::Duration::from_secs(1)))
        .max_failed_keep_alive_count(3)
        .session_timeout(60_000);
    if let Some((cert, key)) = &cfg.client_certificate {
        builder = builder.certificate_path(cert).private_key_path(key);
    }
    // Reads the engine's key pair, or makes one on the first start (an RSA key: a second or
    // two of CPU), and the identity's files: off the async workers.
    let identity = cfg.identity.clone();
    let (mut client, identity) = tokio::task::spawn_blocking(move || {
        let client = builder
            .client()
            .map_err(|e| format!("client settings: {}", e.join("; ")))?;
        let identity = match identity {
            Identity::Anonymous => IdentityToken::Anonymous,
            Identity::User { user, password } => IdentityToken::new_user_name(user, password),
            Identity::Certificate { cert, key } => IdentityToken::new_x509_path(cert, key)
                .map_err(|e| format!("identity certificate: {e}"))?,
        };
        Ok::<_, String>((client, identity))
    })
    .await
    .map_err(|e| format!("client settings: {e}"))??;
    let (policy, mode) = match cfg.security {
        Security::None => ("None", MessageSecurityMode::None),
        Security::SignEncrypt => ("Basic256Sha256", MessageSecurityMode::SignAndEncrypt),
    };
    let endpoint: EndpointDescription = (
        cfg.endpoint.as_str(),
        policy,
        mode,
        UserTokenPolicy::anonymous(),
    )
        .into();
    let (session, event_loop) = tokio::time::timeout(
        cfg.timeout,
        client.connect_to_matching_endpoint(endpoint, identity),
    )
    .await
    .map_err(|_| format!("no answer to discovery within {:?}", cfg.timeout))?
    .map_err(|e| describe(&e.to_string()))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let events = event_loop.enter();
        tokio::pin!(events);
        while let Some(e) = events.next().await {
            let sent = match e {
                Ok(SessionPollResult::Reconnected(mode)) => tx.send(LinkEvent::Up {
                    new_session: matches!(mode, opcua::client::SessionConnectMode::NewSession(_)),
                }),
                Ok(SessionPollResult::ConnectionLost(s)) => {
                    tx.send(LinkEvent::Down(describe(&format!("connection lost: {s}"))))
                }
                Ok(SessionPollResult::ReconnectFailed(s)) => {
                    tx.send(LinkEvent::Down(describe(&format!("connect failed: {s}"))))
                }
                Ok(SessionPollResult::Subscription(
                    opcua::client::SubscriptionActivity::Publish,
                )) => tx.send(LinkEvent::Published),
                Ok(_) => Ok(()),
                Err(s) => {
                    let _ = tx.send(LinkEvent::Down(describe(&format!("session ended: {s}"))));
                    break;
                }
            };
            if sent.is_err() {
                break;
            }
        }
    });
    Ok((session, rx, task))
}

/// The status text with what it means for the operator when it is about trust.
fn describe(status: &str) -> String {
    if status.contains("BadCertificateUntrusted") || status.contains("BadSecurityChecksFailed") {
        format!("{status} (the server's certificate is not the one configured in server_certificate, or the server does not trust ours)")
    } else if status.contains("BadIdentityTokenRejected")
        || status.contains("BadUserAccessDenied")
        || status.contains("BadIdentityTokenInvalid")
    {
        format!("{status} (the server refused the user or certificate given as identity)")
    } else if status.contains("BadSecurityPolicyRejected") {
        format!("{status} (the server offers no endpoint with this security, or no identity of this kind: check security and the user or identity keys)")
    } else {
        status.to_owned()
    }
}

/// The session's own client handle is not a secret; the password is never logged.
impl std::fmt::Display for LinkEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkEvent::Up { new_session } => write!(f, "up (new session: {new_session})"),
            LinkEvent::Down(s) => write!(f, "down: {s}"),
            LinkEvent::Published => write!(f, "published"),
        }
    }
}
