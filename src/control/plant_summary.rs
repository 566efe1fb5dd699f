//! A cluster's plant loop: each instance sums up the stations of the partitions it leads
//! ([`Summary`]: how many are fresh, the most demanding and the worst-off one) and keeps that
//! in etcd under [`SUMMARY_PREFIX`]; partition 0's owner plans on every partition's.
//!
//! Where it sits: used by [`super::plant_task`]; the loop itself is [`super::plant`].

use std::collections::BTreeMap;

use super::plant::PlantController;
use crate::cluster::state::StateWrite;

/// Where the partitions' summaries are kept in etcd.
pub(super) const SUMMARY_PREFIX: &str = "heatgrid/plant/summary/";

/// One partition's stations as the plant loop needs them, kept in etcd by its owner: how many
/// are fresh, and the most demanding and the worst-off one (id, demand %, Δp kPa).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Summary {
    pub(super) ts_ms: i64,
    pub(super) fresh: usize,
    pub(super) critical: Option<(String, f64, Option<f64>)>,
    pub(super) lowest: Option<(String, f64, Option<f64>)>,
    /// The most demanding station's primary supply, °C: partition 0's owner learns the
    /// transport time to it as a single instance does.
    #[serde(default)]
    pub(super) critical_primary_c: Option<f64>,
}

impl Summary {
    /// Takes in one station's reading and setpoint.
    pub(super) fn add(&mut self, id: &str, r: &crate::model::Reading, setpoint_c: f64) {
        use super::plant::{demand_of, dp_of, primary_of};
        self.fresh += 1;
        let (demand, dp) = (demand_of(r, Some(setpoint_c)), dp_of(r));
        if self.critical.as_ref().is_none_or(|c| demand > c.1) {
            self.critical = Some((id.to_owned(), demand, dp));
            self.critical_primary_c = primary_of(r);
        }
        if let Some(d) = dp {
            if self
                .lowest
                .as_ref()
                .is_none_or(|l| l.2.is_none_or(|x| d < x))
            {
                self.lowest = Some((id.to_owned(), demand, dp));
            }
        }
    }
}

/// The etcd writes of this period's summaries: per led partition (partition → its epoch and
/// summary), under the partition's epoch.
pub(super) fn writes(summaries: BTreeMap<u32, (u64, Summary)>, now: i64) -> Vec<StateWrite> {
    summaries
        .into_iter()
        .filter_map(|(p, (epoch, sum))| {
            let value = serde_json::to_string(&Summary { ts_ms: now, ..sum }).ok()?;
            Some(StateWrite {
                partition: p,
                epoch,
                puts: vec![(format!("{SUMMARY_PREFIX}{p:04}"), value)],
                done: None,
            })
        })
        .collect()
}

/// Takes every partition's summary read from etcd (key, JSON) into the loop: each fresh one's
/// most demanding and worst-off station. Returns how many stations are fresh in all.
pub(super) fn take_in(
    kept: &[(String, String)],
    now: i64,
    stale_ms: i64,
    ctrl: &mut PlantController,
) -> usize {
    let mut fresh = 0;
    for (_, v) in kept {
        let Ok(sum) = serde_json::from_str::<Summary>(v) else {
            continue;
        };
        if now - sum.ts_ms > stale_ms {
            continue;
        }
        fresh += sum.fresh;
        let critical = sum.critical.as_ref().map(|c| c.0.clone());
        let lowest = sum.lowest.filter(|l| Some(&l.0) != critical.as_ref());
        let primary = [sum.critical_primary_c, None];
        for ((id, demand, dp), primary_c) in sum.critical.into_iter().chain(lowest).zip(primary) {
            if let Ok(id) = crate::model::StationId::new(&id) {
                ctrl.observe_demand(id, sum.ts_ms, (demand, dp, primary_c));
            }
        }
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Reading, StationId};

    fn reading(id: &str, valve: f64, primary_c: f64) -> Reading {
        Reading {
            station: StationId::new(id).unwrap(),
            ts_ms: 0,
            supply_temp_c: 60.0,
            return_temp_c: 45.0,
            flow_m3h: 10.0,
            heated_area_m2: None,
            outdoor_temp_c: Some(0.0),
            indoor_temp_c: None,
            valve_pct: Some(valve),
            pump_pct: Some(80.0),
            heat_kw: None,
            extra: vec![
                ("primary_supply_temp_c".to_owned(), primary_c),
                ("primary_diff_pressure_kpa".to_owned(), 100.0 - valve),
            ],
        }
    }

    #[test]
    fn a_summary_carries_the_most_demanding_stations_primary_supply_and_reads_an_older_one() {
        let mut sum = Summary::default();
        sum.add("a", &reading("a", 60.0, 95.0), 60.0);
        sum.add("b", &reading("b", 85.0, 91.0), 60.0);
        sum.add("c", &reading("c", 70.0, 93.0), 60.0);
        assert_eq!(sum.fresh, 3);
        assert_eq!(sum.critical.as_ref().map(|c| c.0.as_str()), Some("b"));
        assert_eq!(sum.critical_primary_c, Some(91.0));
        let back: Summary = serde_json::from_str(&serde_json::to_string(&sum).unwrap()).unwrap();
        assert_eq!(back, sum);
        // Written by an instance from before the field: still read, without it.
        let old = r#"{"ts_ms":5,"fresh":2,"critical":["b",85.0,15.0],"lowest":["b",85.0,15.0]}"#;
        let old: Summary = serde_json::from_str(old).unwrap();
        assert_eq!((old.fresh, old.critical_primary_c), (2, None));
    }
}
