//! `heatgrid scenario`: heatgrid's own station controller run in the loop of a simulator
//! scenario, offline and at full speed, beside the simulator's baseline and local policies.
//!
//! Where it sits: outside the live data flow. It drives `heatgrid_sim::scenario::run` with a
//! controller that speaks only the contract — telemetry JSON through heatgrid's decoder into
//! a [`crate::control::station::StationController`] (the same one the engine runs), the command back as contract JSON
//! — so the comparison exercises the real decode and control code, with simulated time
//! standing in for the wall clock. The KPIs come from the simulator's ground truth.

use super::error::DemoError;

use heatgrid_sim::scenario::{self, Disturbance, Policy, RunReport, Scenario};
use heatgrid_sim::{Fleet, SimConfig};

use super::controller::{Heatgrid, Predictive};
use crate::control::coordinator::CoordinatorConfig;
use heatgrid_sim::forecast::{self, ForecastError};

/// The forecast a predictive run plans on, from the simulator's own weather.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForecastKind {
    /// The weather as it will be, sun included.
    Exact,
    /// A day-ahead forecast's error: σ 1.5 K at 24 h growing as √lead, the sun ±40 % at 24 h.
    Realistic,
    /// No information about the future: the temperature now, held, and no sun.
    Persistence,
    /// The temperatures exactly, the sun left out.
    NoSun,
}

impl ForecastKind {
    pub const ALL: [ForecastKind; 4] = [
        ForecastKind::Exact,
        ForecastKind::Realistic,
        ForecastKind::Persistence,
        ForecastKind::NoSun,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ForecastKind::Exact => "exact",
            ForecastKind::Realistic => "realistic",
            ForecastKind::Persistence => "persistence",
            ForecastKind::NoSun => "no-sun",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The policy's name in a report.
    fn policy(self) -> &'static str {
        match self {
            ForecastKind::Exact => "predictive (exact forecast)",
            ForecastKind::Realistic => "predictive (realistic forecast)",
            ForecastKind::Persistence => "predictive (no forecast)",
            ForecastKind::NoSun => "predictive (exact, no sun)",
        }
    }

    /// What issues the forecasts of a run: contract JSON for a simulated time (ms), 48 h.
    pub(super) fn source(
        self,
        scenario: Scenario,
        seed: u64,
    ) -> Box<dyn FnMut(i64) -> String + Send> {
        Box::new(move |now_ms| {
            let t = (now_ms - scenario::DAY_START_MS) as f64 / 1000.0;
            let now_c = scenario.outdoor_c(t);
            let weather = move |x: f64| match self {
                ForecastKind::Exact | ForecastKind::Realistic => {
                    (scenario.outdoor_c(x), scenario.solar_w_m2(x))
                }
                ForecastKind::NoSun => (scenario.outdoor_c(x), 0.0),
                ForecastKind::Persistence => (now_c, 0.0),
            };
            let err = match self {
                ForecastKind::Realistic => ForecastError::REALISTIC,
                _ => ForecastError::EXACT,
            };
            let points = forecast::issue(weather, t, 48, &err, seed);
            forecast::to_json(&points, |t| {
                scenario::DAY_START_MS + (t * 1000.0).round() as i64
            })
        })
    }
}

/// What to run: the scenario, what is laid over it, and the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub scenario: Scenario,
    pub disturbance: Disturbance,
    pub fleet: Fleet,
    pub stations: usize,
    pub hours: f64,
    pub seed: u64,
    /// The coordinator of the fourth run.
    pub coordinator: CoordinatorConfig,
    /// Hours every policy drives the fleet before the measured window (after the local
    /// warm-up). Three days by default: the buildings' time constants are 30–50 h, so a policy
    /// that holds them at another temperature than the local curve (the coordinator aiming at
    /// 20 °C, the raised baseline) would otherwise be measured while it is still warming or
    /// cooling them, heat going into or out of their mass.
    pub lead_h: f64,
    /// Whether heatgrid sees the stations' representative indoor temperature (the simulator
    /// always sends it; most real stations have no such sensor, so by default it is dropped).
    pub indoor_sensor: bool,
    /// The fifth run's predictive layer and the forecast it plans on.
    pub predictive: crate::predict::Settings,
    pub forecast: ForecastKind,
    /// Also run the predictive policy on the other forecasts, to split its saving into its
    /// sources (no forecast, exact without the sun, exact).
    pub split: bool,
}

