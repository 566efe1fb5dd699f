//! Operator state in etcd: per station, the settings an operator gave it, written only by the
//! station's owner and read by the next one.
//!
//! Where it sits: beside [`super::ownership`]. A write is a transaction that compares the
//! writer's own candidate key of the station's partition with the epoch it leads under, so an
//! instance that lost the partition (its key gone, or a newer lease) cannot overwrite what the
//! new owner wrote. Keys: `heatgrid/state/{partition:04}/{station}`; values: JSON written by
//! the control task (`control::settings`).

use std::collections::HashMap;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use tokio::sync::oneshot;

use super::ownership::{candidate_key, Candidate};

/// Where the stations' operator state lives in etcd.
pub const STATE_PREFIX: &str = "heatgrid/state/";

fn state_key(p: u32, station: &str) -> String {
    format!("{STATE_PREFIX}{p:04}/{station}")
}

/// A station's new operator state, to be kept in etcd by its owner; `done` says whether it
/// was (the change is answered only then).
#[derive(Debug)]
pub struct StateWrite {
    pub partition: u32,
    pub epoch: u64,
    pub station: String,
    pub value: String,
    pub done: oneshot::Sender<Result<(), String>>,
}

impl Candidate {
    /// Writes `w` if this instance still leads its partition with its epoch.
    pub async fn write_state(&mut self, w: &StateWrite) -> Result<(), String> {
        let owner = candidate_key(w.partition, self.lease());
        let resp = self
            .client()
            .txn(
                Txn::new()
                    .when([Compare::create_revision(
                        owner,
                        CompareOp::Equal,
                        w.epoch as i64,
                    )])
                    .and_then([TxnOp::put(
                        state_key(w.partition, &w.station),
                        w.value.clone(),
                        None,
                    )]),
            )
            .await
            .map_err(|e| format!("etcd: {e}"))?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(format!(
                "this instance no longer leads partition {} (epoch {})",
                w.partition, w.epoch
            ))
        }
    }

    /// The operator state of every station of partition `p` that has one: station → JSON.
    pub async fn read_states(
        &mut self,
        p: u32,
    ) -> Result<HashMap<String, String>, etcd_client::Error> {
        let prefix = format!("{STATE_PREFIX}{p:04}/");
        let resp = self
            .client()
            .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let station = kv.key_str().ok()?.strip_prefix(&prefix)?;
                Some((station.to_owned(), kv.value_str().ok()?.to_owned()))
            })
            .collect())
    }
}
