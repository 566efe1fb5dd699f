//! The alarm book in a cluster: each partition's active alarms, with their acknowledgements,
//! kept in etcd by the partition's owner and taken over by the next one.
//!
//! Where it sits: inside the alarm task, between the status snapshot and the book. A station
//! is evaluated only under an epoch whose kept alarms were taken over: when this instance
//! comes to lead partitions, it first reads `heatgrid/alarms/` (one read for all the
//! partitions it came to lead since the last one) and adopts their alarms (raise time and acknowledgement kept, a new id here); an alarm whose condition is
//! gone then clears as usual. After a raise, a clear or an acknowledgement the partition's
//! active alarms are written back under its epoch (a fenced write: an instance that lost the
//! partition cannot overwrite them). When another instance leads a station, its alarms leave
//! this book without a clear: they live on there.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::{Alarm, AlarmBook, ENGINE};
use crate::cluster::partition::partition_of;
use crate::cluster::state::{partition_key, StateRequest, StateWrite, ALARMS_PREFIX};

/// How long a read of a partition's alarms may take before it is asked again.
const READ_LIMIT: Duration = Duration::from_secs(5);

/// The kept alarms read for some newly led partitions (with the epochs they were asked
/// under): per partition, its alarms.
#[derive(Debug)]
pub struct Kept {
    wanted: Vec<(u32, u64)>,
    alarms: Result<HashMap<u32, Vec<Alarm>>, String>,
}

/// `heatgrid/alarms/{p:04}` → alarms, per partition.
fn parse(kvs: Vec<(String, String)>) -> Result<HashMap<u32, Vec<Alarm>>, String> {
    let mut out = HashMap::new();
    for (k, v) in kvs {
        let Some(p) = k
            .strip_prefix(ALARMS_PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alarms: Vec<Alarm> =
            serde_json::from_str(&v).map_err(|e| format!("unreadable alarms under {k}: {e}"))?;
        out.insert(p, alarms);
    }
    Ok(out)
}

/// What the alarm task does with a station this snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Evaluate,
    Skip,
    /// Not led here any more: its alarms left the book.
    Forgot,
}

/// The alarm task's side of the cluster.
#[derive(Debug)]
pub struct SharedAlarms {
    requests: mpsc::Sender<StateRequest>,
    partitions: u32,
    /// Per station (config order), its partition and the epoch it was last seen under.
    partition: Vec<u32>,
    epochs: Vec<Option<u64>>,
    /// Per partition: the epoch its kept alarms were taken over under, and the one a read is
    /// on its way for.
    adopted: Vec<Option<u64>>,
    asked: Vec<Option<u64>>,
    /// Newly led partitions to ask for, and whether a read is on its way.
    wanted: Vec<(u32, u64)>,
    in_flight: bool,
    kept_tx: mpsc::Sender<Kept>,
    /// Partitions whose active alarms changed since they were last written.
    dirty: BTreeSet<u32>,
}

impl SharedAlarms {
    /// For `stations` (ids in config order) of a cluster of `partitions`; the reads' answers
    /// arrive on the returned receiver, for [`SharedAlarms::adopt`].
    pub fn new(
        stations: &[&str],
        partitions: u32,
        requests: mpsc::Sender<StateRequest>,
    ) -> (Self, mpsc::Receiver<Kept>) {
        let (kept_tx, kept_rx) = mpsc::channel(1);
        let shared = Self {
            requests,
            partitions,
            partition: stations
                .iter()
                .map(|id| partition_of(id, partitions))
                .collect(),
            epochs: vec![None; stations.len()],
            adopted: vec![None; partitions as usize],
            asked: vec![None; partitions as usize],
            wanted: Vec::new(),
            in_flight: false,
            kept_tx,
            dirty: BTreeSet::new(),
        };
        (shared, kept_rx)
    }

    /// What to do with station `i` (`id`), led here under `epoch`. A station another
    /// instance leads now leaves `book`; one whose partition's kept alarms are not taken over
    /// yet waits for them (the read is asked here).
    pub fn turn(&mut self, i: usize, id: &str, epoch: Option<u64>, book: &mut AlarmBook) -> Turn {
        let p = self.partition[i] as usize;
        let before = std::mem::replace(&mut self.epochs[i], epoch);
        let Some(e) = epoch else {
            if before.is_none() {
                return Turn::Skip;
            }
            self.adopted[p] = None;
            return match book.forget(id) {
                0 => Turn::Skip,
                _ => Turn::Forgot,
            };
        };
        if self.adopted[p] == Some(e) {
            return Turn::Evaluate;
        }
        if self.asked[p] != Some(e) {
            self.asked[p] = Some(e);
            self.wanted.push((p as u32, e));
        }
        Turn::Skip
    }

