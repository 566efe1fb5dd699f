//! The operator's side of a running engine: the HTTP API ([`http`]) behind its connection cap
//! and request timeout ([`listener`]), its Prometheus metrics ([`metrics`]); the audit log of
//! every applied change is [`crate::store::audit`].
//!
//! Where it sits: it reads the status and alarm views the control task publishes and sends
//! operator changes to the control task's queue; it never touches a station directly.

pub mod auth;
mod changes;
pub mod http;
mod i18n;
mod listener;
pub mod live;
pub mod metrics;
pub mod peers;
mod report;
pub mod tiles;
mod web;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::sync::watch;

use crate::control::change::Inbox;
use crate::control::status::StationStatus;
use crate::control::StationParams;
use crate::model::StationId;
use crate::stats::Stats;
use crate::store::spool::Spool;
use auth::ApiToken;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub status: watch::Receiver<Arc<Vec<StationStatus>>>,
    pub stats: Arc<Stats>,
    pub spool: Arc<Spool>,
    pub changes: Inbox,
    pub tokens: Arc<Vec<ApiToken>>,
    pub alarms: watch::Receiver<Arc<crate::alarms::AlarmView>>,
    pub stations: Arc<Vec<StationInfo>>,
    /// In a cluster: the cluster's view and the client that reaches the other members
    /// (`None`: the only engine).
    pub peers: Option<peers::Peers>,
    /// The web control room's live tiles.
    pub live: live::Hub,
    /// Where station histories are read back from (`[storage.influxdb] history_url`).
    pub history: Option<crate::store::history::History>,
    /// Where energy reports are read from, or why they cannot be.
    pub reports: Arc<Result<crate::report::source::Source, String>>,
    /// The plant loop's view (`None`: no `[plant]`).
    pub plant: Option<crate::control::plant_task::PlantStatusView>,
    /// The network's layout (`[plant] network`).
    pub network: Option<Arc<crate::network::Layout>>,
}

/// What the API knows of a configured station beyond its status: its static tags (group
/// changes) and its controller's limits (the station view).
#[derive(Debug, Clone)]
pub struct StationInfo {
    pub id: StationId,
    pub tags: std::collections::BTreeMap<String, String>,
    pub params: StationParams,
}
