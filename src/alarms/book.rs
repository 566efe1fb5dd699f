//! The alarm book: alarms with a lifecycle, raised → acknowledged → cleared, de-duplicated per
//! (station, kind).
//!
//! Owned by the alarm task, which feeds it every station's conditions once per tick (and the
//! engine-wide storage condition) through [`AlarmBook::evaluate`]. A condition must hold for its
//! configured time before the alarm is raised, and the alarm clears as soon as the condition is
//! gone. Every raise and clear becomes an `alarm` point in storage; active alarms and their
//! acknowledgements are kept in `data_dir/alarms.json`, so they survive a restart.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use super::kind::{AlarmKind, Severity};
use crate::files::{read_json, StateError};
use crate::store::record::AlarmPoint;

/// One alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    pub id: u64,
    pub station: String,
    pub kind: AlarmKind,
    pub severity: Severity,
    pub message: String,
    pub value: f64,
    pub raised_ms: i64,
    pub acked_by: Option<String>,
    pub acked_ms: Option<i64>,
    pub cleared_ms: Option<i64>,
    /// When it was escalated (notify), once: kept across restarts and takeovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_ms: Option<i64>,
}

/// Thresholds, from config (`[alarms]`, overridable per station).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub deviation_k: f64,
    pub deviation_for_ms: i64,
    pub return_high_for_ms: i64,
    pub valve_saturated_for_ms: i64,
    pub low_delta_t_k: f64,
    pub low_delta_t_for_ms: i64,
    pub rejected_per_min: u64,
    /// A supply reading this far above the station's supply_max_c is out of range.
    pub out_of_range_margin_k: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            deviation_k: 3.0,
            deviation_for_ms: 15 * 60_000,
            return_high_for_ms: 30 * 60_000,
            valve_saturated_for_ms: 15 * 60_000,
            low_delta_t_k: 5.0,
            low_delta_t_for_ms: 60 * 60_000,
            rejected_per_min: 10,
            out_of_range_margin_k: 10.0,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    next_id: u64,
    active: Vec<Alarm>,
}

/// The engine's alarms.
#[derive(Debug)]
pub struct AlarmBook {
    path: PathBuf,
    next_id: u64,
    active: BTreeMap<(String, AlarmKind), Alarm>,
    recent: VecDeque<Alarm>,
    /// When each pending condition started holding.
    since: HashMap<(String, AlarmKind), i64>,
    dirty: bool,
}

const RECENT_CLEARED: usize = 500;

/// An acknowledgement named no active alarm.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("no active alarm with id {0}")]
pub struct UnknownAlarm(pub u64);

impl AlarmBook {
    /// Loads the active alarms kept in `path` (none if it does not exist).
    pub fn open(path: PathBuf) -> Result<Self, StateError> {
        let p: Persisted = read_json(&path)?.unwrap_or_default();
        Ok(Self {
            path,
            next_id: p.next_id.max(1),
            active: p
                .active
                .into_iter()
                .map(|a| ((a.station.clone(), a.kind), a))
                .collect(),
            recent: VecDeque::new(),
            since: HashMap::new(),
            dirty: false,
        })
    }

    /// Updates one condition at `now`. Raises after it held `hold_ms`, clears when it is gone.
    /// Returns the point of a raise or clear, for storage.
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate(
        &mut self,
        station: &str,
        kind: AlarmKind,
        condition: bool,
        hold_ms: i64,
        value: f64,
        now: i64,
        message: impl FnOnce() -> String,
    ) -> Option<AlarmPoint> {
        let key = (station.to_owned(), kind);
        if !condition {
            self.since.remove(&key);
            let mut alarm = self.active.remove(&key)?;
            alarm.cleared_ms = Some(now);
            self.dirty = true;
            let line = Some(point(&alarm, false, now, value));
            warn!(
                station,
                kind = kind.as_str(),
                id = alarm.id,
                "Alarm cleared."
            );
            self.recent.push_front(alarm);
            self.recent.truncate(RECENT_CLEARED);
            return line;
        }
        if let Some(a) = self.active.get_mut(&key) {
            a.value = value;
            return None;
        }
        let since = *self.since.entry(key.clone()).or_insert(now);
        if now - since < hold_ms {
            return None;
        }
        let alarm = Alarm {
            id: self.next_id,
            station: station.to_owned(),
            kind,
            severity: kind.severity(),
            message: message(),
            value,
            raised_ms: now,
            acked_by: None,
            acked_ms: None,
            cleared_ms: None,
            escalated_ms: None,
        };
        self.next_id += 1;
        self.dirty = true;
        warn!(station, kind = kind.as_str(), severity = alarm.severity.as_str(), id = alarm.id,
            message = %alarm.message, "ALARM raised.");
        let line = Some(point(&alarm, true, now, value));
        self.active.insert(key, alarm);
        line
    }

