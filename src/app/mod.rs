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
//!   control following telemetry, wake-ups on a bounded queue ([`start::TRIGGER_CAPACITY`]; when full
//!   the tick steps the stations it missed);
//! * control → Modbus poller: latest command wins (`watch`);
//! * operator changes → control and acknowledgements → alarms: bounded ([`start::CHANGE_CAPACITY`]; a
//!   full queue is answered at once, the API says 503);
//! * everything → storage: the durable spool (refuses new points when `max_spool_mb` is full,
//!   counted and alarmed).
//!
//! Shutdown ([`EngineHandle::shutdown`]; SIGINT/SIGTERM in [`start::run`]): the control stage (control,
//! alarms, API), then in a cluster the cluster stage (every partition handed over, the lease
//! revoked), then the Modbus pollers, then MQTT (the engine's `offline` presence and every
//! queued command go out), then storage (drains the spool for up to 10 s). Each stage has a
//! [`CancellationToken`](tokio_util::sync::CancellationToken) and a
//! [`TaskTracker`](tokio_util::task::TaskTracker) (`stage::Stage`); a late one is named.

mod cluster;
mod common;
mod forecast;
mod handle;
mod inputs;
mod plant;
mod stage;
pub mod start;
mod storage;

pub use common::StartError;
pub use handle::EngineHandle;
pub use start::{run, start};
