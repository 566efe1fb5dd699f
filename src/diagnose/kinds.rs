//! What a diagnosis says ([`Kind`], [`Finding`]) and the thresholds it says it by
//! ([`Settings`]).
//!
//! Where it sits: the vocabulary shared by the detectors (`detect.rs`) and the per-station
//! state (`mod.rs`), and what the API, CLI and alarms will show.

use serde::Serialize;

/// A fault the diagnosis can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The heat exchanger transfers less heat per kelvin than it did (fouling).
    Fouling,
    /// The primary valve does not move when told to.
    ValveStuck,
    /// Heat flows with the valve told to close.
    ValveLeak,
    /// Supply or return sensor reads off by a steady amount.
    SensorOffset,
    /// Supply or return sensor drifts further every day.
    SensorDrift,
    /// A temperature sensor's value does not change.
    SensorFrozen,
    /// Supply short-circuits into the return (a secondary bypass).
    Bypass,
    /// Flow falls at an unchanged pump speed (a clogging strainer).
    Strainer,
    /// Almost no flow while the pump is driven.
    PumpFailure,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Fouling => "fouling",
            Kind::ValveStuck => "valve_stuck",
            Kind::ValveLeak => "valve_leak",
            Kind::SensorOffset => "sensor_offset",
            Kind::SensorDrift => "sensor_drift",
            Kind::SensorFrozen => "sensor_frozen",
            Kind::Bypass => "bypass",
            Kind::Strainer => "strainer",
            Kind::PumpFailure => "pump_failure",
        }
    }
}

/// A suspected fault: what, how sure, the figures behind it, since when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    /// 0.5–0.99.
    pub confidence: f64,
    pub evidence: String,
    /// Start of the first hour the condition held, Unix ms.
    pub since_ms: i64,
}

/// Thresholds and windows (docs/diagnosis.md explains each default).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Hours a condition must hold before its finding is raised, and hours without it before
    /// it is cleared.
    pub persist_h: u32,
    pub clear_h: u32,
    /// Hours of data before the detectors that compare with the station's own past speak.
    pub learn_h: u32,
    /// Memory of the slow ("how it was") and fast ("how it is") averages, hours.
    pub slow_h: f64,
    pub fast_h: f64,
    /// Fouling: the heat-transfer coefficient (UA) fell by this share.
    pub ua_drop: f64,
    /// Strainer: flow per pump speed fell by this share.
    pub flow_drop: f64,
    /// Pump failure: flow below this share of the usual flow at that pump speed.
    pub no_flow: f64,
    /// Sensors: the heat balance is off by this many kelvin (flow × ΔT against the meter).
    pub balance_k: f64,
    /// Drift: the balance moves by this many kelvin per day.
    pub drift_k_per_day: f64,
    /// Bypass: ΔT's share of the supply's lift over outdoor fell by this share.
    pub dt_drop: f64,
    /// Valve stuck: the command moved at least this far (points) in an hour while the
    /// position moved at most `valve_still_pct`.
    pub valve_moved_pct: f64,
    pub valve_still_pct: f64,
    /// Valve leak: supply this far over its setpoint with the valve told to close.
    pub leak_over_k: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            persist_h: 2,
            clear_h: 6,
            learn_h: 24,
            slow_h: 96.0,
            fast_h: 12.0,
            ua_drop: 0.15,
            flow_drop: 0.2,
            no_flow: 0.1,
            balance_k: 1.0,
            drift_k_per_day: 0.25,
            dt_drop: 0.2,
            valve_moved_pct: 3.0,
            valve_still_pct: 0.3,
            leak_over_k: 2.0,
        }
    }
}
