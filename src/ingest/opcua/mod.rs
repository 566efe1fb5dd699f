//! Stations behind OPC UA: node maps ([`map`]), one client task per server ([`server`]) that
//! keeps a session and one subscription for all the server's stations (or polls them), and
//! one writer task per station ([`mod@write`]) for its commands.
//!
//! Where it sits: a third way in and out of the same engine, beside MQTT and Modbus. Data
//! changes are assembled per station into the same telemetry object an MQTT payload carries,
//! so the same decoder, validation, storage and controller apply; commands come from the
//! control task on the same `watch` channel a Modbus poller's do. The secure channel, the
//! session's keep-alive and its re-establishment with backoff are the async-opcua client's;
//! what it cannot know (which server certificate to trust, which station a value belongs to,
//! which status makes a value unusable) is here. docs/opcua.md describes it for integrators.

pub mod map;
pub mod server;
mod session;
pub mod write;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::model::StationId;

/// How the messages to the server are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Security mode None: neither signed nor encrypted (a closed plant network only).
    None,
    /// Basic256Sha256 with Sign & Encrypt.
    SignEncrypt,
}

/// Who the engine says it is to the server.
#[derive(Clone)]
pub enum Identity {
    Anonymous,
    User {
        user: String,
        password: String,
    },
    /// An X.509 user certificate and its private key (files).
    Certificate {
        cert: PathBuf,
        key: PathBuf,
    },
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Anonymous => write!(f, "Anonymous"),
            Identity::User { user, .. } => write!(f, "User({user}, password hidden)"),
            Identity::Certificate { cert, .. } => write!(f, "Certificate({})", cert.display()),
        }
    }
}

/// How readings come from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One subscription with a monitored item per node (polling if the server refuses it).
    Subscribe,
    /// A Read of every node each interval.
    Poll,
}

/// One `[[opcua.server]]`, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    /// `opc.tcp://host:port[/path]`.
    pub endpoint: String,
    pub security: Security,
    /// The only server certificate trusted (required with Sign & Encrypt).
    pub server_certificate: Option<PathBuf>,
    /// The engine's application instance certificate and key; `None`: one is made on first
    /// start in `pki_dir/own` and kept.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    /// Must match the URI in the client certificate.
    pub application_uri: String,
    pub identity: Identity,
    pub mode: Mode,
    /// Sampling and publishing interval (subscription) or polling interval.
    pub interval: Duration,
    /// Every request's timeout, and the longest wait for a connect.
    pub timeout: Duration,
    /// The client's certificate store: `data_dir/opcua/<name>`.
    pub pki_dir: PathBuf,
}

/// A station read from (and commanded through) an OPC UA server.
#[derive(Debug, Clone)]
pub struct StationNodes {
    pub station: StationId,
    /// The name `{node}` stands for in the map's node ids.
    pub node: String,
    pub map: Arc<map::NodeMap>,
}

/// The unix time in ms of an OPC UA timestamp.
pub(crate) fn unix_ms(t: &opcua::types::DateTime) -> i64 {
    // 100 ns ticks since 1601-01-01; 11,644,473,600 s from there to 1970.
    (t.ticks() - 116_444_736_000_000_000) / 10_000
}