    /// Asks for the kept alarms of the partitions newly led since the last ask, in one read of
    /// every partition's (unless one is on its way: then with the next ask); the answer
    /// comes as a [`Kept`].
    pub fn ask(&mut self) {
        if self.wanted.is_empty() || self.in_flight {
            return;
        }
        self.in_flight = true;
        let wanted = std::mem::take(&mut self.wanted);
        let requests = self.requests.clone();
        let kept = self.kept_tx.clone();
        tokio::spawn(async move {
            let (reply, rx) = oneshot::channel();
            let req = StateRequest::Read {
                prefix: ALARMS_PREFIX.to_owned(),
                reply,
            };
            let alarms = match requests.try_send(req) {
                Err(_) => Err("the cluster task's queue is full".to_owned()),
                Ok(()) => match tokio::time::timeout(READ_LIMIT, rx).await {
                    Ok(Ok(Ok(kvs))) => parse(kvs),
                    Ok(Ok(Err(e))) => Err(e),
                    Ok(Err(_)) => Err("the cluster task stopped".to_owned()),
                    Err(_) => Err("no answer in time".to_owned()),
                },
            };
            let _ = kept.send(Kept { wanted, alarms }).await;
        });
    }

    /// Takes the kept alarms of the partitions this instance still waits for (under the
    /// same epoch) over into `book`; whether the book changed.
    pub fn adopt(&mut self, kept: Kept, book: &mut AlarmBook) -> bool {
        self.in_flight = false;
        let mut all = match kept.alarms {
            Ok(a) => a,
            Err(e) => {
                // Asked again at the next snapshot.
                warn!(partitions = kept.wanted.len(), error = %e,
                    "Cannot read the partitions' kept alarms; retrying.");
                for (p, e) in kept.wanted {
                    if self.asked[p as usize] == Some(e) {
                        self.asked[p as usize] = None;
                    }
                }
                return false;
            }
        };
        let mut adopted = 0;
        for (p, e) in kept.wanted {
            if self.asked[p as usize] != Some(e) {
                continue; // lost again meanwhile
            }
            self.asked[p as usize] = None;
            self.adopted[p as usize] = Some(e);
            for a in all.remove(&p).unwrap_or_default() {
                if partition_of(&a.station, self.partitions) == p && book.adopt(a) {
                    adopted += 1;
                }
            }
        }
        if adopted > 0 {
            info!(adopted, "Alarms taken over from the previous owner.");
        }
        adopted > 0
    }

    /// Notes that station `station`'s alarms changed.
    pub fn changed(&mut self, station: &str) {
        if station != ENGINE {
            self.dirty.insert(partition_of(station, self.partitions));
        }
    }

    /// Writes the active alarms of every partition that changed, under its epoch.
    pub fn keep(&mut self, book: &AlarmBook) {
        for p in std::mem::take(&mut self.dirty) {
            self.write(p, book, None);
        }
    }

    /// Writes the active alarms of `station`'s partition now; `done` hears whether they were
    /// kept (an acknowledgement is answered only then).
    pub fn keep_now(
        &mut self,
        station: &str,
        book: &AlarmBook,
        done: oneshot::Sender<Result<(), String>>,
    ) {
        let p = partition_of(station, self.partitions);
        self.dirty.remove(&p);
        self.write(p, book, Some(done));
    }

