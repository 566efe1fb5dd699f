//! Station diagnosis: from a station's readings and the commands it was sent, name the
//! fault it probably has, with the figures behind it.
//!
//! Where it sits: beside `control/`, fed with what the control step already has (the fresh
//! reading and the command it sent), one [`Diagnosis`] per station. Pure: no I/O, no clock;
//! time is the readings' own. It keeps small state: the current hour's sums ([`hour::Hour`]),
//! slow and fast averages of a few health figures, and the findings in force. Each closed
//! hour is given to the detectors ([`detect`]); a finding is raised when its condition has
//! held for `persist_h` hours and cleared after `clear_h` hours without it.
//!
//! What each detector looks at, and why, is in docs/diagnosis.md.

mod average;
mod detect;
mod hour;
mod kinds;

use crate::model::{Command, Reading};
pub use average::{Avg, Banded};
pub use detect::Health;
use hour::Hour;
pub use kinds::{Design, Finding, Fleet, Kind, Settings, Unjudged, NEEDS};

/// One station's diagnosis state.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    hour: Hour,
    health: Health,
    /// Per kind: hours the condition held in a row (or has been absent, while raised).
    streak: [(u32, u32, i64); Kind::ALL.len()],
    findings: Vec<Finding>,
    /// The telemetry fields the last closed hour carried in at least half its readings.
    had: Option<Vec<&'static str>>,
}

impl Diagnosis {
    /// Takes one fresh reading and the command sent on it (if any), with what the station's
    /// design data say about it. `plant_ms` is the reading's time on the plant's clock (its
    /// `ts` times the engine's `time_scale`: an accelerated simulator's hour is the plant's
    /// hour, not the wall clock's).
    pub fn observe(
        &mut self,
        r: &Reading,
        cmd: Option<&Command>,
        design: &Design,
        plant_ms: i64,
        s: &Settings,
    ) {
        let hour_ms = plant_ms.div_euclid(3_600_000) * 3_600_000;
        if self.hour.start_ms != hour_ms && self.hour.n > 0 {
            let closed = std::mem::take(&mut self.hour);
            self.close(&closed, s);
        }
        self.hour.start_ms = hour_ms;
        self.hour.add(r, cmd, design);
    }

    /// Gives the station the fleet's yardsticks ([`Fleet::of`]), for the detectors that
    /// compare a station with the others.
    pub fn set_fleet(&mut self, fleet: Fleet) {
        self.health.fleet = fleet;
    }

    /// Whether a finding says a temperature sensor is wrong: then whatever steers on the
    /// station's temperatures (the district coordinator) should hold, not follow them.
    pub fn suspects_sensor(&self) -> bool {
        self.findings.iter().any(|f| {
            matches!(
                f.kind,
                Kind::SensorOffset | Kind::SensorDrift | Kind::SensorFrozen
            )
        })
    }

    /// Bytes it holds on the heap (the hourly heat-balance record and the findings), for the
    /// memory per station.
    pub fn heap_bytes(&self) -> usize {
        self.health.balance.capacity() * std::mem::size_of::<f64>()
            + self.findings.capacity() * std::mem::size_of::<Finding>()
            + self
                .findings
                .iter()
                .map(|f| f.evidence.capacity())
                .sum::<usize>()
    }

    /// The findings in force, most confident first.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The station's health figures (for the evidence shown with a finding, and tests).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The faults this station's telemetry does not let the diagnosis judge, each with the
    /// fields it lacks, from the last closed hour (empty before one has closed). Such a
    /// station is not known healthy for these: the API, `heatgrid diagnose` and the control
    /// room say so.
    pub fn unjudged(&self) -> Vec<Unjudged> {
        let Some(had) = &self.had else {
            return Vec::new();
        };
        NEEDS
            .iter()
            .filter_map(|(kind, needs)| {
                let lacks: Vec<&'static str> =
                    needs.iter().copied().filter(|n| !had.contains(n)).collect();
                (!lacks.is_empty()).then_some(Unjudged {
                    kind: *kind,
                    needs: lacks,
                })
            })
            .collect()
    }

    fn close(&mut self, h: &Hour, s: &Settings) {
        let most = |n: u32| n * 2 >= h.n;
        let had = [
            ("heat_kw", most(h.with_meter)),
            ("primary_supply_temp_c", most(h.with_primary)),
            ("primary_return_temp_c", most(h.with_primary)),
            ("outdoor_temp_c", most(h.outdoor.n)),
            ("valve_pct", most(h.valve_fb.n)),
        ];
        self.had = Some(had.iter().filter(|x| x.1).map(|x| x.0).collect());
        let seen = detect::update(&mut self.health, h, s);
        for (k, kind) in Kind::ALL.iter().enumerate() {
            let (held, absent, since) = &mut self.streak[k];
            match seen.iter().find(|(x, _, _)| x == kind) {
                Some((_, confidence, evidence)) => {
                    if *held == 0 {
                        *since = h.first_ts_ms.unwrap_or(h.start_ms);
                    }
                    *held += 1;
                    *absent = 0;
                    let raised = self.findings.iter_mut().find(|f| f.kind == *kind);
                    match raised {
                        Some(f) => {
                            f.confidence = *confidence;
                            f.evidence.clone_from(evidence);
                        }
                        None if *held >= s.persist_h => self.findings.push(Finding {
                            kind: *kind,
                            confidence: *confidence,
                            evidence: evidence.clone(),
                            since_ms: *since,
                        }),
                        None => {}
                    }
                }
                None => {
                    *held = 0;
                    *absent += 1;
                    if *absent >= s.clear_h {
                        self.findings.retain(|f| f.kind != *kind);
                    }
                }
            }
        }
        self.findings
            .sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    }
}

impl Fleet {
    /// The medians over `stations`; each `None` with fewer than 5 stations that have the
    /// figure: a fleet that small is no yardstick.
    pub fn of<'a>(stations: impl Iterator<Item = &'a Diagnosis> + Clone) -> Self {
        let median = |mut v: Vec<f64>| {
            if v.len() < 5 {
                return None;
            }
            let mid = v.len() / 2;
            v.select_nth_unstable_by(mid, f64::total_cmp);
            Some(v[mid])
        };
        Fleet {
            ua_per_kw: median(
                stations
                    .clone()
                    .filter_map(|d| d.health.ua_per_kw.slow)
                    .collect(),
            ),
            implied_indoor_c: median(
                stations
                    .filter_map(|d| d.health.implied_indoor.fast)
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
