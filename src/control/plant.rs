//! The centre's own loop: the plant's supply temperature and the network's differential
//! pressure, from the fleet (`design/network.md` §4).
//!
//! Where it sits: above the station controllers, slower than them. Every reading a station's
//! controller acts on is also [`PlantController::observe`]d (its valve, its secondary supply
//! against the setpoint it was given, the differential pressure across it on the primary
//! side); every plant period [`PlantController::plan`] says what the plant should send and
//! where its pump should hold what pressure ([`PlantPlan`]).
//!
//! - **Supply.** The lowest that keeps the most demanding station on its secondary setpoint
//!   with its valve short of fully open: each station's *demand* is its valve opening, plus
//!   ten points per kelvin its supply is short of its setpoint; the largest demand is held at
//!   `valve_target_pct` by a slow integral trim on the plant's outdoor curve. The curve is read
//!   at the outdoor temperature forecast for `lead_s` ahead (the water takes that long to
//!   reach the far stations), so a cold front is met when it arrives, not after.
//! - **Pressure.** Held at its minimum at the station that sees the least: the pressure point
//!   moves to another station only when it sees `switch_margin_kpa` less than the current one.
//!   Without pressure data from the stations, a fixed head at the plant. When the supply is
//!   at its maximum and a valve still runs out (beyond the network's design day), the
//!   pressure is raised instead, and given back first when demand falls.
//! - **Safety.** Never below `min_supply_c` (hot water needs it) nor above `max_supply_c`, no
//!   faster than `ramp_k_per_h`, the trim does not wind up against a limit, and when fewer than
//!   `min_fresh_share` of the stations have fresh data the plant goes back to its curve
//!   (bumpless: the trim is kept, not applied, and returns at the ramp).

use std::collections::HashMap;

use crate::control::curve::Curve;
use crate::model::{Reading, StationId};
use crate::predict::forecast::Forecast;

/// The plant loop's settings (the `[plant]` config section).
#[derive(Debug, Clone, PartialEq)]
pub struct PlantSettings {
    /// The plant's outdoor curve: what it sends when the fleet's data are stale, and what the
    /// trim is added to.
    pub curve: Curve,
    pub min_supply_c: f64,
    pub max_supply_c: f64,
    pub ramp_k_per_h: f64,
    /// The most demanding station's valve is held here, %.
    pub valve_target_pct: f64,
    /// Trim speed: K per hour for each point of demand above or below the target.
    pub gain_k_per_h_per_pct: f64,
    /// The least differential pressure a station is to see, kPa.
    pub min_dp_kpa: f64,
    /// When the supply is already at its maximum and a valve still runs out, the pressure
    /// is raised instead: kPa per hour per point of demand above the target, up to
    /// `head_kpa`.
    pub dp_gain_kpa_per_h_per_pct: f64,
    /// Another station must see this much less than the pressure point to become it, kPa.
    pub switch_margin_kpa: f64,
    /// The head held at the plant when no station reports its differential pressure, kPa.
    pub head_kpa: f64,
    /// How far ahead the curve is read: the water's transport time to the far stations, s.
    pub lead_s: f64,
    /// A station's reading older than this is not used, s.
    pub stale_after_s: f64,
    /// With fewer fresh stations than this share, the plant runs on its curve.
    pub min_fresh_share: f64,
}

impl Default for PlantSettings {
    fn default() -> Self {
        Self {
            curve: Curve::new(vec![(-10.0, 110.0), (18.0, 70.0)])
                .expect("the default plant curve is valid"),
            min_supply_c: 65.0,
            max_supply_c: 120.0,
            ramp_k_per_h: 10.0,
            valve_target_pct: 85.0,
            gain_k_per_h_per_pct: 0.4,
            min_dp_kpa: 50.0,
            dp_gain_kpa_per_h_per_pct: 2.0,
            switch_margin_kpa: 5.0,
            head_kpa: 300.0,
            lead_s: 3600.0,
            stale_after_s: 120.0,
            min_fresh_share: 0.5,
        }
    }
}

/// The `[plant]` config section, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantConfig {
    /// The plant's id in its topics (`{prefix}/plant/{id}/…`).
    pub id: String,
    /// Command the plant; `false` (`mode = "monitor"`): watch, store, alarm and plan only.
    pub control: bool,
    /// Seconds between two plans (and commands).
    pub period_s: f64,
    pub command_valid_for_s: u32,
    /// The plant's own telemetry older than this raises `plant_stale`, s.
    pub plant_stale_after_s: f64,
    pub settings: PlantSettings,
}

