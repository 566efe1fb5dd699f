//! One instance's membership in a cluster: its etcd lease, its member key, and its fence.
//!
//! Where it sits: under the partition ownership that comes next (issue 15). An instance joins
//! once: the partition count is stored in etcd at the first start and every later instance
//! must agree; its member key `heatgrid/members/{name}` lives on its own lease (a second
//! instance under the same name is refused); a task renews the lease every fifth of its TTL.
//! The [`Fence`] is the instant past which the instance must not command anything: the send
//! time of the last keepalive etcd answered, plus the TTL, minus a margin (a fifth of the
//! TTL). etcd never expires a lease sooner than its TTL after the last renewal it received,
//! so an instance that stops renewing — stalled, cut off from etcd, or etcd without quorum —
//! has stopped commanding before another one can be given its stations.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::etcd::{self, Client, ConnectOptions, Txn};
use crate::files::TlsPem;

/// Where an instance finds the cluster, and who it is in it.
#[derive(Debug, Clone)]
pub struct MemberSettings {
    /// etcd client URLs (`http://host:port`).
    pub endpoints: Vec<String>,
    /// Unique among the instances.
    pub name: String,
    pub partitions: u32,
    /// What the partitions' MQTT sessions are named after (`{sessions}-p{NN}`): the same on
    /// every instance, so that the next owner of a partition takes over its session.
    pub sessions: String,
    pub lease_ttl: Duration,
    /// Where the other instances reach this one's API.
    pub api_addr: String,
    /// etcd user and password, if etcd has authentication on.
    pub credentials: Option<(String, String)>,
    /// TLS to etcd (`https://` endpoints): the CA's PEM, and the client's certificate and key
    /// if etcd asks for one.
    pub tls: Option<TlsPem>,
}

/// Why an instance could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd::Error),
    #[error(
        "another running instance is already a member named {0:?}: give each instance its own name"
    )]
    NameTaken(String),
    #[error(
        "the cluster was created with {stored} partitions and this instance is configured with \
         {ours}: the partition count cannot be changed by restarting an instance"
    )]
    Partitions { stored: String, ours: u32 },
    #[error(
        "the cluster's partition sessions are named {stored:?}-pNN ([mqtt] client_id of its \
         first instance) and this instance's [mqtt] client_id is {ours:?}: every instance of a \
         cluster needs the same one, or the next owner of a partition cannot take over its session"
    )]
    Sessions { stored: String, ours: String },
    #[error("lease_ttl must be at least 2 s, got {0:?}")]
    Ttl(Duration),
}

impl JoinError {
    /// Without what changes from one try to the next (which endpoint refused), so that a
    /// problem is logged once, not once per try.
    pub fn brief(&self) -> String {
        match self {
            JoinError::Etcd(etcd::Error::Unreachable(_)) => "no etcd endpoint reachable".into(),
            other => other.to_string(),
        }
    }
}

/// Keys in etcd.
pub const PARTITIONS_KEY: &str = "heatgrid/config/partitions";
pub const SESSIONS_KEY: &str = "heatgrid/config/sessions";
/// A random identity the first instance gives the cluster: what it claims its session names
/// with on the broker, so that a second cluster using the same names is detected.
pub const CLUSTER_ID_KEY: &str = "heatgrid/config/cluster_id";
pub const MEMBERS_PREFIX: &str = "heatgrid/members/";

/// The instant past which this instance must not command: moved forward by every renewal
/// etcd confirms. Cheap to clone and to check.
#[derive(Debug, Clone)]
pub struct Fence(Arc<Mutex<Instant>>);

