//! State the cluster keeps in etcd for whoever leads next: per station, the settings an
//! operator gave it; per partition, the district coordinator's inputs and offsets.
//!
//! Where it sits: beside [`super::ownership`]. The engine asks the cluster task for reads and
//! writes ([`StateRequest`]); a write is a transaction that compares the writer's own
//! candidate key of a partition with the epoch it leads under, so an instance that lost the
//! partition (its key gone, or a newer lease) cannot overwrite what the new owner wrote.
//!
//! Keys:
//! - `heatgrid/state/{partition:04}/{station}`: a station's operator state (JSON written by
//!   the control task, `control::settings`), by the partition's owner;
//! - `heatgrid/district/sums/{partition:04}`: what the partition's stations delivered since
//!   its owner began leading it (`control::shared_district`), by the partition's owner;
//! - `heatgrid/district/offsets/{partition:04}`: the coordinator's offsets for the
//!   partition's stations, by the district coordinator (the owner of partition 0);
//! - `heatgrid/alarms/{partition:04}`: the partition's active alarms with their
//!   acknowledgements (`alarms::shared`), by the partition's owner.

use std::collections::HashMap;

use tokio::sync::oneshot;

use super::etcd::{self, Txn};
use super::ownership::{candidate_key, Candidate};

/// Where the stations' operator state lives in etcd.
pub const STATE_PREFIX: &str = "heatgrid/state/";
/// Where each partition owner keeps what its stations delivered, for the coordinator.
pub const SUMS_PREFIX: &str = "heatgrid/district/sums/";
/// Where the district coordinator keeps its offsets, per partition.
pub const OFFSETS_PREFIX: &str = "heatgrid/district/offsets/";
/// Where each partition owner keeps its stations' active alarms.
pub const ALARMS_PREFIX: &str = "heatgrid/alarms/";

/// etcd 3.4 refuses a transaction with more than 128 operations by default.
const PUTS_PER_TXN: usize = 100;

/// The key of station `station`'s operator state (partition `p`).
pub fn state_key(p: u32, station: &str) -> String {
    format!("{STATE_PREFIX}{p:04}/{station}")
}

/// The key of partition `p`'s entry under `prefix` ([`SUMS_PREFIX`], [`OFFSETS_PREFIX`],
/// [`ALARMS_PREFIX`]).
pub fn partition_key(prefix: &str, p: u32) -> String {
    format!("{prefix}{p:04}")
}

/// What the engine asks of etcd through the cluster task.
#[derive(Debug)]
pub enum StateRequest {
    Write(StateWrite),
    /// Every key under `prefix` with its value; an error if this instance is not a member.
    Read {
        prefix: String,
        reply: oneshot::Sender<Result<Vec<(String, String)>, String>>,
    },
}

/// Values to keep in etcd while this instance leads `partition` with `epoch`; `done` says
/// whether they were (an operator change is answered only then). Without `done` a failure is
/// logged by the cluster task.
#[derive(Debug)]
pub struct StateWrite {
    pub partition: u32,
    pub epoch: u64,
    /// `(key, value)`, written together (in batches of at most 100 when there are more).
    pub puts: Vec<(String, String)>,
    pub done: Option<oneshot::Sender<Result<(), String>>>,
}

impl Candidate {
    /// Writes `w` if this instance still leads its partition with its epoch.
    pub async fn write_state(&mut self, w: &StateWrite) -> Result<(), String> {
        let owner = candidate_key(w.partition, self.lease());
        for batch in w.puts.chunks(PUTS_PER_TXN) {
            let txn = batch.iter().fold(
                Txn::new().when_created_at(&owner, w.epoch as i64),
                |t, (k, v)| t.and_put(k, v, None),
            );
            let resp = self.client().txn(txn).await.map_err(|e| e.to_string())?;
            if !resp.succeeded {
                return Err(format!(
                    "this instance no longer leads partition {} (epoch {})",
                    w.partition, w.epoch
                ));
            }
        }
        Ok(())
    }

    /// Every key under `prefix`, with its value (keys and values that are not UTF-8 are
    /// left out).
    pub async fn read_prefix(
        &mut self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, etcd::Error> {
        let kvs = self.client().get_prefix(prefix).await?;
        Ok(kvs.into_iter().map(|kv| (kv.key, kv.value)).collect())
    }

    /// The operator state of every station of partition `p` that has one: station → JSON.
    pub async fn read_states(&mut self, p: u32) -> Result<HashMap<String, String>, etcd::Error> {
        let prefix = format!("{STATE_PREFIX}{p:04}/");
        Ok(self
            .read_prefix(&prefix)
            .await?
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v)))
            .collect())
    }
}