impl Options {
    pub fn new(scenario: Scenario, stations: usize, hours: f64, seed: u64) -> Self {
        Self {
            scenario,
            disturbance: Disturbance::None,
            fleet: Fleet::Balanced,
            stations,
            hours,
            seed,
            // Aim a little above the 18 °C minimum, so that the stations whose buildings lose
            // a few per cent more than their design data say stay above it.
            coordinator: CoordinatorConfig {
                indoor_target_c: Some(20.0),
                ..CoordinatorConfig::default()
            },
            lead_h: 72.0,
            indoor_sensor: false,
            predictive: crate::predict::Settings {
                enabled: true,
                ..crate::predict::Settings::default()
            },
            forecast: ForecastKind::Realistic,
            split: false,
        }
    }
}

/// Hours of local control before a run (the buildings settle where the local curve holds
/// them: the simulator cuts their thermal mass during it).
pub const WARMUP_H: f64 = 12.0;

/// One scenario, five runs: the baseline, the stations' own curve, heatgrid's station
/// controllers, the same with the district coordinator, and with the predictive layer as well
/// (on `o.forecast`; with `o.split` also on the other forecasts).
pub fn compare(o: &Options) -> Result<Vec<RunReport>, DemoError> {
    if o.stations == 0 || o.hours.is_nan() || o.hours <= 0.0 {
        return Err(DemoError::Args(
            "--stations must be at least 1 and --hours positive",
        ));
    }
    if !(0.0..=24.0 * 30.0).contains(&o.lead_h) {
        return Err(DemoError::Args("--lead-hours must be within 0..720"));
    }
    let sim = SimConfig {
        stations: o.stations,
        seed: o.seed,
        telemetry_period_s: 5.0,
        warmup_h: WARMUP_H,
        lead_h: o.lead_h,
        fleet: o.fleet,
        ..SimConfig::default()
    };
    let run =
        |policy: Policy<'_>| scenario::run_with(&sim, o.scenario, o.disturbance, o.hours, policy);
    let mut forecasts = vec![o.forecast];
    if o.split {
        forecasts.extend(
            [
                ForecastKind::Persistence,
                ForecastKind::NoSun,
                ForecastKind::Exact,
            ]
            .into_iter()
            .filter(|k| *k != o.forecast),
        );
    }
    let one = |k: usize| -> Result<RunReport, DemoError> {
        Ok(match k {
            0 => run(Policy::Baseline),
            1 => run(Policy::Local),
            _ => {
                let coordinate = k >= 3;
                let mut hg = Heatgrid::new(&sim, coordinate.then(|| o.coordinator.clone()))?;
                hg.indoor_sensor = o.indoor_sensor;
                let forecast = k.checked_sub(4).map(|f| forecasts[f]);
                if let Some(f) = forecast {
                    let source = f.source(o.scenario, o.seed);
                    hg.predictive = Some(Predictive::new(o.predictive.clone(), o.stations, source));
                }
                let mut policy =
                    |id: &str, telemetry: &str, now_ms: i64| hg.answer(id, telemetry, now_ms);
                RunReport {
                    policy: match forecast {
                        Some(f) => f.policy(),
                        None if coordinate => "heatgrid + coordinator",
                        None => "heatgrid",
                    },
                    ..run(Policy::Controller(&mut policy))
                }
            }
        })
    };
    in_parallel(4 + forecasts.len(), one)
}

/// Runs `one(0)`, `one(1)`, … `one(n − 1)`, independent, one thread each (the machine's cores
/// share them); their reports in that order.
pub(super) fn in_parallel(
    n: usize,
    one: impl Fn(usize) -> Result<RunReport, DemoError> + Sync,
) -> Result<Vec<RunReport>, DemoError> {
    let one = &one;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n).map(|k| s.spawn(move || one(k))).collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| DemoError::Panicked)?)
            .collect()
    })
}