impl Fence {
    /// Until when commanding is allowed.
    pub fn deadline(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether commanding is allowed now.
    pub fn holds(&self) -> bool {
        Instant::now() < self.deadline()
    }

    fn extend_to(&self, t: Instant) {
        let mut d = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *d = (*d).max(t);
    }
}

/// A joined instance.
pub struct Membership {
    client: Client,
    lease: i64,
    name: String,
    cluster_id: String,
    fence: Fence,
    renewals: JoinHandle<()>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("name", &self.name)
            .field("lease", &self.lease)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Joins the cluster (see the module docs). Fails without retrying: the caller decides
    /// when to try again.
    pub async fn join(s: &MemberSettings) -> Result<Self, JoinError> {
        if s.lease_ttl < Duration::from_secs(2) {
            return Err(JoinError::Ttl(s.lease_ttl));
        }
        let opts = ConnectOptions {
            connect_timeout: Some(Duration::from_secs(2)),
            timeout: Some(s.lease_ttl / 5),
            credentials: s.credentials.clone(),
            tls: s.tls.clone(),
        };
        let client = Client::connect(&s.endpoints, opts).await?;
        let ours = s.partitions.to_string();
        let stored = agree(&client, PARTITIONS_KEY, &ours).await?;
        if stored != ours {
            return Err(JoinError::Partitions {
                stored,
                ours: s.partitions,
            });
        }
        let stored = agree(&client, SESSIONS_KEY, &s.sessions).await?;
        if stored != s.sessions {
            return Err(JoinError::Sessions {
                stored,
                ours: s.sessions.clone(),
            });
        }
        let candidate = format!("{:016x}", rand::random::<u64>());
        let cluster_id = agree(&client, CLUSTER_ID_KEY, &candidate).await?;
        let ttl = s.lease_ttl;
        let sent = Instant::now();
        let lease = client.lease_grant(ttl.as_secs().max(2) as i64).await?;
        let fence = Fence(Arc::new(Mutex::new(sent + ttl - margin(ttl))));
        let key = format!("{MEMBERS_PREFIX}{}", s.name);
        let registered = client
            .txn(
                Txn::new()
                    .when_created_at(&key, 0)
                    .and_put(&key, &s.api_addr, Some(lease)),
            )
            .await?
            .succeeded;
        if !registered {
            let _ = client.lease_revoke(lease).await;
            return Err(JoinError::NameTaken(s.name.clone()));
        }
        let renewals = tokio::spawn(renew(client.clone(), lease, ttl, fence.clone()));
        info!(name = %s.name, lease, ttl_s = ttl.as_secs(), "Joined the cluster.");
        Ok(Self {
            client,
            lease,
            name: s.name.clone(),
            cluster_id,
            fence,
            renewals,
        })
    }

    /// Whether the lease is still renewed: `false` once etcd said it expired (the instance
    /// must join again, on a new lease).
    pub fn alive(&self) -> bool {
        !self.renewals.is_finished()
    }

    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// The lease every key of this instance lives on.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// This instance's name in the cluster.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster's identity (the same for every instance of it).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The etcd client (for the partition elections).
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// Every member now: (name, API address), by name.
    pub async fn members(&self) -> Result<Vec<(String, String)>, etcd::Error> {
        members(&self.client).await
    }

