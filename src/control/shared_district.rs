//! The district coordinator when several instances share the fleet: it runs once, on the
//! instance that leads partition 0, and what it needs and decides is kept in etcd.
//!
//! Where it sits: inside every instance's control task, in place of [`super::district`]. Each
//! instance sums what the stations it commands delivered ([`Sums`], cumulative since it began
//! leading their partition) and keeps those sums in etcd every quarter period, one key per
//! partition, written under the partition's epoch. The owner of partition 0 is the district
//! coordinator: every period it reads every partition's sums, feeds the coordinator the part
//! it has not seen yet (the difference to the last sums of the same epoch; all of them when
//! the owner changed), runs the update and keeps the offsets and filter state in etcd, one
//! key per partition, written under partition 0's epoch (an instance that lost partition 0
//! cannot overwrite its successor's offsets). Every other instance reads the offsets at start
//! and every quarter period and hands them to its controllers.
//!
//! Why partition 0's lead and not an election of its own: that lead already is one elected
//! instance with an epoch, a fence, a hot standby and a planned handover; the coordinator
//! gets all of it and `heatgrid cluster` shows where it runs. A new coordinator first reads
//! the offsets, the filtered ratios and the sums as they are, so nothing is counted twice and
//! nothing restarts from zero.
//!
//! The calls are all non-blocking: requests go to the cluster task over a channel, and their
//! answers are picked up on a later tick.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::coordinator::{Coordinator, CoordinatorConfig, Observation, Sums};
use super::district::store_points;
use super::{Outputs, StationController};
use crate::cluster::partition::partition_of;
use crate::cluster::state::{partition_key, StateRequest, StateWrite, OFFSETS_PREFIX, SUMS_PREFIX};
use crate::model::{Mode, Reading, StationId};
use crate::store::StoreHandle;

/// The prefix holding both the sums and the offsets (one read at a coordinator takeover).
const DISTRICT_PREFIX: &str = "heatgrid/district/";

/// One partition's sums as its owner keeps them.
#[derive(Debug, Serialize, Deserialize)]
struct KeptSums {
    /// The partition epoch they were summed under.
    epoch: u64,
    stations: BTreeMap<String, Sums>,
}

/// One station's coordinator state as the coordinator keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct KeptOffset {
    offset_k: f64,
    ratio: Option<f64>,
    demand_ratio: Option<f64>,
}

type Reply = oneshot::Receiver<Result<Vec<(String, String)>, String>>;

/// The one read this instance waits for.
#[derive(Debug)]
enum Pending {
    /// The offsets, as every non-coordinating instance reads them.
    Offsets(Reply),
    /// A new coordinator's first read (offsets, ratios, sums as they are) under `epoch`.
    TakeOver(u64, Reply),
    /// The sums for an update under `epoch` covering `span_s` plant seconds.
    Update {
        epoch: u64,
        span_s: f64,
        reply: Reply,
    },
}

/// The shared coordinator's state on one instance.
#[derive(Debug)]
pub struct SharedDistrict {
    /// The offsets of every station as last known here; the coordinator itself while this
    /// instance leads partition 0.
    coordinator: Coordinator,
    stations: Vec<(StationId, BTreeMap<String, String>)>,
    index: HashMap<String, usize>,
    /// Per partition, its stations.
    members: Vec<Vec<usize>>,
    requests: mpsc::Sender<StateRequest>,
    store: StoreHandle,
    /// Per station this instance commands: the epoch it sums under and the sums.
    cumulative: Vec<Option<(u64, Sums)>>,
    /// Per station, the last sums the coordinator took in (with their epoch).
    seen: Vec<Option<(u64, Sums)>>,
    /// Plant seconds since the last shipment of sums, offsets read, and update.
    since_ship_s: f64,
    since_read_s: f64,
    since_update_s: f64,
    /// Whether the offsets were read at least once.
    known: bool,
    /// The epoch of partition 0 this instance coordinates under.
    coordinating: Option<u64>,
    pending: Option<Pending>,
    /// The last problem logged, so each is logged once per change.
    trouble: Option<String>,
}

