//! The failover checker: what one scenario must show, judged from the stations' own record of
//! every command they received (the simulator's), each instance's ownership log
//! (`data_dir/ownership.jsonl`) and the telemetry stored in the database.

use std::collections::{BTreeMap, BTreeSet};

use heatgrid::cluster::partition::partition_of;
use heatgrid_sim::CommandRecord;

/// One line of an instance's ownership log.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct OwnEvent {
    pub t_ms: i64,
    pub event: String,
    pub partition: u32,
    pub epoch: u64,
}

/// Everything one scenario left behind.
pub struct Evidence {
    pub partitions: u32,
    pub commands: Vec<CommandRecord>,
    /// (instance, its ownership log).
    pub ownership: Vec<(String, Vec<OwnEvent>)>,
    /// Per station, the `tele_seq` values stored.
    pub stored: BTreeMap<String, BTreeSet<u64>>,
    /// Every station that must stay commanded (MQTT and Modbus).
    pub stations: Vec<String>,
    /// Per MQTT station, how many telemetry messages it published.
    pub published: BTreeMap<String, u64>,
    /// Every station was commanded from here on.
    pub steady_ms: i64,
    pub end_ms: i64,
    /// A window in which stations may go without commands (etcd without quorum).
    pub excused: Option<(i64, i64)>,
    /// A window in which no command may be accepted (every instance fenced).
    pub silent: Option<(i64, i64)>,
    /// Commands refused as older than the last accepted are allowed (a paused instance).
    pub stale_refusals_allowed: bool,
    /// The fault moves stations to another owner (a kill, pause, cut from etcd, stop, join):
    /// the bumpless check then fails if no station saw a new epoch.
    pub owner_change_expected: bool,
    /// An operator's change that must still be in force: (station, what was asked, what the
    /// station's owner reports at the end).
    pub operator: Option<(String, f64, Option<f64>)>,
    /// Readings that may be missing, as docs/cluster.md bounds them: an instance killed with
    /// its disk during a database outage takes with it what it acknowledged from its spool
    /// since the outage began. (its stations, at most this many readings each).
    pub loss_allowed: Option<(BTreeSet<String>, u64)>,
}

/// One verdict.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// The longest time between two accepted commands a station may see, ms.
pub const MAX_GAP_MS: i64 = 30_000;
/// A new owner's first command against the last accepted one: the valve's and the pump's
/// rate limits over one 5 s step (100 % in 60 s and 30 s), plus rounding.
const VALVE_STEP: f64 = 100.0 / 60.0 * 5.0 + 0.05;
const PUMP_STEP: f64 = 100.0 / 30.0 * 5.0 + 0.05;
/// …and its supply setpoint: it starts from the measured supply (within the station's
/// control error of the old setpoint) and ramps at 2 K/min.
const SETPOINT_STEP_K: f64 = 1.5;

pub fn check(e: &Evidence) -> Vec<Check> {
    let mut out = vec![exclusive(e), liveness(e), complete(e), bumpless(e)];
    if let Some((station, asked, seen)) = &e.operator {
        out.push(Check {
            name: "operator change kept",
            passed: seen.is_some_and(|s| (s - asked).abs() < 1e-9),
            detail: format!("{station}: asked {asked} K, the owner now reports {seen:?}"),
        });
    }
    out
}

fn by_station(e: &Evidence) -> BTreeMap<&str, Vec<&CommandRecord>> {
    let mut m: BTreeMap<&str, Vec<&CommandRecord>> = BTreeMap::new();
    for c in &e.commands {
        m.entry(c.station.as_str()).or_default().push(c);
    }
    m
}

/// Who led a (partition, epoch), from when, until when (`None`: to the end).
type Lead<'a> = (&'a str, i64, Option<i64>);

