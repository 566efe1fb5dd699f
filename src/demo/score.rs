//! The scores of `heatgrid scenario diagnosis`: what the diagnosis raised against the
//! simulator's truth, event-wise.
//!
//! Where it sits: after [`super::diagnosis::run`]; `score` adds runs up, `table` writes the
//! report. A fault counts as found when a finding (any kind) is raised on its station after
//! its onset; within 72 h for the recall; the kind named first decides "right kind". A
//! finding on a healthy station, or before the onset, is a false alarm.

use std::collections::BTreeMap;

use heatgrid_sim::scenario::DAY_START_MS;
use serde::Serialize;

use super::diagnosis::{names, Run};
use super::watch::Raised;

const DAY_MS: i64 = 86_400_000;

/// The scores of one or more runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Score {
    pub faults: usize,
    /// Detected within 72 h of onset, at all by the end of the run.
    pub detected_72h: usize,
    pub detected: usize,
    /// Of the detected: the first finding named the fault rightly.
    pub right_kind: usize,
    pub false_alarms: usize,
    pub healthy_station_days: f64,
    pub delays_h: Vec<f64>,
    /// Per fault kind: (faults, detected within 72 h, right kind, delays in h).
    pub per_kind: BTreeMap<String, KindScore>,
    /// truth → first named kind (or "none") → count; truth "healthy" for false alarms.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    /// Mild faults (severity below 0.35): (faults, detected within 72 h).
    pub mild: (usize, usize),
    /// Per kind named: (times named rightly, times named at all) — first findings after an
    /// onset, and false alarms.
    pub named: BTreeMap<String, (usize, usize)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KindScore {
    /// The kind the diagnosis should name it as.
    pub named_as: String,
    pub faults: usize,
    pub detected_72h: usize,
    pub right_kind: usize,
    pub delays_h: Vec<f64>,
}

impl Score {
    pub fn precision(&self) -> f64 {
        ratio(self.detected_72h, self.detected_72h + self.false_alarms)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.detected_72h, self.faults)
    }

    /// Event-wise F0.5 (precision weighted twice recall's weight): a technician sent to a
    /// healthy station costs more than a fault found a day later.
    pub fn f05(&self) -> f64 {
        f05(self.precision(), self.recall())
    }

    pub fn false_alarms_per_100_station_days(&self) -> f64 {
        100.0 * self.false_alarms as f64 / self.healthy_station_days.max(1e-9)
    }

    /// Of the times the diagnosis named fault kind `k`'s kind: the share it was right.
    pub fn precision_of(&self, k: &KindScore) -> f64 {
        let (right, all) = self.named.get(&k.named_as).copied().unwrap_or_default();
        ratio(right, all)
    }

    /// Fault kind `k`'s F0.5: its recall within 72 h and the precision of the kind it is
    /// named as.
    pub fn f05_of(&self, k: &KindScore) -> f64 {
        f05(self.precision_of(k), ratio(k.detected_72h, k.faults))
    }

    pub fn right_kind_share(&self) -> f64 {
        ratio(self.right_kind, self.detected)
    }
}

/// F0.5 of precision `p` and recall `r`.
fn f05(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        1.25 * p * r / (0.25 * p + r)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// The `q` quantile of `v` (nearest rank), `None` if empty.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    v.get(k).copied()
}

