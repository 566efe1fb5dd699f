//! Several instances against real parts, with faults: a three-node etcd, mosquitto with
//! persistent sessions, VictoriaMetrics, the simulator with 300 MQTT stations at QoS 1 (each
//! enforcing the `(epoch, seq)` fence and recording every command it receives), and three
//! `heatgrid run` processes, each reaching etcd and the broker through its own relays so that
//! it alone can be cut off.
//!
//! Each scenario starts everything afresh, waits until every station is commanded, runs 15 s,
//! injects its fault (about a third into the run), runs on 30 s, then stops the stations,
//! stops the instances (their spools drain into the database) and hands the evidence to
//! [`checker`]. Each fault is a test of its own (`failover::a_killed_owner_is_replaced`, …):
//! select some by name with nextest's filter (`cargo nextest run -E 'test(/failover::a_k/)'`),
//! which fails when the filter matches no test. Every process is stopped by PID; every wait is
//! bounded.

mod checker;
mod relay;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use heatgrid::clock::now_ms;
use heatgrid_sim::{SimConfig, SimHandle};

use crate::etcd::Etcd;
use crate::util::{free_port, Proc};
use checker::{Check, Evidence, OwnEvent};
use relay::Relay;

const STATIONS: usize = 300;
/// Modbus PLCs besides the MQTT stations (the simulator's map, with its `epoch` register).
const PLCS: usize = 3;
const PARTITIONS: u32 = 32;
const TOKEN: &str = "failover-operator-token-0123";

/// The faults, in the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillOwner,
    Pause,
    CutEtcd,
    CutBroker,
    KillEtcdLeader,
    Term,
    Join,
    QuorumLoss,
    KillInDbStall,
    KillInDbOutage,
}

impl Fault {
    const ALL: [Fault; 10] = [
        Fault::KillOwner,
        Fault::Pause,
        Fault::CutEtcd,
        Fault::CutBroker,
        Fault::KillEtcdLeader,
        Fault::Term,
        Fault::Join,
        Fault::QuorumLoss,
        Fault::KillInDbStall,
        Fault::KillInDbOutage,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::KillOwner => "kill-owner",
            Fault::Pause => "pause",
            Fault::CutEtcd => "cut-etcd",
            Fault::CutBroker => "cut-broker",
            Fault::KillEtcdLeader => "kill-etcd-leader",
            Fault::Term => "term",
            Fault::Join => "join",
            Fault::QuorumLoss => "quorum-loss",
            Fault::KillInDbStall => "kill-in-db-stall",
            Fault::KillInDbOutage => "kill-in-db-outage",
        }
    }
}

/// One `heatgrid run` process and its relays.
struct Instance {
    name: String,
    child: Option<Child>,
    api: u16,
    data_dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    broker: Relay,
    etcd: Vec<Relay>,
    /// Its ownership log, read before its data directory was deleted.
    kept_ownership: Option<Vec<OwnEvent>>,
}