/// Each accepted command's epoch was led by exactly one instance, for the station's
/// partition, and the command arrived inside that lead; accepted pairs only grow; no command
/// was refused as stale unless the scenario allows it.
fn exclusive(e: &Evidence) -> Check {
    // (partition, epoch) → (instance, lead time, lost time).
    let mut leads: BTreeMap<(u32, u64), Vec<Lead<'_>>> = BTreeMap::new();
    for (name, log) in &e.ownership {
        for ev in log.iter().filter(|ev| ev.event == "lead") {
            let lost = log
                .iter()
                .find(|l| {
                    l.event == "lost"
                        && l.partition == ev.partition
                        && l.epoch == ev.epoch
                        && l.t_ms >= ev.t_ms
                })
                .map(|l| l.t_ms);
            leads
                .entry((ev.partition, ev.epoch))
                .or_default()
                .push((name.as_str(), ev.t_ms, lost));
        }
    }
    let mut problems = Vec::new();
    let (mut accepted, mut stale, mut duplicates) = (0, 0, 0);
    for (station, cmds) in by_station(e) {
        let p = partition_of(station, e.partitions);
        let mut last: Option<(u64, u64)> = None;
        for c in cmds {
            let key = (c.epoch, c.seq);
            if !c.accepted {
                match last {
                    Some(l) if key == l => duplicates += 1,
                    _ => stale += 1,
                }
                continue;
            }
            accepted += 1;
            if last.is_some_and(|l| key <= l) {
                problems.push(format!("{station}: accepted {key:?} after {last:?}"));
            }
            last = Some(key);
            let Some(spans) = leads.get(&(p, c.epoch)) else {
                problems.push(format!(
                    "{station}: epoch {} of partition {p} is in no ownership log",
                    c.epoch
                ));
                continue;
            };
            let holders: BTreeSet<&str> = spans.iter().map(|(n, _, _)| *n).collect();
            if holders.len() > 1 {
                problems.push(format!("{station}: epoch {} led by {holders:?}", c.epoch));
            }
            // 1 s for the command's way through the broker.
            let inside = spans
                .iter()
                .any(|(_, lead, lost)| c.t_ms >= *lead && lost.is_none_or(|l| c.t_ms <= l + 1_000));
            if !inside {
                problems.push(format!(
                    "{station}: epoch {} command at {} outside every lead {spans:?}",
                    c.epoch, c.t_ms
                ));
            }
            if let Some((a, b)) = e.silent {
                if c.t_ms > a && c.t_ms < b {
                    problems.push(format!(
                        "{station}: command accepted at {} while every instance must be fenced",
                        c.t_ms
                    ));
                }
            }
        }
    }
    if stale > 0 && !e.stale_refusals_allowed {
        problems.push(format!("{stale} commands refused as stale"));
    }
    Check {
        name: "one controller per station",
        passed: problems.is_empty() && accepted > 0,
        detail: format!(
            "{accepted} accepted, {stale} refused as stale, {duplicates} redelivered duplicates; {}",
            summary(&problems)
        ),
    }
}

/// Per station, the longest time without an accepted command from steady state to the end
/// (a window without quorum excused).
fn liveness(e: &Evidence) -> Check {
    let mut worst = (0i64, String::new());
    let mut problems = Vec::new();
    let stations = by_station(e);
    for station in &e.stations {
        let mut times: Vec<i64> = stations
            .get(station.as_str())
            .map(|c| c.iter().filter(|c| c.accepted).map(|c| c.t_ms).collect())
            .unwrap_or_default();
        times.retain(|t| *t >= e.steady_ms && *t <= e.end_ms);
        times.insert(0, e.steady_ms);
        times.push(e.end_ms);
        for w in times.windows(2) {
            let mut gap = w[1] - w[0];
            if let Some((a, b)) = e.excused {
                if w[0] < b && w[1] > a {
                    gap -= b.min(w[1]) - a.max(w[0]);
                }
            }
            if gap > worst.0 {
                worst = (gap, station.clone());
            }
            if gap > MAX_GAP_MS {
                problems.push(format!("{station}: {:.1} s", gap as f64 / 1000.0));
            }
        }
    }
    Check {
        name: "takeover in time",
        passed: problems.is_empty(),
        detail: format!(
            "longest gap {:.1} s ({}); {}",
            worst.0 as f64 / 1000.0,
            worst.1,
            summary(&problems)
        ),
    }
}

