//! The detectors: each closed hour updates the station's health figures and says which
//! faults it shows, how surely, and with what figures.
//!
//! Where it sits: called by [`super::Diagnosis`] once per closed hour. Two kinds of test:
//! against the station's own past (UA, flow per pump speed, the return's share: a slow
//! average of how it was, a fast one of how it is; the slow one stops learning while the
//! fast one is off, so a fault is never learnt as normal), and against physics that holds
//! for every station (the heat balance of flow, ΔT and meter; a valve that must move when
//! told; flow that must come when the pump runs).

use super::average::{Avg, Banded};
use super::hour::Hour;
use super::kinds::{Fleet, Kind, Settings};

/// A station's health figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// Closed hours with data.
    pub hours: u32,
    /// Flow per % pump speed, m³/h.
    pub flow_per_pump: Avg,
    /// Heat-transfer coefficient, kW/K.
    pub ua: Avg,
    /// (supply − return) / (supply − outdoor): ΔT as a share of the supply's lift.
    pub dt_share: Banded,
    /// Heat balance (ΔT − meter heat / (1.163 × flow)), K, hour by hour (the last 48).
    pub balance: Vec<f64>,
    /// The indoor temperature the heat implies from the design load (fast: the last
    /// half-day), and the supply over the heating curve, °C and K.
    pub implied_indoor: Avg,
    /// Outdoor temperature (fast: the same half-day as `implied_indoor`), °C.
    pub outdoor: Avg,
    pub over_curve: Avg,
    /// UA per kW of design load, 1/K (slow: how the exchanger was when learnt).
    pub ua_per_kw: Avg,
    /// The fleet's yardsticks, handed over once per plant hour (`Fleet::of`).
    pub fleet: Fleet,
}

/// What one hour shows: (kind, confidence, evidence).
pub type Seen = Vec<(Kind, f64, String)>;

fn confidence(excess: f64) -> f64 {
    (0.5 + excess).clamp(0.5, 0.99)
}

/// Updates `h` with the closed hour and returns what it shows.
pub fn update(h: &mut Health, hour: &Hour, s: &Settings) -> Seen {
    let mut seen = Seen::new();
    h.hours += 1;
    let learned = h.hours > s.learn_h;
    let no_flow = hydraulics(h, hour, s, learned, &mut seen);
    // A frozen sensor also puts the heat balance off: name the cause, not the symptom.
    frozen(hour, &mut seen);
    let frozen_now = seen.iter().any(|x| x.0 == Kind::SensorFrozen);
    let mut balance_seen = Seen::new();
    let consistent = balance(h, hour, s, &mut balance_seen);
    if !frozen_now {
        seen.extend(balance_seen);
    }
    // UA comes from the same temperatures: a wrong sensor is not a fouled exchanger.
    exchanger(h, hour, s, learned && !no_flow && consistent, &mut seen);
    bypass(h, hour, s, learned && consistent && !no_flow, &mut seen);
    valve(hour, s, !no_flow && !frozen_now, &mut seen);
    over_fired(h, hour, s, consistent, &mut seen);
    undersized(h, hour, s, learned, &mut seen);
    seen
}

/// The station's heat for its design load against the fleet's median, over the last
/// half-day: 0.3 is 30 % more. (Implied indoor − outdoor is proportional to heat per design
/// kW, so the ratio holds in any weather, where a difference in kelvin shrinks as it warms.)
fn heat_vs_fleet(h: &Health, s: &Settings) -> Option<f64> {
    let (mine, usual, out) = (
        h.implied_indoor.fast?,
        h.fleet.implied_indoor_c?,
        h.outdoor.fast?,
    );
    (h.hours >= s.fast_h as u32 && usual - out > 2.0).then(|| (mine - out) / (usual - out) - 1.0)
}