    fn write(
        &mut self,
        p: u32,
        book: &AlarmBook,
        done: Option<oneshot::Sender<Result<(), String>>>,
    ) {
        let Some(epoch) = self.adopted.get(p as usize).copied().flatten() else {
            if let Some(d) = done {
                let _ = d.send(Err("another instance leads the station now".into()));
            }
            return;
        };
        let parts = self.partitions;
        let alarms = book.active_of(|s| partition_of(s, parts) == p);
        let json = serde_json::to_string(&alarms).unwrap_or_else(|_| "[]".into());
        let write = StateWrite {
            partition: p,
            epoch,
            puts: vec![(partition_key(ALARMS_PREFIX, p), json)],
            done,
        };
        if let Err(mpsc::error::TrySendError::Full(StateRequest::Write(w))) =
            self.requests.try_send(StateRequest::Write(write))
        {
            warn!(
                partition = p,
                "The cluster task's queue is full: alarms not kept in etcd now."
            );
            self.dirty.insert(p); // written with the next change
            if let Some(d) = w.done {
                let _ = d.send(Err("the cluster task's queue is full".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::{AlarmKind, Severity};

    /// The previous owner's kept alarm of `station`: raised at 1000, acknowledged by "ops".
    fn kept(station: &str) -> Alarm {
        Alarm {
            id: 41,
            station: station.into(),
            kind: AlarmKind::Stale,
            severity: Severity::Major,
            message: "no telemetry".into(),
            value: 0.0,
            raised_ms: 1_000,
            acked_by: Some("ops".into()),
            acked_ms: Some(2_000),
            cleared_ms: None,
            escalated_ms: Some(3_000),
        }
    }

    #[tokio::test]
    async fn a_new_owner_adopts_the_kept_alarms_then_keeps_them_under_its_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = AlarmBook::open(dir.path().join("alarms.json")).unwrap();
        let (requests, mut cluster) = mpsc::channel(8);
        let (mut shared, mut kept_rx) = SharedAlarms::new(&["st-1"], 4, requests);
        let p = partition_of("st-1", 4);

        // Led under epoch 7: not evaluated until the kept alarms are taken over.
        assert_eq!(shared.turn(0, "st-1", Some(7), &mut book), Turn::Skip);
        shared.ask();
        let Some(StateRequest::Read { prefix, reply }) = cluster.recv().await else {
            panic!("no read asked");
        };
        assert_eq!(prefix, ALARMS_PREFIX);
        let json = serde_json::to_string(&vec![kept("st-1")]).unwrap();
        reply
            .send(Ok(vec![(partition_key(ALARMS_PREFIX, p), json)]))
            .unwrap();
        let answer = kept_rx.recv().await.expect("the read's answer");
        assert!(shared.adopt(answer, &mut book));
        let active = book.active();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].raised_ms, 1_000, "raise time kept");
        assert_eq!(
            active[0].acked_by.as_deref(),
            Some("ops"),
            "acknowledgement kept"
        );
        assert_eq!(active[0].escalated_ms, Some(3_000), "escalation kept");
        assert_eq!(shared.turn(0, "st-1", Some(7), &mut book), Turn::Evaluate);

        // A change is written back under the epoch it was adopted with.
        shared.changed("st-1");
        shared.keep(&book);
        let Some(StateRequest::Write(w)) = cluster.recv().await else {
            panic!("no write");
        };
        assert_eq!((w.partition, w.epoch), (p, 7));
        assert!(w.puts[0].1.contains("\"ops\""), "{:?}", w.puts);

        // Another instance leads it now: its alarms leave this book, without a clear.
        assert_eq!(shared.turn(0, "st-1", None, &mut book), Turn::Forgot);
        assert!(book.active().is_empty());
        // And an acknowledgement can no longer be kept here.
        let (done, verdict) = oneshot::channel();
        shared.keep_now("st-1", &book, done);
        assert!(verdict.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_failed_read_is_asked_again_and_a_lost_partition_adopts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = AlarmBook::open(dir.path().join("alarms.json")).unwrap();
        let (requests, mut cluster) = mpsc::channel(8);
        let (mut shared, mut kept_rx) = SharedAlarms::new(&["st-1"], 4, requests);
        assert_eq!(shared.turn(0, "st-1", Some(3), &mut book), Turn::Skip);
        shared.ask();
        let Some(StateRequest::Read { reply, .. }) = cluster.recv().await else {
            panic!("no read asked");
        };
        reply.send(Err("etcd: no leader".into())).unwrap();
        assert!(!shared.adopt(kept_rx.recv().await.unwrap(), &mut book));
        // Asked again at the next turn.
        assert_eq!(shared.turn(0, "st-1", Some(3), &mut book), Turn::Skip);
        shared.ask();
        let Some(StateRequest::Read { reply, .. }) = cluster.recv().await else {
            panic!("not asked again");
        };
        // Lost meanwhile (a newer epoch elsewhere, then back under another): the old answer
        // adopts nothing.
        assert_eq!(shared.turn(0, "st-1", Some(9), &mut book), Turn::Skip);
        let p = partition_of("st-1", 4);
        let json = serde_json::to_string(&vec![kept("st-1")]).unwrap();
        reply
            .send(Ok(vec![(partition_key(ALARMS_PREFIX, p), json)]))
            .unwrap();
        assert!(!shared.adopt(kept_rx.recv().await.unwrap(), &mut book));
        assert!(book.active().is_empty());
        // Unreadable kept alarms are an error, not an empty book.
        assert!(parse(vec![(partition_key(ALARMS_PREFIX, p), "{".into())]).is_err());
    }
}
