//! Named, seeded scenarios run offline at full speed, and the KPIs of a run computed from the
//! simulator's ground truth (the plant's own heat, indoor temperature and pump speed).
//!
//! A scenario fixes the weather and the fleet (from the seed); a [`Policy`] says who drives
//! the stations: their own PLC curve, the stated baseline (the same fixed curve with the pump
//! at constant full speed, as many old stations run), or an external controller that speaks
//! the MQTT contract's JSON (telemetry in, command out) — how heatgrid's controller is put in
//! the loop without a broker. Nothing here does I/O; [`run`] is as fast as the model.

use std::f64::consts::PI;

use serde::Serialize;

use crate::kpis::sample;
pub use crate::kpis::{Sample, StationKpis};
use crate::network::district::Networked;
pub use crate::network::district::{Loads, NetworkKpis};
use crate::station::{Command, SimStation};
pub use crate::weather::{Disturbance, Scenario};
use crate::SimConfig;

/// Indoor comfort band, °C (domain.md: 18 °C design minimum; above 22 °C is overheating).
pub const COMFORT_LOW_C: f64 = heatgrid_kpi::COMFORT_LOW_C;
pub const COMFORT_HIGH_C: f64 = heatgrid_kpi::COMFORT_HIGH_C;
/// Simulated time zero (midnight of the scenario's day) as Unix ms: 2026-01-15T00:00:00Z.
/// Telemetry `ts` and command validity count from it, so a controller sees plausible times.
pub const DAY_START_MS: i64 = 1_768_435_200_000;
/// Base temperature of the heating degree-days, °C.
pub const DEGREE_DAY_BASE_C: f64 = heatgrid_kpi::DEGREE_DAY_BASE_C;

/// Who drives the stations during a run.
pub enum Policy<'a> {
    /// Each station's own PLC: fixed heating curve, PI on the valve, pump at 90 %.
    Local,
    /// The stated baseline: the same fixed curve with the pump at constant full speed.
    Baseline,
    /// An external controller: called with (station id, telemetry JSON, time in ms) at every
    /// telemetry period; a returned command JSON is delivered to that station (contract §2.2).
    Controller(&'a mut dyn FnMut(&str, &str, i64) -> Option<String>),
}

impl std::fmt::Debug for Policy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Policy<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Local => "local",
            Policy::Baseline => "baseline",
            Policy::Controller(_) => "controller",
        }
    }
}

/// The primary network a run's stations sit on, and who runs its plant.
pub struct NetworkRun<'a> {
    pub file: &'a crate::network::file::NetworkFile,
    pub loads: Loads,
    /// Pipe cells, m.
    pub cell_m: f64,
    pub plant: PlantPolicy<'a>,
}

/// Who drives the plant during a run on a network.
pub enum PlantPolicy<'a> {
    /// Its own PLC: the outdoor curve and a constant head at its outlet (the baseline).
    Own,
    /// An external controller: called with (plant telemetry JSON, time in ms) at every
    /// telemetry period; a returned command JSON goes to the plant (contract §7).
    Controller(&'a mut dyn FnMut(&str, i64) -> Option<String>),
}

impl std::fmt::Debug for PlantPolicy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PlantPolicy::Own => "own",
            PlantPolicy::Controller(_) => "controller",
        })
    }
}

impl std::fmt::Debug for NetworkRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkRun")
            .field("loads", &self.loads)
            .field("cell_m", &self.cell_m)
            .field("plant", &self.plant)
            .finish_non_exhaustive()
    }
}

/// A whole run: the scenario, the policy, every station and the district totals.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub scenario: Scenario,
    pub disturbance: Disturbance,
    pub fleet: crate::Fleet,
    /// How far the baseline's curve was raised for the coldest station, K (an unbalanced
    /// fleet's baseline; see [`raise_for_coldest_k`]).
    pub baseline_raise_k: f64,
    /// Hours the policy ran before the measured window (after the local warm-up).
    pub lead_h: f64,
    pub policy: &'static str,
    pub seed: u64,
    pub hours: f64,
    /// Heating degree-days over the run (base 18 °C).
    pub degree_days: f64,
    pub heat_gj: f64,
    pub heat_metered_gj: f64,
    pub heat_gj_per_degree_day: f64,
    pub pump_full_speed_h: f64,
    /// Share of station-hours with indoor 18–22 °C, below, above.
    pub indoor_comfort: f64,
    pub indoor_under: f64,
    pub indoor_over: f64,
    /// Mean over stations of each one's time-mean indoor temperature, °C: heat use follows it
    /// (loss ∝ indoor − outdoor), so compare heat only beside it.
    pub indoor_mean_c: f64,
    /// Share of station-time with supply within ±1 K of its setpoint.
    pub supply_within_1k: f64,
    /// The district's largest heat over one clock hour of the run, MW (what the production
    /// plant must cover).
    pub peak_hourly_mw: f64,
    /// The district's flow-weighted return temperature, °C (what the primary network carries
    /// back: lower means less water pumped and less heat lost).
    pub return_flow_weighted_c: f64,
    /// Degree-hours of indoor temperature below 18 and below 20 °C, summed over the stations.
    pub degree_h_below_18: f64,
    pub degree_h_below_20: f64,
    /// Commands the stations accepted and refused (a [`Policy::Controller`] run).
    pub commands_accepted: u64,
    pub commands_refused: u64,
    pub stations: Vec<StationKpis>,
    /// The network's figures, for a run on one.
    pub network: Option<NetworkKpis>,
    /// District and first-station state every [`SERIES_STEP_S`] (for charts).
    pub series: Vec<SeriesPoint>,
}

