//! Alarm conditions as a pure function of a station's status: which conditions hold now, for
//! how long each must hold before it is raised, and the numbers behind the message.
//!
//! Where it sits: the alarm task calls [`station_checks`] for every station of each status
//! snapshot the control task publishes, and `engine.rs`'s `StorageWatch::check` once per snapshot for the
//! engine-wide storage condition, and hands every [`Check`] to the [`super::AlarmBook`]. The
//! message text is only formatted when an alarm is raised ([`Detail`]'s `Display`).

use std::collections::VecDeque;
use std::fmt;

use super::{AlarmKind, Thresholds};
use crate::control::status::StationStatus;
use crate::control::Outputs;
use crate::model::{Mode, Reading};

/// One station's alarm settings: its thresholds and the limits of its controller.
#[derive(Debug, Clone, PartialEq)]
pub struct StationAlarms {
    pub thresholds: Thresholds,
    pub supply_max_c: f64,
    pub return_limit_c: f64,
    pub valve_min_pct: f64,
    pub valve_max_pct: f64,
    pub valve_dead_band_k: f64,
    pub staleness_ms: i64,
}

/// One condition at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Check<'a> {
    pub kind: AlarmKind,
    pub active: bool,
    /// How long it must hold before the alarm is raised, ms.
    pub hold_ms: i64,
    /// The figure stored with the alarm point.
    pub value: f64,
    pub detail: Detail<'a>,
}

/// The numbers an alarm's message is made of.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail<'a> {
    Stale {
        age_s: Option<f64>,
    },
    CommLost {
        modbus_error: Option<&'a str>,
    },
    Rejected {
        per_min: u64,
    },
    OutOfRange {
        supply_c: f64,
        limit_c: f64,
    },
    Deviation {
        supply_c: f64,
        setpoint_c: f64,
        dev_k: f64,
    },
    ReturnHigh {
        return_c: f64,
        limit_c: f64,
    },
    ValveSaturated {
        valve_pct: f64,
        dev_k: f64,
    },
    LowDeltaT {
        delta_t_k: f64,
        limit_k: f64,
    },
    Storage {
        errors: u64,
        refused: u64,
        dead: u64,
    },
    /// The most confident finding, and how many more there are.
    Suspected {
        finding: Option<&'a crate::diagnose::Finding>,
        more: usize,
    },
    PlantStale {
        plant: &'a str,
        age_s: Option<f64>,
        /// Why the plant's Modbus link fails, when it does.
        comm: Option<&'a str>,
    },
    PressureLow {
        at: &'a str,
        dp_kpa: f64,
        min_kpa: f64,
    },
    NotifyFailed {
        lost: u64,
    },
}

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Detail::Stale { age_s: Some(a) } => {
                write!(f, "no fresh telemetry for {a:.0} s; outputs held, no command sent")
            }
            Detail::Stale { age_s: None } => {
                f.write_str("no telemetry received since the engine started")
            }
            Detail::CommLost {
                modbus_error: Some(e),
            } if e.starts_with("OPC UA") => f.write_str(e),
            Detail::CommLost {
                modbus_error: Some(e),
            } => write!(f, "Modbus: {e}"),
            Detail::CommLost { modbus_error: None } => f.write_str("station presence is offline"),
            Detail::Rejected { per_min } => {
                write!(f, "{per_min} payloads rejected in the last minute")
            }
            Detail::OutOfRange { supply_c, limit_c } => {
                write!(f, "supply reading {supply_c:.1} °C above {limit_c:.1} °C")
            }
            Detail::Deviation {
                supply_c,
                setpoint_c,
                dev_k,
            } => write!(
                f,
                "supply {supply_c:.1} °C is {dev_k:+.1} K from its setpoint {setpoint_c:.1} °C"
            ),
            Detail::ReturnHigh { return_c, limit_c } => {
                write!(f, "return {return_c:.1} °C above its limit {limit_c:.1} °C")
            }
            Detail::ValveSaturated { valve_pct, dev_k } => write!(
                f,
                "valve at {valve_pct:.0} % and supply still {dev_k:+.1} K from setpoint: cannot reach it"
            ),
            Detail::LowDeltaT { delta_t_k, limit_k } => write!(
                f,
                "supply − return only {delta_t_k:.1} K (below {limit_k:.1} K): poor cooling"
            ),
            Detail::Storage {
                errors,
                refused,
                dead,
            } => write!(
                f,
                "storage trouble: {errors} write errors, {refused} points refused, {dead} dead letters so far"
            ),
            Detail::Suspected { finding: None, .. } => f.write_str("no fault suspected"),
            Detail::PlantStale { plant, age_s, comm } => {
                match age_s {
                    Some(a) => write!(f, "no telemetry from plant {plant} for {a:.0} s: the plant loop plans without it")?,
                    None => write!(f, "no telemetry from plant {plant} since the engine started")?,
                }
                match comm {
                    Some(c) => write!(f, " ({c})"),
                    None => Ok(()),
                }
            }
            Detail::PressureLow {
                at,
                dp_kpa,
                min_kpa,
            } => write!(
                f,
                "{at} sees {dp_kpa:.0} kPa, below the {min_kpa:.0} kPa minimum: its valve may not pass its flow"
            ),
            Detail::NotifyFailed { lost } => write!(
                f,
                "{lost} alarm notification(s) could not be delivered so far (see the log and \
                 heatgrid_notification_dead_letters)"
            ),
            Detail::Suspected {
                finding: Some(finding),
                more,
            } => {
                write!(
                    f,
                    "suspected {} ({:.0} %): {}",
                    finding.kind.as_str(),
                    finding.confidence * 100.0,
                    finding.evidence
                )?;
                if more > 0 {
                    write!(f, "; {more} more finding(s)")?;
                }
                Ok(())
            }
        }
    }
}