/// Per station, the stored telemetry counters are contiguous from the first stored one to
/// the last published (duplicates allowed); only messages from before the first subscription
/// may be missing.
pub fn complete(e: &Evidence) -> Check {
    let mut problems = Vec::new();
    if e.published.is_empty() {
        problems.push("no station published anything".to_owned());
    }
    let (mut stored_total, mut published_total) = (0usize, 0u64);
    let mut tolerated = 0;
    for (station, &published) in &e.published {
        published_total += published;
        let Some(s) = e.stored.get(station).filter(|s| !s.is_empty()) else {
            problems.push(format!("{station}: nothing stored"));
            continue;
        };
        if published == 0 {
            problems.push(format!("{station}: published nothing"));
        }
        stored_total += s.len();
        let first = *s.iter().next().unwrap_or(&0);
        let missing: Vec<u64> = (first..=published).filter(|k| !s.contains(k)).collect();
        if first > 3 {
            problems.push(format!("{station}: first stored message is #{first}"));
        }
        let allowed = e
            .loss_allowed
            .as_ref()
            .filter(|(stations, _)| stations.contains(station))
            .map_or(0, |(_, n)| *n);
        if !missing.is_empty() && missing.len() as u64 <= allowed {
            tolerated += missing.len();
        } else if !missing.is_empty() {
            problems.push(format!(
                "{station}: {} of {published} missing, first #{}",
                missing.len(),
                missing[0]
            ));
        }
    }
    Check {
        name: "telemetry complete",
        passed: problems.is_empty(),
        detail: match &e.loss_allowed {
            None => format!(
                "{stored_total} stored of {published_total} published; {}",
                summary(&problems)
            ),
            Some((stations, n)) => format!(
                "{stored_total} stored of {published_total} published; {tolerated} missing within the bound ({n} each of the dead instance's {} stations); {}",
                stations.len(),
                summary(&problems)
            ),
        },
    }
}

/// At every change of epoch, the new owner's first command against the last one the station
/// accepted: no output moved faster than its rate limit.
fn bumpless(e: &Evidence) -> Check {
    let mut problems = Vec::new();
    let mut changes = 0;
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for (station, cmds) in by_station(e) {
        let accepted: Vec<&&CommandRecord> = cmds.iter().filter(|c| c.accepted).collect();
        for w in accepted.windows(2) {
            let (prev, first) = (w[0], w[1]);
            if prev.epoch == first.epoch {
                continue;
            }
            changes += 1;
            let dv = (first.valve_pct - prev.valve_pct).abs();
            let dp = (first.pump_pct - prev.pump_pct).abs();
            let ds = (first.supply_setpoint_c - prev.supply_setpoint_c).abs();
            worst = (worst.0.max(dv), worst.1.max(dp), worst.2.max(ds));
            if dv > VALVE_STEP || dp > PUMP_STEP || ds > SETPOINT_STEP_K {
                problems.push(format!(
                    "{station}: epoch {}→{}: valve {:+.1} %, pump {:+.1} %, setpoint {:+.2} K",
                    prev.epoch,
                    first.epoch,
                    first.valve_pct - prev.valve_pct,
                    first.pump_pct - prev.pump_pct,
                    first.supply_setpoint_c - prev.supply_setpoint_c
                ));
            }
        }
    }
    if changes == 0 && e.owner_change_expected {
        problems.push("no station saw its owner change, yet the fault should move them".into());
    }
    Check {
        name: "bumpless takeover",
        passed: problems.is_empty(),
        detail: format!(
            "{changes} owner changes; largest first steps: valve {:.1} %, pump {:.1} %, setpoint {:.2} K; {}",
            worst.0,
            worst.1,
            worst.2,
            summary(&problems)
        ),
    }
}

fn summary(problems: &[String]) -> String {
    match problems.len() {
        0 => "ok".into(),
        n => format!(
            "{n} problem(s): {}{}",
            problems[..n.min(3)].join("; "),
            if n > 3 { "; …" } else { "" }
        ),
    }
}