/// Interval of [`RunReport::series`], simulated seconds.
pub const SERIES_STEP_S: f64 = 900.0;

/// One point of a run's time series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesPoint {
    pub t_h: f64,
    pub outdoor_c: f64,
    /// Heat through every station's exchanger, MW.
    pub district_heat_mw: f64,
    pub indoor_min_c: f64,
    pub indoor_mean_c: f64,
    pub indoor_max_c: f64,
    /// The first station: supply, the setpoint in force, valve and pump.
    pub supply_c: f64,
    pub setpoint_c: f64,
    pub valve_pct: f64,
    pub pump_pct: f64,
}

/// Runs `scenario` for `hours` with `cfg`'s fleet (stations, seed, steps, telemetry period;
/// its weather fields are replaced by the scenario's) after `cfg.warmup_h` of local control.
/// Simulated time stands in for the wall clock: telemetry `ts` and command validity are in
/// simulated milliseconds from midnight.
pub fn run(cfg: &SimConfig, scenario: Scenario, hours: f64, policy: Policy) -> RunReport {
    run_with(cfg, scenario, Disturbance::None, hours, policy)
}

/// [`run`] with a [`Disturbance`] laid over the scenario.
pub fn run_with(
    cfg: &SimConfig,
    scenario: Scenario,
    disturbance: Disturbance,
    hours: f64,
    policy: Policy,
) -> RunReport {
    run_on(cfg, scenario, disturbance, hours, policy, None)
        .expect("a run without a network cannot fail")
}