impl SharedDistrict {
    /// The shared coordinator over `stations` (config order) of a cluster of `partitions`.
    pub fn new(
        cfg: CoordinatorConfig,
        stations: Vec<(StationId, BTreeMap<String, String>)>,
        partitions: u32,
        requests: mpsc::Sender<StateRequest>,
        store: StoreHandle,
    ) -> Self {
        let n = stations.len();
        let mut members = vec![Vec::new(); partitions as usize];
        for (i, (id, _)) in stations.iter().enumerate() {
            members[partition_of(id.as_str(), partitions) as usize].push(i);
        }
        Self {
            coordinator: Coordinator::new(cfg, n),
            index: stations
                .iter()
                .enumerate()
                .map(|(i, (id, _))| (id.as_str().to_owned(), i))
                .collect(),
            stations,
            members,
            requests,
            store,
            cumulative: vec![None; n],
            seen: vec![None; n],
            since_ship_s: 0.0,
            since_read_s: 0.0,
            since_update_s: 0.0,
            known: false,
            coordinating: None,
            pending: None,
            trouble: None,
        }
    }

    /// Station `i`'s district offset as last known here, K.
    pub fn offset_k(&self, i: usize) -> f64 {
        self.coordinator.offset_k(i)
    }

    /// Updates this instance ran as the coordinator.
    pub fn updates(&self) -> u64 {
        self.coordinator.updates()
    }

    /// Whether this instance is the district's coordinator now.
    pub fn coordinating(&self) -> bool {
        self.coordinating.is_some()
    }

    /// Adds one step of station `i`, commanded under `epoch`, to its sums (automatic control
    /// on the curve only, like the coordinator alone).
    pub fn observe(
        &mut self,
        i: usize,
        epoch: u64,
        step: (&StationController, &Reading, &Outputs, f64),
    ) {
        let (ctrl, r, o, dt_s) = step;
        if o.mode != Mode::Auto || ctrl.fixed_supply().is_some() {
            return;
        }
        let Some(sums) = self
            .coordinator
            .sums_of(&Observation::of_step(ctrl, r, o, dt_s))
        else {
            return;
        };
        match self.cumulative.get_mut(i) {
            Some(Some((e, acc))) if *e == epoch => acc.add(&sums),
            Some(slot) => *slot = Some((epoch, sums)),
            None => {}
        }
    }

    /// Advances by `dt_s` plant seconds at `now`; `lead(p)`: the epoch this instance leads
    /// partition `p` under. Returns every station's offset when they changed here, and
    /// whether by an update this instance ran.
    pub fn advance(
        &mut self,
        dt_s: f64,
        now: i64,
        lead: &dyn Fn(u32) -> Option<u64>,
    ) -> Option<(Vec<f64>, bool)> {
        let answer = self.poll(now, lead);
        if dt_s.is_finite() && dt_s > 0.0 {
            self.since_ship_s += dt_s;
            self.since_read_s += dt_s;
            self.since_update_s += dt_s;
        }
        let period = self.coordinator.config().period_s;
        let p0 = lead(0);
        if self.coordinating.is_some() && self.coordinating != p0 {
            info!("No longer the district coordinator (partition 0 passed on).");
            self.coordinating = None;
        }
        if self.since_ship_s >= period / 4.0 {
            self.since_ship_s = 0.0;
            self.ship(lead);
        }
        if self.pending.is_none() {
            match (p0, self.coordinating) {
                (Some(e), None) => {
                    self.pending = self.read(DISTRICT_PREFIX).map(|r| Pending::TakeOver(e, r));
                }
                (Some(e), Some(_)) if self.since_update_s >= period => {
                    let span_s = std::mem::take(&mut self.since_update_s);
                    self.pending = self.read(SUMS_PREFIX).map(|reply| Pending::Update {
                        epoch: e,
                        span_s,
                        reply,
                    });
                }
                (None, _) if !self.known || self.since_read_s >= period / 4.0 => {
                    self.since_read_s = 0.0;
                    self.pending = self.read(OFFSETS_PREFIX).map(Pending::Offsets);
                }
                _ => {}
            }
        }
        answer
    }

