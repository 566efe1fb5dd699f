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
//! - **Pressure.** Held at the station that sees the least (the pressure point moves to
//!   another station only when it sees `switch_margin_kpa` less than the current one), at
//!   `min_dp_kpa` plus what that station's own valve asks for: above `dp_valve_target_pct`
//!   (lower than the supply's target) the pressure rises, so a starved station gets pressure
//!   before the whole network gets hotter water; with the supply at its maximum the most
//!   demanding valve raises it too. Without pressure data from the stations, a fixed head at
//!   the plant.
//! - **Safety.** Never below `min_supply_c` (hot water needs it) nor above `max_supply_c`, no
//!   faster than `ramp_k_per_h`, the trim does not wind up against a limit, and when fewer than
//!   `min_fresh_share` of the stations have fresh data the plant goes back to its curve
//!   (bumpless: the trim is kept, not applied, and returns at the ramp).

use std::collections::HashMap;

use crate::control::curve::Curve;
use crate::control::delay::DelayEstimator;
use crate::model::{PlantReading, Reading, StationId};
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
    /// The most demanding station's valve is held here by the supply temperature, %.
    pub valve_target_pct: f64,
    /// The pressure point's valve is held here by the pressure (lower than
    /// `valve_target_pct`, so that a starved station gets pressure before the whole network
    /// gets hotter water), %.
    pub dp_valve_target_pct: f64,
    /// Trim speed: K per hour for each point of demand above or below the target.
    pub gain_k_per_h_per_pct: f64,
    /// The least differential pressure a station is to see, kPa.
    pub min_dp_kpa: f64,
    /// Pressure raise above `min_dp_kpa`: kPa per hour per point of the pressure point's
    /// valve above `dp_valve_target_pct` (and, with the supply at its maximum, of the most
    /// demanding valve above `valve_target_pct`), up to `head_kpa`.
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
    /// What a kWh of pump electricity is worth in kWh of heat (price or primary energy):
    /// the supply is lowered below the curve only while the heat loss that saves is worth
    /// more than the pumping it costs.
    pub electricity_weight: f64,
    /// The ground around the pipes, °C.
    pub ground_c: f64,
    /// The whole network's heat loss per kelvin of mean water temperature above the ground,
    /// kW/K (Σ over the pipes of length / thermal resistance, supply and return; or last
    /// season's loss over its degree-hours). Without it the loop cannot weigh the loss
    /// against the pumping, and lowers the supply as far as the valves allow.
    pub network_ua_kw_per_k: Option<f64>,
    /// The main pumps' wire-to-water efficiency.
    pub pump_efficiency: f64,
    /// The stations the plant can hold a differential pressure at (its remote pressure
    /// points); `None`: any station. With an empty list it holds `head_kpa` at its outlet.
    pub pressure_points: Option<Vec<StationId>>,
}