/// Per partition that changed hands between `fault_ms` and `end_ms`: how long after the
/// fault its new lead began, ms.
pub fn takeovers(ownership: &[(String, Vec<OwnEvent>)], fault_ms: i64, end_ms: i64) -> Vec<i64> {
    let mut first: BTreeMap<u32, i64> = BTreeMap::new();
    for (_, log) in ownership {
        for ev in log
            .iter()
            .filter(|ev| ev.event == "lead" && ev.t_ms >= fault_ms && ev.t_ms <= end_ms)
        {
            let t = first.entry(ev.partition).or_insert(ev.t_ms);
            *t = (*t).min(ev.t_ms);
        }
    }
    first.values().map(|t| t - fault_ms).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(t_ms: i64, epoch: u64, seq: u64, accepted: bool, valve: f64) -> CommandRecord {
        CommandRecord {
            t_ms,
            station: "s".into(),
            epoch,
            seq,
            accepted,
            supply_setpoint_c: 50.0,
            valve_pct: valve,
            pump_pct: 70.0,
            supply_c: 50.0,
        }
    }

    fn lead(t_ms: i64, epoch: u64) -> OwnEvent {
        OwnEvent {
            t_ms,
            event: "lead".into(),
            partition: partition_of("s", 4),
            epoch,
        }
    }

    fn evidence(commands: Vec<CommandRecord>) -> Evidence {
        Evidence {
            partitions: 4,
            commands,
            ownership: vec![
                ("a".into(), vec![lead(0, 5)]),
                ("b".into(), vec![lead(20_000, 9)]),
            ],
            stored: [("s".to_owned(), (1..=10).collect())].into(),
            stations: vec!["s".into()],
            published: [("s".to_owned(), 10)].into(),
            steady_ms: 1_000,
            end_ms: 40_000,
            excused: None,
            silent: None,
            stale_refusals_allowed: false,
            owner_change_expected: true,
            operator: None,
            loss_allowed: None,
        }
    }

    #[test]
    fn a_clean_handover_passes_every_check() {
        let e = evidence(vec![
            cmd(1_000, 5, 1, true, 40.0),
            cmd(6_000, 5, 2, true, 41.0),
            cmd(21_000, 9, 1, true, 44.0),
            cmd(26_000, 9, 2, true, 44.0),
            cmd(36_000, 9, 3, true, 44.0),
        ]);
        for c in check(&e) {
            assert!(c.passed, "{c:?}");
        }
    }

    #[test]
    fn each_violation_is_caught() {
        let mut e = evidence(vec![
            cmd(1_000, 5, 1, true, 40.0),
            // A zombie's command refused by the station's fence.
            cmd(22_000, 5, 2, false, 40.0),
            // An epoch nobody led, and a valve jump on the change.
            cmd(33_000, 7, 1, true, 60.0),
            cmd(36_000, 9, 1, true, 60.0),
        ]);
        e.stored = [("s".to_owned(), [1, 2, 4].into())].into();
        e.operator = Some(("s".into(), 3.0, None));
        let failed: Vec<&str> = check(&e)
            .into_iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            failed,
            [
                "one controller per station",
                "takeover in time",
                "telemetry complete",
                "bumpless takeover",
                "operator change kept"
            ]
        );
    }

    #[test]
    fn absent_subjects_fail_their_checks() {
        // No owner changed, though the fault should have moved the station.
        let e = evidence(vec![
            cmd(1_000, 5, 1, true, 40.0),
            cmd(6_000, 5, 2, true, 41.0),
        ]);
        let bumpless = check(&e)
            .into_iter()
            .find(|c| c.name == "bumpless takeover");
        assert!(bumpless.is_some_and(|c| !c.passed));
        // Nothing published: completeness has nothing to stand on.
        let mut e = evidence(vec![cmd(1_000, 5, 1, true, 40.0)]);
        e.published.clear();
        e.stored.clear();
        let complete = check(&e)
            .into_iter()
            .find(|c| c.name == "telemetry complete");
        assert!(complete.is_some_and(|c| !c.passed));
    }

    #[test]
    fn a_loss_is_tolerated_only_for_the_dead_instances_stations_and_within_the_bound() {
        let mut e = evidence(Vec::new());
        e.published = [("s".to_owned(), 10), ("t".to_owned(), 10)].into();
        let gaps = |n: u64| (1..=10).filter(|k| *k <= 4 || *k > 4 + n).collect();
        e.stored = [
            ("s".to_owned(), gaps(2)),
            ("t".to_owned(), (1..=10).collect()),
        ]
        .into();
        assert!(!complete(&e).passed, "no loss allowed");
        e.loss_allowed = Some((["s".to_owned()].into(), 2));
        assert!(complete(&e).passed, "{:?}", complete(&e));
        e.stored.insert("s".into(), gaps(3));
        assert!(!complete(&e).passed, "one more than the bound");
        e.stored = [
            ("s".to_owned(), (1..=10).collect()),
            ("t".to_owned(), gaps(1)),
        ]
        .into();
        assert!(!complete(&e).passed, "not the dead instance's station");
    }
}