    /// Acknowledges active alarm `id` as `user`.
    pub fn ack(&mut self, id: u64, user: &str, now: i64) -> Result<Alarm, UnknownAlarm> {
        let a = self
            .active
            .values_mut()
            .find(|a| a.id == id)
            .ok_or(UnknownAlarm(id))?;
        if a.acked_by.is_none() {
            a.acked_by = Some(user.to_owned());
            a.acked_ms = Some(now);
            self.dirty = true;
        }
        Ok(a.clone())
    }

    /// Takes over an alarm another instance raised (a cluster's takeover): active here from
    /// now on, with its raise time and acknowledgement, under a new id of this book. `false`
    /// (and nothing changes) if the same (station, kind) is active here already.
    pub fn adopt(&mut self, mut a: Alarm) -> bool {
        let key = (a.station.clone(), a.kind);
        if self.active.contains_key(&key) || a.cleared_ms.is_some() {
            return false;
        }
        a.id = self.next_id;
        a.severity = a.kind.severity();
        self.next_id += 1;
        self.since.remove(&key);
        self.active.insert(key, a);
        self.dirty = true;
        true
    }

    /// The active alarm of (`station`, `kind`).
    pub fn get(&self, station: &str, kind: AlarmKind) -> Option<&Alarm> {
        self.active.get(&(station.to_owned(), kind))
    }

    /// The alarm cleared last.
    pub fn last_cleared(&self) -> Option<&Alarm> {
        self.recent.front()
    }

    /// Marks active alarm (`station`, `kind`) escalated at `now`; the alarm, if it is active
    /// and was not escalated before.
    pub fn escalate(&mut self, station: &str, kind: AlarmKind, now: i64) -> Option<Alarm> {
        let a = self.active.get_mut(&(station.to_owned(), kind))?;
        if a.escalated_ms.is_some() {
            return None;
        }
        a.escalated_ms = Some(now);
        self.dirty = true;
        Some(a.clone())
    }

    /// Drops `station`'s active alarms without clearing them (another instance of the
    /// cluster leads it now and carries them on); how many there were.
    pub fn forget(&mut self, station: &str) -> usize {
        let before = self.active.len();
        self.active.retain(|(s, _), _| s != station);
        self.since.retain(|(s, _), _| s != station);
        let n = before - self.active.len();
        self.dirty |= n > 0;
        n
    }

    /// The active alarms of the stations `which` picks.
    pub fn active_of(&self, which: impl Fn(&str) -> bool) -> Vec<Alarm> {
        self.active
            .values()
            .filter(|a| which(&a.station))
            .cloned()
            .collect()
    }

    /// Active alarms, most severe and oldest first.
    pub fn active(&self) -> Vec<Alarm> {
        let mut v: Vec<Alarm> = self.active.values().cloned().collect();
        v.sort_by(|a, b| {
            a.severity
                .cmp(&b.severity)
                .then(a.raised_ms.cmp(&b.raised_ms))
        });
        v
    }

    /// Recently cleared alarms, newest first.
    pub fn recent(&self) -> Vec<Alarm> {
        self.recent.iter().cloned().collect()
    }

    pub fn is_active(&self, station: &str, kind: AlarmKind) -> bool {
        self.active.contains_key(&(station.to_owned(), kind))
    }

    /// Writes the active alarms if anything changed (temp file + rename).
    pub fn persist(&mut self) {
        if !self.dirty {
            return;
        }
        let body = Persisted {
            next_id: self.next_id,
            active: self.active.values().cloned().collect(),
        };
        let r = serde_json::to_vec(&body)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::files::replace(&self.path, &b, false));
        match r {
            Ok(()) => self.dirty = false,
            Err(e) => error!(error = %e, path = %self.path.display(), "Cannot persist alarms."),
        }
    }
}

fn point(a: &Alarm, active: bool, now: i64, value: f64) -> AlarmPoint {
    AlarmPoint {
        station: a.station.clone(),
        kind: a.kind.as_str(),
        severity: a.severity.as_str(),
        active,
        message: a.message.clone(),
        value,
        id: a.id,
        ts_ms: now,
    }
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
