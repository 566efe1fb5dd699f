//! What a diagnosis says ([`Kind`], [`Finding`]) and the thresholds it says it by
//! ([`Settings`]).
//!
//! Where it sits: the vocabulary shared by the detectors (`detect.rs`) and the per-station
//! state (`mod.rs`), and what the API, CLI and alarms will show.

use serde::{Deserialize, Serialize};

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
    /// The exchanger transfers much less heat per kelvin, for its design load, than the
    /// fleet's (too small for its station, or fouled before heatgrid knew it).
    Undersized,
    /// The station takes far more heat than its design load at this weather: a heating
    /// curve set too high, or a heated area (or heat index) that is wrong.
    OverFired,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 11] = [
        Kind::Fouling,
        Kind::ValveStuck,
        Kind::ValveLeak,
        Kind::SensorOffset,
        Kind::SensorDrift,
        Kind::SensorFrozen,
        Kind::Bypass,
        Kind::Strainer,
        Kind::PumpFailure,
        Kind::Undersized,
        Kind::OverFired,
    ];

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
            Kind::Undersized => "undersized",
            Kind::OverFired => "over_fired",
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
    /// When the condition began to hold: the first reading of its first hour, Unix ms on
    /// the wall clock (the reading's own time, also in a time-scaled run).
    pub since_ms: i64,
}

/// A fault the diagnosis cannot judge for a station, and the telemetry it lacks for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unjudged {
    pub kind: Kind,
    pub needs: Vec<&'static str>,
}

/// What each detector needs beyond supply, return, flow and the command sent (docs/diagnosis.md).
pub const NEEDS: [(Kind, &[&str]); 6] = [
    (
        Kind::Fouling,
        &["heat_kw", "primary_supply_temp_c", "primary_return_temp_c"],
    ),
    (
        Kind::Undersized,
        &["heat_kw", "primary_supply_temp_c", "primary_return_temp_c"],
    ),
    (Kind::SensorOffset, &["heat_kw"]),
    (Kind::SensorDrift, &["heat_kw"]),
    (Kind::OverFired, &["heat_kw", "outdoor_temp_c"]),
    (Kind::ValveStuck, &["valve_pct"]),
];

/// What the station's design data say about one reading: they come from its controller's
/// settings (heat index, heated area, design temperatures, heating curve).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Design {
    /// Heat load at the design outdoor temperature, kW (heat index × area).
    pub design_kw: f64,
    /// Design indoor minus design outdoor temperature, K.
    pub span_k: f64,
    /// The heating curve's supply at the reading's outdoor temperature, °C (no offsets).
    pub curve_c: Option<f64>,
}

impl Design {
    /// The indoor temperature at which the design load model asks for `heat_kw` with
    /// `outdoor_c` outside; `None` without a design load.
    pub fn implied_indoor_c(&self, heat_kw: f64, outdoor_c: f64) -> Option<f64> {
        (self.design_kw > 1.0 && self.span_k > 1.0)
            .then(|| outdoor_c + heat_kw / self.design_kw * self.span_k)
    }
}

/// The fleet's yardsticks: medians over its stations (those still learning left out), from
/// `Fleet::of` in the module root.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Fleet {
    /// Learnt UA per kW of design load, 1/K.
    pub ua_per_kw: Option<f64>,
    /// The indoor temperature the heat implies over the last half-day, °C.
    pub implied_indoor_c: Option<f64>,
}

/// Thresholds and windows: the `[diagnosis]` config section (docs/diagnosis.md explains each
/// default).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Whether the diagnosis runs at all.
    pub enabled: bool,
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
    /// Over-fired: the station takes this share more heat for its design load than the
    /// fleet's median; or a quarter of it with the supply at least `curve_over_k` over the
    /// heating curve. (Half of it less, with the supply on its curve: a bypass starving the
    /// radiators.)
    pub over_share: f64,
    pub curve_over_k: f64,
    /// Undersized: UA per kW of design load this share below the fleet's median.
    pub undersized_share: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            persist_h: 2,
            clear_h: 6,
            learn_h: 24,
            slow_h: 96.0,
            fast_h: 12.0,
            ua_drop: 0.1,
            flow_drop: 0.12,
            no_flow: 0.1,
            balance_k: 1.0,
            drift_k_per_day: 0.25,
            dt_drop: 0.12,
            valve_moved_pct: 3.0,
            valve_still_pct: 0.3,
            leak_over_k: 2.0,
            over_share: 0.3,
            curve_over_k: 3.0,
            undersized_share: 0.2,
        }
    }
}

impl Settings {
    /// Every setting outside its sane range, as `diagnosis.<key>: <why>`.
    pub fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut want = |ok: bool, key: &str, why: &str| {
            if !ok {
                v.push(format!("diagnosis.{key}: {why}"));
            }
        };
        want(
            (1..=48).contains(&self.persist_h),
            "persist_h",
            "must be within 1..48 hours",
        );
        want(
            (1..=168).contains(&self.clear_h),
            "clear_h",
            "must be within 1..168 hours",
        );
        want(
            (6..=24 * 14).contains(&self.learn_h),
            "learn_h",
            "must be within 6..336 hours",
        );
        want(
            self.fast_h >= 1.0 && self.slow_h >= 2.0 * self.fast_h && self.slow_h <= 24.0 * 30.0,
            "slow_h",
            "fast_h must be at least 1 and slow_h at least twice fast_h (and at most 720)",
        );
        for (key, x) in [
            ("ua_drop", self.ua_drop),
            ("flow_drop", self.flow_drop),
            ("no_flow", self.no_flow),
            ("dt_drop", self.dt_drop),
            ("undersized_share", self.undersized_share),
            ("over_share", self.over_share),
        ] {
            want(
                x > 0.0 && x < 1.0,
                key,
                "must be a share between 0 and 1 (exclusive)",
            );
        }
        for (key, x) in [
            ("balance_k", self.balance_k),
            ("drift_k_per_day", self.drift_k_per_day),
            ("valve_moved_pct", self.valve_moved_pct),
            ("valve_still_pct", self.valve_still_pct),
            ("leak_over_k", self.leak_over_k),
            ("curve_over_k", self.curve_over_k),
        ] {
            want(x.is_finite() && x > 0.0, key, "must be positive");
        }
        v
    }
}