impl Instance {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_heatgrid"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("HG_TOKEN", TOKEN)
            .env("RUST_LOG", "info,rumqttc=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start heatgrid");
        self.child = Some(child);
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (at most 20 s, then SIGKILL).
    fn terminate(&mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        if let Some(c) = self.child.as_mut() {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill();
    }

    /// A killed instance's machine is gone, disk and all: its data directory is deleted (its
    /// ownership log is kept for the checker, as an operator would have it from the logs).
    fn lose_disk(&mut self) {
        assert!(self.child.is_none(), "only a dead instance loses its disk");
        self.kept_ownership = Some(self.ownership());
        std::fs::remove_dir_all(&self.data_dir).expect("delete the data directory");
    }

    fn ownership(&self) -> Vec<OwnEvent> {
        if let Some(kept) = &self.kept_ownership {
            return kept.clone();
        }
        std::fs::read_to_string(self.data_dir.join("ownership.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.signal("CONT");
        self.kill();
    }
}

/// Everything one scenario runs on.
struct Rig {
    etcd: Etcd,
    broker: Proc,
    vm: Proc,
    /// Every instance reaches the database through it, so that a scenario can cut it.
    vm_relay: Relay,
    sim: Option<SimHandle>,
    plcs: Option<SimHandle>,
    instances: Vec<Instance>,
    ids: Vec<String>,
    plc_stations: Vec<String>,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Etcd::ready().await;
        let broker = persistent_mosquitto(dir.path());
        let vm = crate::util::victoria_metrics();
        let vm_relay = Relay::start(vm.port).await;
        let sim = heatgrid_sim::spawn(SimConfig {
            port: broker.port,
            stations: STATIONS,
            id_prefix: "fo-".into(),
            telemetry_period_s: 5.0,
            telemetry_qos1: true,
            record_commands: true,
            warmup_h: 1.0,
            ..SimConfig::default()
        })
        .await;
        let plcs = heatgrid_sim::spawn(SimConfig {
            port: broker.port,
            stations: PLCS,
            id_prefix: "pl-".into(),
            record_commands: true,
            warmup_h: 1.0,
            modbus: Some(heatgrid_sim::SimModbus::default()),
            ..SimConfig::default()
        })
        .await;
        let map = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/modbus/heatgrid-sim.toml"
        );
        let plc_stations = plcs
            .modbus_addrs()
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                format!(
                    "[[station]]\nid = \"pl-{:03}\"\nmodbus = {{ address = \"{addr}\", map = {map:?}, poll_interval_s = 5, timeout_ms = 1000 }}\n",
                    i + 1
                )
            })
            .collect();
        let ids = (1..=STATIONS).map(|n| format!("fo-{n:03}")).collect();
        let mut rig = Rig {
            etcd,
            broker,
            vm,
            vm_relay,
            sim: Some(sim),
            plcs: Some(plcs),
            instances: Vec::new(),
            ids,
            plc_stations,
            dir,
        };
        for name in ["a", "b", "c"] {
            rig.add_instance(name).await;
        }
        rig
    }

    async fn add_instance(&mut self, name: &str) {
        let data_dir = self.dir.path().join(format!("inst-{name}"));
        let broker = Relay::start(self.broker.port).await;
        let mut etcd = Vec::new();
        for p in self.etcd.client_ports() {
            etcd.push(Relay::start(*p).await);
        }
        let api = free_port();
        let endpoints: Vec<String> = etcd
            .iter()
            .map(|r| format!("\"http://127.0.0.1:{}\"", r.port))
            .collect();
        let mut text = format!(
            "[engine]\ndata_dir = {:?}\ntick_s = 5\nstaleness_s = 30\ncommand_valid_for_s = 30\n\
             [mqtt]\nport = {}\nclient_id = \"hg\"\ntelemetry_qos = 1\n\
             [storage]\nflush_interval_ms = 200\n\
             [storage.influxdb]\nurl = \"http://127.0.0.1:{}\"\norg = \"o\"\nbucket = \"b\"\ntimeout_s = 5\n\
             [api]\nlisten = \"127.0.0.1:{api}\"\n\
             [[api.token]]\nname = \"test\"\nrole = \"operator\"\ntoken_env = \"HG_TOKEN\"\n\
             [cluster]\nname = {name:?}\netcd_endpoints = [{}]\npartitions = {PARTITIONS}\nlease_ttl_s = 10\n",
            data_dir.display().to_string(),
            broker.port,
            self.vm_relay.port,
            endpoints.join(", "),
        );
        for id in &self.ids {
            text.push_str(&format!("[[station]]\nid = {id:?}\n"));
        }
        for plc in &self.plc_stations {
            text.push_str(plc);
        }
        let config = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        let mut i = Instance {
            name: name.into(),
            child: None,
            api,
            data_dir,
            config,
            log: self.dir.path().join(format!("{name}.log")),
            broker,
            etcd,
            kept_ownership: None,
        };
        i.spawn();
        self.instances.push(i);
    }

    fn sim(&self) -> &SimHandle {
        self.sim.as_ref().expect("the simulator runs until the end")
    }

    /// Waits until every station follows an engine command; false after `timeout`.
    async fn wait_controlled(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let plcs = self.plcs.as_ref().expect("running");
        while Instant::now() < deadline {
            let snap = self.sim().snapshot();
            if snap
                .iter()
                .chain(&plcs.snapshot())
                .all(|s| s.engine_in_control)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }

    /// `GET path` on instance `i`'s API.
    async fn api(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.instances[i].api);
        let r = reqwest::Client::new()
            .get(url)
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// `POST path` with a JSON body on instance `i`'s API: the status and the answer.
    async fn post(&self, i: usize, path: &str, body: serde_json::Value) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.instances[i].api);
        match reqwest::Client::new()
            .post(url)
            .bearer_auth(TOKEN)
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    /// A figure of instance `i`'s `/metrics` (`None`: no answer or no such line).
    async fn metric(&self, i: usize, name: &str) -> Option<f64> {
        crate::util::metric(self.instances[i].api, TOKEN, name).await
    }

    /// Waits (at most `timeout`) until instance `i`'s figures satisfy `ok`; returns the last
    /// ones read.
    async fn wait_metrics(
        &self,
        i: usize,
        names: &[&str],
        timeout: Duration,
        ok: impl Fn(&[f64]) -> bool,
    ) -> Vec<f64> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut v = Vec::new();
            for n in names {
                v.push(self.metric(i, n).await.unwrap_or(-1.0));
            }
            if ok(&v) || Instant::now() >= deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `sig` to the database (`STOP`: it answers nothing, its connections stay open).
    fn signal_db(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.vm.child.id().to_string())
            .status();
    }

    /// The stations instance `i` leads now.
    async fn led_stations(&self, i: usize) -> BTreeSet<String> {
        let v = self
            .api(i, "/api/v1/stations?local=1")
            .await
            .unwrap_or_default();
        v["stations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| !r["epoch"].is_null())
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// A station instance `i` leads now.
    async fn led_by(&self, i: usize) -> Option<String> {
        let v = self.api(i, "/api/v1/stations?local=1").await?;
        v["stations"]
            .as_array()?
            .iter()
            .find(|r| !r["epoch"].is_null())
            .and_then(|r| r["id"].as_str().map(str::to_owned))
    }

    /// Per station, the `tele_seq` values VictoriaMetrics holds.
    async fn stored(&self) -> BTreeMap<String, BTreeSet<u64>> {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{}", self.vm.port);
        let _ = http
            .get(format!("{base}/internal/force_flush"))
            .send()
            .await;
        let body = http
            .post(format!("{base}/api/v1/export"))
            .form(&[("match[]", "{__name__=\"telemetry_tele_seq\"}")])
            .send()
            .await
            .expect("VictoriaMetrics export")
            .text()
            .await
            .unwrap_or_default();
        let mut out: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let station = v["metric"]["station"].as_str().unwrap_or("?").to_owned();
            let values = v["values"].as_array().cloned().unwrap_or_default();
            out.entry(station)
                .or_default()
                .extend(values.iter().filter_map(|x| x.as_f64()).map(|x| x as u64));
        }
        out
    }
}