/// Every condition of one station at `now`, appended to `out`. `rejected_last_min` is the
/// count of its payloads rejected in the last minute ([`RejectWindow`]); `since_start_ms` how
/// long the engine has run (a station that never reported is only stale after its staleness
/// time). Without fresh data the conditions that need a reading are left out: they keep the
/// state they had.
pub fn station_checks<'a>(
    st: &'a StationStatus,
    s: &StationAlarms,
    rejected_last_min: u64,
    since_start_ms: i64,
    now: i64,
    out: &mut Vec<Check<'a>>,
) {
    let age_s = st.reading.as_ref().map(|r| (now - r.ts_ms) as f64 / 1000.0);
    let stale = st.stale && (st.reading.is_some() || since_start_ms > s.staleness_ms);
    out.push(check(
        AlarmKind::Stale,
        stale,
        0,
        age_s.unwrap_or(-1.0),
        Detail::Stale { age_s },
    ));
    let modbus_error = st.link_error.as_deref();
    out.push(check(
        AlarmKind::CommLost,
        st.offline || modbus_error.is_some(),
        0,
        0.0,
        Detail::CommLost { modbus_error },
    ));
    out.push(check(
        AlarmKind::RejectedRepeatedly,
        rejected_last_min > s.thresholds.rejected_per_min,
        0,
        rejected_last_min as f64,
        Detail::Rejected {
            per_min: rejected_last_min,
        },
    ));
    // Findings stand on hours of data: they hold through a stale spell.
    let finding = st.findings.first();
    out.push(check(
        AlarmKind::FaultSuspected,
        finding.is_some(),
        0,
        finding.map_or(0.0, |f| f.confidence),
        Detail::Suspected {
            finding,
            more: st.findings.len().saturating_sub(1),
        },
    ));
    if let (Some(r), Some(o)) = (st.reading.as_ref().filter(|_| !st.stale), &st.outputs) {
        reading_checks(r, o, st.mode == Mode::Auto, s, out);
    }
}