/// What the plant loop knows of one station.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    ts_ms: i64,
    /// Valve opening, % (plus the supply shortfall's points): its demand on the plant.
    demand: f64,
    dp_kpa: Option<f64>,
}

/// Why the plant is asked for what it is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// From the fleet: the trim on the curve.
    Fleet,
    /// Too few stations with fresh data: the curve alone.
    Curve,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Fleet => "fleet",
            Basis::Curve => "curve",
        }
    }
}

/// The plant's instruction for the next period.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlantPlan {
    pub supply_setpoint_c: f64,
    pub diff_pressure_setpoint_kpa: f64,
    /// A station id, or `plant`.
    pub pressure_point: String,
    pub basis: Basis,
    /// The most demanding station and its demand, %.
    pub critical: Option<(String, f64)>,
    /// The curve's supply at the outdoor temperature `lead_s` ahead, and the trim on it, K.
    pub curve_c: f64,
    pub trim_k: f64,
    pub fresh_stations: usize,
}

/// The plant loop.
#[derive(Debug, Clone)]
pub struct PlantController {
    pub settings: PlantSettings,
    stations: HashMap<StationId, Seen>,
    /// Of the whole fleet (stale ones included), for the fresh share.
    fleet_size: usize,
    trim_k: f64,
    /// What the pressure setpoint is raised above its minimum, kPa.
    dp_raise_kpa: f64,
    last_setpoint_c: Option<f64>,
    pressure_point: Option<StationId>,
    last_plan_ms: Option<i64>,
    /// Plant seconds per wall-clock second (> 1 only against an accelerated simulator): the
    /// trim and the ramp act in plant time.
    pub time_scale: f64,
}

impl PlantController {
    pub fn new(settings: PlantSettings, fleet_size: usize) -> Self {
        Self {
            settings,
            stations: HashMap::new(),
            fleet_size,
            trim_k: 0.0,
            dp_raise_kpa: 0.0,
            last_setpoint_c: None,
            pressure_point: None,
            last_plan_ms: None,
            time_scale: 1.0,
        }
    }

    /// Where the plant's supply is now, °C: the first plan ramps from there (bumpless).
    pub fn start_from(&mut self, supply_c: f64) {
        if self.last_setpoint_c.is_none() && supply_c.is_finite() {
            self.last_setpoint_c = Some(supply_c);
        }
    }

    /// A station's reading, with the supply setpoint it is being held to, if known.
    pub fn observe(&mut self, reading: &Reading, setpoint_c: Option<f64>) {
        let valve = reading.valve_pct.unwrap_or(0.0);
        let short = setpoint_c.map_or(0.0, |sp| (sp - reading.supply_temp_c - 0.5).max(0.0));
        let dp_kpa = reading
            .extra
            .iter()
            .find(|(k, _)| k == "primary_diff_pressure_kpa")
            .map(|(_, v)| *v);
        self.stations.insert(
            reading.station.clone(),
            Seen {
                ts_ms: reading.ts_ms,
                demand: valve + 10.0 * short,
                dp_kpa,
            },
        );
    }

