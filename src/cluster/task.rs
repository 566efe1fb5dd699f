//! The cluster task: keeps this instance a member, stands for the partitions it should own,
//! leads them while it may, and hands them over when it should not.
//!
//! Where it sits: the cluster stage, beside the others. Every [`LOOP`] it reads the members and
//! every partition's queue from etcd (two range reads, [`super::ownership`]), ranks the
//! members per partition ([`super::partition::ranking`]) and, where this instance is first or
//! second, stands in the queue (the second waits as the hot standby). When its key heads a
//! queue it leads: the engine's [`Partitions`] starts that partition's data plane with the
//! epoch. A leader that is no longer first hands over once the first is queued behind it (a
//! join moves about 1/(N+1) of the partitions, each in well under a second). Before anything
//! is given up in etcd the engine is told ([`Partitions::lost`]) so that it stops commanding
//! first; a lead the queue no longer shows (the key went) is dropped at the next read.
//!
//! Bad conditions: etcd unreachable at start is retried with backoff, no station commanded
//! meanwhile; when the fence runs out (renewals failing: etcd cut off or without quorum) every
//! partition is dropped locally at once and led again when renewals succeed (the same key
//! still heads its queue, with the same epoch, if etcd kept the lease); a lease etcd expired
//! means joining again on a new lease; a broker out of reach for 5 s ([`Partitions::healthy`])
//! means handing every partition over until it is back. Another partition count stops the
//! instance; a name in use is retried for two TTLs (a crashed predecessor's lease runs out),
//! then stops it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::membership::{Fence, JoinError, MemberSettings, Membership};
use super::ownership::Candidate;
use super::partition::{decide, ranking, Step};
use super::state::StateRequest;
use super::view::{read_cluster, ClusterView, PartitionRow, Takeover};
use crate::backoff::Backoff;
use crate::clock::now_ms;

/// How often the task looks at etcd.
pub const LOOP: Duration = Duration::from_millis(250);

/// State requests waiting for the task: operator changes, alarm reads and writes, and the
/// district's sums (one write per led partition every quarter period) and offsets.
const STATE_REQUESTS: usize = 1024;

/// Takeovers kept for `heatgrid cluster`.
const TAKEOVERS_KEPT: usize = 32;

/// The engine's side of leading partitions. Both calls run on the cluster task and must not
/// block.
pub trait Partitions: Send + 'static {
    /// Whether this instance can serve partitions now (its broker connection is up, or was
    /// lost only moments ago). While it cannot, it hands every partition over and stands for
    /// none.
    fn healthy(&self) -> bool;
    /// This instance joined the cluster whose identity is `cluster_id` (called after every
    /// join). The engine checks there that no other cluster uses its session names.
    fn joined(&mut self, _cluster_id: &str) {}
    /// This instance leads `partition` with `epoch` while `fence` holds: start its data plane.
    /// `settings`: the operator state etcd keeps for the partition's stations (station →
    /// JSON), to apply before they are commanded.
    fn led(&mut self, partition: u32, epoch: u64, fence: Fence, settings: HashMap<String, String>);
    /// It no longer does (handing over, fenced, shutting down): stop commanding its stations
    /// and close its session now.
    fn lost(&mut self, partition: u32);
}

/// The task's state.
pub struct ClusterTask<P: Partitions> {
    settings: MemberSettings,
    engine: P,
    member: Option<Membership>,
    candidate: Option<Candidate>,
    /// Partitions whose queue this instance joined: since when, and who led then.
    standing: HashMap<u32, (tokio::time::Instant, Option<String>)>,
    /// Partitions this instance leads, with their epochs.
    led: BTreeMap<u32, u64>,
    view: watch::Sender<Arc<ClusterView>>,
    /// State to keep in or read from etcd (from the control task).
    requests: mpsc::Receiver<StateRequest>,
    takeovers: VecDeque<Takeover>,
    /// Last problem logged, so each is logged once per change.
    trouble: Option<String>,
}