    /// Leaves at once: the lease is revoked, so the member key (and anything else on the
    /// lease) is gone now, not after the TTL. Tried up to five times, 100 ms apart (a request
    /// may land on a dead etcd node); if every try fails the lease expires after its TTL.
    pub async fn leave(self) -> Result<(), etcd::Error> {
        self.renewals.abort();
        self.fence.0.lock().map(|mut d| *d = Instant::now()).ok();
        let mut tries = 0;
        loop {
            match self.client.lease_revoke(self.lease).await {
                Ok(_) => break,
                Err(e) if tries >= 4 => return Err(e),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        info!(name = %self.name, "Left the cluster.");
        Ok(())
    }

    /// Stops renewing without telling etcd, as a dead or stalled instance would: the fence
    /// runs out, then etcd expires the lease.
    pub fn abandon(self) {
        self.renewals.abort();
    }
}

/// The members registered now: (name, API address), by name.
pub async fn members(client: &Client) -> Result<Vec<(String, String)>, etcd::Error> {
    let mut out: Vec<(String, String)> = client
        .get_prefix(MEMBERS_PREFIX)
        .await?
        .into_iter()
        .filter_map(|kv| Some((kv.key.strip_prefix(MEMBERS_PREFIX)?.to_owned(), kv.value)))
        .collect();
    out.sort();
    Ok(out)
}

/// The fence's margin under the TTL: a fifth of it (2 s at the default 10 s), for clock-rate
/// differences and the time a renewal takes.
fn margin(ttl: Duration) -> Duration {
    ttl / 5
}

/// Stores `ours` at `key` if the cluster has no value there yet; returns what is stored (ours,
/// or the first instance's).
async fn agree(client: &Client, key: &str, ours: &str) -> Result<String, JoinError> {
    let resp = client
        .txn(
            Txn::new()
                .when_created_at(key, 0)
                .and_put(key, ours, None)
                .or_get(key),
        )
        .await?;
    if resp.succeeded {
        return Ok(ours.to_owned());
    }
    Ok(resp
        .ranges
        .into_iter()
        .flatten()
        .next()
        .map(|kv| kv.value)
        .unwrap_or_default())
}

/// How soon a failed renewal is tried again.
const RETRY: Duration = Duration::from_millis(100);

/// Renews `lease` every fifth of its TTL; each renewal etcd confirms moves the fence to its
/// send time + TTL − margin. A failure is logged once per change of state and retried after
/// [`RETRY`]; a lease etcd says has expired ends the task, and the fence stays where it was,
/// in the past soon.
async fn renew(client: Client, lease: i64, ttl: Duration, fence: Fence) {
    let every = (ttl / 5).max(Duration::from_millis(200));
    let mut failing = false;
    let mut next = Instant::now() + every;
    loop {
        tokio::time::sleep_until(next).await;
        // After a failure, try again soon: the next request may reach a live etcd node.
        next = Instant::now() + RETRY;
        let sent = Instant::now();
        match tokio::time::timeout(every, client.lease_keep_alive(lease)).await {
            Ok(Ok(left)) if left > 0 => {
                fence.extend_to(sent + ttl - margin(ttl));
                next = sent + every;
                if failing {
                    info!(lease, "Cluster lease renewed again.");
                    failing = false;
                }
            }
            Ok(Ok(_)) => {
                warn!(lease, "Cluster lease expired: this instance is fenced.");
                return;
            }
            other => {
                if !failing {
                    let error = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "no answer in time".into(),
                    };
                    warn!(lease, %error, "Cannot renew the cluster lease; retrying. Commands stop when the fence runs out.");
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_fence_holds_until_its_deadline_and_only_moves_forward() {
        let ttl = Duration::from_secs(10);
        let sent = Instant::now();
        let fence = Fence(Arc::new(Mutex::new(sent + ttl - margin(ttl))));
        assert_eq!(margin(ttl), Duration::from_secs(2));
        assert!(fence.holds());
        tokio::time::sleep(Duration::from_millis(7_900)).await;
        assert!(fence.holds(), "a renewal's fence lasts TTL − margin");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!fence.holds(), "past TTL − margin nothing is commanded");
        // A renewal etcd confirmed moves it on; an older one never moves it back.
        let renewed = Instant::now();
        fence.extend_to(renewed + ttl - margin(ttl));
        assert!(fence.holds());
        fence.extend_to(sent + ttl - margin(ttl));
        assert_eq!(fence.deadline(), renewed + ttl - margin(ttl));
        // Clones share it: the dispatcher checks the same deadline the renewals move.
        let seen_by_dispatcher = fence.clone();
        tokio::time::sleep(ttl).await;
        assert!(!seen_by_dispatcher.holds());
    }

    #[tokio::test]
    async fn a_lease_shorter_than_two_seconds_is_refused_before_any_request() {
        let s = MemberSettings {
            endpoints: vec!["http://127.0.0.1:9".into()],
            name: "a".into(),
            partitions: 8,
            sessions: "heatgrid-engine".into(),
            lease_ttl: Duration::from_secs(1),
            api_addr: "127.0.0.1:1".into(),
            credentials: None,
            tls: None,
        };
        assert!(matches!(Membership::join(&s).await, Err(JoinError::Ttl(_))));
        let unreachable = MemberSettings {
            lease_ttl: Duration::from_secs(10),
            ..s
        };
        let e = Membership::join(&unreachable).await.unwrap_err();
        assert_eq!(e.brief(), "no etcd endpoint reachable", "{e}");
    }
}