/// [`run_with`] with the stations on a primary network: their primary supply, flow and
/// pressure come from it, the plant run by `net.plant`; fails when the network file does not
/// fit the fleet.
pub fn run_on(
    cfg: &SimConfig,
    scenario: Scenario,
    disturbance: Disturbance,
    hours: f64,
    mut policy: Policy,
    net: Option<NetworkRun>,
) -> Result<RunReport, String> {
    let (mut stations, baseline_raise_k) = prepare(cfg, scenario, disturbance, &policy);
    let lead_s0 = cfg.lead_h.max(0.0) * 3600.0;
    let (mut network, mut plant_policy) = match net {
        Some(n) => {
            let out = scenario.outdoor_c(-lead_s0);
            let mut w = Networked::new(n.file, &stations, n.loads, n.cell_m, out)?;
            // The network's pipes settle under the plant's own curve for a day before.
            w.settle(&mut stations, -lead_s0 - 86_400.0, 24.0, |t| {
                scenario.outdoor_c(t)
            });
            (Some(w), Some(n.plant))
        }
        None => (None, None),
    };
    let hit = disturbance.affected(stations.len());
    let lead_s = cfg.lead_h.max(0.0) * 3600.0;
    let mut kpis: Vec<StationKpis> = stations
        .iter()
        .map(|s| StationKpis::new(&s.id, s.plant.p.area_m2))
        .collect();
    // The lead (t < 0) runs under the policy and is not measured.
    let (mut t, mut next_telemetry, mut degree_s) = (-lead_s, -lead_s, 0.0);
    let (mut series, mut next_point) = (Vec::new(), 0.0);
    let (mut commands_before, mut area_changed) = (None, false);
    let mut district = District::default();
    let end = hours * 3600.0;
    while t < end - 1e-9 {
        let now_ms = DAY_START_MS + (t * 1000.0).round() as i64;
        let outdoor = scenario.outdoor_c(t);
        let measured = t >= -1e-9;
        if measured && commands_before.is_none() {
            commands_before = Some(command_counts(&stations));
        }
        if measured && t + 1e-9 >= next_point {
            next_point += SERIES_STEP_S;
            series.push(series_point(t, outdoor, &stations));
        }
        let sun = scenario.solar_w_m2(t);
        for s in &mut stations {
            s.plant.solar_w_m2 = sun;
        }
        disturbance.apply(t, &mut stations[..hit], &mut kpis[..hit], &mut area_changed);
        if t + 1e-9 >= next_telemetry {
            next_telemetry += cfg.telemetry_period_s;
            let link_down =
                disturbance == Disturbance::CommsLoss && (8.0..14.0).contains(&(t / 3600.0));
            let metered = measured.then(|| cfg.telemetry_period_s.min(end - t));
            let cut_off = if link_down { hit } else { 0 };
            let ctx = (now_ms, outdoor, metered, cut_off);
            exchange(&mut stations, &mut kpis, &mut policy, ctx);
            if let (Some(w), Some(PlantPolicy::Controller(f))) = (&mut network, &mut plant_policy) {
                let tm = serde_json::to_string(&w.telemetry(now_ms)).unwrap_or_default();
                if let Some(cmd) = f(&tm, now_ms) {
                    let _ = w.on_command(&cmd, now_ms);
                }
            }
        }
        let mut dt = cfg.step_s.min((next_telemetry - t).max(1e-3)).min(end - t);
        if !measured {
            dt = dt.min(-t); // land exactly on the start of the measured window
        }
        if let Some(w) = &mut network {
            w.before(dt, t, outdoor, now_ms, &mut stations);
        }
        for (s, k) in stations.iter_mut().zip(&mut kpis) {
            s.step(dt, outdoor, now_ms);
            if measured {
                let smp = sample(s, outdoor);
                k.record(dt, &smp);
                district.record(t, dt, &smp);
            }
        }
        if let Some(w) = &mut network {
            w.after(dt, t, &stations, measured);
        }
        if measured {
            degree_s += (DEGREE_DAY_BASE_C - outdoor).max(0.0) * dt;
        }
        t += dt;
    }
    series.push(series_point(t, scenario.outdoor_c(t), &stations));
    let (accepted, refused) = command_counts(&stations);
    let before = commands_before.unwrap_or_default();
    Ok(RunReport {
        scenario,
        disturbance,
        fleet: cfg.fleet,
        baseline_raise_k,
        lead_h: cfg.lead_h.max(0.0),
        policy: policy.name(),
        seed: cfg.seed,
        hours,
        commands_accepted: accepted - before.0,
        commands_refused: refused - before.1,
        series,
        peak_hourly_mw: district.peak_hourly_mw(),
        return_flow_weighted_c: district.return_flow_weighted_c(),
        network: network.as_mut().map(Networked::finish),
        ..RunReport::of_stations(kpis, degree_s / 86_400.0)
    })
}

/// The district's sums over a run: heat per clock hour, and flow × return.
#[derive(Debug, Clone, Default, PartialEq)]
struct District {
    /// (hour index, heat in that hour so far, J), and the largest closed hour's, J.
    hour: (i64, f64),
    peak_j: f64,
    flow_return: f64,
    flow: f64,
}

impl District {
    /// Accounts one station's `dt` seconds from run time `t` in state `s`.
    fn record(&mut self, t: f64, dt: f64, s: &Sample) {
        let h = (t / 3600.0).floor() as i64;
        if h != self.hour.0 {
            self.peak_j = self.peak_j.max(self.hour.1);
            self.hour = (h, 0.0);
        }
        self.hour.1 += s.heat_w * dt;
        self.flow_return += s.flow_kgs * s.return_c * dt;
        self.flow += s.flow_kgs * dt;
    }

    /// The largest hourly heat, MW (the running hour included: a run shorter than an hour
    /// has only that one).
    fn peak_hourly_mw(&self) -> f64 {
        self.peak_j.max(self.hour.1) / 3600.0 / 1e6
    }

    fn return_flow_weighted_c(&self) -> f64 {
        if self.flow > 0.0 {
            self.flow_return / self.flow
        } else {
            0.0
        }
    }
}