/// Scores runs against their truth (added up over the runs).
pub fn score(runs: &[Run]) -> Score {
    let mut sc = Score::default();
    for run in runs {
        let end_ms = DAY_START_MS + (run.days * DAY_MS as f64) as i64;
        for (i, truth) in run.truth.iter().enumerate() {
            let mine = run.raised.iter().filter(|r| r.station == i);
            let onset = truth.map_or(end_ms, |t| t.onset_ms);
            let false_alarms: Vec<&Raised> = mine.clone().filter(|r| r.at_ms < onset).collect();
            sc.false_alarms += false_alarms.len();
            sc.healthy_station_days += (onset - DAY_START_MS) as f64 / DAY_MS as f64;
            for r in &false_alarms {
                sc.named.entry(r.kind.as_str().into()).or_default().1 += 1;
                *sc.confusion
                    .entry("healthy".into())
                    .or_default()
                    .entry(r.kind.as_str().into())
                    .or_default() += 1;
            }
            let Some(t) = truth else {
                continue;
            };
            let first = mine.clone().find(|r| r.at_ms >= t.onset_ms);
            let name = format!("{:?}", t.kind);
            let ks = sc.per_kind.entry(name.clone()).or_default();
            ks.faults += 1;
            ks.named_as = names(t.kind).first().map_or("", |k| k.as_str()).into();
            sc.faults += 1;
            let mild = t.severity < 0.35;
            sc.mild.0 += usize::from(mild);
            *sc.confusion
                .entry(name)
                .or_default()
                .entry(first.map_or("none", |r| r.kind.as_str()).into())
                .or_default() += 1;
            if let Some(r) = first {
                let delay_h = (r.at_ms - t.onset_ms) as f64 / 3_600_000.0;
                let right = names(t.kind).contains(&r.kind);
                sc.detected += 1;
                let named = sc.named.entry(r.kind.as_str().into()).or_default();
                named.0 += usize::from(right);
                named.1 += 1;
                sc.right_kind += usize::from(right);
                ks.right_kind += usize::from(right);
                sc.delays_h.push(delay_h);
                ks.delays_h.push(delay_h);
                if delay_h <= 72.0 {
                    sc.detected_72h += 1;
                    ks.detected_72h += 1;
                    sc.mild.1 += usize::from(mild);
                }
            }
        }
    }
    sc
}