/// Heat far above what the design load asks for at this weather, over the last half-day:
/// far above the fleet's (a wrong area or heat index), or above it with the supply over the
/// heating curve (a curve set too high). Against the fleet's median, so a district that runs
/// warm on purpose (the coordinator's indoor target) is its own yardstick.
/// `consistent`: the meter and temperatures agree (a sensor fault is named as such).
fn over_fired(h: &mut Health, hour: &Hour, s: &Settings, consistent: bool, seen: &mut Seen) {
    h.implied_indoor
        .update(hour.implied_indoor.mean(), s, true, f64::INFINITY);
    h.outdoor
        .update(hour.outdoor.mean(), s, true, f64::INFINITY);
    h.over_curve
        .update(hour.over_curve.mean(), s, true, f64::INFINITY);
    let Some(over) = heat_vs_fleet(h, s).filter(|_| consistent) else {
        return;
    };
    let over_curve = h.over_curve.fast.unwrap_or(0.0);
    let on_curve_high = over_curve >= s.curve_over_k && over >= s.over_share / 4.0;
    if over < s.over_share && !on_curve_high {
        return;
    }
    let cause = if over_curve >= s.curve_over_k {
        format!("supply runs {over_curve:.1} K above the heating curve: curve set too high?")
    } else {
        "supply on the heating curve: check the heated area and heat index".to_owned()
    };
    seen.push((
        Kind::OverFired,
        confidence((over - s.over_share / 4.0) * 2.0),
        format!(
            "takes {:.0} % more heat for its design load than the fleet's median (the load of a {:.1} °C indoor temperature); {cause}",
            over * 100.0,
            h.implied_indoor.fast.unwrap_or(0.0)
        ),
    ));
}

/// UA per kW of design load far below the fleet's: an exchanger too small for its station.
/// Judged on the slow average, so a fouling that is happening now is left to `fouling`.
fn undersized(h: &mut Health, hour: &Hour, s: &Settings, learned: bool, seen: &mut Seen) {
    h.ua_per_kw
        .update(hour.ua_per_kw.mean(), s, true, s.ua_drop / 4.0);
    let (Some(mine), Some(fleet)) = (h.ua_per_kw.slow, h.fleet.ua_per_kw) else {
        return;
    };
    let short = 1.0 - mine / fleet;
    let fouling_now = h.ua.change().is_some_and(|c| c < -s.ua_drop / 2.0);
    if learned && !fouling_now && short >= s.undersized_share {
        seen.push((
            Kind::Undersized,
            confidence((short - s.undersized_share) * 3.0),
            format!(
                "exchanger moves {:.0} % less heat per kelvin for its design load than the fleet's median ({:.2} against {:.2} W/K per kW)",
                short * 100.0,
                mine * 1000.0,
                fleet * 1000.0
            ),
        ));
    }
}

/// Flow per pump speed against how it was: a pump that moves no water, or a strainer that
/// lets less through. Returns whether the pump moves (almost) nothing.
fn hydraulics(h: &mut Health, hour: &Hour, s: &Settings, learned: bool, seen: &mut Seen) -> bool {
    let fpp = hour.flow_per_pump.mean();
    let usual = h.flow_per_pump.slow;
    let driven = hour.driven.mean();
    let no_flow = matches!((driven, usual), (Some(d), Some(u)) if learned && d < s.no_flow * u);
    if no_flow {
        let (d, u) = (driven.unwrap_or(0.0), usual.unwrap_or(0.0));
        seen.push((
            Kind::PumpFailure,
            confidence(0.45),
            format!(
                "flow {:.1} m³/h at pump {:.0} % (usually {:.1} m³/h at that speed)",
                d * hour.pump.mean().unwrap_or(0.0),
                hour.pump.mean().unwrap_or(0.0),
                u * hour.pump.mean().unwrap_or(0.0)
            ),
        ));
    }
    let strainer =
        !no_flow && learned && h.flow_per_pump.change().is_some_and(|c| c < -s.flow_drop);
    if strainer {
        let c = h.flow_per_pump.change().unwrap_or(0.0);
        seen.push((
            Kind::Strainer,
            confidence((-c - s.flow_drop) * 3.0),
            format!(
                "flow per % pump speed fell {:.0} % ({:.2} → {:.2} m³/h per %)",
                -c * 100.0,
                h.flow_per_pump.slow.unwrap_or(0.0),
                h.flow_per_pump.fast.unwrap_or(0.0)
            ),
        ));
    }
    h.flow_per_pump.update(
        fpp.filter(|_| !no_flow),
        s,
        !no_flow && !strainer,
        s.flow_drop / 2.0,
    );
    no_flow
}