    /// Takes in the answer to the pending read, if it came.
    fn poll(&mut self, now: i64, lead: &dyn Fn(u32) -> Option<u64>) -> Option<(Vec<f64>, bool)> {
        let reply = match self.pending.as_mut()? {
            Pending::Offsets(r) | Pending::TakeOver(_, r) | Pending::Update { reply: r, .. } => {
                match r.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => return None,
                    Err(oneshot::error::TryRecvError::Closed) => {
                        Err("the cluster task stopped".into())
                    }
                    Ok(r) => r,
                }
            }
        };
        let pending = self.pending.take()?;
        let kvs = match reply {
            Ok(kvs) => kvs,
            Err(e) => {
                self.note(format!("cannot read the district's state from etcd: {e}"));
                return None;
            }
        };
        self.trouble = None;
        match pending {
            Pending::Offsets(_) => {
                self.restore_offsets(&kvs, false);
                self.known = true;
                Some((self.offsets(), false))
            }
            Pending::TakeOver(epoch, _) => {
                if lead(0) != Some(epoch) {
                    return None;
                }
                let restored = self.restore_offsets(&kvs, true);
                self.seen = vec![None; self.stations.len()];
                let baselines = self.take_sums(&kvs, false);
                self.coordinating = Some(epoch);
                self.known = true;
                self.since_update_s = 0.0;
                info!(epoch, restored, baselines,
                    "District coordinator here now (partition 0's lead): offsets and ratios taken over from etcd.");
                Some((self.offsets(), false))
            }
            Pending::Update { epoch, span_s, .. } => {
                if self.coordinating != Some(epoch) || lead(0) != Some(epoch) {
                    return None;
                }
                self.take_sums(&kvs, true);
                self.coordinator.update(span_s);
                store_points(&self.store, &self.stations, self.coordinator.members(), now);
                self.keep_offsets(epoch);
                Some((self.offsets(), true))
            }
        }
    }

    fn offsets(&self) -> Vec<f64> {
        self.coordinator
            .members()
            .iter()
            .map(|m| m.offset_k)
            .collect()
    }

    /// Sends a read of `prefix` to the cluster task (`None` if its queue is full).
    fn read(&mut self, prefix: &str) -> Option<Reply> {
        let (reply, rx) = oneshot::channel();
        let req = StateRequest::Read {
            prefix: prefix.to_owned(),
            reply,
        };
        match self.requests.try_send(req) {
            Ok(()) => Some(rx),
            Err(_) => {
                self.note("the cluster task's queue is full: district state not read".into());
                None
            }
        }
    }

    /// Keeps each led partition's sums in etcd under its epoch.
    fn ship(&mut self, lead: &dyn Fn(u32) -> Option<u64>) {
        for (p, members) in self.members.iter().enumerate() {
            let Some(epoch) = lead(p as u32) else {
                continue;
            };
            let stations: BTreeMap<String, Sums> = members
                .iter()
                .filter_map(|&i| match self.cumulative[i] {
                    Some((e, s)) if e == epoch => Some((self.stations[i].0.as_str().to_owned(), s)),
                    _ => None,
                })
                .collect();
            if stations.is_empty() {
                continue;
            }
            let Ok(json) = serde_json::to_string(&KeptSums { epoch, stations }) else {
                continue;
            };
            let write = StateWrite {
                partition: p as u32,
                epoch,
                puts: vec![(partition_key(SUMS_PREFIX, p as u32), json)],
                done: None,
            };
            if self.requests.try_send(StateRequest::Write(write)).is_err() {
                self.note("the cluster task's queue is full: district sums not kept".into());
                return;
            }
        }
    }

    /// Keeps the offsets and ratios in etcd under partition 0's `epoch`.
    fn keep_offsets(&mut self, epoch: u64) {
        let m = self.coordinator.members();
        let puts = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, members)| !members.is_empty())
            .filter_map(|(p, members)| {
                let kept: BTreeMap<&str, KeptOffset> = members
                    .iter()
                    .map(|&i| {
                        let k = KeptOffset {
                            offset_k: m[i].offset_k,
                            ratio: m[i].ratio,
                            demand_ratio: m[i].demand_ratio,
                        };
                        (self.stations[i].0.as_str(), k)
                    })
                    .collect();
                let json = serde_json::to_string(&kept).ok()?;
                Some((partition_key(OFFSETS_PREFIX, p as u32), json))
            })
            .collect();
        let write = StateWrite {
            partition: 0,
            epoch,
            puts,
            done: None,
        };
        if self.requests.try_send(StateRequest::Write(write)).is_err() {
            self.note("the cluster task's queue is full: district offsets not kept".into());
        }
    }

    /// Applies the offsets (and, for a coordinator, the ratios) under [`OFFSETS_PREFIX`] in
    /// `kvs`; the number of stations restored.
    fn restore_offsets(&mut self, kvs: &[(String, String)], ratios: bool) -> usize {
        let mut restored = 0;
        for (key, value) in kvs.iter().filter(|(k, _)| k.starts_with(OFFSETS_PREFIX)) {
            let Ok(kept) = serde_json::from_str::<HashMap<String, KeptOffset>>(value) else {
                self.note(format!("unreadable district offsets under {key}: ignored"));
                continue;
            };
            for (id, k) in kept {
                let Some(&i) = self.index.get(&id) else {
                    continue; // a station no longer configured
                };
                self.coordinator.restore(i, k.offset_k);
                if ratios {
                    self.coordinator.restore_ratios(i, k.ratio, k.demand_ratio);
                }
                restored += 1;
            }
        }
        restored
    }

    /// Takes the sums under [`SUMS_PREFIX`] in `kvs`: what is new since the last sums seen of
    /// the same epoch goes into the coordinator's period when `feed`, and they become the new
    /// baselines. The number of stations with sums.
    fn take_sums(&mut self, kvs: &[(String, String)], feed: bool) -> usize {
        let mut taken = 0;
        for (key, value) in kvs.iter().filter(|(k, _)| k.starts_with(SUMS_PREFIX)) {
            let Ok(kept) = serde_json::from_str::<KeptSums>(value) else {
                self.note(format!("unreadable district sums under {key}: ignored"));
                continue;
            };
            for (id, sums) in kept.stations {
                let Some(&i) = self.index.get(&id) else {
                    continue;
                };
                let new = match self.seen[i] {
                    Some((e, before)) if e == kept.epoch => sums.since(&before),
                    // A new owner sums from its takeover on: all of it is new.
                    _ => Some(sums),
                };
                if let Some(new) = new.filter(|_| feed) {
                    self.coordinator.add(i, &new);
                }
                self.seen[i] = Some((kept.epoch, sums));
                taken += 1;
            }
        }
        taken
    }

    /// Logs `what` once until it changes.
    fn note(&mut self, what: String) {
        if self.trouble.as_ref() != Some(&what) {
            warn!(problem = %what, "District coordinator.");
            self.trouble = Some(what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;
    use std::sync::Arc;

    fn sums(heat_kj: f64, design_kj: f64, dt_s: f64) -> Sums {
        Sums {
            heat_kj,
            design_kj,
            demand_kj: design_kj,
            dt_s,
            ..Sums::default()
        }
    }

    fn kept_sums(epoch: u64, a: Sums, b: Sums) -> (String, String) {
        let stations = BTreeMap::from([("a".to_owned(), a), ("b".to_owned(), b)]);
        let json = serde_json::to_string(&KeptSums { epoch, stations }).unwrap();
        (partition_key(SUMS_PREFIX, 0), json)
    }

    /// Answers the next request with `kvs` if it is a read; returns what it was.
    fn answer(rx: &mut mpsc::Receiver<StateRequest>, kvs: Vec<(String, String)>) -> StateRequest {
        let req = rx.try_recv().expect("a request");
        match req {
            StateRequest::Read { prefix, reply } => {
                let _ = reply.send(Ok(kvs));
                StateRequest::Read {
                    prefix,
                    reply: oneshot::channel().0,
                }
            }
            w => w,
        }
    }

    #[test]
    fn a_new_coordinator_takes_the_offsets_over_and_counts_only_what_came_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreHandle::in_dir(dir.path(), Arc::new(Stats::default()));
        let cfg = CoordinatorConfig {
            period_s: 100.0,
            min_stations: 1,
            dead_band: 0.0,
            ..CoordinatorConfig::default()
        };
        let ids = ["a", "b"].map(|id| (StationId::new(id).unwrap(), BTreeMap::new()));
        let (tx, mut rx) = mpsc::channel(16);
        let mut d = SharedDistrict::new(cfg, ids.to_vec(), 1, tx, store);
        let lead = |_: u32| Some(7);

        // Leading partition 0: first the state the previous coordinator left.
        assert!(d.advance(1.0, 0, &lead).is_none());
        let offsets = r#"{"a": {"offset_k": -2.5, "ratio": 1.2, "demand_ratio": 1.0}}"#;
        let before = kept_sums(3, sums(100.0, 100.0, 10.0), sums(80.0, 100.0, 10.0));
        match answer(
            &mut rx,
            vec![(partition_key(OFFSETS_PREFIX, 0), offsets.into()), before],
        ) {
            StateRequest::Read { prefix, .. } => assert_eq!(prefix, DISTRICT_PREFIX),
            other => panic!("{other:?}"),
        }
        let (o, updated) = d.advance(1.0, 0, &lead).expect("taken over");
        assert_eq!((o, updated), (vec![-2.5, 0.0], false));
        assert!(d.coordinating());

        // A period later: the sums are read and only what is new since counts: 100 of 200 kJ
        // design for a (all of it would say 0.67), 90 of 100 kJ for b.
        let after = kept_sums(3, sums(200.0, 300.0, 30.0), sums(170.0, 200.0, 20.0));
        let mut update = None;
        for _ in 0..4 {
            assert!(d.advance(25.0, 0, &lead).is_none());
            while let Ok(req) = rx.try_recv() {
                match req {
                    StateRequest::Read { prefix, reply } => {
                        assert_eq!(prefix, SUMS_PREFIX);
                        update = Some(reply);
                    }
                    StateRequest::Write(w) => panic!("nothing summed here to keep: {w:?}"),
                }
            }
        }
        update.expect("a sums read").send(Ok(vec![after])).unwrap();
        let (o, updated) = d.advance(1.0, 1_000, &lead).expect("updated");
        assert!(updated);
        let m = d.coordinator.members();
        // a: filtered from its kept 1.2 towards 0.5; b: from nothing to 0.9.
        let alpha = |dt: f64| 1.0 - (-dt / 3600.0).exp();
        let a_ratio = 1.2 + alpha(20.0) * (0.5 - 1.2);
        assert!((m[0].ratio.unwrap() - a_ratio).abs() < 1e-9, "{m:?}");
        assert!((m[1].ratio.unwrap() - 0.9).abs() < 1e-9, "{m:?}");
        assert!(o[0] < -2.5 + 1e-9, "a stays lowered: {o:?}");
        // The offsets are kept under partition 0's epoch.
        match rx.try_recv().expect("the offsets written") {
            StateRequest::Write(w) => {
                assert_eq!((w.partition, w.epoch), (0, 7));
                assert_eq!(w.puts[0].0, partition_key(OFFSETS_PREFIX, 0));
                let kept: HashMap<String, KeptOffset> = serde_json::from_str(&w.puts[0].1).unwrap();
                assert_eq!(kept["a"].offset_k, o[0]);
            }
            other => panic!("{other:?}"),
        }

        // The partition changed owner (epoch 4): its sums start again, and all of them are new.
        for _ in 0..4 {
            assert!(d.advance(25.0, 0, &lead).is_none());
        }
        let renewed = kept_sums(4, sums(30.0, 100.0, 10.0), sums(90.0, 100.0, 10.0));
        match answer(&mut rx, vec![renewed]) {
            StateRequest::Read { prefix, .. } => assert_eq!(prefix, SUMS_PREFIX),
            other => panic!("{other:?}"),
        }
        assert!(d.advance(1.0, 2_000, &lead).is_some());
        let m = d.coordinator.members();
        assert!((m[0].ratio.unwrap() - (a_ratio + alpha(10.0) * (0.3 - a_ratio))).abs() < 1e-9);
        let _ = rx.try_recv(); // the offsets written

        // Partition 0 passes on: no more updates here, offsets are read like everyone's.
        let none = |_: u32| None;
        assert!(d.advance(200.0, 0, &none).is_none());
        assert!(!d.coordinating());
        match rx.try_recv().expect("an offsets read") {
            StateRequest::Read { prefix, .. } => assert_eq!(prefix, OFFSETS_PREFIX),
            other => panic!("{other:?}"),
        }
    }
}
