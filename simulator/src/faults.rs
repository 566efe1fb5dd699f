//! Station faults with an onset and a severity, for testing diagnosis against a known truth.
//!
//! Field studies find faults in most substations (`domain.md`); these are the ones heatgrid's
//! diagnosis should name. Each [`Fault`] acts on one station's plant or sensors from its onset
//! (simulated seconds since the station started), at a severity in 0–1 (0.15–0.35 is "mild").
//! [`SimStation::step`](crate::station::SimStation::step) applies it every step, so live runs,
//! Modbus PLCs and offline scenarios all see the same physics. The simulator knows the truth;
//! the engine sees only the telemetry, as in the field.

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::station::SimStation;

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The heat exchanger fouls: UA falls over days, by up to 60 % of its clean value.
    Fouling,
    /// An exchanger too small for the load: UA 25–60 % below design, from the onset.
    UndersizedHx,
    /// The primary control valve sticks where it is at the onset.
    ValveStuck,
    /// The closed valve still passes 3–15 % of its full flow.
    ValveLeak,
    /// The secondary supply sensor reads 1.5–6 K high.
    SupplySensorOffset,
    /// The supply sensor drifts 0.3–1.5 K per day.
    SupplySensorDrift,
    /// The supply sensor's value freezes.
    SupplySensorFrozen,
    /// The return sensor reads 1.5–6 K low.
    ReturnSensorOffset,
    /// A secondary bypass short-circuits 10–40 % of the supply into the return.
    Bypass,
    /// A clogging strainer: flow at a given pump speed falls over days, by up to 50 %.
    Strainer,
    /// The pump runs (its speed feedback follows the command) but moves almost no water.
    PumpFailure,
    /// The station's own heating curve is set 4–12 K too high (seen while it runs on it).
    CurveTooHigh,
    /// The station reports a heated area 30–60 % below the real one.
    WrongArea,
}

impl FaultKind {
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Fouling,
        FaultKind::UndersizedHx,
        FaultKind::ValveStuck,
        FaultKind::ValveLeak,
        FaultKind::SupplySensorOffset,
        FaultKind::SupplySensorDrift,
        FaultKind::SupplySensorFrozen,
        FaultKind::ReturnSensorOffset,
        FaultKind::Bypass,
        FaultKind::Strainer,
        FaultKind::PumpFailure,
        FaultKind::CurveTooHigh,
        FaultKind::WrongArea,
    ];
}

/// One fault of one station.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fault {
    pub kind: FaultKind,
    /// Simulated seconds after the station started.
    pub onset_s: f64,
    /// 0–1.
    pub severity: f64,
}

/// What a fault needs to remember: the clean values it degrades, and what froze.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultState {
    clean_ua_w_k: Option<f64>,
    clean_pump_kgs: Option<f64>,
    clean_curve: Option<Vec<(f64, f64)>>,
    frozen_at: Option<f64>,
}

const DAY_S: f64 = 86_400.0;

impl Fault {
    /// Lays the fault over `s` at `t` simulated seconds since the station started.
    pub fn apply(&self, s: &mut SimStation, st: &mut FaultState, t: f64) {
        let on = t >= self.onset_s;
        let since_days = ((t - self.onset_s) / DAY_S).max(0.0);
        let sev = self.severity.clamp(0.0, 1.0);
        let ua = *st.clean_ua_w_k.get_or_insert(s.plant.p.hx_ua_w_k);
        let pump_kgs = *st.clean_pump_kgs.get_or_insert(s.plant.p.pump_max_kgs);
        match self.kind {
            FaultKind::Fouling => {
                // Builds up over five days to its full loss.
                let loss = if on {
                    0.6 * sev * (since_days / 5.0).min(1.0)
                } else {
                    0.0
                };
                s.plant.p.hx_ua_w_k = ua * (1.0 - loss);
            }
            FaultKind::UndersizedHx => {
                let loss = if on { 0.25 + 0.35 * sev } else { 0.0 };
                s.plant.p.hx_ua_w_k = ua * (1.0 - loss);
            }
            FaultKind::ValveStuck => {
                s.plant.valve_stuck_at =
                    on.then(|| s.plant.valve_stuck_at.unwrap_or(s.plant.valve));
            }
            FaultKind::ValveLeak => {
                s.plant.valve_leak = if on { 0.03 + 0.12 * sev } else { 0.0 };
            }
            FaultKind::SupplySensorOffset => {
                s.sensor_offset_k = if on { 1.5 + 4.5 * sev } else { 0.0 };
            }
            FaultKind::SupplySensorDrift => {
                s.sensor_offset_k = (0.3 + 1.2 * sev) * since_days;
            }
            FaultKind::SupplySensorFrozen => {
                s.supply_frozen_c = if on {
                    Some(*st.frozen_at.get_or_insert(s.plant.supply_sensor_c))
                } else {
                    None
                };
            }
            FaultKind::ReturnSensorOffset => {
                s.return_offset_k = if on { -(1.5 + 4.5 * sev) } else { 0.0 };
            }
            FaultKind::Bypass => {
                s.plant.bypass = if on { 0.1 + 0.3 * sev } else { 0.0 };
            }
            FaultKind::Strainer => {
                let loss = if on {
                    0.5 * sev * (since_days / 4.0).min(1.0)
                } else {
                    0.0
                };
                s.plant.p.pump_max_kgs = pump_kgs * (1.0 - loss);
            }
            FaultKind::PumpFailure => {
                s.plant.p.pump_max_kgs = if on { pump_kgs * 0.01 } else { pump_kgs };
            }
            FaultKind::CurveTooHigh => {
                let clean = st.clean_curve.get_or_insert_with(|| s.local.curve.clone());
                let raise = if on { 4.0 + 8.0 * sev } else { 0.0 };
                s.local.curve = clean.iter().map(|&(o, c)| (o, c + raise)).collect();
            }
            FaultKind::WrongArea => {
                s.area_report_factor = if on { 1.0 - (0.3 + 0.3 * sev) } else { 1.0 };
            }
        }
    }
}

/// A seeded fault plan: about `share` of `stations` get one fault each, of a random kind,
/// with an onset in the first `days` − 3 days (so each has three days to be found) and a
/// severity where a third are mild (0.15–0.35) and the rest 0.35–1. Returns
/// (station index, fault), sorted by index.
pub fn plan(stations: usize, share: f64, days: f64, seed: u64) -> Vec<(usize, Fault)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xfa01_7000_0000_0000);
    let mut picked: Vec<usize> = (0..stations)
        .filter(|_| rng.random_bool(share.clamp(0.0, 1.0)))
        .collect();
    picked.sort_unstable();
    let last_onset = (days - 3.0).max(0.5) * DAY_S;
    picked
        .into_iter()
        .map(|i| {
            let kind = FaultKind::ALL[rng.random_range(0..FaultKind::ALL.len())];
            let severity = if rng.random_bool(1.0 / 3.0) {
                rng.random_range(0.15..0.35)
            } else {
                rng.random_range(0.35..=1.0)
            };
            let onset_s = rng.random_range(0.5 * DAY_S..last_onset.max(0.5 * DAY_S + 1.0));
            (
                i,
                Fault {
                    kind,
                    onset_s,
                    severity,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