/// The fleet for a run: built, the disturbance's undersized exchangers, the baseline's pumps
/// at full speed and (unbalanced fleet) its curve raised for the coldest station; then warmed
/// up in the scenario's weather of the day before, under the policy's local control, with the
/// buildings' thermal mass cut tenfold so that their indoor temperatures settle where the
/// local curve holds them (the 30–50 h building time constants would otherwise leave the run
/// drifting from the start value). Returns the stations and the baseline's raise, K.
fn prepare(
    cfg: &SimConfig,
    scenario: Scenario,
    disturbance: Disturbance,
    policy: &Policy,
) -> (Vec<SimStation>, f64) {
    let mut stations = cfg.build_stations();
    let hit = disturbance.affected(stations.len());
    if disturbance == Disturbance::UndersizedHx {
        for s in stations.iter_mut().take(hit) {
            s.plant.p.hx_ua_w_k *= 0.5;
        }
    }
    let mut baseline_raise_k = 0.0;
    if matches!(policy, Policy::Baseline) {
        for s in &mut stations {
            s.local.pump = 1.0;
        }
        if cfg.fleet == crate::Fleet::Unbalanced {
            // The day before's mean outdoor temperature, as the operator tuned for it.
            let day_before = (0..96)
                .map(|k| scenario.outdoor_c(-86_400.0 + k as f64 * 900.0))
                .sum::<f64>()
                / 96.0;
            baseline_raise_k = raise_for_coldest_k(&stations, day_before, COMFORT_LOW_C);
            for s in &mut stations {
                for point in &mut s.local.curve {
                    point.1 += baseline_raise_k;
                }
            }
        }
    }
    let lead_s = cfg.lead_h.max(0.0) * 3600.0;
    for s in &mut stations {
        s.plant.p.building_tau_h /= 10.0;
    }
    cfg.warm_up_in(&mut stations, |t| scenario.outdoor_c(t - lead_s + 86_400.0));
    for s in &mut stations {
        s.plant.p.building_tau_h *= 10.0;
    }
    (stations, baseline_raise_k)
}

/// One telemetry instant: every station reports (metered heat counted for `metered` seconds
/// when measuring); the first `cut_off` stations' link is down, the others get the policy's
/// answer. `ctx` = (simulated now ms, outdoor °C, metered span, cut-off).
fn exchange(
    stations: &mut [SimStation],
    kpis: &mut [StationKpis],
    policy: &mut Policy,
    ctx: (i64, f64, Option<f64>, usize),
) {
    let (now_ms, outdoor, metered, cut_off) = ctx;
    for (i, (s, k)) in stations.iter_mut().zip(kpis).enumerate() {
        let tm = s.telemetry(now_ms, outdoor);
        if let Some(span) = metered {
            k.record_metered(span, tm.flow_m3h, tm.supply_temp_c, tm.return_temp_c);
        }
        if i < cut_off {
            continue;
        }
        if let Policy::Controller(f) = policy {
            let answer = f(&s.id, &tm.to_json(), now_ms);
            if let Some(cmd) = answer.and_then(|j| serde_json::from_str::<Command>(&j).ok()) {
                let _ = s.on_command(cmd, now_ms);
            }
        }
    }
}

impl Disturbance {
    /// Lays the disturbance over `hit` (its stations, with their KPIs) at simulated time `t`;
    /// `area_changed` records that the area change (once, at noon) happened.
    fn apply(
        self,
        t: f64,
        hit: &mut [SimStation],
        kpis: &mut [StationKpis],
        area_changed: &mut bool,
    ) {
        match self {
            Disturbance::SensorDrift => {
                let drift = (0.5 * (t / 3600.0 - 6.0)).clamp(0.0, 5.0);
                for s in hit {
                    s.sensor_offset_k = drift;
                }
            }
            Disturbance::AreaChange if !*area_changed && t >= 12.0 * 3600.0 => {
                *area_changed = true;
                for (s, k) in hit.iter_mut().zip(kpis) {
                    let p = &mut s.plant.p;
                    p.area_m2 *= 1.3;
                    p.building_ua_w_k *= 1.3;
                    p.radiator_design_w *= 1.3;
                    k.area_m2 = p.area_m2;
                }
            }
            Disturbance::Gains => {
                let hour = (t / 3600.0).rem_euclid(24.0);
                let sun = if (8.0..16.0).contains(&hour) {
                    12.0 * (PI * (hour - 8.0) / 8.0).sin()
                } else {
                    0.0
                };
                for s in hit {
                    s.plant.gains_w = (3.0 + sun) * s.plant.p.area_m2;
                }
            }
            _ => {}
        }
    }
}