fn check(kind: AlarmKind, active: bool, hold_ms: i64, value: f64, detail: Detail<'_>) -> Check<'_> {
    Check {
        kind,
        active,
        hold_ms,
        value,
        detail,
    }
}

/// The conditions judged on a fresh reading and the outputs computed from it.
fn reading_checks(
    r: &Reading,
    o: &Outputs,
    auto: bool,
    s: &StationAlarms,
    out: &mut Vec<Check<'_>>,
) {
    let th = &s.thresholds;
    let limit_c = s.supply_max_c + th.out_of_range_margin_k;
    let supply_c = r.supply_temp_c;
    out.push(check(
        AlarmKind::OutOfRange,
        supply_c > limit_c,
        0,
        supply_c,
        Detail::OutOfRange { supply_c, limit_c },
    ));
    let dev_k = supply_c - o.supply_setpoint_c;
    out.push(check(
        AlarmKind::SupplyDeviation,
        auto && dev_k.abs() > th.deviation_k,
        th.deviation_for_ms,
        dev_k,
        Detail::Deviation {
            supply_c,
            setpoint_c: o.supply_setpoint_c,
            dev_k,
        },
    ));
    out.push(check(
        AlarmKind::ReturnHigh,
        r.return_temp_c > s.return_limit_c,
        th.return_high_for_ms,
        r.return_temp_c,
        Detail::ReturnHigh {
            return_c: r.return_temp_c,
            limit_c: s.return_limit_c,
        },
    ));
    let db = s.valve_dead_band_k;
    let saturated = auto
        && ((o.valve_pct >= s.valve_max_pct - 0.5 && dev_k < -db)
            || (o.valve_pct <= s.valve_min_pct + 0.5 && dev_k > db));
    out.push(check(
        AlarmKind::ValveSaturated,
        saturated,
        th.valve_saturated_for_ms,
        o.valve_pct,
        Detail::ValveSaturated {
            valve_pct: o.valve_pct,
            dev_k,
        },
    ));
    let delta_t_k = r.delta_t_k();
    out.push(check(
        AlarmKind::LowDeltaT,
        r.flow_m3h > 0.0 && delta_t_k < th.low_delta_t_k,
        th.low_delta_t_for_ms,
        delta_t_k,
        Detail::LowDeltaT {
            delta_t_k,
            limit_k: th.low_delta_t_k,
        },
    ));
}

/// A station's rejected-payload counts over the last minute.
#[derive(Debug, Clone, Default)]
pub struct RejectWindow(VecDeque<(i64, u64)>);

impl RejectWindow {
    /// Takes the station's total rejects at `now`; returns how many came in the last minute.
    pub fn per_min(&mut self, now: i64, rejects: u64) -> u64 {
        self.0.push_back((now, rejects));
        while self.0.front().is_some_and(|(t, _)| now - t > 60_000) {
            self.0.pop_front();
        }
        rejects - self.0.front().map_or(rejects, |(_, r)| *r)
    }
}

/// The plant's conditions at `now`: its telemetry stale (as the plant task judged it), and
/// the least differential pressure any fresh station or pressure point sees below 90 % of the
/// minimum for two minutes.
pub fn plant_checks(p: &crate::control::plant_task::PlantStatus, now: i64) -> [Check<'_>; 2] {
    let age_s = p.reading.as_ref().map(|r| (now - r.ts_ms) as f64 / 1000.0);
    let lowest = p
        .points
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .chain(p.lowest_station_dp.as_ref().map(|(k, v)| (k.as_str(), *v)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    [
        Check {
            kind: AlarmKind::PlantStale,
            active: p.stale,
            hold_ms: 0,
            value: age_s.unwrap_or(-1.0),
            detail: Detail::PlantStale {
                plant: &p.id,
                age_s,
                comm: p.comm_error.as_deref(),
            },
        },
        Check {
            kind: AlarmKind::PressureLow,
            active: lowest.is_some_and(|(_, dp)| dp < 0.9 * p.min_dp_kpa),
            hold_ms: 120_000,
            value: lowest.map_or(0.0, |l| l.1),
            detail: Detail::PressureLow {
                at: lowest.map_or("?", |l| l.0),
                dp_kpa: lowest.map_or(0.0, |l| l.1),
                min_kpa: p.min_dp_kpa,
            },
        },
    ]
}

#[cfg(test)]
mod tests;