/// The exchanger's UA against how it was.
fn exchanger(h: &mut Health, hour: &Hour, s: &Settings, learned: bool, seen: &mut Seen) {
    let fouled = learned && h.ua.change().is_some_and(|c| c < -s.ua_drop);
    if fouled {
        let c = h.ua.change().unwrap_or(0.0);
        seen.push((
            Kind::Fouling,
            confidence((-c - s.ua_drop) * 3.0),
            format!(
                "heat-transfer coefficient UA fell {:.0} % ({:.0} → {:.0} kW/K)",
                -c * 100.0,
                h.ua.slow.unwrap_or(0.0),
                h.ua.fast.unwrap_or(0.0)
            ),
        ));
    }
    h.ua.update(
        hour.ua.mean(),
        s,
        (!fouled && learned) || h.hours <= s.learn_h,
        s.ua_drop / 4.0,
    );
}

/// A supply value that does not move while the rest of the station does.
fn frozen(hour: &Hour, seen: &mut Seen) {
    let others_move = hour.ret.range() > 0.3 || hour.flow.range() > 0.01 * hour.flow.max.abs();
    if hour.supply.n >= 4 && hour.supply.range() < 0.02 && others_move {
        seen.push((
            Kind::SensorFrozen,
            confidence(0.3),
            format!(
                "supply reads {:.2} °C all hour while the return moved {:.1} K",
                hour.supply.mean().unwrap_or(0.0),
                hour.ret.range()
            ),
        ));
    }
}

/// ΔT as a share of the supply's lift over outdoor: a bypass short-circuits part of it.
/// `able`: learned, sensors consistent and water flowing.
/// Also a station that takes far less heat than the fleet for its design load while water
/// flows and the supply is on its curve: the heat goes round the short circuit, not through
/// the radiators.
fn bypass(h: &mut Health, hour: &Hour, s: &Settings, able: bool, seen: &mut Seen) {
    let dt_fell = h.dt_share.change().is_some_and(|c| c < -s.dt_drop);
    let under = heat_vs_fleet(h, s).map_or(0.0, |x| -x);
    let on_curve = h.over_curve.fast.is_some_and(|k| k > -s.curve_over_k);
    let starved = under >= s.over_share / 2.0 && on_curve;
    let bypass = able && (dt_fell || starved);
    if bypass {
        let c = h.dt_share.change().unwrap_or(0.0);
        seen.push((
            Kind::Bypass,
            confidence((-c - s.dt_drop) * 3.0 + (under - s.over_share / 2.0) * 2.0),
            format!(
                "ΔT {:+.0} % against its usual share of the supply's lift at this weather, heat {:.0} % below the fleet's for its design load, with the supply on its curve and the sensors and meter agreeing",
                c * 100.0,
                under * 100.0
            ),
        ));
    }
    h.dt_share.update(
        hour.dt_share.mean(),
        hour.outdoor.mean(),
        s,
        (!bypass && able) || h.hours <= s.learn_h,
        // While it learns the station, every hour counts.
        if h.hours <= s.learn_h {
            f64::INFINITY
        } else {
            s.dt_drop / 2.0
        },
    );
}