impl<P: Partitions> std::fmt::Debug for ClusterTask<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTask")
            .field("name", &self.settings.name)
            .field("led", &self.led.keys().collect::<Vec<_>>())
            .field("standing", &self.standing.len())
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
    /// The task, the view it publishes, and where the control task sends its state requests.
    pub fn new(
        settings: MemberSettings,
        engine: P,
    ) -> (
        Self,
        watch::Receiver<Arc<ClusterView>>,
        mpsc::Sender<StateRequest>,
    ) {
        let (requests_tx, requests) = mpsc::channel(STATE_REQUESTS);
        let (view, view_rx) = watch::channel(Arc::new(ClusterView {
            name: settings.name.clone(),
            partitions: settings.partitions,
            lease_ttl_s: settings.lease_ttl.as_secs_f64(),
            ..ClusterView::default()
        }));
        let task = Self {
            settings,
            engine,
            member: None,
            candidate: None,
            standing: HashMap::new(),
            led: BTreeMap::new(),
            view,
            requests,
            takeovers: VecDeque::new(),
            trouble: None,
        };
        (task, view_rx, requests_tx)
    }

    /// Runs until `stop`; then hands every partition over and leaves the cluster. Returns an
    /// error only for a mistake a retry cannot fix (another partition count, a name in use
    /// by a live instance).
    pub async fn run(mut self, stop: CancellationToken) -> Result<(), ClusterError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut next = tokio::time::Instant::now();
        let mut name_taken_since: Option<tokio::time::Instant> = None;
        let mut table = Vec::new();
        let mut members = Vec::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                Some(req) = self.requests.recv() => {
                    self.serve(req).await;
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
                match self.join(&mut backoff, &mut name_taken_since).await {
                    Ok(Some(delay)) => next = tokio::time::Instant::now() + delay,
                    Ok(None) => {}
                    Err(e) => return Err(e),
                }
                continue;
            };
            if !member.fence().holds() {
                if !self.led.is_empty() || !self.standing.is_empty() {
                    self.note("lease not renewed in time: fenced, every partition dropped".into());
                }
                self.drop_all();
                self.publish(members.clone(), table.clone());
                continue;
            }
            if !self.engine.healthy() {
                if !self.led.is_empty() || !self.standing.is_empty() {
                    self.note("broker unreachable: handing every partition over".into());
                    self.step_down().await;
                }
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

    /// One try to join: `Ok(Some(delay))` to try again after `delay`, `Err` for a mistake a
    /// retry cannot fix.
    async fn join(
        &mut self,
        backoff: &mut Backoff,
        name_taken_since: &mut Option<tokio::time::Instant>,
    ) -> Result<Option<Duration>, ClusterError> {
        // A client with no etcd node to talk to can wait forever: bound each try.
        let limit = (self.settings.lease_ttl / 2).max(Duration::from_secs(2));
        let joined = tokio::time::timeout(limit, Membership::join(&self.settings))
            .await
            .unwrap_or_else(|_| {
                Err(JoinError::Etcd(super::etcd::Error::Unreachable(format!(
                    "no answer within {} s",
                    limit.as_secs()
                ))))
            });
        match joined {
            Ok(mut m) => {
                self.engine.joined(m.cluster_id());
                self.candidate = Some(m.candidate());
                self.member = Some(m);
                self.trouble = None;
                *name_taken_since = None;
                backoff.reset();
                Ok(None)
            }
            Err(e @ (JoinError::Partitions { .. } | JoinError::Sessions { .. })) => {
                Err(ClusterError::Join(e))
            }
            Err(e) => {
                if let JoinError::NameTaken(_) = e {
                    let since = *name_taken_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() > 2 * self.settings.lease_ttl {
                        return Err(ClusterError::Join(e));
                    }
                }
                self.note(format!("cannot join the cluster: {}; retrying", e.brief()));
                Ok(Some(backoff.next_delay()))
            }
        }
    }

    /// Reads or writes state for the engine.
    async fn serve(&mut self, req: StateRequest) {
        let member = self.member.as_ref().is_some_and(|m| m.fence().holds());
        let cand = self.candidate.as_mut().filter(|_| member);
        match req {
            StateRequest::Write(w) => {
                let r = match cand {
                    Some(c) => c.write_state(&w).await,
                    None => Err("not a member of the cluster now".into()),
                };
                match w.done {
                    Some(done) => {
                        let _ = done.send(r);
                    }
                    None => {
                        if let Err(e) = r {
                            self.note(format!("cannot keep state in etcd: {e}"));
                        }
                    }
                }
            }
            StateRequest::Read { prefix, reply } => {
                let r = match cand {
                    Some(c) => c.read_prefix(&prefix).await.map_err(|e| e.to_string()),
                    None => Err("not a member of the cluster now".into()),
                };
                let _ = reply.send(r);
            }
        }
    }

    /// Logs `what` once until it changes.
    fn note(&mut self, what: String) {
        if self.trouble.as_ref() != Some(&what) {
            warn!(problem = %what, "Cluster.");
            self.trouble = Some(what);
        }
    }

    /// Leads, stands for, withdraws from, or hands over each partition by this instance's
    /// rank and the queue etcd shows.
    async fn rebalance(&mut self, members: &[(String, String)], table: &[PartitionRow]) {
        let Some(lease) = self.candidate.as_ref().map(Candidate::lease) else {
            return;
        };
        let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
        let me = self.settings.name.clone();
        for row in table {
            let p = row.partition;
            let ranked = ranking(&names, p);
            match decide(&me, lease, &ranked, row, self.led.get(&p).copied()) {
                Step::Lost { epoch } => {
                    warn!(
                        partition = p,
                        epoch,
                        "The partition's queue no longer shows this instance first: lead dropped."
                    );
                    self.led.remove(&p);
                    self.engine.lost(p);
                }
                Step::HandOver => self.hand_over(p).await,
                Step::Keep => {}
                Step::Lead => self.lead(p, row).await,
                Step::Stand => self.stand_for(p, row.leader.clone()).await,
                Step::Withdraw => self.withdraw(p).await,
                Step::Wait => {
                    self.standing
                        .entry(p)
                        .or_insert_with(|| (tokio::time::Instant::now(), row.leader.clone()));
                }
            }
        }
    }

    /// This instance's key heads `row`'s queue: lead with its epoch (while the fence holds).
    async fn lead(&mut self, p: u32, row: &PartitionRow) {
        let Some(epoch) = row.epoch else {
            return;
        };
        // The operator state of the partition's stations first: none is commanded without it.
        let settings = match self.candidate.as_mut() {
            Some(c) => match c.read_states(p).await {
                Ok(s) => s,
                Err(e) => {
                    self.note(format!("cannot read partition {p}'s operator state: {e}"));
                    return;
                }
            },
            None => return,
        };
        let Some(fence) = self
            .member
            .as_ref()
            .map(Membership::fence)
            .filter(Fence::holds)
        else {
            return;
        };
        let (since, from) = self
            .standing
            .remove(&p)
            .unwrap_or_else(|| (tokio::time::Instant::now(), None));
        let waited_ms = since.elapsed().as_millis() as u64;
        info!(partition = p, epoch, waited_ms, from = ?from, "Leading partition.");
        self.engine.led(p, epoch, fence, settings);
        self.takeovers.push_back(Takeover {
            partition: p,
            epoch,
            at_ms: now_ms(),
            from,
            waited_ms,
        });
        if self.takeovers.len() > TAKEOVERS_KEPT {
            self.takeovers.pop_front();
        }
        self.led.insert(p, epoch);
    }

    async fn stand_for(&mut self, p: u32, from: Option<String>) {
        let Some(cand) = self.candidate.as_mut() else {
            return;
        };
        match cand.stand(p).await {
            Ok(()) => {
                self.standing.insert(p, (tokio::time::Instant::now(), from));
            }
            Err(e) => self.note(format!("cannot stand for partition {p}: {e}")),
        }
    }

    /// Leaves `p`'s queue (no longer first or second).
    async fn withdraw(&mut self, p: u32) {
        self.standing.remove(&p);
        if let Some(cand) = self.candidate.as_mut() {
            if let Err(e) = cand.withdraw(p).await {
                self.note(format!("cannot leave the queue of partition {p}: {e}"));
            }
        }
    }

    /// Hands every led partition over and leaves every queue (the broker is unreachable).
    async fn step_down(&mut self) {
        let led: Vec<u32> = self.led.keys().copied().collect();
        for p in led {
            self.hand_over(p).await;
        }
        let standing: Vec<u32> = self.standing.keys().copied().collect();
        for p in standing {
            self.withdraw(p).await;
        }
    }

    /// A planned handover: the engine stops first, then the key goes and the next in the
    /// queue leads.
    async fn hand_over(&mut self, p: u32) {
        if self.led.remove(&p).is_none() {
            return;
        }
        self.engine.lost(p);
        if let Some(cand) = self.candidate.as_mut() {
            match cand.withdraw(p).await {
                Ok(()) => info!(partition = p, "Partition handed over."),
                Err(e) => {
                    warn!(partition = p, error = %e, "Cannot hand over; the partition passes when the lease ends.")
                }
            }
        }
    }

    /// Fenced or joining again: stop every partition locally, no etcd request.
    fn drop_all(&mut self) {
        for (p, _) in std::mem::take(&mut self.led) {
            self.engine.lost(p);
        }
        self.standing.clear();
    }

    /// Shutting down: hand everything over at once and revoke the lease.
    async fn leave(&mut self) {
        let led: Vec<u32> = self.led.keys().copied().collect();
        for p in &led {
            self.engine.lost(*p);
        }
        if let Some(m) = self.member.take() {
            // Revoking the lease deletes every key of this instance, leader keys included:
            // the next in each queue leads at its next read (within 250 ms).
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
            led: self.led.clone(),
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
