//! Alarms: the conditions ([`evaluate`], pure), their lifecycle ([`book`]), the task that
//! runs both on every status snapshot ([`task`]), and in a cluster the partitions' alarms kept
//! in etcd ([`shared`]).
//!
//! Where it sits: downstream of control. The control task publishes the stations' status after
//! every tick; the alarm task evaluates it, stores each raise and clear, keeps the active
//! alarms across restarts and publishes the [`AlarmView`] the API shows. Acknowledgements come
//! from the operator through the alarm task's queue. Raises, clears and escalations go to a
//! [`Notify`] (the notifications) when one is configured.

pub mod book;
pub mod engine;
pub mod evaluate;
pub mod findings;
pub mod kind;
pub mod shared;
pub mod task;

pub use book::{Alarm, AlarmBook, Thresholds};
pub use kind::{AlarmKind, Severity};

/// What happened to an alarm, for [`Notify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Raised,
    Cleared,
    Escalated,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Raised => "raised",
            Event::Cleared => "cleared",
            Event::Escalated => "escalated",
        }
    }
}

/// Where the alarm task sends each raise, clear and escalation (the notifications,
/// `crate::notify`); it must not wait.
pub trait Notify: Send + Sync + std::fmt::Debug {
    fn send(&self, event: Event, alarm: &Alarm);
    /// After how long unacknowledged `alarm` is escalated (`None`: never).
    fn escalation(&self, alarm: &Alarm) -> Option<std::time::Duration>;
}

/// The "station" of the engine's own alarms (storage): never a partition's.
pub const ENGINE: &str = "engine";

/// Active and recently cleared alarms, published after every change.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct AlarmView {
    pub active: Vec<Alarm>,
    pub recent: Vec<Alarm>,
}
