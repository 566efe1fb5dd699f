//! What the cluster task publishes for `heatgrid cluster` and the API: the members, every
//! partition's leader, epoch and standbys, what this instance leads, and its last takeovers;
//! and the read of etcd they come from.

use std::collections::BTreeMap;

use serde::Serialize;

use super::membership::Membership;
use super::ownership::Queued;

/// One partition as etcd sees it: its leader with the epoch, and the standbys queued behind
/// it (the first one leads next).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionRow {
    pub partition: u32,
    pub leader: Option<String>,
    pub epoch: Option<u64>,
    pub standby: Vec<String>,
    /// The queue's leases, the leader's first.
    #[serde(skip)]
    pub leases: Vec<i64>,
}

/// A partition this instance took over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Takeover {
    pub partition: u32,
    pub epoch: u64,
    /// Wall-clock time, ms.
    pub at_ms: i64,
    /// The leader this instance last saw before it led (`None`: nobody led).
    pub from: Option<String>,
    /// How long this instance stood in the queue before it led, ms.
    pub waited_ms: u64,
}

/// What `heatgrid cluster` and the API show, published after every change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterView {
    pub name: String,
    pub partitions: u32,
    pub lease_ttl_s: f64,
    /// Whether this instance is a member (joined, lease renewed).
    pub joined: bool,
    /// (name, API address) of every member, by name.
    pub members: Vec<(String, String)>,
    pub table: Vec<PartitionRow>,
    /// Partitions this instance leads, with their epochs.
    pub led: BTreeMap<u32, u64>,
    pub takeovers: Vec<Takeover>,
}

/// The members and every partition's queue: two range reads.
pub(super) async fn read_cluster(
    m: &mut Membership,
    partitions: u32,
) -> Result<(Vec<(String, String)>, Vec<PartitionRow>), super::etcd::Error> {
    let members = m.members().await?;
    let mut queues = m.candidate().queues().await?;
    let table = (0..partitions)
        .map(|p| {
            let q: Vec<Queued> = queues.remove(&p).unwrap_or_default();
            PartitionRow {
                partition: p,
                leader: q.first().map(|c| c.name.clone()),
                epoch: q.first().map(|c| c.epoch),
                standby: q.iter().skip(1).map(|c| c.name.clone()).collect(),
                leases: q.iter().map(|c| c.lease).collect(),
            }
        })
        .collect();
    Ok((members, table))
}
