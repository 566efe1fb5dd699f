//! The running engine as its owner holds it: the views (status, alarms, stats, spool), the
//! operator's inbox, and the ordered shutdown of its stages.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::info;

use super::stage::Stage;
use crate::alarms::AlarmView;
use crate::cluster::view::ClusterView;
use crate::control::change::{Change, ChangeError, Inbox};
use crate::control::status::StationStatus;
use crate::ingest::mqtt::{Link, Presence};
use crate::ingest::slot::ModbusCounters;
use crate::model::{Applied, StationId};
use crate::stats::Stats;
use crate::store::spool::{self, Spool};

/// Each stage's stop deadline in [`EngineHandle::shutdown`]. Their sum, [`STOP_TOTAL`], is
/// 26 s: within the systemd unit's `TimeoutStopSec=30` with 4 s to spare for the process's
/// own exit (`packaging/heatgrid.service`).
pub const STOP_CONTROL: Duration = Duration::from_secs(4);
pub const STOP_CLUSTER: Duration = Duration::from_secs(3);
pub const STOP_MODBUS: Duration = Duration::from_secs(4);
/// The MQTT link: queued commands and the `offline` presence flushed, then closed.
pub const STOP_MQTT_FLUSH: Duration = Duration::from_secs(3);
pub const STOP_MQTT_CLOSE: Duration = Duration::from_secs(2);
/// The writer drains the spool for [`super::storage::STORAGE_DRAIN`] within this.
pub const STOP_STORAGE: Duration = Duration::from_secs(10);
pub const STOP_TOTAL: Duration = Duration::from_secs(
    STOP_CONTROL.as_secs()
        + STOP_CLUSTER.as_secs()
        + STOP_MODBUS.as_secs()
        + STOP_MQTT_FLUSH.as_secs()
        + STOP_MQTT_CLOSE.as_secs()
        + STOP_STORAGE.as_secs(),
);

/// A running engine.
#[derive(Debug)]
pub struct EngineHandle {
    pub(super) status: watch::Receiver<Arc<Vec<StationStatus>>>,
    pub(super) alarms: watch::Receiver<Arc<AlarmView>>,
    pub(super) stats: Arc<Stats>,
    pub(super) spool: Arc<Spool>,
    pub(super) inbox: Inbox,
    pub(super) api: Option<std::net::SocketAddr>,
    pub(super) modbus: Vec<(StationId, Arc<ModbusCounters>)>,
    pub(super) link: Link,
    pub(super) presence: Presence,
    pub(super) stages: Stages,
    /// In a cluster: what the cluster task publishes.
    pub(super) cluster: Option<watch::Receiver<Arc<ClusterView>>>,
    /// Set when the engine must stop (the cluster refused this instance).
    pub(super) fatal: watch::Receiver<Option<String>>,
}

/// The engine's parts in the order they stop.
#[derive(Debug)]
pub(super) struct Stages {
    /// The control task, the alarm task and the API.
    pub control: Stage,
    /// The cluster task (hands every partition over and leaves the cluster).
    pub cluster: Stage,
    pub modbus: Stage,
    pub mqtt: Stage,
    /// The writer thread and the spool's fsync task.
    pub storage: Stage,
}

impl EngineHandle {
    /// Per-station state after the last tick.
    pub fn status(&self) -> Arc<Vec<StationStatus>> {
        self.status.borrow().clone()
    }

    /// A receiver that changes after every tick.
    pub fn watch_status(&self) -> watch::Receiver<Arc<Vec<StationStatus>>> {
        self.status.clone()
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Resolves once the broker confirmed every subscription of the first connection (or
    /// `timeout` passed: returns false). Messages published before that reach nobody.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while Stats::get(&self.stats.mqtt_subacks) < crate::ingest::SUBSCRIPTIONS as u64 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Active and recently cleared alarms.
    pub fn alarms(&self) -> Arc<AlarmView> {
        self.alarms.borrow().clone()
    }

    /// Where the operator API listens, if enabled.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.api
    }

    /// Applies an operator change as `user` (what the API does for a request).
    pub async fn apply(
        &self,
        station: &str,
        change: Change,
        user: &str,
    ) -> Result<Applied, ChangeError> {
        self.inbox.send(station, change, user).await
    }

    /// The Modbus stations' poller counters, in config order.
    pub fn modbus_counters(&self) -> &[(StationId, Arc<ModbusCounters>)] {
        &self.modbus
    }

    /// Points and bytes waiting in the spool now.
    pub fn spool_depth(&self) -> spool::Depth {
        self.spool.depth()
    }

    /// In a cluster, what the cluster task last published.
    pub fn cluster(&self) -> Option<Arc<ClusterView>> {
        self.cluster.as_ref().map(|c| c.borrow().clone())
    }

    /// Resolves when the engine must stop on its own, with the reason (never, alone).
    pub async fn fatal(&mut self) -> String {
        loop {
            if let Some(reason) = self.fatal.borrow_and_update().clone() {
                return reason;
            }
            if self.fatal.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Ordered shutdown (at most [`STOP_TOTAL`]): control, then the cluster (partitions handed over), then Modbus, then
    /// MQTT (queued commands and presence go out), then storage.
    pub async fn shutdown(self) {
        info!(
            within_s = STOP_TOTAL.as_secs(),
            "Stopping the engine in order."
        );
        let s = &self.stages;
        s.control.stop(STOP_CONTROL).await;
        // Control has stopped: hand every partition over now (resign, revoke the lease).
        s.cluster.stop(STOP_CLUSTER).await;
        // Modbus pollers: each finishes the request in hand (bounded by its timeout).
        s.modbus.stop(STOP_MODBUS).await;
        let _ = self.link.try_publish(
            &self.presence.topic,
            true,
            true,
            self.presence.offline.as_bytes().to_vec(),
        );
        self.link.disconnect().await;
        if !s.mqtt.wait(STOP_MQTT_FLUSH).await {
            info!("Closing the MQTT connection without a clean disconnect.");
            s.mqtt.stop(STOP_MQTT_CLOSE).await;
        }
        // Storage last: it drains the spool for up to STORAGE_DRAIN; what is left stays on
        // disk and is written first at the next start.
        s.storage.stop(STOP_STORAGE).await;
        info!(
            written = Stats::get(&self.stats.store_written),
            refused = Stats::get(&self.stats.spool_refused),
            commands = Stats::get(&self.stats.commands_sent),
            "Engine stopped."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shutdown_fits_the_units_stop_timeout() {
        let unit = include_str!("../../packaging/heatgrid.service");
        let limit: u64 = unit
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .and_then(|v| v.trim().parse().ok())
            .expect("TimeoutStopSec in the unit");
        assert!(
            STOP_TOTAL.as_secs() + 4 <= limit,
            "{STOP_TOTAL:?} vs {limit} s"
        );
        assert!(super::super::storage::STORAGE_DRAIN < STOP_STORAGE);
    }
}
