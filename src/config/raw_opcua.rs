//! `[[opcua.server]]` and a station's `opcua = { … }` as written, with their defaults;
//! [`super::opcua`] checks them (in a build with the `opcua` feature; without it, their
//! presence is an error).

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOpcua {
    #[serde(default)]
    pub(super) server: Vec<RawServer>,
}

// Read only by the `opcua` feature's checks; without it, only their presence is.
#[cfg_attr(not(feature = "opcua"), allow(dead_code))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) name: String,
    pub(super) endpoint: String,
    #[serde(default = "none")]
    pub(super) security: String,
    pub(super) server_certificate: Option<PathBuf>,
    pub(super) client_certificate: Option<PathBuf>,
    pub(super) client_private_key: Option<PathBuf>,
    #[serde(default = "default_uri")]
    pub(super) application_uri: String,
    pub(super) user: Option<String>,
    pub(super) user_env: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) identity_certificate: Option<PathBuf>,
    pub(super) identity_private_key: Option<PathBuf>,
    #[serde(default = "subscribe")]
    pub(super) mode: String,
    #[serde(default = "one")]
    pub(super) interval_s: f64,
    #[serde(default = "default_timeout_ms")]
    pub(super) timeout_ms: u64,
}

/// A station's `opcua = { server, map, node }`.
#[cfg_attr(not(feature = "opcua"), allow(dead_code))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStationOpcua {
    pub(super) server: String,
    pub(super) map: String,
    pub(super) node: Option<String>,
}

fn none() -> String {
    "none".into()
}
fn subscribe() -> String {
    "subscribe".into()
}
fn default_uri() -> String {
    "urn:heatgrid:engine".into()
}
fn one() -> f64 {
    1.0
}
fn default_timeout_ms() -> u64 {
    5000
}
