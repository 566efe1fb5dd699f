//! Alarms: the conditions ([`evaluate`], pure), their lifecycle ([`book`]) and the task that
//! runs both on every status snapshot ([`task`]).
//!
//! Where it sits: downstream of control. The control task publishes the stations' status after
//! every tick; the alarm task evaluates it, stores each raise and clear, keeps the active
//! alarms across restarts and publishes the [`AlarmView`] the API shows. Acknowledgements come
//! from the operator through the alarm task's queue.

pub mod book;
pub mod evaluate;
pub mod task;

pub use book::{Alarm, AlarmBook, AlarmKind, Severity, Thresholds};

/// Active and recently cleared alarms, published after every change.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct AlarmView {
    pub active: Vec<Alarm>,
    pub recent: Vec<Alarm>,
}