/// The comparison as a table, savings against the baseline stated with their normalisation.
pub fn table(runs: &[RunReport]) -> String {
    let Some(r0) = runs.first() else {
        return String::new();
    };
    let mut out = format!(
        "scenario {}{} · {} fleet · {} stations · seed {} · {} h after {} h under each policy · \
         {:.2} heating degree-days (base 18 °C)\n\
         baseline: the stations' fixed heating curve{} with the pump at constant full speed\n\n",
        r0.scenario.name(),
        match r0.disturbance {
            Disturbance::None => String::new(),
            d => format!(
                " + {} on {} station(s)",
                d.name(),
                d.affected(r0.stations.len())
            ),
        },
        r0.fleet.name(),
        r0.stations.len(),
        r0.seed,
        r0.hours,
        r0.lead_h,
        r0.degree_days,
        if r0.baseline_raise_k > 0.0 {
            format!(
                " raised by {:.2} K (the least that gives its coldest station 18 °C)",
                r0.baseline_raise_k
            )
        } else {
            String::new()
        }
    );
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::ASCII_MARKDOWN)
        .set_header([
            "policy",
            "heat GJ",
            "GJ / degree-day",
            "heat vs baseline",
            "pump (full-speed h)",
            "indoor mean °C",
            "indoor 18–22 °C",
            "< 18 °C",
            "> 22 °C",
            "K·h < 18 °C",
            "K·h < 20 °C",
            "peak hour MW",
            "return (flow-weighted) °C",
            "supply ±1 K",
        ]);
    for r in runs {
        t.add_row([
            r.policy.to_owned(),
            format!("{:.1}", r.heat_gj),
            format!("{:.2}", r.heat_gj_per_degree_day),
            format!("{:+.1} %", (r.heat_gj / r0.heat_gj - 1.0) * 100.0),
            format!("{:.1}", r.pump_full_speed_h),
            format!("{:.2}", r.indoor_mean_c),
            format!("{:.1} %", r.indoor_comfort * 100.0),
            format!("{:.1} %", r.indoor_under * 100.0),
            format!("{:.1} %", r.indoor_over * 100.0),
            format!("{:.0}", r.degree_h_below_18),
            format!("{:.0}", r.degree_h_below_20),
            format!("{:.2}", r.peak_hourly_mw),
            format!("{:.1}", r.return_flow_weighted_c),
            format!("{:.1} %", r.supply_within_1k * 100.0),
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
    fn heatgrid_drives_every_station_of_a_short_scenario() {
        let quick = |scenario, hours| Options {
            lead_h: 0.0,
            ..Options::new(scenario, 3, hours, 5)
        };
        let runs = compare(&quick(Scenario::ColdSnap, 2.0)).unwrap();
        let policies: Vec<_> = runs.iter().map(|r| r.policy).collect();
        assert_eq!(
            policies,
            [
                "baseline",
                "local",
                "heatgrid",
                "heatgrid + coordinator",
                "predictive (realistic forecast)"
            ]
        );
        // One command per station per 5 s telemetry period, every one accepted.
        for hg in &runs[2..] {
            assert_eq!(hg.commands_accepted, 3 * 2 * 720, "{}", hg.policy);
            assert_eq!(hg.commands_refused, 0);
        }
        assert_eq!(runs[0].commands_accepted + runs[1].commands_accepted, 0);
        // Same fleet and weather for all; a balanced fleet's baseline is the design curve.
        assert_eq!(runs[0].degree_days, runs[2].degree_days);
        assert_eq!(runs[0].baseline_raise_k, 0.0);
        for r in &runs {
            let err = (r.heat_metered_gj - r.heat_gj).abs() / r.heat_gj;
            assert!(err < 0.01, "{}: energy balance off by {err}", r.policy);
            // The peak hour is at least the run's mean power, and the return a plausible
            // secondary one.
            let mean_mw = r.heat_gj * 1e3 / (r.hours * 3600.0);
            assert!(
                r.peak_hourly_mw >= mean_mw * 0.999,
                "{}: {} < {mean_mw}",
                r.policy,
                r.peak_hourly_mw
            );
            assert!(
                (25.0..60.0).contains(&r.return_flow_weighted_c),
                "{}",
                r.return_flow_weighted_c
            );
            assert!(r.degree_h_below_20 >= r.degree_h_below_18);
        }
        let text = table(&runs);
        assert!(text.contains("pump at constant full speed"), "{text}");
        assert!(text.contains("degree-days"), "{text}");
        assert!(compare(&Options::new(Scenario::Mild, 0, 1.0, 1)).is_err());
        let mut o = quick(Scenario::WinterDay, 9.0);
        o.disturbance = Disturbance::CommsLoss;
        let lost = compare(&o).unwrap();
        // One station hit: it misses 08:00–09:00, 720 samples of the 3 × 6,480.
        assert_eq!(lost[2].commands_accepted, 3 * 9 * 720 - 720);
        assert!(table(&lost).contains("comms-loss on 1 station"));
        let html = crate::demo::report::html(&runs, &text);
        assert!(html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"));
        assert_eq!(
            html.matches("<svg").count(),
            5,
            "outdoor, heat, indoor, supply, actuators"
        );
        assert!(html.contains("constant full speed") && html.contains("<td>heatgrid</td>"));
        assert!(html.contains("<td>heatgrid + coordinator</td>"));
        assert!(!html.contains("<script"), "self-contained, no scripts");
    }

    /// What each forecast kind gives the predictive layer, through heatgrid's decoder.
    #[test]
    fn the_forecast_kinds_are_what_they_say() {
        use crate::predict::forecast::Forecast;
        let sc = Scenario::FortnightSun;
        // Day 9 at 07:00: the clear mild spell's sun is an hour away.
        let now = scenario::DAY_START_MS + (9 * 24 + 7) * 3_600_000;
        let get = |k: ForecastKind| Forecast::decode(k.source(sc, 1)(now).as_bytes(), now).unwrap();
        let t = |ms: i64| (ms - scenario::DAY_START_MS) as f64 / 1000.0;
        let exact = get(ForecastKind::Exact);
        assert_eq!(exact.points.len(), 49);
        for p in &exact.points {
            assert!((p.outdoor_c - sc.outdoor_c(t(p.ts_ms))).abs() < 0.006);
            assert!((p.solar_w_m2 - sc.solar_w_m2(t(p.ts_ms))).abs() < 0.06);
        }
        assert!(exact.points.iter().any(|p| p.solar_w_m2 > 300.0));
        let held = get(ForecastKind::Persistence);
        assert!(held
            .points
            .iter()
            .all(|p| p.solar_w_m2 == 0.0 && (p.outdoor_c - sc.outdoor_c(t(now))).abs() < 0.006));
        let dark = get(ForecastKind::NoSun);
        assert!(dark.points.iter().all(|p| p.solar_w_m2 == 0.0));
        assert_eq!(dark.points[30].outdoor_c, exact.points[30].outdoor_c);
        let real = get(ForecastKind::Realistic);
        let off = (real.points[30].outdoor_c - exact.points[30].outdoor_c).abs();
        assert!(off > 0.0 && off < 8.0, "{off}");
        for k in ForecastKind::ALL {
            assert_eq!(ForecastKind::parse(k.name()), Some(k));
        }
    }

    /// An unbalanced district: the baseline raises the common curve until its coldest station
    /// gets 18 °C and overheats the rest; the coordinator (after the same three-day lead) gives
    /// each station the heat its design asks for: more comfort for less heat.
    #[test]
    fn the_coordinator_balances_an_unbalanced_fleet_with_less_heat() {
        let mut o = Options::new(Scenario::WinterDay, 8, 6.0, 3);
        o.fleet = Fleet::Unbalanced;
        let runs = compare(&o).unwrap();
        let (base, hg, coord) = (&runs[0], &runs[2], &runs[3]);
        assert!(base.baseline_raise_k > 1.0, "{}", base.baseline_raise_k);
        assert!(table(&runs).contains("unbalanced fleet"));
        // Against the raised baseline: less heat, more of the time in the comfort band.
        assert!(
            coord.heat_gj < 0.97 * base.heat_gj,
            "{} vs {}",
            coord.heat_gj,
            base.heat_gj
        );
        assert!(coord.indoor_comfort > base.indoor_comfort + 0.2);
        assert!(coord.indoor_over < 0.01);
        // Against heatgrid without it (the design curve): the coldest station is warmer.
        let coldest = |r: &RunReport| {
            r.stations
                .iter()
                .map(|k| k.indoor_min_c)
                .fold(f64::INFINITY, f64::min)
        };
        assert!(
            coldest(coord) > coldest(hg) + 1.0,
            "{} vs {}",
            coldest(coord),
            coldest(hg)
        );
        assert!(coord.indoor_under < hg.indoor_under);
    }
}
