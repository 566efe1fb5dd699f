//! Partition ownership: at most one leader per partition, and its fencing epoch, on plain
//! etcd keys.
//!
//! Where it sits: on top of [`super::membership`], used by [`super::task`]. An instance
//! stands for partition `p` by creating `heatgrid/part/{p:04}/{lease:x}` on its own lease (if
//! absent). Of a partition's candidate keys the one with the lowest creation revision leads,
//! and that revision is the **epoch**: a key that leads had the lowest revision while the
//! earlier leader's key existed, or was created after it went, so every new leader's epoch is
//! higher than every earlier one's. A station that accepts only `(epoch, seq)` pairs greater
//! than the last it accepted can never be moved by a deposed instance. A leader gives the
//! partition up by deleting its key (a planned handover); a dead one's key goes with its
//! lease. Every instance reads all queues in one range read per loop ([`Candidate::queues`]),
//! so a lead is confirmed (or found lost) on every read.
//!
//! Why not etcd's Election API: its `Campaign` blocks until elected, and when the call is
//! cancelled (a client timeout does that) the server deletes the candidate key as it stops
//! waiting. Measured here: an instance whose earlier, timed-out call was cleaned up just after
//! its retry had found the key kept leading on a deleted key while another led on the next
//! one — two leaders of one partition for 21 s, stopped only by the stations' fence.

use std::collections::BTreeMap;

use super::etcd::{self, Client, Txn};
use super::membership::Membership;

/// Where the partitions' candidate keys live in etcd.
pub const PARTITIONS_PREFIX: &str = "heatgrid/part/";

/// Partition `p`'s candidate key for `lease`.
pub fn candidate_key(p: u32, lease: i64) -> String {
    format!("{PARTITIONS_PREFIX}{p:04}/{lease:x}")
}

/// One candidate in a partition's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub name: String,
    pub lease: i64,
    /// Its key's creation revision: the epoch, once it leads.
    pub epoch: u64,
}

/// What standing for partitions needs, cheap to clone: the etcd client, the instance's lease
/// and its name.
#[derive(Clone)]
pub struct Candidate {
    client: Client,
    lease: i64,
    name: String,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("name", &self.name)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// A handle to stand for partitions on this instance's lease.
    pub fn candidate(&mut self) -> Candidate {
        Candidate {
            lease: self.lease(),
            name: self.name().to_owned(),
            client: self.client().clone(),
        }
    }
}

impl Candidate {
    pub fn lease(&self) -> i64 {
        self.lease
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// Joins partition `p`'s queue (nothing happens if this lease is in it already).
    pub async fn stand(&mut self, p: u32) -> Result<(), etcd::Error> {
        let key = candidate_key(p, self.lease);
        self.client
            .txn(
                Txn::new()
                    .when_created_at(&key, 0)
                    .and_put(&key, &self.name, Some(self.lease)),
            )
            .await?;
        Ok(())
    }

    /// Leaves partition `p`'s queue: a leader hands the partition to the next in the queue.
    pub async fn withdraw(&mut self, p: u32) -> Result<(), etcd::Error> {
        self.client.delete(&candidate_key(p, self.lease)).await
    }

    /// Every partition's queue, the leader first. One range read.
    pub async fn queues(&mut self) -> Result<BTreeMap<u32, Vec<Queued>>, etcd::Error> {
        let kvs = self.client.get_prefix(PARTITIONS_PREFIX).await?;
        let mut out: BTreeMap<u32, Vec<Queued>> = BTreeMap::new();
        for kv in kvs {
            let Some((p, lease)) = kv
                .key
                .strip_prefix(PARTITIONS_PREFIX)
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(p, l)| Some((p.parse().ok()?, i64::from_str_radix(l, 16).ok()?)))
            else {
                continue;
            };
            out.entry(p).or_default().push(Queued {
                name: kv.value,
                lease,
                epoch: kv.create_revision.max(0) as u64,
            });
        }
        Ok(out)
    }
}
