//! The cluster's first building blocks against a real three-node etcd on loopback (Debian's
//! etcd-server): membership by name, one partition count for the cluster, the fence running
//! out before etcd forgets a silent member, and an etcd leader's death costing nothing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use heatgrid::cluster::membership::{self, JoinError, MemberSettings, Membership};

use crate::util::{free_port, Proc};

/// Three etcd nodes on free loopback ports, each killed (by PID) on drop.
struct Etcd {
    nodes: Vec<Option<Proc>>,
    client_ports: Vec<u16>,
}

impl Etcd {
    fn start() -> Etcd {
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let peer_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let cluster = (0..3)
            .map(|i| format!("n{i}=http://127.0.0.1:{}", peer_ports[i]))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("heatgrid-test-{}", client_ports[0]);
        let nodes = (0..3)
            .map(|i| {
                let dir = tempfile::tempdir().unwrap();
                let (c, p) = (client_ports[i], peer_ports[i]);
                let child = Command::new("etcd")
                    .args(["--name", &format!("n{i}")])
                    .arg("--data-dir")
                    .arg(dir.path())
                    .args(["--listen-client-urls", &format!("http://127.0.0.1:{c}")])
                    .args(["--advertise-client-urls", &format!("http://127.0.0.1:{c}")])
                    .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
                    .args([
                        "--initial-advertise-peer-urls",
                        &format!("http://127.0.0.1:{p}"),
                    ])
                    .args(["--initial-cluster", &cluster])
                    .args(["--initial-cluster-state", "new"])
                    .args(["--initial-cluster-token", &token])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("etcd (Debian etcd-server: scripts/test.sh installs it)");
                Some(Proc {
                    child,
                    port: c,
                    _dir: Some(dir),
                })
            })
            .collect();
        Etcd {
            nodes,
            client_ports,
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.client_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect()
    }

    /// Waits until every node answers and the cluster has a leader; the index of the leader.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "etcd cluster did not form: {last:?}"
            );
            let mut ids = Vec::new();
            for ep in self.endpoints() {
                let status = async {
                    let mut c = etcd_client::Client::connect([ep], None).await.ok()?;
                    c.status().await.ok()
                };
                match tokio::time::timeout(Duration::from_secs(2), status).await {
                    Ok(Some(s)) => ids.push((s.header().map(|h| h.member_id()), s.leader())),
                    _ => ids.push((None, 0)),
                }
            }
            last = ids.clone();
            let leader = ids.first().map(|(_, l)| *l).unwrap_or(0);
            if let Some(i) = ids.iter().position(|(me, _)| *me == Some(leader)) {
                if leader != 0 && ids.iter().all(|(me, _)| me.is_some()) {
                    return i;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn kill(&mut self, i: usize) {
        self.nodes[i] = None; // Proc's drop: SIGKILL and reap
    }
}

fn settings(etcd: &Etcd, name: &str, partitions: u32, ttl_s: u64) -> MemberSettings {
    MemberSettings {
        endpoints: etcd.endpoints(),
        name: name.into(),
        partitions,
        lease_ttl: Duration::from_secs(ttl_s),
        api_addr: format!("127.0.0.1:{}", free_port()),
        credentials: None,
        tls: None,
    }
}

async fn names(etcd: &Etcd) -> Vec<String> {
    let mut c = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    membership::members(&mut c)
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

#[tokio::test]
async fn members_join_once_by_name_and_agree_on_the_partition_count() {
    let etcd = Etcd::start();
    etcd.leader().await;
    let a = Membership::join(&settings(&etcd, "a", 64, 10))
        .await
        .unwrap();
    let mut b = Membership::join(&settings(&etcd, "b", 64, 10))
        .await
        .unwrap();
    assert_eq!(names(&etcd).await, ["a", "b"]);
    assert_eq!(
        b.members().await.unwrap().len(),
        2,
        "a member sees the others"
    );
    match Membership::join(&settings(&etcd, "a", 64, 10)).await {
        Err(JoinError::NameTaken(n)) => assert_eq!(n, "a"),
        other => panic!("a second 'a' must be refused, got {other:?}"),
    }
    match Membership::join(&settings(&etcd, "c", 32, 10)).await {
        Err(e @ JoinError::Partitions { .. }) => {
            assert!(e.to_string().contains("64 partitions"), "{e}")
        }
        other => panic!("another partition count must be refused, got {other:?}"),
    }
    assert!(a.fence().holds() && b.fence().holds());
    a.leave().await.unwrap();
    assert_eq!(names(&etcd).await, ["b"], "leaving revokes at once");
    b.leave().await.unwrap();
}

#[tokio::test]
async fn the_fence_runs_out_before_etcd_forgets_a_silent_member() {
    let etcd = Etcd::start();
    etcd.leader().await;
    let ttl = Duration::from_secs(3);
    let silent = Membership::join(&settings(&etcd, "silent", 8, 3))
        .await
        .unwrap();
    let alive = Membership::join(&settings(&etcd, "alive", 8, 3))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // a few renewals
    let fence = silent.fence();
    let stopped = Instant::now();
    silent.abandon();
    let fenced_at = loop {
        if !fence.holds() {
            break stopped.elapsed();
        }
        assert!(
            stopped.elapsed() < ttl,
            "the fence must run out within the TTL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let forgotten_at = loop {
        if !names(&etcd).await.contains(&"silent".to_owned()) {
            break stopped.elapsed();
        }
        assert!(
            stopped.elapsed() < ttl * 3,
            "etcd must expire the lease a little after its TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        fenced_at < forgotten_at,
        "fenced after {fenced_at:?}, forgotten by etcd after {forgotten_at:?}"
    );
    assert!(
        alive.fence().holds(),
        "a member that renews stays fenced in"
    );
    assert_eq!(names(&etcd).await, ["alive"]);
    alive.leave().await.unwrap();
}

#[tokio::test]
async fn a_killed_etcd_leader_costs_no_membership() {
    let mut etcd = Etcd::start();
    let leader = etcd.leader().await;
    // The default TTL, 10 s: the fence allows 8 s without a confirmed renewal. (At 5 s, one
    // run in eight here lost the fence: etcd's election after a leader's SIGKILL and the
    // client finding a live node took over 4 s on this loaded two-core machine.)
    let m = Membership::join(&settings(&etcd, "a", 8, 10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    etcd.kill(leader);
    // 12 s after the leader's death the member is still in, and its fence never ran out.
    let fence = m.fence();
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        assert!(
            fence.holds(),
            "the fence held through the etcd leader's death"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let survivors: Vec<String> = etcd
        .endpoints()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, e)| e)
        .collect();
    let mut c = etcd_client::Client::connect(survivors, None).await.unwrap();
    let members = membership::members(&mut c).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].0, "a");
    m.leave().await.unwrap();
}

#[tokio::test]
async fn partition_leadership_passes_on_with_a_growing_epoch() {
    let etcd = Etcd::start();
    etcd.leader().await;
    let mut a = Membership::join(&settings(&etcd, "a", 16, 3))
        .await
        .unwrap();
    let b = Membership::join(&settings(&etcd, "b", 16, 3))
        .await
        .unwrap();
    let first = a.campaign(7).await.unwrap();
    assert_eq!(
        a.leader_of(7).await.unwrap(),
        Some(("a".into(), first.epoch))
    );
    assert_eq!(
        a.leader_of(8).await.unwrap(),
        None,
        "nobody leads partition 8"
    );
    // b waits as the standby while a leads.
    let standby = tokio::spawn(async move {
        let mut b = b;
        let o = b.campaign(7).await;
        (b, o)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!standby.is_finished(), "one leader at a time");
    // A planned handover: a resigns, b leads at once with a higher epoch.
    let resigned = Instant::now();
    a.resign(first.clone()).await.unwrap();
    let (b, second) = tokio::time::timeout(Duration::from_secs(5), standby)
        .await
        .expect("the standby leads after the resignation")
        .unwrap();
    let second = second.unwrap();
    let handover = resigned.elapsed();
    assert!(
        handover < Duration::from_secs(1),
        "handover took {handover:?}"
    );
    assert!(second.epoch > first.epoch);
    // A death: a waits again, b stops renewing; a leads once b's lease expired.
    let again = tokio::spawn(async move {
        let o = a.campaign(7).await;
        (a, o)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let died = Instant::now();
    b.abandon();
    let (a, third) = tokio::time::timeout(Duration::from_secs(10), again)
        .await
        .expect("the standby leads once the dead leader's lease expired")
        .unwrap();
    let third = third.unwrap();
    let takeover = died.elapsed();
    assert!(
        takeover >= Duration::from_secs(2) && takeover < Duration::from_secs(6),
        "takeover after {takeover:?} at TTL 3 s"
    );
    assert!(third.epoch > second.epoch, "epochs never go back");
    eprintln!(
        "partition 7: epochs {} -> {} -> {}, planned handover {handover:?}, takeover after a death {takeover:?} (TTL 3 s)",
        first.epoch, second.epoch, third.epoch
    );
    a.leave().await.unwrap();
}