impl RunReport {
    /// The district figures of a run from its stations' KPIs (finished here) and its
    /// degree-days; the run's identity and command counts are left for the caller.
    fn of_stations(mut kpis: Vec<StationKpis>, degree_days: f64) -> Self {
        for k in &mut kpis {
            k.finish();
        }
        let n = kpis.len().max(1) as f64;
        let mean = |f: fn(&StationKpis) -> f64| kpis.iter().map(f).sum::<f64>() / n;
        let heat_gj: f64 = kpis.iter().map(|k| k.heat_gj).sum();
        RunReport {
            scenario: Scenario::WinterDay,
            disturbance: Disturbance::None,
            fleet: crate::Fleet::default(),
            baseline_raise_k: 0.0,
            lead_h: 0.0,
            policy: "",
            seed: 0,
            hours: 0.0,
            degree_days,
            heat_gj,
            heat_metered_gj: kpis.iter().map(|k| k.heat_metered_gj).sum(),
            heat_gj_per_degree_day: heat_gj / degree_days.max(f64::MIN_POSITIVE),
            pump_full_speed_h: kpis.iter().map(|k| k.pump_full_speed_h).sum(),
            indoor_comfort: mean(|k| k.indoor_comfort),
            indoor_under: mean(|k| k.indoor_under),
            indoor_over: mean(|k| k.indoor_over),
            indoor_mean_c: mean(|k| k.indoor_mean_c),
            supply_within_1k: mean(|k| k.supply_within_1k),
            peak_hourly_mw: 0.0,
            return_flow_weighted_c: 0.0,
            degree_h_below_18: kpis.iter().map(|k| k.degree_h_below_18).sum(),
            degree_h_below_20: kpis.iter().map(|k| k.degree_h_below_20).sum(),
            commands_accepted: 0,
            commands_refused: 0,
            stations: kpis,
            network: None,
            series: Vec::new(),
        }
    }
}

