//! `heatgrid scenario network`: the centre's side scored on a primary network — the same
//! fleet, weather and seed on a generated network four times: the baseline (stations on
//! their fixed curve with the pump at full speed, the plant on its outdoor curve with a
//! constant head), heatgrid's stations with the coordinator under that same plant, and
//! heatgrid's stations with the plant loop as well (supply from the fleet, pressure held at
//! the worst-off station), once weighing the heat loss against the pumping and once
//! counting the loss alone.
//!
//! Where it sits: outside the live data flow, beside [`super::scenario`]. The plant loop is
//! the engine's [`crate::control::plant::PlantController`], fed the stations' telemetry through
//! the engine's decoder and answering the simulated plant with contract §7 JSON.

use std::cell::RefCell;

use heatgrid_sim::network::file::NetworkFile;
use heatgrid_sim::scenario::{
    self, Disturbance, Loads, NetworkRun, PlantPolicy, Policy, RunReport, Scenario,
};
use heatgrid_sim::{Fleet, SimConfig};

use super::controller::{Heatgrid, PlantLoop};
use super::error::DemoError;
use super::scenario::{ForecastKind, WARMUP_H};
use crate::control::coordinator::CoordinatorConfig;
use crate::control::plant::PlantSettings;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    pub fleet: Fleet,
    pub stations: usize,
    pub hours: f64,
    pub seed: u64,
    pub lead_h: f64,
    pub loads: Loads,
    pub coordinator: CoordinatorConfig,
    pub plant: PlantSettings,
    /// Pipe cells, m.
    pub cell_m: f64,
}

impl Options {
    pub fn new(scenario: Scenario, stations: usize, hours: f64, seed: u64) -> Self {
        Self {
            scenario,
            fleet: Fleet::Unbalanced,
            stations,
            hours,
            seed,
            lead_h: 24.0,
            loads: Loads::PEAKY,
            coordinator: CoordinatorConfig {
                indoor_target_c: Some(20.0),
                ..CoordinatorConfig::default()
            },
            plant: PlantSettings::default(),
            cell_m: 50.0,
        }
    }

    fn sim(&self) -> SimConfig {
        SimConfig {
            stations: self.stations,
            seed: self.seed,
            telemetry_period_s: 5.0,
            warmup_h: WARMUP_H,
            lead_h: self.lead_h,
            fleet: self.fleet,
            ..SimConfig::default()
        }
    }

    /// The network generated for this fleet (from the seed, sized for each station's design
    /// load at a 50 K primary ΔT).
    pub fn network(&self) -> NetworkFile {
        self.sim().generated_network(self.seed)
    }
}

/// The four runs, on parallel threads: the baseline, heatgrid's stations under the plant's
/// own curve, and with the plant loop weighing loss against pumping
/// (`electricity_weight` as set) and counting the loss alone (`electricity_weight` 0).
pub fn compare(o: &Options) -> Result<Vec<RunReport>, DemoError> {
    if o.stations == 0 || o.hours.is_nan() || o.hours <= 0.0 {
        return Err(DemoError::Args(
            "--stations must be at least 1 and --hours positive",
        ));
    }
    let sim = o.sim();
    let file = o.network();
    // The centre knows its network's insulation (its pipe register): the loop weighs the
    // loss against the pumping with it.
    let mut plant_settings = o.plant.clone();
    if plant_settings.network_ua_kw_per_k.is_none() {
        plant_settings.network_ua_kw_per_k = Some(file.ua_w_per_k() / 1000.0);
        plant_settings.ground_c = file.ground_temperature_C;
    }
    let run = |k: usize| -> Result<RunReport, DemoError> {
        let net = |plant| NetworkRun {
            file: &file,
            loads: o.loads,
            cell_m: o.cell_m,
            plant,
        };
        let go = |policy, plant| {
            scenario::run_on(
                &sim,
                o.scenario,
                Disturbance::None,
                o.hours,
                policy,
                Some(net(plant)),
            )
            .map_err(DemoError::Config)
        };
        if k == 0 {
            return go(Policy::Baseline, PlantPolicy::Own);
        }
        let mut hg = Heatgrid::new(&sim, Some(o.coordinator.clone()))?;
        if k >= 2 {
            let source = ForecastKind::Realistic.source(o.scenario, o.seed);
            let mut settings = plant_settings.clone();
            if k == 3 {
                settings.electricity_weight = 0.0;
            }
            hg.plant = Some(PlantLoop::new(settings, o.stations, source));
        }
        let hg = RefCell::new(hg);
        let mut stations =
            |id: &str, telemetry: &str, now_ms: i64| hg.borrow_mut().answer(id, telemetry, now_ms);
        let mut plant = |telemetry: &str, now_ms: i64| {
            hg.borrow_mut()
                .plant
                .as_mut()
                .and_then(|p| p.answer(telemetry, now_ms))
        };
        let plant = if k >= 2 {
            PlantPolicy::Controller(&mut plant)
        } else {
            PlantPolicy::Own
        };
        let r = go(Policy::Controller(&mut stations), plant)?;
        Ok(RunReport {
            policy: match k {
                1 => "heatgrid + coordinator",
                2 => "heatgrid + plant loop",
                _ => "plant loop, loss only",
            },
            ..r
        })
    };
    super::scenario::in_parallel(4, run)
}

