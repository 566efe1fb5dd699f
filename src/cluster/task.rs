//! The cluster task: keeps this instance a member, stands for the partitions it should own,
//! leads them while it may, and hands them over when it should not.
//!
//! Where it sits: the cluster stage, beside the others. Every [`LOOP`] it reads the members and
//! the partition elections from etcd (two range reads), ranks the members per partition
//! ([`super::partition::ranking`]) and, where this instance is first or second, campaigns (the
//! second waits as the hot standby). A campaign that returns makes it the leader: the engine's
//! [`Partitions`] starts that partition's data plane with the epoch. A leader that is no longer
//! first resigns once the first is queued behind it (a join moves about 1/(N+1) of the
//! partitions, each in well under a second). Before anything is given up in etcd the engine is
//! told ([`Partitions::lost`]) so that it stops commanding first.
//!
//! Bad conditions: etcd unreachable at start is retried with backoff, no station commanded
//! meanwhile; when the fence runs out (renewals failing: etcd cut off or without quorum) every
//! partition is dropped locally at once and stood for again when renewals succeed (the same
//! lease still leads, with the same epoch, if etcd kept it); a lease etcd expired means joining
//! again on a new lease. A duplicate name or another partition count stops the instance.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::membership::{Fence, JoinError, MemberSettings, Membership};
use super::ownership::{Candidate, Ownership};
use super::partition::ranking;
use crate::backoff::Backoff;
use crate::clock::now_ms;

/// How often the task looks at etcd.
pub const LOOP: Duration = Duration::from_millis(250);

/// Takeovers kept for `heatgrid cluster`.
const TAKEOVERS_KEPT: usize = 32;

/// The engine's side of leading partitions. Both calls run on the cluster task and must not
/// block.
pub trait Partitions: Send + 'static {
    /// This instance leads `partition` with `epoch` while `fence` holds: start its data plane.
    fn led(&mut self, partition: u32, epoch: u64, fence: Fence);
    /// It no longer does (handing over, fenced, shutting down): stop commanding its stations
    /// and close its session now.
    fn lost(&mut self, partition: u32);
}

/// One partition as etcd sees it: its leader with the epoch, and the standbys queued behind
/// it (the first one leads next).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionRow {
    pub partition: u32,
    pub leader: Option<String>,
    pub epoch: Option<u64>,
    pub standby: Vec<String>,
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
    /// How long this instance's campaign waited, ms.
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

/// A running campaign.
struct Campaign {
    task: JoinHandle<()>,
    started: tokio::time::Instant,
    from: Option<String>,
}

/// The task's state.
pub struct ClusterTask<P: Partitions> {
    settings: MemberSettings,
    engine: P,
    member: Option<Membership>,
    candidate: Option<Candidate>,
    campaigns: HashMap<u32, Campaign>,
    led: BTreeMap<u32, Ownership>,
    won_tx: mpsc::UnboundedSender<(u32, Result<Ownership, etcd_client::Error>)>,
    won: mpsc::UnboundedReceiver<(u32, Result<Ownership, etcd_client::Error>)>,
    view: watch::Sender<Arc<ClusterView>>,
    takeovers: VecDeque<Takeover>,
    /// Last problem logged, so each is logged once per change.
    trouble: Option<String>,
}

impl<P: Partitions> std::fmt::Debug for ClusterTask<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTask")
            .field("name", &self.settings.name)
            .field("led", &self.led.keys().collect::<Vec<_>>())
            .field("campaigns", &self.campaigns.len())
            .finish_non_exhaustive()
    }
}

/// Why the cluster task stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Join(JoinError),
}

impl<P: Partitions> ClusterTask<P> {
    pub fn new(settings: MemberSettings, engine: P) -> (Self, watch::Receiver<Arc<ClusterView>>) {
        let (view, view_rx) = watch::channel(Arc::new(ClusterView {
            name: settings.name.clone(),
            partitions: settings.partitions,
            lease_ttl_s: settings.lease_ttl.as_secs_f64(),
            ..ClusterView::default()
        }));
        let (won_tx, won) = mpsc::unbounded_channel();
        let task = Self {
            settings,
            engine,
            member: None,
            candidate: None,
            campaigns: HashMap::new(),
            led: BTreeMap::new(),
            won_tx,
            won,
            view,
            takeovers: VecDeque::new(),
            trouble: None,
        };
        (task, view_rx)
    }

