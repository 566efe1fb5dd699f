//! Stations behind OPC UA: the simulator's PLCs behind an OPC UA gateway served by asyncua
//! (tests/peers/opcua_gateway.py, a server we did not write), with Basic256Sha256 Sign &
//! Encrypt and a user, certificates made here; a dead endpoint beside it, the gateway killed
//! and restarted mid-run, a Bad value; an untrusted server refused; polling without security.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use heatgrid::app::{self, EngineHandle};
use heatgrid::config::Config;
use heatgrid::stats::Stats;
use heatgrid_sim::{SimConfig, SimHandle, SimModbus};

use crate::closed_loop::wait_settled;
use crate::util;

const SPEED: f64 = 20.0;
const PASSWORD: &str = "gateway-password-for-the-test";

/// The test gateway: its process, its stdin (bad/good orders) and what it printed.
struct Gateway {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<Vec<String>>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts the gateway on `port` in front of `sim`'s PLCs and waits until it serves.
    fn start(port: u16, sim: &SimHandle, args: &[String]) -> Gateway {
        let stations: Vec<String> = sim
            .modbus_addrs()
            .iter()
            .enumerate()
            .map(|(i, a)| format!("op-{:03}={}", i + 1, a.port()))
            .collect();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/opcua_gateway.py");
        let mut child = Command::new(util::python())
            .arg(script)
            .args([
                "--port",
                &port.to_string(),
                "--stations",
                &stations.join(","),
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the OPC UA gateway");
        let stdin = child.stdin.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let lines = out.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
        let g = Gateway { child, stdin, out };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !g.printed("ready") {
            assert!(std::time::Instant::now() < deadline, "gateway not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        g
    }

    fn printed(&self, prefix: &str) -> bool {
        self.out
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with(prefix))
    }

    fn writes(&self, station: &str) -> usize {
        let p = format!("WRITE {station} ");
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(&p))
            .count()
    }

    fn order(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
}

/// A server certificate for the gateway (its URI, localhost and 127.0.0.1 in it), and one of
/// somebody else: `gw.pem`/`gw-key.pem`, `other.pem`/`other-key.pem` in `dir`.
fn certificates(dir: &Path) {
    for name in ["gw", "other"] {
        util::sh(
            dir,
            &format!(
                "openssl req -x509 -newkey rsa:2048 -nodes -keyout {name}-key.pem -out {name}.pem -days 2 \
                 -subj '/CN=heatgrid test {name}' \
                 -addext 'subjectAltName=URI:urn:heatgrid:test-gateway,DNS:localhost,IP:127.0.0.1' \
                 -addext 'keyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment,dataEncipherment' \
                 -addext 'extendedKeyUsage=serverAuth,clientAuth' 2>/dev/null"
            ),
        );
    }
}

fn map_path() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/opcua/heatgrid-sim.toml"
    )
    .to_owned()
}

fn engine_head(dir: &Path) -> String {
    format!(
        "[engine]\ndata_dir = {:?}\ntick_s = {}\nstaleness_s = 2.0\ncommand_valid_for_s = 30\ntime_scale = {SPEED}\n\
         [mqtt]\nport = {}\nclient_id = \"engine-opcua-{}\"\n\
         [storage]\nflush_interval_ms = 200\n[api]\nlisten = \"\"\n",
        dir.display().to_string(),
        5.0 / SPEED,
        util::free_port(),
        util::free_port(),
    )
}

async fn plcs(n: usize, seed: u64) -> SimHandle {
    heatgrid_sim::spawn(SimConfig {
        stations: n,
        id_prefix: "op-".into(),
        seed,
        speed: SPEED,
        modbus: Some(SimModbus::default()),
        ..SimConfig::default()
    })
    .await
}

fn stations(server: &str, ids: &[&str]) -> String {
    ids.iter()
        .map(|id| {
            format!(
                "[[station]]\nid = {id:?}\nopcua = {{ server = {server:?}, map = {:?} }}\n",
                map_path()
            )
        })
        .collect()
}

fn link_error(engine: &EngineHandle, id: &str) -> Option<String> {
    engine
        .status()
        .iter()
        .find(|s| s.id.as_str() == id)
        .and_then(|s| s.link_error.clone())
}

fn comm_lost(engine: &EngineHandle, id: &str) -> bool {
    engine
        .alarms()
        .active
        .iter()
        .any(|a| a.station == id && a.kind.as_str() == "comm_lost")
}

fn reading_ts(engine: &EngineHandle, id: &str) -> i64 {
    engine
        .status()
        .iter()
        .find(|s| s.id.as_str() == id)
        .and_then(|s| s.reading.as_ref().map(|r| r.ts_ms))
        .unwrap_or(0)
}

/// Waits until every station of `live` has a reading 2 s newer than `after` (ms) and no link
/// error; else their link errors.
async fn resumed(
    engine: &EngineHandle,
    live: &[String],
    after: i64,
) -> Result<(), Vec<Option<String>>> {
    let ok = util::eventually(Duration::from_secs(60), || {
        live.iter()
            .all(|id| reading_ts(engine, id) > after + 2000 && link_error(engine, id).is_none())
    })
    .await;
    if ok {
        Ok(())
    } else {
        Err(live.iter().map(|id| link_error(engine, id)).collect())
    }
}

/// The stored readings' timestamps, per station.
fn stored(data_dir: &Path) -> BTreeMap<String, Vec<i64>> {
    let mut by: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for l in util::stored_lines(data_dir, "telemetry") {
        let station = l
            .split(',')
            .find_map(|kv| kv.strip_prefix("station="))
            .and_then(|s| s.split(' ').next())
            .unwrap_or_default()
            .to_owned();
        let ts: i64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        by.entry(station).or_default().push(ts);
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_behind_a_secured_gateway_track_within_1k_through_a_restart_a_bad_value_and_a_dead_endpoint(
) {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    certificates(&certs);
    let sim = plcs(3, 31).await;
    let port = util::free_port();
    let gw_args: Vec<String> = [
        "--security",
        "sign_encrypt",
        "--cert",
        certs.join("gw.pem").to_str().unwrap(),
        "--key",
        certs.join("gw-key.pem").to_str().unwrap(),
        "--user",
        &format!("heatgrid:{PASSWORD}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut gw = Gateway::start(port, &sim, &gw_args);
    // A server that takes the connection and never answers: the worst kind of dead.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let data = dir.path().join("data");
    let mut text = engine_head(&data);
    text.push_str(&format!(
        "[[opcua.server]]\nname = \"gw\"\nendpoint = \"opc.tcp://127.0.0.1:{port}/gateway\"\n\
         security = \"sign_encrypt\"\nserver_certificate = {:?}\nuser = \"heatgrid\"\n\
         password_env = \"HEATGRID_TEST_OPCUA_PASSWORD\"\ninterval_s = 0.25\ntimeout_ms = 2000\n\
         [[opcua.server]]\nname = \"dead\"\nendpoint = \"opc.tcp://{}\"\ntimeout_ms = 1000\n",
        certs.join("gw.pem"),
        dead.local_addr().unwrap(),
    ));
    text.push_str(&stations("gw", &["op-001", "op-002", "op-003"]));
    text.push_str(&stations("dead", &["dead-001"]));
    let env = |k: &str| (k == "HEATGRID_TEST_OPCUA_PASSWORD").then(|| PASSWORD.to_owned());
    let cfg = Config::parse(&text, &env).unwrap_or_else(|e| panic!("{e:#?}"));
    let engine = app::start(cfg).await.unwrap();
    let live = ["op-001", "op-002", "op-003"].map(String::from);

    // Closed loop over Sign & Encrypt, beside a dead endpoint.
    let worst = wait_settled(
        &engine,
        &live,
        1.0,
        Duration::from_secs(6),
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    println!("behind OPC UA: settled, worst {worst:.2} K");
    assert!(gw.writes("op-001") > 5, "commands passed to the PLC");
    let dead_error = link_error(&engine, "dead-001").unwrap_or_default();
    assert!(
        dead_error.contains("dead") && comm_lost(&engine, "dead-001"),
        "the dead endpoint is named and alarmed: {dead_error:?}"
    );
    assert_eq!(reading_ts(&engine, "dead-001"), 0);

    // A Bad value: that station's readings are refused and counted, the others go on.
    let stats: Arc<Stats> = engine.stats().clone();
    let bad_before = bad_status(&stats);
    gw.order("bad op-002 supply");
    assert!(
        util::eventually(Duration::from_secs(10), || bad_status(&stats)
            > bad_before + 3)
        .await,
        "Bad values counted"
    );
    let (t2, t1) = (reading_ts(&engine, "op-002"), reading_ts(&engine, "op-001"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reading_ts(&engine, "op-002"), t2, "a Bad value is not used");
    assert!(
        reading_ts(&engine, "op-001") > t1 + 1000,
        "the others go on"
    );
    gw.order("good op-002 supply");
    assert!(
        util::eventually(Duration::from_secs(10), || reading_ts(&engine, "op-002")
            > t2)
        .await,
        "readings again once the value is Good"
    );

    // The gateway killed (SIGKILL) mid-run and started again on the same port.
    let resent_before = Stats::get(&stats.opcua_resent);
    let _ = gw.child.kill();
    let _ = gw.child.wait();
    assert!(
        util::eventually(Duration::from_secs(20), || {
            live.iter().all(|id| link_error(&engine, id).is_some())
        })
        .await,
        "the lost link is shown on every station of the server"
    );
    assert!(
        util::eventually(Duration::from_secs(20), || comm_lost(&engine, "op-001")).await,
        "comm_lost raised"
    );
    let before_restart = reading_ts(&engine, "op-001");
    let gw = Gateway::start(port, &sim, &gw_args);
    resumed(&engine, &live, before_restart)
        .await
        .unwrap_or_else(|e| panic!("readings resume after the restart: {e:?}"));
    assert!(
        util::eventually(Duration::from_secs(20), || !comm_lost(&engine, "op-001")).await,
        "comm_lost cleared"
    );
    wait_settled(
        &engine,
        &live,
        1.0,
        Duration::from_secs(3),
        Duration::from_secs(60),
    )
    .await
    .unwrap();

    // A cut: the gateway frozen (SIGSTOP) for 12 s, so its connection carries nothing and
    // nothing closes it, then thawed with its session and subscription as they were.
    let pid = gw.child.id().to_string();
    let cut = std::time::Instant::now();
    util::sh(dir.path(), &format!("kill -STOP {pid}"));
    let frozen = util::eventually(Duration::from_secs(12), || {
        comm_lost(&engine, "op-001") && link_error(&engine, "op-001").is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(cut.elapsed())).await;
    util::sh(dir.path(), &format!("kill -CONT {pid}"));
    let before_thaw = reading_ts(&engine, "op-001");
    resumed(&engine, &live, before_thaw)
        .await
        .unwrap_or_else(|e| panic!("readings resume after the cut: {e:?}"));
    assert!(
        frozen,
        "a frozen server is noticed (link error, comm_lost) within 12 s"
    );
    let resent = Stats::get(&stats.opcua_resent) - resent_before;
    let accepted = Stats::get(&stats.readings_accepted);
    engine.shutdown().await;
    drop(gw);
    sim.stop().await;

    // Nothing lost, nothing twice: every accepted reading is stored once, each timestamp once.
    let by = stored(&data);
    let total: usize = by.values().map(Vec::len).sum();
    assert_eq!(
        total as u64, accepted,
        "stored {total}, accepted {accepted}"
    );
    for id in &live {
        let ts = &by[id.as_str()];
        let unique: BTreeSet<_> = ts.iter().collect();
        assert_eq!(unique.len(), ts.len(), "{id}: a timestamp stored twice");
        assert!(ts.len() > 50, "{id}: {} readings", ts.len());
    }
    assert!(!by.contains_key("dead-001"));
    println!("after the restart {resent} values sent again were dropped as already stored");
}

fn bad_status(stats: &Stats) -> u64 {
    stats
        .rejects_by_reason
        .lock()
        .unwrap()
        .get("bad_status")
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_is_refused_a_pinned_client_certificate_is_presented_and_a_plain_server_is_polled(
) {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    certificates(&certs);
    // The engine's own certificate, made here, with the engine's application URI in it.
    util::sh(
        &certs,
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout client-key.pem -out client.pem -days 2 \
         -subj '/CN=heatgrid engine' -addext 'subjectAltName=URI:urn:heatgrid:engine,DNS:localhost' \
         -addext 'keyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment,dataEncipherment' \
         -addext 'extendedKeyUsage=serverAuth,clientAuth' 2>/dev/null",
    );
    // A user's identity certificate.
    util::sh(
        &certs,
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout user-key.pem -out user.pem -days 2 \
         -subj '/CN=heatgrid operator' -addext 'keyUsage=critical,digitalSignature,nonRepudiation' 2>/dev/null",
    );
    let (sim, sim2, sim3) = (plcs(1, 32).await, plcs(1, 33).await, plcs(1, 34).await);
    let (secure, plain, pinned) = (util::free_port(), util::free_port(), util::free_port());
    let path = |f: &str| certs.join(f).to_str().unwrap().to_owned();
    let secured = |extra: &[String]| -> Vec<String> {
        let mut a: Vec<String> = ["--security", "sign_encrypt", "--cert"]
            .map(String::from)
            .to_vec();
        a.extend([path("gw.pem"), "--key".into(), path("gw-key.pem")]);
        a.extend_from_slice(extra);
        a
    };
    let _secure = Gateway::start(secure, &sim, &secured(&[]));
    let _plain = Gateway::start(plain, &sim2, &[]);
    // This one accepts only the client certificate made above, and only the user whose
    // identity certificate was made above.
    let _pinned = Gateway::start(
        pinned,
        &sim3,
        &secured(&[
            "--trust-client".into(),
            path("client.pem"),
            "--identity-cert".into(),
            path("user.pem"),
        ]),
    );
    let data = dir.path().join("data");
    let mut text = engine_head(&data);
    // The engine trusts somebody else's certificate, not the gateway's.
    text.push_str(&format!(
        "[[opcua.server]]\nname = \"untrusted\"\nendpoint = \"opc.tcp://127.0.0.1:{secure}/gateway\"\n\
         security = \"sign_encrypt\"\nserver_certificate = {:?}\ninterval_s = 0.25\ntimeout_ms = 2000\n\
         [[opcua.server]]\nname = \"plain\"\nendpoint = \"opc.tcp://127.0.0.1:{plain}/gateway\"\n\
         mode = \"poll\"\ninterval_s = 0.25\ntimeout_ms = 2000\n\
         [[opcua.server]]\nname = \"pinned\"\nendpoint = \"opc.tcp://127.0.0.1:{pinned}/gateway\"\n\
         security = \"sign_encrypt\"\nserver_certificate = {:?}\n\
         client_certificate = {:?}\nclient_private_key = {:?}\n\
         identity_certificate = {:?}\nidentity_private_key = {:?}\ninterval_s = 0.25\ntimeout_ms = 2000\n\
         [[station]]\nid = \"st-untrusted\"\nopcua = {{ server = \"untrusted\", node = \"op-001\", map = {map:?} }}\n\
         [[station]]\nid = \"st-pinned\"\nopcua = {{ server = \"pinned\", node = \"op-001\", map = {map:?} }}\n\
         [[opcua.server]]\nname = \"unpinned\"\nendpoint = \"opc.tcp://127.0.0.1:{pinned}/gateway\"\n\
         security = \"sign_encrypt\"\nserver_certificate = {:?}\ninterval_s = 0.25\ntimeout_ms = 2000\n\
         [[station]]\nid = \"st-unpinned\"\nopcua = {{ server = \"unpinned\", node = \"op-001\", map = {map:?} }}\n\
         [[opcua.server]]\nname = \"anonymous\"\nendpoint = \"opc.tcp://127.0.0.1:{pinned}/gateway\"\n\
         security = \"sign_encrypt\"\nserver_certificate = {:?}\n\
         client_certificate = {:?}\nclient_private_key = {:?}\ninterval_s = 0.25\ntimeout_ms = 2000\n\
         [[station]]\nid = \"st-anonymous\"\nopcua = {{ server = \"anonymous\", node = \"op-001\", map = {map:?} }}\n",
        certs.join("other.pem"),
        certs.join("gw.pem"),
        certs.join("client.pem"),
        certs.join("client-key.pem"),
        certs.join("user.pem"),
        certs.join("user-key.pem"),
        certs.join("gw.pem"),
        certs.join("gw.pem"),
        certs.join("client.pem"),
        certs.join("client-key.pem"),
        map = map_path(),
    ));
    text.push_str(&stations("plain", &["op-001"]));
    let cfg = Config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e:#?}"));
    let engine = app::start(cfg).await.unwrap();
    let refused = util::eventually(Duration::from_secs(30), || {
        link_error(&engine, "st-untrusted").is_some_and(|e| e.contains("BadCertificateUntrusted"))
            && comm_lost(&engine, "st-untrusted")
    })
    .await;
    // Eight values a poll: ten polls in all; the pinned server's station reads too (its client
    // certificate and user identity both accepted), and the same server has refused the
    // certificate the engine makes for itself, and the anonymous user.
    let stats = engine.stats().clone();
    let fresh = |id: &str| reading_ts(&engine, id) > heatgrid::clock::now_ms() - 2000;
    let polled = util::eventually(Duration::from_secs(30), || {
        fresh("op-001")
            && fresh("st-pinned")
            && Stats::get(&stats.opcua_notifications) >= 160
            && link_error(&engine, "st-unpinned").is_some()
            && link_error(&engine, "st-anonymous").is_some()
            && data.join("lp").exists()
            && stored_count(&data, "op-001") >= 5
            && stored_count(&data, "st-pinned") >= 5
    })
    .await;
    let untrusted = link_error(&engine, "st-untrusted");
    let pinned_error = link_error(&engine, "st-pinned");
    // The same server refuses the certificate the engine would make for itself.
    let unpinned = link_error(&engine, "st-unpinned");
    // ...and an anonymous user, though the client certificate is the trusted one.
    let anonymous = link_error(&engine, "st-anonymous");
    let rejected: Vec<PathBuf> = std::fs::read_dir(data.join("opcua/untrusted/rejected"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    engine.shutdown().await;
    for s in [sim, sim2, sim3] {
        s.stop().await;
    }
    assert!(
        refused,
        "the untrusted server is refused with a clear error: {untrusted:?}"
    );
    assert_eq!(
        stored_count(&data, "st-untrusted"),
        0,
        "nothing read from it"
    );
    assert_eq!(
        rejected.len(),
        1,
        "its certificate is kept aside: {rejected:?}"
    );
    assert!(
        polled,
        "the plain server is polled and the pinned one read: {pinned_error:?}"
    );
    assert!(stored_count(&data, "op-001") >= 5);
    assert!(stored_count(&data, "st-pinned") >= 5);
    assert!(
        unpinned.is_some(),
        "a client certificate the server does not trust is refused"
    );
    assert_eq!(stored_count(&data, "st-unpinned"), 0);
    assert!(
        anonymous
            .as_deref()
            .is_some_and(|e| e.contains("no identity of this kind")),
        "an identity the server does not accept is refused: {anonymous:?}"
    );
    assert_eq!(stored_count(&data, "st-anonymous"), 0);
    println!("the pinned server refused the engine's own certificate: {unpinned:?}");
}

/// Readings stored for `id`.
fn stored_count(data: &Path, id: &str) -> usize {
    stored(data).get(id).map_or(0, Vec::len)
}
