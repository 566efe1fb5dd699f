//! The e-mail channel: each notification a plain-text mail over SMTP, with STARTTLS (the
//! default), implicit TLS or none, and AUTH with a user and password from the environment.
//!
//! Where it sits: called by the channel's delivery task (`deliver.rs`), which builds the
//! subject and text. Built on lettre (rustls with ring, as the rest of the engine).

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::message::SendError;

/// How the connection to the server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// None (a relay on loopback only).
    None,
}

/// `[[notify.email]]`.
#[derive(Clone)]
pub struct EmailConfig {
    pub server: String,
    pub port: u16,
    pub tls: EmailTls,
    /// A CA certificate (PEM) trusted besides the public roots: a private mail server's.
    pub ca_pem: Option<Vec<u8>>,
    /// From `user_env` and `password_env`.
    pub credentials: Option<(String, String)>,
    pub from: String,
    pub to: Vec<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of logs.
        f.debug_struct("EmailConfig")
            .field("server", &self.server)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// Whether `addr` is a mailbox lettre accepts (`name <a@b>` or `a@b`): for the config check.
pub fn valid_mailbox(addr: &str) -> Result<(), String> {
    addr.parse::<Mailbox>()
        .map(|_| ())
        .map_err(|e| format!("{addr:?}: {e}"))
}

/// One mail server and its recipients.
pub(super) struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

impl Email {
    pub(super) fn new(cfg: &EmailConfig) -> Result<Self, String> {
        let params = || -> Result<TlsParameters, String> {
            let mut b = TlsParameters::builder(cfg.server.clone());
            if let Some(pem) = &cfg.ca_pem {
                let cert = Certificate::from_pem(pem).map_err(|e| format!("ca_file: {e}"))?;
                b = b.add_root_certificate(cert);
            }
            b.build_rustls().map_err(|e| format!("TLS: {e}"))
        };
        let tls = match cfg.tls {
            EmailTls::StartTls => Tls::Required(params()?),
            EmailTls::Tls => Tls::Wrapper(params()?),
            EmailTls::None => Tls::None,
        };
        let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.server.as_str())
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(cfg.timeout));
        if let Some((user, password)) = &cfg.credentials {
            t = t.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let parse = |a: &str| a.parse::<Mailbox>().map_err(|e| format!("{a:?}: {e}"));
        Ok(Self {
            transport: t.build(),
            from: parse(&cfg.from)?,
            to: cfg.to.iter().map(|a| parse(a)).collect::<Result<_, _>>()?,
        })
    }

    /// One attempt. A permanent SMTP answer (5xx: a recipient refused, authentication
    /// failed) is not worth another try; anything else is.
    pub(super) async fn send(&self, subject: &str, text: String) -> Result<(), SendError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            b = b.to(to.clone());
        }
        let mail = b
            .body(text)
            .map_err(|e| SendError::Permanent(format!("mail not built: {e}")))?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::Retry(format!("SMTP: {e}"))),
        }
    }
}
