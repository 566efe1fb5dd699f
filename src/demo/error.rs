//! Why the demo or a scenario could not run: one error for the `demo` and `scenario` verbs.

use crate::app::StartError;

/// Why the demo (or a scenario) could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Args(&'static str),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("embedded broker config: {0}")]
    BrokerConfig(#[from] toml::de::Error),
    #[error("embedded MQTT broker did not start on {0}")]
    BrokerDown(std::net::SocketAddr),
    #[error("demo config: {0}")]
    Config(String),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("a scenario run panicked")]
    Panicked,
}

/// Wraps an I/O error with what was being done.
pub(super) fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> DemoError {
    move |source| DemoError::Io {
        what: what.to_string(),
        source,
    }
}