    /// Runs until `stop`; then hands every partition over and leaves the cluster. Returns an
    /// error only for a mistake a retry cannot fix (a duplicate name, another partition count).
    pub async fn run(mut self, stop: CancellationToken) -> Result<(), ClusterError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut next = tokio::time::Instant::now();
        let mut table = Vec::new();
        let mut members = Vec::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                Some((p, r)) = self.won.recv() => {
                    self.campaign_ended(p, r);
                    continue;
                }
                _ = stop.cancelled() => break,
            }
            next = tokio::time::Instant::now() + LOOP;
            if self.member.as_ref().is_some_and(|m| !m.alive()) {
                self.note("the lease expired: joining again on a new lease".into());
                self.drop_all();
                self.member = None;
            }
            let Some(member) = self.member.as_mut() else {
                match Membership::join(&self.settings).await {
                    Ok(mut m) => {
                        self.candidate = Some(m.candidate());
                        self.member = Some(m);
                        self.trouble = None;
                        backoff.reset();
                    }
                    Err(e @ (JoinError::NameTaken(_) | JoinError::Partitions { .. })) => {
                        self.publish(Vec::new(), Vec::new());
                        return Err(ClusterError::Join(e));
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        self.note(format!("cannot join the cluster: {e}; retrying"));
                        next = tokio::time::Instant::now() + delay;
                    }
                }
                continue;
            };
            if !member.fence().holds() {
                if !self.led.is_empty() || !self.campaigns.is_empty() {
                    self.note("lease not renewed in time: fenced, every partition dropped".into());
                }
                self.drop_all();
                self.publish(members.clone(), table.clone());
                continue;
            }
            match read_cluster(member, self.settings.partitions).await {
                Ok((m, t)) => {
                    members = m;
                    table = t;
                    if self.trouble.take().is_some() {
                        info!("Cluster state readable again.");
                    }
                }
                Err(e) => {
                    self.note(format!("cannot read the cluster state from etcd: {e}"));
                    continue;
                }
            }
            self.rebalance(&members, &table).await;
            self.publish(members.clone(), table.clone());
        }
        self.leave().await;
        Ok(())
    }

    /// Logs `what` once until it changes.
    fn note(&mut self, what: String) {
        if self.trouble.as_ref() != Some(&what) {
            warn!(problem = %what, "Cluster.");
            self.trouble = Some(what);
        }
    }

    /// Stands for, withdraws from, or hands over each partition by this instance's rank.
    async fn rebalance(&mut self, members: &[(String, String)], table: &[PartitionRow]) {
        let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
        let me = self.settings.name.clone();
        for row in table {
            let p = row.partition;
            let ranked = ranking(&names, p);
            let rank = ranked.iter().position(|n| *n == me);
            let want = rank.is_some_and(|r| r < 2);
            if self.led.contains_key(&p) {
                // Hand over to the first choice once it is queued behind this instance.
                let first = ranked.first().copied();
                if rank != Some(0) && first.is_some_and(|f| row.standby.iter().any(|s| s == f)) {
                    self.hand_over(p).await;
                }
            } else if want && !self.campaigns.contains_key(&p) {
                self.stand_for(p, row.leader.clone());
            } else if !want {
                if let Some(c) = self.campaigns.remove(&p) {
                    c.task.abort();
                    if let Some(cand) = self.candidate.as_mut() {
                        let _ = cand.withdraw(p).await;
                    }
                }
            }
        }
    }

    fn stand_for(&mut self, p: u32, from: Option<String>) {
        let Some(mut cand) = self.candidate.clone() else {
            return;
        };
        let tx = self.won_tx.clone();
        let task = tokio::spawn(async move {
            let r = cand.campaign(p).await;
            let _ = tx.send((p, r));
        });
        self.campaigns.insert(
            p,
            Campaign {
                task,
                started: tokio::time::Instant::now(),
                from,
            },
        );
    }

    fn campaign_ended(&mut self, p: u32, r: Result<Ownership, etcd_client::Error>) {
        let Some(c) = self.campaigns.remove(&p) else {
            return; // withdrawn meanwhile
        };
        let fence = self.member.as_ref().map(Membership::fence);
        match (r, fence) {
            (Ok(o), Some(fence)) if fence.holds() => {
                let waited_ms = c.started.elapsed().as_millis() as u64;
                info!(partition = p, epoch = o.epoch, waited_ms, from = ?c.from, "Leading partition.");
                self.engine.led(p, o.epoch, fence);
                self.takeovers.push_back(Takeover {
                    partition: p,
                    epoch: o.epoch,
                    at_ms: now_ms(),
                    from: c.from,
                    waited_ms,
                });
                if self.takeovers.len() > TAKEOVERS_KEPT {
                    self.takeovers.pop_front();
                }
                self.led.insert(p, o);
            }
            (Ok(_), _) => {} // fenced meanwhile: stood for again once renewals succeed
            (Err(e), _) => self.note(format!("campaign for partition {p} failed: {e}")),
        }
    }

    /// A planned handover: the engine stops first, then etcd hands the partition to the
    /// standby; this instance stands again, behind it.
    async fn hand_over(&mut self, p: u32) {
        let Some(o) = self.led.remove(&p) else {
            return;
        };
        self.engine.lost(p);
        if let Some(cand) = self.candidate.as_mut() {
            match cand.resign(o).await {
                Ok(()) => info!(partition = p, "Partition handed over."),
                Err(e) => {
                    warn!(partition = p, error = %e, "Cannot resign; the partition passes when the lease ends.")
                }
            }
        }
    }

    /// Fenced or re-joining: stop every partition locally, no etcd request.
    fn drop_all(&mut self) {
        for (p, _) in std::mem::take(&mut self.led) {
            self.engine.lost(p);
        }
        for (_, c) in self.campaigns.drain() {
            c.task.abort();
        }
    }

    /// Shutting down: hand everything over at once and revoke the lease.
    async fn leave(&mut self) {
        for c in self.campaigns.values() {
            c.task.abort();
        }
        let led: Vec<u32> = self.led.keys().copied().collect();
        for p in &led {
            self.engine.lost(*p);
        }
        if let Some(m) = self.member.take() {
            // Revoking the lease deletes every key of this instance, leader keys included:
            // each standby's campaign returns now.
            if let Err(e) = m.leave().await {
                warn!(error = %e, "Cannot revoke the cluster lease; partitions pass when it ends.");
            }
        }
        self.led.clear();
        info!(handed_over = led.len(), "Every partition handed over.");
    }

    fn publish(&self, members: Vec<(String, String)>, table: Vec<PartitionRow>) {
        let view = ClusterView {
            name: self.settings.name.clone(),
            partitions: self.settings.partitions,
            lease_ttl_s: self.settings.lease_ttl.as_secs_f64(),
            joined: self.member.as_ref().is_some_and(|m| m.fence().holds()),
            members,
            table,
            led: self.led.iter().map(|(p, o)| (*p, o.epoch)).collect(),
            takeovers: self.takeovers.iter().cloned().collect(),
        };
        self.view.send_if_modified(|old| {
            let same = old.joined == view.joined
                && old.members == view.members
                && old.table == view.table
                && old.led == view.led
                && old.takeovers == view.takeovers;
            if !same {
                *old = Arc::new(view);
            }
            !same
        });
    }
}

/// The members and, per partition, its leader (with the epoch) and first standby: two range
/// reads.
async fn read_cluster(
    m: &mut Membership,
    partitions: u32,
) -> Result<(Vec<(String, String)>, Vec<PartitionRow>), etcd_client::Error> {
    let members = m.members().await?;
    let mut queued: BTreeMap<u32, Vec<(String, u64)>> = BTreeMap::new();
    for (p, name, rev) in m.candidate().all_candidates().await? {
        queued.entry(p).or_default().push((name, rev));
    }
    let table = (0..partitions)
        .map(|p| {
            let q = queued.remove(&p).unwrap_or_default();
            PartitionRow {
                partition: p,
                leader: q.first().map(|(n, _)| n.clone()),
                epoch: q.first().map(|(_, r)| *r),
                standby: q.iter().skip(1).map(|(n, _)| n.clone()).collect(),
            }
        })
        .collect();
    Ok((members, table))
}
