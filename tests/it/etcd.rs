//! A three-node etcd cluster on free loopback ports (Debian's etcd-server, installed by
//! `scripts/test.sh`): every node killed by PID on drop, any node stopped and started again on
//! its own data.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::free_port;

pub struct Etcd {
    nodes: Vec<Option<Child>>,
    dirs: Vec<tempfile::TempDir>,
    client_ports: Vec<u16>,
    peer_ports: Vec<u16>,
    token: String,
}

impl Etcd {
    /// A formed cluster: started on fresh ports until it forms (a port taken between choosing
    /// it and etcd binding it, by a process of a test running alongside, makes a node fail;
    /// up to three tries of 20 s).
    pub async fn ready() -> Etcd {
        let mut last = Vec::new();
        for _ in 0..3 {
            let etcd = Etcd::start();
            match etcd.formed(Duration::from_secs(20)).await {
                Ok(_) => return etcd,
                Err(seen) => last = seen,
            }
        }
        panic!("etcd cluster did not form in three tries: {last:?}");
    }

    fn start() -> Etcd {
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let peer_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut etcd = Etcd {
            nodes: (0..3).map(|_| None).collect(),
            dirs: (0..3).map(|_| tempfile::tempdir().unwrap()).collect(),
            token: format!("heatgrid-test-{}", client_ports[0]),
            client_ports,
            peer_ports,
        };
        for i in 0..3 {
            etcd.start_node(i);
        }
        etcd
    }

    /// Starts node `i` (again: a node with data rejoins the cluster it was part of).
    pub fn start_node(&mut self, i: usize) {
        let cluster = (0..3)
            .map(|k| format!("n{k}=http://127.0.0.1:{}", self.peer_ports[k]))
            .collect::<Vec<_>>()
            .join(",");
        let (c, p) = (self.client_ports[i], self.peer_ports[i]);
        let child = Command::new("etcd")
            .args(["--name", &format!("n{i}")])
            .arg("--data-dir")
            .arg(self.dirs[i].path())
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{c}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{c}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{p}"),
            ])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian etcd-server: scripts/test.sh installs it)");
        self.nodes[i] = Some(child);
    }

    pub fn client_ports(&self) -> &[u16] {
        &self.client_ports
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.client_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect()
    }

    /// Waits until every running node answers and the cluster has a leader; the index of the
    /// leader.
    pub async fn leader(&self) -> usize {
        match self.formed(Duration::from_secs(30)).await {
            Ok(i) => i,
            Err(last) => panic!("etcd cluster did not form: {last:?}"),
        }
    }

    /// The index of the leader once every running node answers, or what was seen last.
    async fn formed(&self, within: Duration) -> Result<usize, Vec<(usize, Option<u64>, u64)>> {
        let deadline = Instant::now() + within;
        let mut last = Vec::new();
        loop {
            if Instant::now() >= deadline {
                return Err(last);
            }
            let mut ids = Vec::new();
            for (i, ep) in self.endpoints().into_iter().enumerate() {
                if self.nodes[i].is_none() {
                    continue;
                }
                let status = async {
                    let c = heatgrid::cluster::etcd::Client::connect(&[ep], Default::default())
                        .await
                        .ok()?;
                    c.status().await.ok()
                };
                match tokio::time::timeout(Duration::from_secs(2), status).await {
                    Ok(Some((me, leader))) => ids.push((i, Some(me), leader)),
                    _ => ids.push((i, None, 0)),
                }
            }
            last = ids.clone();
            let leader = ids.first().map(|(_, _, l)| *l).unwrap_or(0);
            if let Some((i, _, _)) = ids.iter().find(|(_, me, _)| *me == Some(leader)) {
                if leader != 0 && ids.iter().all(|(_, me, _)| me.is_some()) {
                    return Ok(*i);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL node `i` (its data stays for [`Etcd::start_node`]).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