/// The least raise of the stations' common curve (K, to 0.01 K) that brings the coldest of
/// them to `indoor_c` in steady state at outdoor `outdoor_c` with the pumps at full speed: how
/// an unbalanced district is run without coordination — the whole curve goes up until the
/// coldest building stops complaining, and the rest overheat (`domain.md` §2.5).
pub fn raise_for_coldest_k(stations: &[SimStation], outdoor_c: f64, indoor_c: f64) -> f64 {
    let coldest = |raise: f64| {
        stations
            .iter()
            .map(|s| {
                let p = &s.plant.p;
                let supply = s.local.setpoint_c(outdoor_c) + raise;
                crate::plant::steady_indoor_c(p, p.pump_max_kgs, supply, outdoor_c)
            })
            .fold(f64::INFINITY, f64::min)
    };
    if coldest(0.0) >= indoor_c {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0, 40.0);
    while hi - lo > 0.01 {
        let mid = 0.5 * (lo + hi);
        if coldest(mid) >= indoor_c {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    (hi * 100.0).round() / 100.0
}

/// Commands accepted and refused by the fleet so far.
fn command_counts(stations: &[SimStation]) -> (u64, u64) {
    stations.iter().fold((0, 0), |(a, r), s| {
        (
            a + s.commands_received - s.commands_refused,
            r + s.commands_refused,
        )
    })
}

fn series_point(t: f64, outdoor_c: f64, stations: &[SimStation]) -> SeriesPoint {
    let n = stations.len().max(1) as f64;
    let indoor = stations.iter().map(|s| s.plant.indoor_c);
    let first = stations.first();
    let of_first = |f: &dyn Fn(&SimStation) -> f64| first.map_or(f64::NAN, f);
    SeriesPoint {
        t_h: t / 3600.0,
        outdoor_c,
        district_heat_mw: stations.iter().map(|s| s.plant.heat_w).sum::<f64>() / 1e6,
        indoor_min_c: indoor.clone().fold(f64::INFINITY, f64::min),
        indoor_mean_c: indoor.clone().sum::<f64>() / n,
        indoor_max_c: indoor.fold(f64::NEG_INFINITY, f64::max),
        supply_c: of_first(&|s| s.plant.supply_c),
        setpoint_c: of_first(&|s| s.setpoint_in_force_c(outdoor_c)),
        valve_pct: of_first(&|s| s.plant.valve * 100.0),
        pump_pct: of_first(&|s| s.plant.pump * 100.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kpis_of_a_hand_computed_day() {
        let mut k = StationKpis::new("s", 10_000.0);
        let base = Sample {
            heat_w: 100_000.0,
            supply_c: 50.0,
            return_c: 40.0,
            setpoint_c: 50.5,
            flow_kgs: 2.0,
            valve: 0.5,
            pump: 0.5,
            indoor_c: 17.0,
        };
        // One hour each: cold with the valve shut, comfortable, overheated with it wide open.
        k.record(3600.0, &Sample { valve: 0.0, ..base });
        k.record(
            3600.0,
            &Sample {
                indoor_c: 20.0,
                setpoint_c: 52.0,
                ..base
            },
        );
        k.record(
            3600.0,
            &Sample {
                indoor_c: 23.0,
                valve: 1.0,
                heat_w: 400_000.0,
                return_c: 30.0,
                flow_kgs: 4.0,
                ..base
            },
        );
        k.finish();
        // Heat: 0.1 MW × 2 h + 0.4 MW × 1 h = 0.6 MWh = 2.16 GJ.
        assert!((k.heat_gj - 2.16).abs() < 1e-9, "{}", k.heat_gj);
        assert!((k.heat_gj_per_m2 - 2.16e-4).abs() < 1e-12);
        // 2.16e9 J / 10,800 s / 10,000 m² = 20 W/m².
        assert!((k.mean_w_m2 - 20.0).abs() < 1e-9);
        // Pump at half speed for 3 h = 3 × 0.125 full-speed hours.
        assert!((k.pump_full_speed_h - 0.375).abs() < 1e-12);
        assert!((k.valve_saturated_h - 2.0).abs() < 1e-12);
        assert!((k.supply_error_mean_k - (0.5 + 2.0 + 0.5) / 3.0).abs() < 1e-12);
        assert!((k.supply_within_1k - 2.0 / 3.0).abs() < 1e-12);
        assert!((k.delta_t_mean_k - (10.0 + 10.0 + 20.0) / 3.0).abs() < 1e-12);
        // Flow-weighted return: (2·40 + 2·40 + 4·30) / 8 = 35 °C.
        assert!((k.return_flow_weighted_c - 35.0).abs() < 1e-12);
        for share in [k.indoor_under, k.indoor_comfort, k.indoor_over] {
            assert!((share - 1.0 / 3.0).abs() < 1e-12);
        }
        assert_eq!((k.indoor_min_c, k.indoor_max_c), (17.0, 23.0));
        assert!((k.indoor_mean_c - 20.0).abs() < 1e-12);
        // One hour at 17 °C: 1 K·h below 18, 3 K·h below 20; 20 °C and 23 °C add nothing.
        assert!((k.degree_h_below_18 - 1.0).abs() < 1e-12);
        assert!((k.degree_h_below_20 - 3.0).abs() < 1e-12);
    }

    #[test]
    fn the_district_peak_hour_and_flow_weighted_return() {
        let mut d = District::default();
        let s = |heat_w: f64, flow_kgs: f64, return_c: f64| Sample {
            heat_w,
            supply_c: 60.0,
            return_c,
            setpoint_c: 60.0,
            flow_kgs,
            valve: 0.5,
            pump: 0.5,
            indoor_c: 20.0,
        };
        // Two stations, 30-minute steps: hour 0 at 1 + 1 MW, hour 1 at 1 + 3 MW, then half
        // an hour of hour 2 at 2 MW.
        for (t, a, b) in [
            (0.0, 1e6, 1e6),
            (1800.0, 1e6, 1e6),
            (3600.0, 1e6, 3e6),
            (5400.0, 1e6, 3e6),
        ] {
            d.record(t, 1800.0, &s(a, 1.0, 40.0));
            d.record(t, 1800.0, &s(b, 3.0, 30.0));
        }
        d.record(7200.0, 1800.0, &s(2e6, 0.0, 50.0));
        assert!(
            (d.peak_hourly_mw() - 4.0).abs() < 1e-12,
            "{}",
            d.peak_hourly_mw()
        );
        // (1·40 + 3·30) / 4 = 32.5 °C; a station without flow weighs nothing.
        assert!((d.return_flow_weighted_c() - 32.5).abs() < 1e-12);
        assert_eq!(District::default().return_flow_weighted_c(), 0.0);
    }

    #[test]
    fn metered_heat_uses_1_163_kwh_per_m3_k() {
        let mut k = StationKpis::new("s", 1.0);
        // 100 m³/h × 10 K × 1.163 = 1,163 kW for an hour = 4.1868 GJ.
        k.record_metered(3600.0, 100.0, 55.0, 45.0);
        assert!((k.heat_metered_gj - 4.1868).abs() < 1e-9);
    }

    #[test]
    fn scenarios_have_their_weather() {
        let min = |s: Scenario| {
            (0..24 * 60)
                .map(|m| s.outdoor_c(m as f64 * 60.0))
                .fold(f64::INFINITY, f64::min)
        };
        assert!((min(Scenario::WinterDay) + 9.0).abs() < 0.01);
        assert!((min(Scenario::ColdSnap) + 20.0).abs() < 1e-9);
        assert!((Scenario::ColdSnap.outdoor_c(15.0 * 3600.0) + 20.0).abs() < 1e-9);
        assert_eq!(
            Scenario::ColdSnap.outdoor_c(3.0 * 3600.0),
            Scenario::WinterDay.outdoor_c(3.0 * 3600.0)
        );
        assert!((min(Scenario::Mild) - 1.0).abs() < 0.01);
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.name()), Some(s));
        }
    }

    fn fleet(n: usize) -> SimConfig {
        SimConfig {
            stations: n,
            seed: 7,
            warmup_h: 12.0,
            ..SimConfig::default()
        }
    }

    #[test]
    fn an_unbalanced_fleet_keeps_the_design_data_and_varies_the_radiators() {
        let balanced = fleet(20).build_stations();
        let unbalanced = SimConfig {
            fleet: crate::Fleet::Unbalanced,
            ..fleet(20)
        }
        .build_stations();
        let mut factors = Vec::new();
        for (b, u) in balanced.iter().zip(&unbalanced) {
            assert_eq!(b.plant.p.area_m2, u.plant.p.area_m2);
            assert_eq!(b.plant.p.design_heat_w, u.plant.p.design_heat_w);
            let f = u.plant.p.radiator_design_w / u.plant.p.design_heat_w;
            let ua = u.plant.p.building_ua_w_k / b.plant.p.building_ua_w_k;
            assert!((0.75..=1.35).contains(&f) && (0.95..=1.05).contains(&ua));
            factors.push(f);
        }
        let spread = factors.iter().fold(0.0f64, |m, f| m.max(*f))
            - factors.iter().fold(f64::INFINITY, |m, f| m.min(*f));
        assert!(spread > 0.3, "{factors:?}");
    }

    #[test]
    fn the_raised_baseline_brings_exactly_the_coldest_station_to_18_c() {
        let stations = SimConfig {
            fleet: crate::Fleet::Unbalanced,
            ..fleet(20)
        }
        .build_stations();
        let coldest = |raise: f64| {
            stations
                .iter()
                .map(|s| {
                    let p = &s.plant.p;
                    let supply = s.local.setpoint_c(-5.0) + raise;
                    crate::plant::steady_indoor_c(p, p.pump_max_kgs, supply, -5.0)
                })
                .fold(f64::INFINITY, f64::min)
        };
        let raise = raise_for_coldest_k(&stations, -5.0, 18.0);
        assert!(raise > 1.0, "{raise}");
        assert!(coldest(raise) >= 18.0 && coldest(raise - 0.02) < 18.0);
        // A balanced fleet at its design flow needs no raise.
        assert_eq!(
            raise_for_coldest_k(&fleet(20).build_stations(), -5.0, 17.0),
            0.0
        );
    }

    #[test]
    fn energy_balance_metered_heat_matches_the_plant_within_1_percent() {
        for scenario in [Scenario::WinterDay, Scenario::ColdSnap] {
            let r = run(&fleet(5), scenario, 24.0, Policy::Local);
            assert!(r.heat_gj > 0.0);
            let err = (r.heat_metered_gj - r.heat_gj).abs() / r.heat_gj;
            assert!(
                err < 0.01,
                "{}: metered {} vs plant {} GJ",
                scenario.name(),
                r.heat_metered_gj,
                r.heat_gj
            );
            for k in &r.stations {
                let e = (k.heat_metered_gj - k.heat_gj).abs() / k.heat_gj;
                assert!(e < 0.01, "{}: {e}", k.id);
            }
        }
    }

    #[test]
    fn the_baseline_pumps_more_and_a_colder_day_needs_more_heat() {
        let cfg = fleet(4);
        let local = run(&cfg, Scenario::WinterDay, 12.0, Policy::Local);
        let base = run(&cfg, Scenario::WinterDay, 12.0, Policy::Baseline);
        let snap = run(&cfg, Scenario::ColdSnap, 12.0, Policy::Local);
        // Full speed vs 90 %: (1/0.9)³ = 1.37× the pump energy.
        let ratio = base.pump_full_speed_h / local.pump_full_speed_h;
        assert!((ratio - 1.0 / 0.729).abs() < 0.02, "{ratio}");
        assert!(snap.heat_gj > local.heat_gj * 1.1);
        assert!(snap.degree_days > local.degree_days);
        // A point every 15 minutes, the first at midnight and one at the end.
        assert_eq!(local.series.len(), 12 * 4 + 1);
        assert_eq!((local.series[0].t_h, local.series[48].t_h), (0.0, 12.0));
        // Deterministic from the seed.
        let again = run(&cfg, Scenario::WinterDay, 12.0, Policy::Local);
        assert_eq!(again.heat_gj, local.heat_gj);
    }

    #[test]
    fn a_comms_loss_silences_the_hit_stations_and_they_fall_back() {
        let cfg = SimConfig {
            telemetry_period_s: 60.0,
            ..fleet(20)
        };
        let mut calls = std::collections::HashMap::<String, u32>::new();
        let mut ctl = |id: &str, _t: &str, now_ms: i64| {
            *calls.entry(id.to_owned()).or_default() += 1;
            Some(format!(
                r#"{{"seq": {}, "ts": {now_ms}, "mode": "auto", "supply_setpoint_c": 45.0,
                   "valve_pct": 30.0, "pump_pct": 70.0, "flow_setpoint_m3h": 0.0, "valid_for_s": 300}}"#,
                (now_ms - DAY_START_MS) / 1000 + 1
            ))
        };
        let r = run_with(
            &cfg,
            Scenario::WinterDay,
            Disturbance::CommsLoss,
            16.0,
            Policy::Controller(&mut ctl),
        );
        assert_eq!(Disturbance::CommsLoss.affected(20), 2);
        // 16 h at one sample a minute; the two hit stations miss 6 h of it.
        assert_eq!(calls["st-001"], 16 * 60 - 6 * 60);
        assert_eq!(calls["st-002"], 16 * 60 - 6 * 60);
        assert_eq!(calls["st-003"], 16 * 60);
        assert_eq!(r.disturbance, Disturbance::CommsLoss);

        let drift = run_with(
            &fleet(10),
            Scenario::WinterDay,
            Disturbance::SensorDrift,
            12.0,
            Policy::Local,
        );
        let clean = run(&fleet(10), Scenario::WinterDay, 12.0, Policy::Local);
        // The drifting station reads warm and is driven cold: less heat, the others unchanged.
        assert!(drift.stations[0].heat_gj < clean.stations[0].heat_gj * 0.98);
        assert_eq!(drift.stations[1].heat_gj, clean.stations[1].heat_gj);
    }

    #[test]
    fn area_change_undersized_exchanger_and_gains_hit_only_their_stations() {
        let clean = run(&fleet(10), Scenario::WinterDay, 16.0, Policy::Local);
        let with = |d| run_with(&fleet(10), Scenario::WinterDay, d, 16.0, Policy::Local);
        // New buildings at 12:00: the station's area and heat grow, its homes cool (same
        // equipment, same curve, 30 % more radiators and loss).
        let area = with(Disturbance::AreaChange);
        let (a, c) = (&area.stations[0], &clean.stations[0]);
        assert!((a.area_m2 - 1.3 * c.area_m2).abs() < 1e-6);
        assert!(
            a.heat_gj > c.heat_gj * 1.03,
            "{} vs {}",
            a.heat_gj,
            c.heat_gj
        );
        assert_eq!(area.stations[1].heat_gj, clean.stations[1].heat_gj);
        // Half the exchanger: in the cold morning the valve opens further, more often at its end.
        let hx = with(Disturbance::UndersizedHx);
        assert!(
            hx.stations[0].valve_saturated_h > clean.stations[0].valve_saturated_h,
            "{} vs {}",
            hx.stations[0].valve_saturated_h,
            clean.stations[0].valve_saturated_h
        );
        assert_eq!(hx.stations[1].heat_gj, clean.stations[1].heat_gj);
        // Free heat: warmer homes on the same curve, and less from the network.
        let gains = with(Disturbance::Gains);
        let (g, c) = (&gains.stations[0], &clean.stations[0]);
        assert!(
            g.indoor_max_c > c.indoor_max_c + 0.3,
            "{} vs {}",
            g.indoor_max_c,
            c.indoor_max_c
        );
        assert!(g.heat_gj < c.heat_gj, "{} vs {}", g.heat_gj, c.heat_gj);
        assert_eq!(
            gains.stations[1].indoor_max_c,
            clean.stations[1].indoor_max_c
        );
    }

    #[test]
    fn an_external_controller_is_called_every_period_and_its_commands_are_followed() {
        let mut calls = 0;
        let mut ctl = |id: &str, telemetry: &str, now_ms: i64| {
            calls += 1;
            assert!(id.starts_with("st-"));
            assert!(telemetry.contains("\"supply_temp_c\""));
            Some(format!(
                r#"{{"seq": {}, "ts": {now_ms}, "mode": "auto", "supply_setpoint_c": 45.0,
                   "valve_pct": 100.0, "pump_pct": 100.0, "flow_setpoint_m3h": 0.0, "valid_for_s": 60}}"#,
                (now_ms - DAY_START_MS) / 1000 + 1
            ))
        };
        let cfg = SimConfig {
            telemetry_period_s: 10.0,
            ..fleet(2)
        };
        let r = run(&cfg, Scenario::Mild, 1.0, Policy::Controller(&mut ctl));
        assert_eq!(calls, 2 * 360);
        assert_eq!((r.commands_accepted, r.commands_refused), (720, 0));
        assert_eq!(r.policy, "controller");
        // The valve was held wide open: saturated most of the hour (the actuator needs time
        // to travel there from where the warm-up left it).
        for k in &r.stations {
            assert!(
                k.valve_saturated_h > 0.5,
                "{}: {}",
                k.id,
                k.valve_saturated_h
            );
        }
    }
}