    /// The plan at `now_ms`, outdoor `outdoor_c` now and `forecast` if the engine has one.
    pub fn plan(&mut self, now_ms: i64, outdoor_c: f64, forecast: Option<&Forecast>) -> PlantPlan {
        let s = &self.settings;
        let dt_h = self
            .last_plan_ms
            .map_or(0.0, |t| ((now_ms - t) as f64 / 3.6e6 * self.time_scale).clamp(0.0, 1.0));
        self.last_plan_ms = Some(now_ms);
        let stale_ms = (s.stale_after_s * 1000.0) as i64;
        let fresh: Vec<(&StationId, &Seen)> = self
            .stations
            .iter()
            .filter(|(_, v)| now_ms - v.ts_ms <= stale_ms)
            .collect();
        let ahead = forecast.map_or(outdoor_c, |f| f.at(now_ms + (s.lead_s * 1000.0) as i64).0);
        let curve_c = s.curve.supply_c(ahead);
        let enough = !fresh.is_empty()
            && fresh.len() as f64 >= s.min_fresh_share * self.fleet_size.max(1) as f64;
        let critical = fresh
            .iter()
            .max_by(|a, b| a.1.demand.total_cmp(&b.1.demand).then(b.0.cmp(a.0)))
            .map(|(id, v)| (id.as_str().to_owned(), v.demand));
        let previous = self.last_setpoint_c.unwrap_or(curve_c);
        let target = if enough {
            let demand = critical.as_ref().map_or(0.0, |c| c.1);
            let error = demand - s.valve_target_pct;
            let step = s.gain_k_per_h_per_pct * error * dt_h;
            let dp_step = s.dp_gain_kpa_per_h_per_pct * error * dt_h;
            // Anti-windup: no further into a limit the setpoint already sits at. At the top,
            // the pressure takes over; coming down, the pressure gives its raise back first.
            let at_max = previous >= s.max_supply_c - 1e-9 && step > 0.0;
            let at_min = previous <= s.min_supply_c + 1e-9 && step < 0.0;
            let head_room = (s.head_kpa - s.min_dp_kpa).max(0.0);
            if at_max || (step < 0.0 && self.dp_raise_kpa > 0.0) {
                self.dp_raise_kpa = (self.dp_raise_kpa + dp_step).clamp(0.0, head_room);
            } else if !at_min {
                self.trim_k += step;
            }
            // The trim never takes the setpoint beyond the limits by more than the ramp.
            self.trim_k = self.trim_k.clamp(
                s.min_supply_c - curve_c - 1.0,
                s.max_supply_c - curve_c + 1.0,
            );
            curve_c + self.trim_k
        } else {
            curve_c
        };
        let ramp = s.ramp_k_per_h * dt_h;
        let setpoint = (previous + (target - previous).clamp(-ramp, ramp))
            .clamp(s.min_supply_c, s.max_supply_c);
        self.last_setpoint_c = Some(setpoint);

        // The pressure point: the fresh station that sees the least, kept unless another sees
        // clearly less.
        let dp_of = |id: &StationId| {
            fresh
                .iter()
                .find(|(k, _)| *k == id)
                .and_then(|(_, v)| v.dp_kpa)
        };
        let lowest = fresh
            .iter()
            .filter_map(|(id, v)| Some(((*id).clone(), v.dp_kpa?)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let current = self
            .pressure_point
            .as_ref()
            .and_then(|p| Some((p.clone(), dp_of(p)?)));
        self.pressure_point = match (current, lowest) {
            (Some(cur), Some(low)) if low.1 < cur.1 - s.switch_margin_kpa => Some(low.0),
            (Some(cur), _) => Some(cur.0),
            (None, low) => low.map(|l| l.0),
        };
        let (point, dp) = match &self.pressure_point {
            Some(p) if enough => (p.as_str().to_owned(), s.min_dp_kpa + self.dp_raise_kpa),
            _ => ("plant".to_owned(), s.head_kpa),
        };
        PlantPlan {
            supply_setpoint_c: setpoint,
            diff_pressure_setpoint_kpa: dp,
            pressure_point: point,
            basis: if enough { Basis::Fleet } else { Basis::Curve },
            critical,
            curve_c,
            trim_k: self.trim_k,
            fresh_stations: fresh.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(id: &str, ts_ms: i64, valve: f64, supply: f64, dp: Option<f64>) -> Reading {
        Reading {
            station: StationId::new(id).unwrap(),
            ts_ms,
            supply_temp_c: supply,
            return_temp_c: supply - 15.0,
            flow_m3h: 100.0,
            heated_area_m2: None,
            outdoor_temp_c: Some(0.0),
            indoor_temp_c: None,
            valve_pct: Some(valve),
            pump_pct: Some(80.0),
            heat_kw: None,
            extra: dp
                .map(|d| vec![("primary_diff_pressure_kpa".to_owned(), d)])
                .unwrap_or_default(),
        }
    }

    #[test]
    fn the_supply_comes_down_while_every_valve_has_room_and_goes_up_when_one_runs_out() {
        let mut c = PlantController::new(PlantSettings::default(), 2);
        let curve = c.settings.curve.supply_c(0.0);
        let minute = 60_000;
        let mut last = 0.0;
        for k in 0..120 {
            let now = k * minute;
            c.observe(&reading("a", now, 50.0, 50.0, Some(120.0)), Some(50.0));
            c.observe(&reading("b", now, 60.0, 50.0, Some(80.0)), Some(50.0));
            let p = c.plan(now, 0.0, None);
            assert_eq!(p.basis, Basis::Fleet);
            assert_eq!(p.critical.as_ref().unwrap().0, "b");
            // The pressure held at the station that sees the least.
            assert_eq!(
                (p.pressure_point.as_str(), p.diff_pressure_setpoint_kpa),
                ("b", 50.0)
            );
            last = p.supply_setpoint_c;
        }
        // 25 points of room for two hours at 0.4 K/h per point, ramp-limited to 10 K/h.
        assert!(
            last < curve - 15.0 && last >= curve - 20.0 - 1e-9,
            "{last} from {curve}"
        );
        // Station a's valve runs out and its supply falls short: the supply turns upwards.
        let mut rising = last;
        for k in 120..150 {
            let now = k * minute;
            c.observe(&reading("a", now, 100.0, 47.0, Some(120.0)), Some(50.0));
            c.observe(&reading("b", now, 60.0, 50.0, Some(80.0)), Some(50.0));
            let p = c.plan(now, 0.0, None);
            assert_eq!(p.critical.as_ref().unwrap().0, "a");
            assert!(p.supply_setpoint_c >= rising - 1e-9);
            rising = p.supply_setpoint_c;
        }
        assert!(rising > last + 3.0, "{rising} from {last}");
    }

    #[test]
    fn stale_fleet_data_give_the_curve_and_the_fixed_head_back_at_the_ramp() {
        let mut c = PlantController::new(PlantSettings::default(), 2);
        let minute = 60_000;
        for k in 0..180 {
            c.observe(&reading("a", k * minute, 30.0, 50.0, Some(90.0)), None);
            c.observe(&reading("b", k * minute, 30.0, 50.0, Some(70.0)), None);
            c.plan(k * minute, 0.0, None);
        }
        let low = c.plan(180 * minute, 0.0, None);
        // Never below the minimum.
        assert!(low.supply_setpoint_c >= c.settings.min_supply_c);
        assert!(low.supply_setpoint_c < c.settings.curve.supply_c(0.0) - 10.0);
        // Nothing for five minutes: back to the curve, no faster than the ramp.
        let p = c.plan(185 * minute, 0.0, None);
        assert_eq!(p.basis, Basis::Curve);
        assert_eq!(
            (p.pressure_point.as_str(), p.diff_pressure_setpoint_kpa),
            ("plant", 300.0)
        );
        assert!(p.supply_setpoint_c - low.supply_setpoint_c <= 10.0 * 5.0 / 60.0 + 1e-9);
        assert!(p.supply_setpoint_c > low.supply_setpoint_c);
    }

    #[test]
    fn the_pressure_point_moves_only_to_a_station_that_sees_clearly_less() {
        let mut c = PlantController::new(PlantSettings::default(), 3);
        let at = |c: &mut PlantController, k: i64, a: f64, b: f64| {
            c.observe(&reading("a", k, 50.0, 50.0, Some(a)), None);
            c.observe(&reading("b", k, 50.0, 50.0, Some(b)), None);
            c.observe(&reading("c", k, 50.0, 50.0, None), None);
            c.plan(k, 0.0, None).pressure_point
        };
        assert_eq!(at(&mut c, 0, 60.0, 70.0), "a");
        assert_eq!(
            at(&mut c, 1000, 60.0, 57.0),
            "a",
            "3 kPa less is within the margin"
        );
        assert_eq!(at(&mut c, 2000, 60.0, 54.0), "b");
    }

    #[test]
    fn the_curve_is_read_at_the_outdoor_temperature_forecast_for_the_lead() {
        let mut c = PlantController::new(PlantSettings::default(), 1);
        let json = r#"[{"ts":0,"outdoor_temp_c":0.0},{"ts":3600000,"outdoor_temp_c":-10.0},{"ts":7200000,"outdoor_temp_c":-10.0}]"#;
        let f = Forecast::decode(json.as_bytes(), 0).unwrap();
        c.observe(&reading("a", 0, 85.0, 50.0, None), None);
        let p = c.plan(0, 0.0, Some(&f));
        assert_eq!(p.curve_c, 110.0, "the curve at −10 °C, an hour ahead");
    }

    #[test]
    fn beyond_the_supply_maximum_the_pressure_is_raised_and_given_back_first() {
        let settings = PlantSettings {
            max_supply_c: 112.0,
            ..PlantSettings::default()
        };
        let mut c = PlantController::new(settings, 1);
        let minute = 60_000;
        let plan = |c: &mut PlantController, k: i64, valve: f64| {
            c.observe(&reading("a", k * minute, valve, 50.0, Some(60.0)), None);
            c.plan(k * minute, -12.0, None)
        };
        let mut p = plan(&mut c, 0, 100.0);
        for k in 1..120 {
            p = plan(&mut c, k, 100.0);
        }
        assert_eq!(p.supply_setpoint_c, 112.0);
        assert!(
            p.diff_pressure_setpoint_kpa > 60.0,
            "{}",
            p.diff_pressure_setpoint_kpa
        );
        let raised = p.diff_pressure_setpoint_kpa;
        // Demand falls: the pressure comes down first, the supply holds.
        for k in 120..125 {
            p = plan(&mut c, k, 70.0);
        }
        assert!(p.diff_pressure_setpoint_kpa < raised);
        assert_eq!(p.supply_setpoint_c, 112.0);
    }
}
