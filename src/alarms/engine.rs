//! The engine's own conditions, beside the stations': storage trouble (write failures,
//! refusals, dead letters) and notifications lost, each judged from counters that only grow.
//!
//! Where it sits: in the alarm task, once per status snapshot, under the "station" `engine`.

use super::evaluate::{Check, Detail};
use super::AlarmKind;

/// The engine-wide storage condition: write failures, refusals or dead letters in the last
/// 30 s, raised after 15 s.
#[derive(Debug, Clone, Default)]
pub struct StorageWatch {
    seen: (u64, u64, u64),
    problem_ms: Option<i64>,
}

impl StorageWatch {
    /// The condition at `now` given the totals so far of write errors, refused points and dead
    /// letters.
    pub fn check(&mut self, errors: u64, refused: u64, dead: u64, now: i64) -> Check<'static> {
        let seen = (errors, refused, dead);
        if seen != self.seen {
            self.seen = seen;
            self.problem_ms = Some(now);
        }
        Check {
            kind: AlarmKind::Storage,
            active: self.problem_ms.is_some_and(|t| now - t < 30_000),
            hold_ms: 15_000,
            value: refused as f64,
            detail: Detail::Storage {
                errors,
                refused,
                dead,
            },
        }
    }
}

/// The engine-wide notification condition: a notification given up on (or dropped) in the
/// last 10 minutes, raised at once.
#[derive(Debug, Clone, Default)]
pub struct NotifyWatch {
    seen: u64,
    lost_ms: Option<i64>,
}

impl NotifyWatch {
    /// The condition at `now` given the notifications lost so far.
    pub fn check(&mut self, lost: u64, now: i64) -> Check<'static> {
        if lost != self.seen {
            self.seen = lost;
            self.lost_ms = Some(now);
        }
        Check {
            kind: AlarmKind::NotifyFailed,
            active: self.lost_ms.is_some_and(|t| now - t < 600_000),
            hold_ms: 0,
            value: lost as f64,
            detail: Detail::NotifyFailed { lost },
        }
    }
}