/// mosquitto keeping sessions on disk, with an unbounded queue per session.
fn persistent_mosquitto(dir: &std::path::Path) -> Proc {
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    let store = dir.join("mosquitto");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
             max_queued_messages 0\nset_tcp_nodelay true\nmax_inflight_messages 0\nlog_dest none\n",
            store.display()
        ),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Proc {
        child,
        port,
        _dir: None,
    }
}

/// What one scenario gave: its checks and the takeover times after the fault (ms).
struct Outcome {
    checks: Vec<Check>,
    takeovers: Vec<i64>,
}

/// A time window, ms (`None`: none).
type Window = Option<(i64, i64)>;

/// The instance every fault is aimed at.
const VICTIM: usize = 1;

async fn scenario(fault: Fault) -> Outcome {
    let mut rig = Rig::start().await;
    assert!(
        rig.wait_controlled(Duration::from_secs(90)).await,
        "{}: not every station came under control",
        fault.name()
    );
    let steady_ms = now_ms();
    // An operator raises a station of the victim's by 3 K, typing it on another instance
    // (once the victim leads its share: the others may have led everything until it joined).
    let deadline = Instant::now() + Duration::from_secs(60);
    let operator_station = loop {
        if let Some(id) = rig.led_by(VICTIM).await {
            break id;
        }
        let log = std::fs::read_to_string(&rig.instances[VICTIM].log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        assert!(
            Instant::now() < deadline,
            "{}: the victim leads no station; its log ends:\n{}",
            fault.name(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let asked = 3.0;
    let (code, answer) = rig
        .post(
            0,
            &format!("/api/v1/stations/{operator_station}/supply"),
            serde_json::json!({ "offset_k": asked }),
        )
        .await;
    assert_eq!(code, 200, "{}: the operator change: {answer}", fault.name());
    let room = control_room(&rig).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let fault_ms = now_ms();
    let (mut excused, mut silent) = (None, None);
    let (mut worst, mut loss_allowed) = (None, None);
    match fault {
        Fault::KillOwner => rig.instances[VICTIM].kill(),
        Fault::Pause => {
            rig.instances[VICTIM].signal("STOP");
            tokio::time::sleep(Duration::from_secs(20)).await;
            rig.instances[VICTIM].signal("CONT");
        }
        Fault::CutEtcd => {
            rig.instances[VICTIM].etcd.iter().for_each(Relay::cut);
            tokio::time::sleep(Duration::from_secs(30)).await;
            rig.instances[VICTIM].etcd.iter().for_each(Relay::restore);
        }
        Fault::CutBroker => {
            rig.instances[VICTIM].broker.cut();
            tokio::time::sleep(Duration::from_secs(30)).await;
            rig.instances[VICTIM].broker.restore();
        }
        Fault::KillEtcdLeader => {
            let leader = rig.etcd.leader().await;
            rig.etcd.kill(leader);
        }
        Fault::Term => rig.instances[VICTIM].terminate(),
        Fault::Join => rig.add_instance("d").await,
        Fault::QuorumLoss => {
            rig.etcd.kill(0);
            rig.etcd.kill(1);
            tokio::time::sleep(Duration::from_secs(30)).await;
            let back_ms = now_ms();
            rig.etcd.start_node(0);
            rig.etcd.start_node(1);
            // Every fence runs out at most TTL − TTL/5 = 8 s after the last renewal (one every
            // 2 s): no command from then until etcd is back; stations may wait until the
            // instances renew and lead again.
            silent = Some((fault_ms + 8_500, back_ms));
            excused = Some((fault_ms, back_ms + 15_000));
        }
        Fault::KillInDbStall => {
            // The database stops answering; its connections stay open. The victim is killed
            // while it holds acknowledgements of readings it spooled and could not write,
            // and its disk is lost: every one of them must still reach the database.
            rig.signal_db("STOP");
            let held = rig
                .wait_metrics(
                    VICTIM,
                    &["heatgrid_mqtt_acks_held", "heatgrid_storage_backlog_points"],
                    Duration::from_secs(4),
                    |v| v[0] >= 20.0 && v[1] > 0.0,
                )
                .await;
            rig.instances[VICTIM].kill();
            rig.instances[VICTIM].lose_disk();
            worst = Some(checker::Check {
                name: "killed holding unwritten points",
                passed: held[0] > 0.0 && held[1] > 0.0,
                detail: format!(
                    "at the kill the victim held {} acknowledgements, {} points unwritten",
                    held[0], held[1]
                ),
            });
            tokio::time::sleep(Duration::from_secs(1)).await;
            rig.signal_db("CONT");
        }
        Fault::KillInDbOutage => {
            // The database refuses every connection. The instances acknowledge from their
            // spools (control must go on); the victim dies with its disk 6 s in. What it took
            // with it is bounded (docs/cluster.md): its own stations' readings since the outage
            // began, at most one per 5 s period plus one each.
            rig.vm_relay.cut();
            tokio::time::sleep(Duration::from_secs(5)).await;
            let at_risk = rig
                .wait_metrics(
                    VICTIM,
                    &[
                        "heatgrid_mqtt_acks_before_write_total",
                        "heatgrid_storage_backlog_points",
                    ],
                    Duration::from_secs(5),
                    |v| v[0] > 0.0 && v[1] > 0.0,
                )
                .await;
            let led = rig.led_stations(VICTIM).await;
            let kill_ms = now_ms();
            rig.instances[VICTIM].kill();
            rig.instances[VICTIM].lose_disk();
            let per_station = ((kill_ms - fault_ms) as u64).div_ceil(5_000) + 1;
            worst = Some(checker::Check {
                name: "killed holding unwritten points",
                passed: at_risk[0] > 0.0 && at_risk[1] > 0.0 && !led.is_empty(),
                detail: format!(
                    "at the kill ({:.1} s into the outage) the victim led {} stations and had {} points unwritten, {} acknowledged before their write",
                    (kill_ms - fault_ms) as f64 / 1000.0,
                    led.len(),
                    at_risk[1],
                    at_risk[0]
                ),
            });
            loss_allowed = Some((led, per_station));
            tokio::time::sleep(Duration::from_secs(4)).await;
            rig.vm_relay.restore();
        }
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    let end_ms = now_ms();
    // Asked on one instance before the fault; read on the same one now (its owner answers).
    let seen = rig
        .api(0, &format!("/api/v1/stations/{operator_station}"))
        .await
        .and_then(|v| v["controller"]["supply_offset_k"].as_f64());
    let operator = Some((operator_station, asked, seen));
    let sim = rig.sim.take().expect("running");
    let plcs = rig.plcs.take().expect("running");
    let mut commands = sim.command_log();
    commands.extend(plcs.command_log());
    commands.sort_by_key(|c| c.t_ms);
    let plc_ids: Vec<String> = plcs.stop().await.into_iter().map(|v| v.id).collect();
    let views = sim.stop().await;
    let published: BTreeMap<String, u64> =
        views.iter().map(|v| (v.id.clone(), v.published)).collect();
    for i in rig.instances.iter_mut() {
        i.signal("CONT");
        i.terminate(); // drains its spool into the database
    }
    // The last points can take a few seconds to become visible.
    let deadline = Instant::now() + Duration::from_secs(30);
    let e = loop {
        let stored = rig.stored().await;
        let mut e = evidence(
            &rig,
            &commands,
            stored,
            &published,
            (steady_ms, end_ms),
            (excused, silent),
            fault,
        );
        e.operator = operator.clone();
        e.loss_allowed = loss_allowed.clone();
        e.stations.extend(plc_ids.iter().cloned());
        if Instant::now() >= deadline || checker::complete(&e).passed {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let takeovers = checker::takeovers(&e.ownership, fault_ms, end_ms);
    let mut checks = checker::check(&e);
    checks.push(room);
    checks.extend(worst);
    if checks.iter().any(|c| !c.passed) {
        // Keep the evidence of a failure for a person to read.
        let keep = std::env::temp_dir().join(format!("heatgrid-failover-{}", fault.name()));
        let _ = std::fs::remove_dir_all(&keep);
        let _ = std::fs::create_dir_all(&keep);
        for i in &rig.instances {
            let _ = std::fs::copy(&i.log, keep.join(format!("{}.log", i.name)));
            let _ = std::fs::copy(
                i.data_dir.join("ownership.jsonl"),
                keep.join(format!("{}-ownership.jsonl", i.name)),
            );
        }
        let lines: Vec<String> = commands
            .iter()
            .filter_map(|c| serde_json::to_string(c).ok())
            .collect();
        let _ = std::fs::write(keep.join("commands.jsonl"), lines.join("\n"));
        eprintln!("{}: evidence kept in {}", fault.name(), keep.display());
    }
    Outcome { checks, takeovers }
}

/// One control room: any instance shows the whole fleet (each station with its owner), the
/// status counts every station once, and `heatgrid cluster` lists the members.
async fn control_room(rig: &Rig) -> Check {
    let mut problems = Vec::new();
    let rows = rig
        .api(2, "/api/v1/stations")
        .await
        .and_then(|v| v["stations"].as_array().cloned())
        .unwrap_or_default();
    let owned = rows.iter().filter(|r| r["owner"].is_string()).count();
    let owners: BTreeSet<&str> = rows.iter().filter_map(|r| r["owner"].as_str()).collect();
    if owned != STATIONS + PLCS || owners.len() != 3 {
        problems.push(format!(
            "stations on c: {owned} of {} with an owner, owners {owners:?}",
            STATIONS + PLCS
        ));
    }
    let led = rig
        .api(0, "/api/v1/status")
        .await
        .and_then(|v| v["stations"]["led"].as_u64());
    if led != Some((STATIONS + PLCS) as u64) {
        problems.push(format!("status on a: {led:?} stations led in all"));
    }
    let alarms = rig.api(1, "/api/v1/alarms").await.unwrap_or_default();
    if alarms["unreachable"] != serde_json::json!([]) || !alarms["active"].is_array() {
        problems.push(format!("alarms on b: {alarms}"));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_heatgrid"))
        .args(["cluster", "--json", "--api"])
        .arg(format!("http://127.0.0.1:{}", rig.instances[1].api))
        .env("HEATGRID_TOKEN", TOKEN)
        .output()
        .expect("heatgrid cluster");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let members = v["members"].as_array().map_or(0, Vec::len);
    let leaderless = v["table"].as_array().map_or(usize::MAX, |t| {
        t.iter().filter(|r| r["leader"].is_null()).count()
    });
    if members != 3 || leaderless != 0 {
        problems.push(format!(
            "heatgrid cluster on b: {members} members, {leaderless} partitions without a leader"
        ));
    }
    Check {
        name: "one control room",
        passed: problems.is_empty(),
        detail: if problems.is_empty() {
            format!(
                "{owned} stations with their owners on c, {led:?} led in all, {members} members"
            )
        } else {
            problems.join("; ")
        },
    }
}

fn evidence(
    rig: &Rig,
    commands: &[heatgrid_sim::CommandRecord],
    stored: BTreeMap<String, BTreeSet<u64>>,
    published: &BTreeMap<String, u64>,
    (steady_ms, end_ms): (i64, i64),
    (excused, silent): (Window, Window),
    fault: Fault,
) -> Evidence {
    Evidence {
        partitions: PARTITIONS,
        commands: commands.to_vec(),
        ownership: rig
            .instances
            .iter()
            .map(|i| (i.name.clone(), i.ownership()))
            .collect(),
        stored,
        stations: published.keys().cloned().collect(),
        published: published.clone(),
        steady_ms,
        end_ms,
        excused,
        silent,
        stale_refusals_allowed: fault == Fault::Pause,
        owner_change_expected: matches!(
            fault,
            Fault::KillOwner
                | Fault::Pause
                | Fault::CutEtcd
                | Fault::Term
                | Fault::Join
                | Fault::KillInDbStall
                | Fault::KillInDbOutage
        ),
        operator: None,
        loss_allowed: None,
    }
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Runs `fault`'s scenario and fails on any check that did not hold, with the whole report.
async fn run(fault: Fault) {
    let started = Instant::now();
    let out = scenario(fault).await;
    let mut t = out.takeovers.clone();
    t.sort_unstable();
    let mut report = format!(
        "{} ({:.0} s; {} partitions taken over after the fault, p50 {:.1} s, max {:.1} s)\n",
        fault.name(),
        started.elapsed().as_secs_f64(),
        t.len(),
        percentile(&t, 0.5) as f64 / 1000.0,
        t.last().copied().unwrap_or(0) as f64 / 1000.0,
    );
    assert!(!out.checks.is_empty(), "{report}no check ran");
    let failed = out.checks.iter().filter(|c| !c.passed).count();
    for c in out.checks {
        report.push_str(&format!(
            "  {} {}: {}\n",
            if c.passed { "PASS" } else { "FAIL" },
            c.name,
            c.detail
        ));
    }
    eprintln!("{report}");
    assert_eq!(failed, 0, "{report}");
}

/// One test per fault, so that they run side by side (the test command's nextest profile lets
/// two of them run at once: each drives 300 stations, three instances and three etcd nodes).
macro_rules! scenarios {
    ($($test:ident => $fault:expr),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                run($fault).await;
            }
        )*

        /// Every fault has its test (a new fault without one fails here).
        #[test]
        fn every_fault_has_a_test() {
            let tested = [$($fault),*];
            for f in Fault::ALL {
                assert!(tested.contains(&f), "{} has no test", f.name());
            }
        }
    };
}

scenarios! {
    a_killed_owner_is_replaced => Fault::KillOwner,
    a_paused_owner_is_fenced_then_replaced => Fault::Pause,
    an_owner_cut_from_etcd_is_fenced_then_replaced => Fault::CutEtcd,
    an_owner_cut_from_the_broker_keeps_every_guarantee => Fault::CutBroker,
    a_killed_etcd_leader_keeps_every_guarantee => Fault::KillEtcdLeader,
    a_stopped_owner_hands_over => Fault::Term,
    a_joining_instance_takes_its_share => Fault::Join,
    a_quorum_loss_silences_every_instance_then_recovers => Fault::QuorumLoss,
    a_killed_owner_whose_database_stalled_loses_nothing => Fault::KillInDbStall,
    a_killed_owner_in_a_database_outage_loses_no_more_than_the_bound => Fault::KillInDbOutage,
}
