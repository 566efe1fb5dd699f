//! What starting the engine shares: the error of a failed start, and what every stage is built
//! from.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::stats::Stats;
use crate::store::spool::SpoolError;
use crate::store::StoreHandle;

/// Why the engine could not start: a local problem (an unreachable broker or database is
/// retried in the background instead).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] crate::files::StateError),
    #[error(transparent)]
    Influx(#[from] crate::store::influx::SetupError),
    #[error("cannot open the spool in {path}: {source}")]
    Spool { path: String, source: SpoolError },
    #[error("cannot start {name}: {source}")]
    Thread {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Audit {
        path: String,
        source: std::io::Error,
    },
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("{0}")]
    Notify(String),
    #[error("cannot build the HTTP client for {what}: {source}")]
    HttpClient {
        what: &'static str,
        source: reqwest::Error,
    },
    #[error("cannot listen on api.listen {addr}: {source}")]
    Api {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

pub(super) fn create_dir(path: &Path, what: &str) -> Result<(), StartError> {
    std::fs::create_dir_all(path).map_err(|source| StartError::Dir {
        path: format!("{what}{}", path.display()),
        source,
    })
}

/// What every stage is built from.
pub(super) struct Common<'a> {
    pub cfg: &'a Config,
    pub store: &'a StoreHandle,
    pub stats: &'a Arc<Stats>,
}