/// The scores as a report: overall, per fault kind, the confusion matrix.
pub fn table(runs: &[Run], sc: &Score) -> String {
    use comfy_table::{presets::ASCII_MARKDOWN, Table};
    let seeds: Vec<String> = runs.iter().map(|r| r.seed.to_string()).collect();
    let station_days: f64 = runs.iter().map(|r| r.stations as f64 * r.days).sum();
    let hours = |v: &[f64], q: f64| quantile(v, q).map_or("–".into(), |h| format!("{h:.0} h"));
    let mut out = format!(
        "diagnosis on injected faults · fortnight weather · unbalanced fleet · seeds {} · \
         {} stations × {} days each ({station_days:.0} station-days) · {} faults\n\n",
        seeds.join(", "),
        runs.first().map_or(0, |r| r.stations),
        runs.first().map_or(0.0, |r| r.days),
        sc.faults,
    );
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN).set_header([
        "precision",
        "recall ≤ 72 h",
        "F0.5",
        "right kind",
        "delay median",
        "delay p90",
        "false alarms / 100 station-days",
        "mild found ≤ 72 h",
    ]);
    t.add_row([
        format!("{:.2}", sc.precision()),
        format!("{:.2}", sc.recall()),
        format!("{:.2}", sc.f05()),
        format!("{:.2}", sc.right_kind_share()),
        hours(&sc.delays_h, 0.5),
        hours(&sc.delays_h, 0.9),
        format!("{:.2}", sc.false_alarms_per_100_station_days()),
        format!("{} of {}", sc.mild.1, sc.mild.0),
    ]);
    out.push_str(&t.to_string());
    out.push_str("\n\n");
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN).set_header([
        "fault",
        "faults",
        "found ≤ 72 h",
        "right kind",
        "precision (as named)",
        "F0.5",
        "delay median",
        "delay p90",
    ]);
    for (k, ks) in &sc.per_kind {
        t.add_row([
            k.clone(),
            ks.faults.to_string(),
            ks.detected_72h.to_string(),
            ks.right_kind.to_string(),
            format!("{:.2} ({})", sc.precision_of(ks), ks.named_as),
            format!("{:.2}", sc.f05_of(ks)),
            hours(&ks.delays_h, 0.5),
            hours(&ks.delays_h, 0.9),
        ]);
    }
    out.push_str(&t.to_string());
    out.push_str(
        "\n\nconfusion (fault → first kind named after its onset; healthy → false alarms)\n\n",
    );
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN)
        .set_header(["fault", "named (count)"]);
    for (truth, named) in &sc.confusion {
        let cells: Vec<String> = named.iter().map(|(k, n)| format!("{k} {n}")).collect();
        t.add_row([truth.clone(), cells.join(", ")]);
    }
    out.push_str(&t.to_string());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::super::diagnosis::Truth;
    use super::*;
    use crate::diagnose::Kind;
    use heatgrid_sim::faults::FaultKind;

    fn raised(station: usize, kind: Kind, hour: f64) -> Raised {
        Raised {
            station,
            kind,
            at_ms: DAY_START_MS + (hour * 3_600_000.0) as i64,
        }
    }

    /// Three faulty stations and seven healthy ones over ten days: one fault found right in
    /// 5 h, one found as the wrong kind after 80 h (too late for the 72 h recall), one missed;
    /// a false alarm on a healthy station and one on a faulty station before its onset.
    #[test]
    fn scores_count_events_delays_and_kinds() {
        let truth = |kind, onset_h: f64| {
            Some(Truth {
                kind,
                severity: 0.2,
                onset_ms: DAY_START_MS + (onset_h * 3_600_000.0) as i64,
            })
        };
        let mut t = vec![None; 10];
        t[0] = truth(FaultKind::Bypass, 48.0);
        t[1] = truth(FaultKind::WrongArea, 24.0);
        t[2] = truth(FaultKind::ValveLeak, 24.0);
        let run = Run {
            seed: 1,
            stations: 10,
            days: 10.0,
            truth: t,
            raised: vec![
                raised(0, Kind::Fouling, 10.0),
                raised(0, Kind::Bypass, 53.0),
                raised(1, Kind::Undersized, 104.0),
                raised(1, Kind::OverFired, 110.0),
                raised(5, Kind::SensorOffset, 30.0),
            ],
            commands_accepted: 0,
        };
        let sc = score(std::slice::from_ref(&run));
        assert_eq!((sc.faults, sc.detected, sc.detected_72h), (3, 2, 1));
        assert_eq!(sc.false_alarms, 2);
        assert_eq!(sc.right_kind, 1);
        assert_eq!(sc.delays_h, [5.0, 80.0]);
        assert!((sc.precision() - 1.0 / 3.0).abs() < 1e-9);
        assert!((sc.recall() - 1.0 / 3.0).abs() < 1e-9);
        assert!((sc.f05() - 1.0 / 3.0).abs() < 1e-9);
        // Healthy time: 7 × 10 days, and the faulty stations before their onsets.
        assert!((sc.healthy_station_days - (70.0 + 2.0 + 1.0 + 1.0)).abs() < 1e-9);
        assert_eq!(sc.confusion["WrongArea"]["undersized"], 1);
        assert_eq!(sc.confusion["ValveLeak"]["none"], 1);
        assert_eq!(sc.confusion["healthy"]["fouling"], 1);
        assert_eq!(sc.mild, (3, 1));
        // Bypass named once, rightly; undersized once, wrongly; over_fired never first.
        let bypass = &sc.per_kind["Bypass"];
        assert_eq!((sc.precision_of(bypass), sc.f05_of(bypass)), (1.0, 1.0));
        assert_eq!(sc.named["undersized"], (0, 1));
        assert_eq!(sc.named["fouling"], (0, 1));
        let area = &sc.per_kind["WrongArea"];
        assert_eq!(area.named_as, "over_fired");
        assert_eq!(sc.f05_of(area), 0.0);
        let text = table(&[run], &sc);
        assert!(text.contains("| Bypass ") && text.contains("false alarms / 100 station-days"));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[], 0.9), None);
    }
}