/// The comparison as a table, each figure against the baseline's.
pub fn table(runs: &[RunReport]) -> String {
    let Some(r0) = runs.first() else {
        return String::new();
    };
    let Some(n0) = r0.network.as_ref() else {
        return String::new();
    };
    let mut out = format!(
        "network scenario {} · {} fleet · {} stations · seed {} · {} h after {} h under each \
         policy · {:.2} heating degree-days\n\
         baseline: stations on their fixed curve, pump at full speed; plant on its outdoor \
         curve with a constant head\n\n",
        r0.scenario.name(),
        r0.fleet.name(),
        r0.stations.len(),
        r0.seed,
        r0.hours,
        r0.lead_h,
        r0.degree_days,
    );
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::ASCII_MARKDOWN)
        .set_header([
            "policy",
            "heat made MWh",
            "vs baseline",
            "pipe loss MWh",
            "loss % of made",
            "loss vs baseline",
            "supply mean °C",
            "return mean °C",
            "pump kWh",
            "pump vs baseline",
            "peak hour MW",
            "peak-boiler h",
            "K·h < 20 °C",
            "indoor 18–22 °C",
            "min station Δp kPa",
            "hot water short kWh",
        ]);
    let rel = |a: f64, b: f64| format!("{:+.1} %", (a / b - 1.0) * 100.0);
    for r in runs {
        let Some(n) = r.network.as_ref() else {
            continue;
        };
        t.add_row([
            r.policy.to_owned(),
            format!("{:.0}", n.heat_produced_kwh / 1000.0),
            rel(n.heat_produced_kwh, n0.heat_produced_kwh),
            format!("{:.0}", n.loss_kwh / 1000.0),
            format!("{:.2} %", n.loss_share * 100.0),
            rel(n.loss_kwh, n0.loss_kwh),
            format!("{:.1}", n.supply_mean_c),
            format!("{:.1}", n.return_mean_c),
            format!("{:.0}", n.pump_kwh),
            rel(n.pump_kwh, n0.pump_kwh),
            format!("{:.1}", n.peak_hourly_mw),
            format!("{:.1}", n.peak_boiler_h),
            format!("{:.0}", r.degree_h_below_20),
            format!("{:.1} %", r.indoor_comfort * 100.0),
            format!("{:.0}", n.min_station_dp_kpa),
            format!("{:.0}", n.dhw_short_kwh),
        ]);
    }
    out.push_str(&t.to_string());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plant_loop_holds_the_pressure_at_the_worst_station_and_lowers_the_supply_when_told_to() {
        let o = Options {
            lead_h: 2.0,
            ..Options::new(Scenario::Mild, 8, 6.0, 4)
        };
        let runs = compare(&o).unwrap();
        let policies: Vec<_> = runs.iter().map(|r| r.policy).collect();
        assert_eq!(
            policies,
            [
                "baseline",
                "heatgrid + coordinator",
                "heatgrid + plant loop",
                "plant loop, loss only"
            ]
        );
        let n: Vec<_> = runs.iter().map(|r| r.network.clone().unwrap()).collect();
        // Only the plant loop's runs followed the engine, all of the measured time.
        assert_eq!(n[0].engine_h + n[1].engine_h, 0.0);
        for k in [2, 3] {
            assert!((n[k].engine_h - 6.0).abs() < 0.01, "{}", n[k].engine_h);
            assert_eq!(n[k].commands_refused, 0);
        }
        println!("{}", table(&runs));
        // Pressure held at the worst-off station, not a constant head: less pumping.
        assert!(
            n[2].pump_kwh < 0.8 * n[1].pump_kwh,
            "{} {}",
            n[2].pump_kwh,
            n[1].pump_kwh
        );
        assert!(n[2].min_station_dp_kpa < n[1].min_station_dp_kpa);
        // Counting the loss alone, the supply comes down and the loss with it.
        assert!(n[3].supply_mean_c < n[1].supply_mean_c - 3.0);
        assert!(n[3].loss_kwh < n[1].loss_kwh);
        for k in [2, 3] {
            assert!(runs[k].degree_h_below_20 <= 1.05 * runs[1].degree_h_below_20 + 1.0);
        }
    }
}