impl Default for PlantSettings {
    fn default() -> Self {
        Self {
            curve: Curve::new(vec![(-10.0, 110.0), (18.0, 70.0)])
                .expect("the default plant curve is valid"),
            min_supply_c: 65.0,
            max_supply_c: 120.0,
            ramp_k_per_h: 10.0,
            valve_target_pct: 90.0,
            dp_valve_target_pct: 80.0,
            gain_k_per_h_per_pct: 0.4,
            min_dp_kpa: 50.0,
            dp_gain_kpa_per_h_per_pct: 5.0,
            switch_margin_kpa: 5.0,
            head_kpa: 300.0,
            lead_s: 3600.0,
            stale_after_s: 120.0,
            min_fresh_share: 0.5,
            electricity_weight: 2.5,
            ground_c: 8.0,
            network_ua_kw_per_k: None,
            pump_efficiency: 0.7,
            pressure_points: None,
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
    /// The network's layout (`network = "…"`, the network file), for the control room.
    pub layout: Option<std::sync::Arc<crate::network::Layout>>,
}

/// What the plant loop knows of one station.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    ts_ms: i64,
    /// Valve opening, % (plus the supply shortfall's points): its demand on the plant.
    demand: f64,
    dp_kpa: Option<f64>,
    /// Its primary supply temperature, °C, if it reports it.
    primary_c: Option<f64>,
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
    /// How far ahead the curve was read, s: the transport time to the most demanding station
    /// as learned (`lead_learned`), else the configured `lead_s`.
    pub lead_s: f64,
    pub lead_learned: bool,
    /// The network's heat loss (UA × mean water temperature above ground) and the pumps'
    /// electricity, kW; and whether a lower supply pays for itself (`None`: not known: no
    /// plant reading or no UA).
    pub loss_kw: Option<f64>,
    pub pump_kw: Option<f64>,
    pub lower_pays: Option<bool>,
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
    /// The plant's last reading.
    plant: Option<PlantReading>,
    /// Plant seconds per wall-clock second (> 1 only against an accelerated simulator): the
    /// trim and the ramp act in plant time.
    pub time_scale: f64,
    /// Fresh stations as told ([`PlantController::set_fresh_count`]).
    fresh_count: Option<usize>,
    /// The transport time to the most demanding station, learned.
    delay: DelayEstimator,
}

/// A station's demand on the plant, %: its valve opening, plus ten points per kelvin its
/// supply is short of `setpoint_c` (beyond half a kelvin).
pub fn demand_of(reading: &Reading, setpoint_c: Option<f64>) -> f64 {
    let valve = reading.valve_pct.unwrap_or(0.0);
    let short = setpoint_c.map_or(0.0, |sp| (sp - reading.supply_temp_c - 0.5).max(0.0));
    valve + 10.0 * short
}

/// The differential pressure across a station on the primary side, kPa, if it reports it.
pub fn dp_of(reading: &Reading) -> Option<f64> {
    extra(reading, "primary_diff_pressure_kpa")
}

/// The primary supply temperature reaching a station, °C, if it reports it.
pub fn primary_of(reading: &Reading) -> Option<f64> {
    extra(reading, "primary_supply_temp_c")
}

fn extra(reading: &Reading, name: &str) -> Option<f64> {
    reading
        .extra
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
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
            plant: None,
            time_scale: 1.0,
            fresh_count: None,
            // Twelve hours seen, up to six hours of transport.
            delay: DelayEstimator::new(720, 360),
        }
    }

    /// The plant's reading. The first one is where the first plan ramps from (bumpless).
    pub fn observe_plant(&mut self, r: &PlantReading) {
        if self.last_setpoint_c.is_none() && r.supply_temp_c.is_finite() {
            self.last_setpoint_c = Some(r.supply_temp_c);
        }
        self.delay.plant(r.ts_ms, r.supply_temp_c);
        self.plant = Some(r.clone());
    }

    /// A station's reading, with the supply setpoint it is being held to, if known.
    pub fn observe(&mut self, reading: &Reading, setpoint_c: Option<f64>) {
        let (demand, dp) = (demand_of(reading, setpoint_c), dp_of(reading));
        let primary = primary_of(reading);
        self.observe_demand(
            reading.station.clone(),
            reading.ts_ms,
            (demand, dp, primary),
        );
    }

    /// A station's demand (%), differential pressure (kPa) and primary supply (°C) at
    /// `ts_ms`, as another instance of a cluster summed it up.
    pub fn observe_demand(
        &mut self,
        id: StationId,
        ts_ms: i64,
        (demand, dp_kpa, primary_c): (f64, Option<f64>, Option<f64>),
    ) {
        self.stations.insert(
            id,
            Seen {
                ts_ms,
                demand,
                dp_kpa,
                primary_c,
            },
        );
    }

    /// How many stations have fresh data, when the loop is told rather than counts (a
    /// cluster's owner sees only each partition's most demanding and worst-off station).
    pub fn set_fresh_count(&mut self, n: Option<usize>) {
        self.fresh_count = n;
    }

    /// The plan at `now_ms`, outdoor `outdoor_c` now and `forecast` if the engine has one.
    pub fn plan(&mut self, now_ms: i64, outdoor_c: f64, forecast: Option<&Forecast>) -> PlantPlan {
        let s = &self.settings;
        let dt_h = self.last_plan_ms.map_or(0.0, |t| {
            ((now_ms - t) as f64 / 3.6e6 * self.time_scale).clamp(0.0, 1.0)
        });
        self.last_plan_ms = Some(now_ms);
        let stale_ms = (s.stale_after_s * 1000.0) as i64;
        let fresh: Vec<(StationId, Seen)> = self
            .stations
            .iter()
            .filter(|(_, v)| now_ms - v.ts_ms <= stale_ms)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let most = fresh
            .iter()
            .max_by(|a, b| a.1.demand.total_cmp(&b.1.demand).then(b.0.cmp(&a.0)));
        let critical = most.map(|(id, v)| (id.as_str().to_owned(), v.demand));
        // The water's transport time to the most demanding station, learned where it shows.
        if let Some((id, v)) = most {
            if let Some(c) = v.primary_c {
                self.delay.station(id, v.ts_ms, c);
            }
        }
        let learned = self.delay.estimate(now_ms);
        let s = &self.settings;
        let lead_s = learned.map_or(s.lead_s, |e| e.0);
        let ahead = forecast.map_or(outdoor_c, |f| f.at(now_ms + (lead_s * 1000.0) as i64).0);
        let curve_c = s.curve.supply_c(ahead);
        let fresh_n = self.fresh_count.unwrap_or(fresh.len());
        let enough = !fresh.is_empty()
            && fresh_n as f64 >= s.min_fresh_share * self.fleet_size.max(1) as f64;
        let (loss_kw, pump_kw, lower_pays) = self.costs(now_ms);
        let s = &self.settings;
        // The pressure point: the fresh station that sees the least, kept unless another sees
        // clearly less.
        let seen_of = |id: &StationId| fresh.iter().find(|(k, _)| k == id).map(|(_, v)| *v);
        let may_hold = |id: &StationId| s.pressure_points.as_ref().is_none_or(|p| p.contains(id));
        let lowest = fresh
            .iter()
            .filter(|(id, _)| may_hold(id))
            .filter_map(|(id, v)| Some((id.clone(), v.dp_kpa?)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let current = self
            .pressure_point
            .as_ref()
            .and_then(|p| Some((p.clone(), seen_of(p)?.dp_kpa?)));
        self.pressure_point = match (current, lowest) {
            (Some(cur), Some(low)) if low.1 < cur.1 - s.switch_margin_kpa => Some(low.0),
            (Some(cur), _) => Some(cur.0),
            (None, low) => low.map(|l| l.0),
        };
        let point_demand = self
            .pressure_point
            .as_ref()
            .and_then(seen_of)
            .map(|v| v.demand);

        let previous = self.last_setpoint_c.unwrap_or(curve_c);
        let target = if enough {
            let demand = critical.as_ref().map_or(0.0, |c| c.1);
            let step = s.gain_k_per_h_per_pct * (demand - s.valve_target_pct) * dt_h;
            // Anti-windup: no further into a limit the setpoint already sits at.
            let at_max = previous >= s.max_supply_c - 1e-6 && step > 0.0;
            let at_min = previous <= s.min_supply_c + 1e-6 && step < 0.0;
            if !(at_max || at_min) {
                self.trim_k += step;
            }
            // Below the curve only while the loss it saves is worth the pumping it costs.
            if lower_pays == Some(false) {
                self.trim_k = self.trim_k.max(0.0);
            }
            // The trim never takes the setpoint beyond the limits by more than the ramp.
            self.trim_k = self.trim_k.clamp(
                s.min_supply_c - curve_c - 1.0,
                s.max_supply_c - curve_c + 1.0,
            );
            // The pressure: the point's own valve held at its (lower) target, and above the
            // supply's maximum the most demanding valve as well.
            let mut error = point_demand.map_or(0.0, |d| d - s.dp_valve_target_pct);
            if at_max {
                error = error.max(demand - s.valve_target_pct);
            }
            let head_room = (s.head_kpa - s.min_dp_kpa).max(0.0);
            self.dp_raise_kpa = (self.dp_raise_kpa + s.dp_gain_kpa_per_h_per_pct * error * dt_h)
                .clamp(0.0, head_room);
            curve_c + self.trim_k
        } else {
            curve_c
        };
        let ramp = s.ramp_k_per_h * dt_h;
        let setpoint = (previous + (target - previous).clamp(-ramp, ramp))
            .clamp(s.min_supply_c, s.max_supply_c);
        self.last_setpoint_c = Some(setpoint);
        if enough {
            // Back-calculation: the trim is what the ramp and the limits let through.
            self.trim_k = setpoint - curve_c;
        }
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
            fresh_stations: fresh_n,
            lead_s,
            lead_learned: learned.is_some(),
            loss_kw,
            pump_kw,
            lower_pays,
        }
    }

    /// The network's loss and pump electricity now, and whether lowering the supply pays:
    /// 1 K off the supply takes about ½ K off the mean water temperature, so the loss falls by
    /// UA / 2 per K (UA: `network_ua_kw_per_k`); the flow grows by 1 / ΔT per K and the
    /// pumps' power with the flow's cube, by 3 · pump / ΔT per K, weighed by
    /// `electricity_weight`. Unknown (`None`) without UA or a fresh plant reading.
    fn costs(&self, now_ms: i64) -> (Option<f64>, Option<f64>, Option<bool>) {
        let s = &self.settings;
        let stale_ms = (s.stale_after_s * 1000.0) as i64;
        let Some(p) = self.plant.as_ref().filter(|p| now_ms - p.ts_ms <= stale_ms) else {
            return (None, None, None);
        };
        let (supply, ret, flow, dp) = (
            p.supply_temp_c,
            p.return_temp_c,
            p.flow_m3h,
            p.diff_pressure_kpa,
        );
        let pump = dp.max(0.0) * flow / 3600.0 / s.pump_efficiency.max(0.05);
        let Some(ua) = s.network_ua_kw_per_k else {
            return (None, Some(pump), None);
        };
        let loss = ua * ((supply + ret) / 2.0 - s.ground_c).max(0.0);
        let delta_t = (supply - ret).max(5.0);
        let loss_per_k = ua / 2.0;
        let pump_per_k = 3.0 * pump / delta_t * s.electricity_weight;
        (Some(loss), Some(pump), Some(loss_per_k > pump_per_k))
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
    fn the_pressure_is_held_only_where_the_plant_has_a_pressure_point() {
        let only_b = PlantSettings {
            pressure_points: Some(vec![StationId::new("b").unwrap()]),
            ..PlantSettings::default()
        };
        let none = PlantSettings {
            pressure_points: Some(vec![]),
            ..PlantSettings::default()
        };
        for (settings, point, dp) in [(only_b, "b", 50.0), (none, "plant", 300.0)] {
            let mut c = PlantController::new(settings, 2);
            c.observe(&reading("a", 0, 50.0, 50.0, Some(55.0)), None);
            c.observe(&reading("b", 0, 50.0, 50.0, Some(70.0)), None);
            let p = c.plan(0, 0.0, None);
            assert_eq!(p.pressure_point, point);
            assert_eq!(p.diff_pressure_setpoint_kpa, dp);
        }
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
    fn a_starved_pressure_point_and_a_supply_at_its_maximum_raise_the_pressure() {
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
        assert!((p.supply_setpoint_c - 112.0).abs() < 1e-6);
        assert!(
            p.diff_pressure_setpoint_kpa > 60.0,
            "{}",
            p.diff_pressure_setpoint_kpa
        );
        let raised = p.diff_pressure_setpoint_kpa;
        // Demand falls below both targets: the pressure and the supply come down.
        for k in 120..125 {
            p = plan(&mut c, k, 70.0);
        }
        assert!(p.diff_pressure_setpoint_kpa < raised);
        assert!(p.supply_setpoint_c < 112.0);
    }

    #[test]
    fn the_curve_is_read_one_learned_transport_time_ahead() {
        let mut c = PlantController::new(PlantSettings::default(), 1);
        let supply = |minute: i64| 90.0 + 5.0 * ((minute as f64) / 53.0).sin();
        let mut p = None;
        for minute in 0..600 {
            let now = minute * 60_000;
            c.observe_plant(&PlantReading {
                ts_ms: now,
                supply_temp_c: supply(minute),
                return_temp_c: 50.0,
                flow_m3h: 1000.0,
                heat_kw: 40_000.0,
                diff_pressure_kpa: 300.0,
                pump_pct: 60.0,
                units: Default::default(),
                applied: None,
            });
            let mut r = reading("a", now, 85.0, 50.0, Some(80.0));
            r.extra
                .push(("primary_supply_temp_c".into(), supply(minute - 40) - 2.0));
            c.observe(&r, Some(50.0));
            p = Some(c.plan(now, 0.0, None));
        }
        let p = p.unwrap();
        assert!(p.lead_learned, "{p:?}");
        assert!((p.lead_s - 2400.0).abs() <= 60.0, "{}", p.lead_s);
    }
}
