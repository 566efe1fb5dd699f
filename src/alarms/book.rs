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

use crate::files::{read_json, StateError};
use crate::store::record::AlarmPoint;

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// No fresh telemetry: control holds, no command sent.
    Stale,
    /// The station's MQTT presence says offline.
    CommLost,
    /// Many payloads rejected in the last minute.
    RejectedRepeatedly,
    /// A reading outside the station's operating range (supply far above its maximum, …).
    OutOfRange,
    /// Supply away from its setpoint for too long.
    SupplyDeviation,
    /// Return above its limit for too long.
    ReturnHigh,
    /// Valve fully open (or closed) for too long: the station cannot reach its setpoint.
    ValveSaturated,
    /// Supply − return too small for too long (poor cooling).
    LowDeltaT,
    /// Storage trouble: database writes failing, points refused or dead-lettered.
    Storage,
    /// An alarm notification could not be delivered (notify).
    NotifyFailed,
    /// The station diagnosis suspects a fault (its kind and evidence in the message).
    FaultSuspected,
    /// No telemetry from the heat plant (contract §7): the plant loop plans blind.
    PlantStale,
    /// A station or pressure point sees less differential pressure than the minimum.
    PressureLow,
}

impl AlarmKind {
    /// Every kind.
    pub const ALL: [AlarmKind; 13] = [
        AlarmKind::Stale,
        AlarmKind::CommLost,
        AlarmKind::RejectedRepeatedly,
        AlarmKind::OutOfRange,
        AlarmKind::SupplyDeviation,
        AlarmKind::ReturnHigh,
        AlarmKind::ValveSaturated,
        AlarmKind::LowDeltaT,
        AlarmKind::Storage,
        AlarmKind::NotifyFailed,
        AlarmKind::FaultSuspected,
        AlarmKind::PlantStale,
        AlarmKind::PressureLow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::Stale => "stale",
            AlarmKind::CommLost => "comm_lost",
            AlarmKind::RejectedRepeatedly => "rejected_repeatedly",
            AlarmKind::OutOfRange => "out_of_range",
            AlarmKind::SupplyDeviation => "supply_deviation",
            AlarmKind::ReturnHigh => "return_high",
            AlarmKind::ValveSaturated => "valve_saturated",
            AlarmKind::LowDeltaT => "low_delta_t",
            AlarmKind::Storage => "storage",
            AlarmKind::NotifyFailed => "notify_failed",
            AlarmKind::FaultSuspected => "fault_suspected",
            AlarmKind::PlantStale => "plant_stale",
            AlarmKind::PressureLow => "pressure_low",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            AlarmKind::Stale
            | AlarmKind::CommLost
            | AlarmKind::Storage
            | AlarmKind::PlantStale
            | AlarmKind::NotifyFailed => Severity::Major,
            AlarmKind::OutOfRange
            | AlarmKind::SupplyDeviation
            | AlarmKind::ValveSaturated
            | AlarmKind::PressureLow => Severity::Minor,
            AlarmKind::RejectedRepeatedly
            | AlarmKind::ReturnHigh
            | AlarmKind::LowDeltaT
            | AlarmKind::FaultSuspected => Severity::Warning,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
}

impl Severity {
    /// Every severity, most severe first.
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::Major,
        Severity::Minor,
        Severity::Warning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Warning => "warning",
        }
    }
}

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
mod tests {
    use super::*;

    #[test]
    fn lifecycle_hold_time_dedup_ack_clear_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alarms.json");
        let mut book = AlarmBook::open(path.clone()).unwrap();
        let msg = || "supply 5 K below setpoint".to_owned();
        assert!(book
            .evaluate("s", AlarmKind::SupplyDeviation, true, 1000, 5.0, 0, msg)
            .is_none());
        assert!(book
            .evaluate("s", AlarmKind::SupplyDeviation, true, 1000, 5.0, 500, msg)
            .is_none());
        let raised = book
            .evaluate("s", AlarmKind::SupplyDeviation, true, 1000, 5.0, 1000, msg)
            .unwrap();
        assert_eq!(
            (
                raised.station.as_str(),
                raised.kind,
                raised.severity,
                raised.active
            ),
            ("s", "supply_deviation", "minor", true)
        );
        // As the store encodes it:
        assert!(crate::store::line_protocol::alarm(&raised)
            .unwrap()
            .starts_with("alarm,station=s,kind=supply_deviation,severity=minor active=true"));
        assert!(
            book.evaluate("s", AlarmKind::SupplyDeviation, true, 1000, 6.0, 2000, msg)
                .is_none(),
            "de-duplicated"
        );
        assert_eq!(book.active().len(), 1);
        let id = book.active()[0].id;
        assert_eq!(
            book.ack(id, "alice", 2500).unwrap().acked_by.as_deref(),
            Some("alice")
        );
        assert!(book.ack(999, "alice", 2500).is_err());
        book.persist();
        let mut book = AlarmBook::open(path).unwrap();
        assert_eq!(
            book.active()[0].acked_by.as_deref(),
            Some("alice"),
            "kept across a restart"
        );
        let cleared = book
            .evaluate("s", AlarmKind::SupplyDeviation, false, 1000, 0.0, 3000, msg)
            .unwrap();
        assert!(!cleared.active);
        assert_eq!(cleared.ts_ms, 3000);
        assert!(book.active().is_empty());
        assert_eq!(book.recent()[0].cleared_ms, Some(3000));
        // A condition that goes away before its hold time never raises.
        book.evaluate("s", AlarmKind::LowDeltaT, true, 1000, 3.0, 4000, msg);
        book.evaluate("s", AlarmKind::LowDeltaT, false, 1000, 8.0, 4500, msg);
        assert!(book
            .evaluate("s", AlarmKind::LowDeltaT, true, 1000, 3.0, 5000, msg)
            .is_none());
    }

    #[test]
    fn an_adopted_alarm_keeps_its_raise_and_acknowledgement_under_a_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut elsewhere = AlarmBook::open(dir.path().join("a.json")).unwrap();
        let msg = || "no telemetry".to_owned();
        elsewhere.evaluate("s", AlarmKind::Stale, true, 0, 9.0, 100, msg);
        elsewhere.evaluate("t", AlarmKind::Stale, true, 0, 9.0, 100, msg);
        elsewhere.ack(1, "alice", 150).unwrap();
        let kept = elsewhere.active_of(|s| s == "s");
        assert_eq!(kept.len(), 1);
        assert_eq!(elsewhere.forget("s"), 1);
        assert!(!elsewhere.is_active("s", AlarmKind::Stale));

        let mut here = AlarmBook::open(dir.path().join("b.json")).unwrap();
        here.evaluate("u", AlarmKind::Stale, true, 0, 9.0, 120, msg);
        assert!(here.adopt(kept[0].clone()));
        assert!(!here.adopt(kept[0].clone()), "once");
        let a = here.active_of(|s| s == "s").pop().unwrap();
        assert_eq!(
            (a.id, a.raised_ms, a.acked_by.as_deref()),
            (2, 100, Some("alice"))
        );
        // Its condition holds on: still the same alarm; then it clears as usual.
        assert!(here
            .evaluate("s", AlarmKind::Stale, true, 0, 9.5, 200, msg)
            .is_none());
        let cleared = here.evaluate("s", AlarmKind::Stale, false, 0, 0.0, 300, msg);
        assert_eq!(cleared.map(|p| (p.id, p.active)), Some((2, false)));
    }
}
