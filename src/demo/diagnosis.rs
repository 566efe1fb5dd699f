//! `heatgrid scenario diagnosis`: the station diagnosis measured against faults the
//! simulator injects, offline and at full speed.
//!
//! Where it sits: outside the live data flow, beside [`super::scenario`]. A seeded fleet runs
//! the fortnight's weather with heatgrid's controllers in the loop (the same decode and
//! control as the engine, through [`super::controller`]'s contract-speaking controller), and a
//! [`crate::diagnose::Diagnosis`] per station sees each reading and the command sent on it,
//! as in the engine. About 15 % of the stations get one fault each ([`heatgrid_sim::faults`]);
//! the diagnosis never sees that truth. [`Watch`] records every finding as it is raised;
//! [`super::score`] compares them with the truth: event-wise precision, recall within 72 h,
//! F0.5, detection delays, false alarms per 100 station-days and the confusion of kinds.

use heatgrid_sim::faults::{self, Fault, FaultKind};
use heatgrid_sim::scenario::{self, Disturbance, Policy, Scenario, DAY_START_MS};
use heatgrid_sim::{Fleet, SimConfig};
use serde::Serialize;

use super::controller::Heatgrid;
use super::error::DemoError;
use super::scenario::WARMUP_H;
use super::watch::{Raised, Watch};
use crate::diagnose::{Kind, Settings};

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub stations: usize,
    pub days: f64,
    pub seed: u64,
    /// Share of the stations given a fault.
    pub share: f64,
    pub fleet: Fleet,
    /// Telemetry period, simulated seconds.
    pub period_s: f64,
    pub settings: Settings,
}

impl Options {
    pub fn new(stations: usize, days: f64, seed: u64) -> Self {
        Self {
            stations,
            days,
            seed,
            share: 0.15,
            fleet: Fleet::Unbalanced,
            period_s: 10.0,
            settings: Settings::default(),
        }
    }
}

/// A fault as the run's clock sees it: onset in ms of the scenario's time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Truth {
    pub kind: FaultKind,
    pub severity: f64,
    pub onset_ms: i64,
}

/// The kinds that name fault `k` rightly.
pub fn names(k: FaultKind) -> &'static [Kind] {
    match k {
        FaultKind::Fouling => &[Kind::Fouling],
        FaultKind::UndersizedHx => &[Kind::Undersized],
        FaultKind::ValveStuck => &[Kind::ValveStuck],
        FaultKind::ValveLeak => &[Kind::ValveLeak],
        FaultKind::SupplySensorOffset | FaultKind::ReturnSensorOffset => &[Kind::SensorOffset],
        FaultKind::SupplySensorDrift => &[Kind::SensorDrift],
        FaultKind::SupplySensorFrozen => &[Kind::SensorFrozen],
        FaultKind::Bypass => &[Kind::Bypass],
        FaultKind::Strainer => &[Kind::Strainer],
        FaultKind::PumpFailure => &[Kind::PumpFailure],
        FaultKind::CurveTooHigh | FaultKind::WrongArea => &[Kind::OverFired],
    }
}

/// One run: the fleet's truth and what the diagnosis raised.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub seed: u64,
    pub stations: usize,
    pub days: f64,
    pub truth: Vec<Option<Truth>>,
    pub raised: Vec<Raised>,
    pub commands_accepted: u64,
}

/// The seeded fault plan of a run, on the run's clock: onsets from day 1 to three and a half
/// days before the end (each fault has at least that long to be found, and the diagnosis a
/// day to learn each station first); an undersized exchanger is there from the start (it
/// was built so).
pub fn plan(o: &Options) -> Vec<(usize, Fault)> {
    let warmup_s = WARMUP_H * 3600.0;
    faults::plan(o.stations, o.share, o.days - 1.0, o.seed)
        .into_iter()
        .map(|(i, mut f)| {
            f.onset_s = if f.kind == FaultKind::UndersizedHx {
                0.0
            } else {
                f.onset_s + warmup_s + 43_200.0
            };
            (i, f)
        })
        .collect()
}

/// Runs the fleet through the fortnight's weather with heatgrid in the loop and the
/// diagnosis watching.
pub fn run(o: &Options) -> Result<Run, DemoError> {
    if o.stations < 5 || !(2.0..=60.0).contains(&o.days) {
        return Err(DemoError::Args(
            "the diagnosis run needs at least 5 stations and 2–60 days",
        ));
    }
    let plan = plan(o);
    let sim = SimConfig {
        stations: o.stations,
        seed: o.seed,
        telemetry_period_s: o.period_s,
        warmup_h: WARMUP_H,
        lead_h: 0.0,
        fleet: o.fleet,
        faults: plan.clone(),
        sensor_noise_k: 0.05,
        ..SimConfig::default()
    };
    let warmup_ms = (WARMUP_H * 3_600_000.0) as i64;
    let truth: Vec<Option<Truth>> = (0..o.stations)
        .map(|i| {
            plan.iter().find(|(k, _)| *k == i).map(|(_, f)| Truth {
                kind: f.kind,
                severity: f.severity,
                onset_ms: DAY_START_MS + ((f.onset_s * 1000.0) as i64 - warmup_ms).max(0),
            })
        })
        .collect();
    // A curve set too high is a fault of a station that runs on its own curve: heatgrid's
    // commands replace that curve, so those stations are watched, not commanded.
    let monitor_only: Vec<bool> = truth
        .iter()
        .map(|t| t.is_some_and(|t| t.kind == FaultKind::CurveTooHigh))
        .collect();
    let mut hg = Heatgrid::new(&sim, None)?;
    hg.watch = Some((Watch::new(o.stations, o.settings.clone()), monitor_only));
    let mut policy = |id: &str, telemetry: &str, now_ms: i64| hg.answer(id, telemetry, now_ms);
    let report = scenario::run_with(
        &sim,
        Scenario::Fortnight,
        Disturbance::None,
        o.days * 24.0,
        Policy::Controller(&mut policy),
    );
    let raised = hg.watch.take().map(|(w, _)| w.raised).unwrap_or_default();
    Ok(Run {
        seed: o.seed,
        stations: o.stations,
        days: o.days,
        truth,
        raised,
        commands_accepted: report.commands_accepted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A healthy fleet with sensor noise through the whole path (simulator, decoder,
    /// controllers, diagnosis): every station commanded, nothing raised.
    #[test]
    fn a_healthy_noisy_fleet_raises_nothing() {
        let o = Options {
            share: 0.0,
            ..Options::new(8, 2.0, 4)
        };
        let run = run(&o).unwrap();
        assert!(run.truth.iter().all(Option::is_none));
        assert_eq!(run.commands_accepted, 8 * 2 * 8640);
        assert!(run.raised.is_empty(), "{:?}", run.raised);
        assert!(super::run(&Options::new(3, 2.0, 1)).is_err());
    }

    #[test]
    fn the_plan_leaves_each_fault_three_days_and_a_day_to_learn() {
        let o = Options::new(400, 14.0, 9);
        let plan = plan(&o);
        assert!((40..=80).contains(&plan.len()), "{}", plan.len());
        let warmup_s = WARMUP_H * 3600.0;
        for (_, f) in &plan {
            if f.kind == FaultKind::UndersizedHx {
                assert_eq!(f.onset_s, 0.0);
            } else {
                let day = (f.onset_s - warmup_s) / 86_400.0;
                assert!((1.0..=10.5).contains(&day), "{f:?}");
            }
        }
    }
}
