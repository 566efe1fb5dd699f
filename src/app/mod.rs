//! The wiring: starts every stage of the engine, owns every channel and queue between them,
//! and stops them in order.
//!
//! ```text
//!  MQTT event loop ─► ingest::Ingest ─┐                          ┌─► MQTT publish (commands)
//!  Modbus pollers ────────────────────┴─► StationSlot ─► control ─► command::Dispatcher
//!          │                                  (latest)    │   │      └─► Modbus pollers
//!          └──────────────► store (spool ─► writer thread) ◄──┘   └─► status ─► alarms, API
//! ```
//! Queues and their overflow policy (the README's table):
//! * readings → control: the latest reading per station (a newer one replaces it); with
//!   control following telemetry, wake-ups on a bounded queue ([`TRIGGER_CAPACITY`]; when full
//!   the tick steps the stations it missed);
//! * control → Modbus poller: latest command wins (`watch`);
//! * operator changes → control and acknowledgements → alarms: bounded ([`CHANGE_CAPACITY`]; a
//!   full queue is answered at once, the API says 503);
//! * everything → storage: the durable spool (refuses new points when `max_spool_mb` is full,
//!   counted and alarmed).
//!
//! Shutdown ([`EngineHandle::shutdown`]; SIGINT/SIGTERM in [`run`]): the control stage (control,
//! alarms, API), then the Modbus pollers, then MQTT (the engine's `offline` presence and every
//! queued command go out), then storage (drains the spool for up to 10 s). Each stage has a
//! [`CancellationToken`](tokio_util::sync::CancellationToken) and a
//! [`TaskTracker`](tokio_util::task::TaskTracker) ([`stage::Stage`]); a late one is named.

mod stage;
mod start;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::info;

use crate::alarms::AlarmView;
use crate::control::change::{Change, ChangeError, Inbox};
use crate::control::status::StationStatus;
use crate::ingest::mqtt::{Link, Presence};
use crate::ingest::slot::ModbusCounters;
use crate::model::{Applied, StationId};
use crate::stats::Stats;
use crate::store::spool::{self, Spool};
use stage::Stage;
pub use start::{start, StartError};

/// Control following telemetry: wake-ups queued for the control task (one per burst of
/// readings, each listing its stations).
pub const TRIGGER_CAPACITY: usize = 8_192;

/// Operator changes (and acknowledgements) waiting for the control (alarm) task.
pub const CHANGE_CAPACITY: usize = 64;

/// A running engine.
#[derive(Debug)]
pub struct EngineHandle {
    status: watch::Receiver<Arc<Vec<StationStatus>>>,
    alarms: watch::Receiver<Arc<AlarmView>>,
    stats: Arc<Stats>,
    spool: Arc<Spool>,
    inbox: Inbox,
    api: Option<std::net::SocketAddr>,
    modbus: Vec<(StationId, Arc<ModbusCounters>)>,
    link: Link,
    presence: Presence,
    stages: Stages,
}

/// The engine's parts in the order they stop.
#[derive(Debug)]
struct Stages {
    /// The control task, the alarm task and the API.
    control: Stage,
    modbus: Stage,
    mqtt: Stage,
    /// The writer thread and the spool's fsync task.
    storage: Stage,
}

/// Runs the engine until `shutdown` resolves, then stops it in order.
pub async fn run(
    cfg: crate::config::Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let engine = start(cfg).await?;
    shutdown.await;
    info!("Shutdown requested.");
    engine.shutdown().await;
    Ok(())
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

    /// Ordered shutdown: control, then Modbus, then MQTT (queued commands and presence go
    /// out), then storage.
    pub async fn shutdown(self) {
        let s = &self.stages;
        s.control.stop(Duration::from_secs(10)).await;
        // Modbus pollers: each finishes the request in hand (bounded by its timeout).
        s.modbus.stop(Duration::from_secs(10)).await;
        let _ = self.link.try_publish(
            &self.presence.topic,
            true,
            true,
            self.presence.offline.as_bytes().to_vec(),
        );
        self.link.disconnect().await;
        if !s.mqtt.wait(Duration::from_secs(5)).await {
            info!("Closing the MQTT connection without a clean disconnect.");
            s.mqtt.stop(Duration::from_secs(5)).await;
        }
        // Storage last: it drains the spool for up to 10 s; what is left stays on disk and is
        // written first at the next start.
        s.storage.stop(Duration::from_secs(15)).await;
        info!(
            written = Stats::get(&self.stats.store_written),
            refused = Stats::get(&self.stats.spool_refused),
            commands = Stats::get(&self.stats.commands_sent),
            "Engine stopped."
        );
    }
}