/// The valve must move when told, and shut off the heat when closed.
/// `flowing`: without flow the supply sensor reads still water, and a leak cannot be told
/// (nor with a frozen supply sensor, whose still value is no excess).
/// A leak is not named where the evidence contradicts it: the valve's own position shows it
/// open (it is stuck, not leaking), or the meter shows almost no heat passing.
fn valve(hour: &Hour, s: &Settings, flowing: bool, seen: &mut Seen) {
    // The valve: it must move when told, and shut off the heat when closed.
    let told = hour.valve_cmd.range() >= s.valve_moved_pct
        || match (hour.valve_cmd.mean(), hour.valve_fb.mean()) {
            (Some(c), Some(f)) => (c - f).abs() >= 3.0 * s.valve_moved_pct,
            _ => false,
        };
    if hour.valve_fb.n >= 2
        && hour.valve_cmd.n >= 2
        && told
        && hour.valve_fb.range() <= s.valve_still_pct
    {
        seen.push((
            Kind::ValveStuck,
            confidence(0.4),
            format!(
                "valve told {:.0}–{:.0} % but stayed at {:.1} %",
                hour.valve_cmd.min,
                hour.valve_cmd.max,
                hour.valve_fb.mean().unwrap_or(0.0)
            ),
        ));
    }
    let shows_open = hour
        .valve_fb
        .mean()
        .is_some_and(|v| v > 2.0 * s.valve_moved_pct);
    let no_heat = hour.heat_share.mean().is_some_and(|q| q < 0.02);
    if flowing
        && !shows_open
        && !no_heat
        && hour.closed_over.n * 2 >= hour.n
        && hour.closed_over.mean().is_some_and(|x| x > s.leak_over_k)
    {
        seen.push((
            Kind::ValveLeak,
            confidence(0.3 + hour.closed_over.mean().unwrap_or(0.0) / 20.0),
            format!(
                "supply {:.1} K over its setpoint with the valve told to close",
                hour.closed_over.mean().unwrap_or(0.0)
            ),
        ));
    }
}

/// The heat balance hour by hour: a sensor offset (a steady disagreement over the last 6
/// hours) or a drift (the disagreement growing by at least `drift_k_per_day` in each of the
/// last two days: a step looks steep only across the day it happened in). Returns whether
/// the sensors and meter agree (or cannot be checked).
fn balance(h: &mut Health, hour: &Hour, s: &Settings, seen: &mut Seen) -> bool {
    let Some(b) = hour.balance.mean() else {
        return true;
    };
    h.balance.push(b);
    if h.balance.len() > 48 {
        h.balance.remove(0);
    }
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len().max(1) as f64;
    let n = h.balance.len();
    let now = mean(&h.balance[n.saturating_sub(6)..]);
    let slope = |from: usize, to: usize| {
        // Change per day between the 6-hour means at the two ends of h.balance[from..to].
        let w = &h.balance[from..to];
        (w.len() >= 24)
            .then(|| (mean(&w[w.len() - 6..]) - mean(&w[..6])) * 24.0 / (w.len() - 6) as f64)
    };
    // An offset is a step: the last 6 hours agree with the 6 before. A disagreement still
    // moving is left to the drift test (a fast drift shows as a slope before two days pass).
    let before = mean(&h.balance[n.saturating_sub(12)..n.saturating_sub(6)]);
    let steady = n >= 12 && (now - before).abs() < 0.15;
    let drifting = n >= 48
        && [slope(0, 24), slope(24, 48)]
            .iter()
            .all(|d| d.is_some_and(|d| d.abs() >= s.drift_k_per_day && d * now > 0.0));
    if drifting && now.abs() >= 0.5 * s.balance_k {
        let d = slope(24, 48).unwrap_or(0.0);
        seen.push((
            Kind::SensorDrift,
            confidence(d.abs()),
            format!(
                "temperatures and meter disagree by {now:+.1} K, moving {d:+.2} K a day (supply reads high or return low when positive)"
            ),
        ));
    } else if now.abs() >= s.balance_k && steady {
        seen.push((
            Kind::SensorOffset,
            confidence((now.abs() - s.balance_k) / 2.0),
            format!(
                "flow × ΔT and the heat meter disagree by {now:+.1} K of ΔT (supply reads high or return low when positive)"
            ),
        ));
    }
    now.abs() < s.balance_k
}
