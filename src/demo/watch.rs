//! The station diagnosis of an offline run: a [`Diagnosis`] per station, fed each reading and
//! the command sent on it, and a log of every finding as it is raised.
//!
//! Where it sits: held by [`super::controller::Heatgrid`] during a `heatgrid scenario
//! diagnosis` run; [`super::diagnosis`] scores its log against the simulator's truth. As in
//! the engine's control task, the fleet's yardsticks are handed to every station
//! once per plant hour.

use serde::Serialize;

use crate::diagnose::{Diagnosis, Kind, Settings};

/// One finding as it was raised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Raised {
    pub station: usize,
    pub kind: Kind,
    pub at_ms: i64,
}

/// The diagnosis of every station of a run, and what it raised when.
#[derive(Debug)]
pub struct Watch {
    pub diagnoses: Vec<Diagnosis>,
    pub settings: Settings,
    pub raised: Vec<Raised>,
    fleet_hour: i64,
}

impl Watch {
    pub fn new(stations: usize, settings: Settings) -> Self {
        Self {
            diagnoses: vec![Diagnosis::default(); stations],
            settings,
            raised: Vec::new(),
            fleet_hour: i64::MIN,
        }
    }

    /// Station `i`'s reading and the command sent on it, at `now_ms` (the plant's clock).
    pub fn observe(
        &mut self,
        i: usize,
        r: &crate::model::Reading,
        cmd: Option<&crate::model::Command>,
        design: &crate::diagnose::Design,
        now_ms: i64,
    ) {
        let hour = now_ms.div_euclid(3_600_000);
        if hour > self.fleet_hour {
            self.fleet_hour = hour;
            let fleet = crate::diagnose::Fleet::of(self.diagnoses.iter());
            for d in &mut self.diagnoses {
                d.set_fleet(fleet);
            }
        }
        let d = &mut self.diagnoses[i];
        let before: Vec<Kind> = d.findings().iter().map(|f| f.kind).collect();
        d.observe(r, cmd, design, now_ms, &self.settings);
        for f in d.findings() {
            if !before.contains(&f.kind) {
                self.raised.push(Raised {
                    station: i,
                    kind: f.kind,
                    at_ms: now_ms,
                });
            }
        }
    }
}
