//! Partition ownership: at most one leader per partition through etcd's election API, and the
//! fencing epoch.
//!
//! Where it sits: on top of [`super::membership`]. An instance campaigns for a partition on
//! its own lease; etcd makes the candidate with the oldest key the leader, so a second
//! candidate waits as the standby and leads once the leader resigns (a planned handover) or its
//! lease expires (a death). The leader key's creation revision is the **epoch**: every new
//! leader's is higher than every earlier one's, so a station that accepts only
//! `(epoch, seq)` pairs greater than the last it accepted can never be moved by a deposed
//! instance. Which partitions an instance campaigns for follows [`super::partition::ranking`].

use etcd_client::{Client, LeaderKey, ResignOptions};

use super::membership::Membership;

/// gRPC status codes (the gRPC specification's numbers) of a request that ran out of time.
const GRPC_CANCELLED: i32 = 1;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;

/// Where the partitions' elections live in etcd.
pub const ELECTIONS_PREFIX: &str = "heatgrid/part/";

/// The election of partition `p` in etcd.
pub fn election_name(p: u32) -> String {
    format!("{ELECTIONS_PREFIX}{p:04}")
}

/// This instance leads `partition` with `epoch` until it resigns or its lease ends.
#[derive(Debug, Clone)]
pub struct Ownership {
    pub partition: u32,
    pub epoch: u64,
    key: LeaderKey,
}

/// What campaigning needs, cheap to clone into one task per partition: the etcd client, the
/// instance's lease and its name.
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
    /// A handle to campaign with on this instance's lease.
    pub fn candidate(&mut self) -> Candidate {
        Candidate {
            lease: self.lease(),
            name: self.name().to_owned(),
            client: self.client().clone(),
        }
    }

    /// Campaigns for `partition` (see [`Candidate::campaign`]).
    pub async fn campaign(&mut self, partition: u32) -> Result<Ownership, etcd_client::Error> {
        self.candidate().campaign(partition).await
    }

    /// Gives `o` up at once: the standby leads next (a planned handover).
    pub async fn resign(&mut self, o: Ownership) -> Result<(), etcd_client::Error> {
        self.candidate().resign(o).await
    }

    /// Who leads `partition` now, with the epoch: `None` if nobody does.
    pub async fn leader_of(
        &mut self,
        partition: u32,
    ) -> Result<Option<(String, u64)>, etcd_client::Error> {
        self.candidate().leader_of(partition).await
    }
}

impl Candidate {
    /// Campaigns for `partition`: resolves once this instance leads it (at once if nobody
    /// does, else when the leaders before it resigned or their leases expired).
    pub async fn campaign(&mut self, partition: u32) -> Result<Ownership, etcd_client::Error> {
        let (lease, name) = (self.lease, self.name.clone());
        // The client's requests time out after a fifth of the TTL, and a standby waits longer:
        // campaigning again is safe (etcd finds this lease's candidate key and keeps its
        // place and revision), so a timeout just means "still waiting".
        let resp = loop {
            match self
                .client
                .campaign(election_name(partition), name.clone(), lease)
                .await
            {
                Err(etcd_client::Error::GRpcStatus(s))
                    if [GRPC_CANCELLED, GRPC_DEADLINE_EXCEEDED].contains(&i32::from(s.code())) => {}
                other => break other?,
            }
        };
        let key = resp.leader().cloned().ok_or_else(|| {
            etcd_client::Error::InvalidArgs("campaign answered without a leader key".into())
        })?;
        Ok(Ownership {
            partition,
            epoch: key.rev().max(0) as u64,
            key,
        })
    }

    /// Gives `o` up at once: the standby leads next (a planned handover).
    pub async fn resign(&mut self, o: Ownership) -> Result<(), etcd_client::Error> {
        self.client
            .resign(Some(ResignOptions::new().with_leader(o.key)))
            .await?;
        Ok(())
    }

    /// Stops standing for `partition` without leading it: removes this lease's candidate key
    /// (a campaign that was cancelled leaves it queued in etcd).
    pub async fn withdraw(&mut self, partition: u32) -> Result<(), etcd_client::Error> {
        let key = format!("{}/{:x}", election_name(partition), self.lease);
        self.client.delete(key, None).await?;
        Ok(())
    }

    /// Every partition's candidates, (partition, name, creation revision), in the order
    /// etcd will make them lead: per partition the first is the leader and its revision the
    /// epoch. One range read over every election.
    pub async fn all_candidates(&mut self) -> Result<Vec<(u32, String, u64)>, etcd_client::Error> {
        let opts = etcd_client::GetOptions::new().with_prefix().with_sort(
            etcd_client::SortTarget::Create,
            etcd_client::SortOrder::Ascend,
        );
        let resp = self.client.get(ELECTIONS_PREFIX, Some(opts)).await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let rest = kv.key_str().ok()?.strip_prefix(ELECTIONS_PREFIX)?;
                let p = rest.split('/').next()?.parse().ok()?;
                let name = kv.value_str().unwrap_or("").to_owned();
                Some((p, name, kv.create_revision().max(0) as u64))
            })
            .collect())
    }

    /// Who leads `partition` now, with the epoch: `None` if nobody does.
    pub async fn leader_of(
        &mut self,
        partition: u32,
    ) -> Result<Option<(String, u64)>, etcd_client::Error> {
        match self.client.leader(election_name(partition)).await {
            Ok(r) => Ok(r.kv().map(|kv| {
                (
                    kv.value_str().unwrap_or("").to_owned(),
                    kv.create_revision().max(0) as u64,
                )
            })),
            // etcd answers "election: no leader" as an error.
            Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("no leader") => Ok(None),
            Err(e) => Err(e),
        }
    }
}
