//! Test peers: real mosquitto, VictoriaMetrics and InfluxDB processes on free loopback ports, stopped by
//! PID when dropped, plus helpers to configure the engine and read the TSDB back.
//!
//! The binaries come from Debian packages that `scripts/test.sh` installs.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use heatgrid::config::Config;
use heatgrid::control::status::StationStatus;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn find_binary(name: &str, extra: &[&str]) -> PathBuf {
    let mut candidates: Vec<PathBuf> = extra.iter().map(PathBuf::from).collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found: run the tests with scripts/test.sh, which installs it")
        })
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether every station of `engine` (there are `n`) holds within ±1 K of its setpoint for
/// 5 s running, waiting up to `timeout`.
pub async fn all_held_within_1k(
    engine: &heatgrid::app::EngineHandle,
    n: usize,
    timeout: Duration,
) -> bool {
    let mut held_since = None;
    eventually(timeout, || {
        let st = engine.status();
        let ok = st.len() == n && st.iter().all(|s| error_k(s).is_some_and(|e| e <= 1.0));
        let now = Instant::now();
        match (ok, held_since) {
            (true, None) => held_since = Some(now),
            (false, _) => held_since = None,
            _ => {}
        }
        held_since.is_some_and(|t| now - t >= Duration::from_secs(5))
    })
    .await
}

/// The Python with paho-mqtt and pymodbus (scripts/test.sh's virtualenv).
pub fn python() -> String {
    std::env::var("HEATGRID_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A child process killed (and reaped) on drop.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub _dir: Option<tempfile::TempDir>,
}

impl Proc {
    /// SIGTERM and wait: a database stopped this way has flushed what it acknowledged
    /// (VictoriaMetrics keeps the last second in memory, which SIGKILL would lose).
    pub fn stop_gracefully(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mosquitto with the settings from stack-notes.md (unlimited queue, no Nagle, stderr log).
pub fn mosquitto() -> Proc {
    mosquitto_on(free_port())
}

/// mosquitto on a given port (to restart a broker where clients expect it).
pub fn mosquitto_on(port: u16) -> Proc {
    let bin = find_binary("mosquitto", &["/usr/sbin/mosquitto"]);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n\
             max_queued_messages 0\nset_tcp_nodelay true\nmax_inflight_messages 0\nmax_packet_size 1048576\n"
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    wait_for_port(port, "mosquitto");
    Proc {
        child,
        port,
        _dir: Some(dir),
    }
}

/// VictoriaMetrics, which accepts the InfluxDB v2 write API.
pub fn victoria_metrics() -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut p = start_victoria_metrics(dir.path(), port);
    p._dir = Some(dir);
    p
}

/// VictoriaMetrics on `port` with its data in `dir`: start it again with the same arguments
/// after a kill to get the same database back.
pub fn start_victoria_metrics(dir: &Path, port: u16) -> Proc {
    let bin = find_binary("victoria-metrics", &["/usr/bin/victoria-metrics"]);
    let child = Command::new(bin)
        .arg(format!("-storageDataPath={}", dir.display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-loggerLevel=ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start victoria-metrics");
    wait_for_port(port, "victoria-metrics");
    Proc {
        child,
        port,
        _dir: None,
    }
}

/// InfluxDB 1.x (Debian's `influxd`) on `port` with its data in `dir`, authentication on:
/// start it again with the same arguments to get the same database back.
pub fn start_influxdb(dir: &Path, port: u16) -> Proc {
    let bin = find_binary("influxd", &["/usr/bin/influxd"]);
    let child = Command::new(bin)
        .arg("run")
        .env("INFLUXDB_REPORTING_DISABLED", "true")
        .env("INFLUXDB_BIND_ADDRESS", "127.0.0.1:0")
        .env("INFLUXDB_HTTP_BIND_ADDRESS", format!("127.0.0.1:{port}"))
        .env("INFLUXDB_HTTP_AUTH_ENABLED", "true")
        .env("INFLUXDB_HTTP_LOG_ENABLED", "false")
        .env("INFLUXDB_META_DIR", dir.join("meta"))
        .env("INFLUXDB_DATA_DIR", dir.join("data"))
        .env("INFLUXDB_DATA_WAL_DIR", dir.join("wal"))
        .env("INFLUXDB_DATA_QUERY_LOG_ENABLED", "false")
        .env("INFLUXDB_MONITOR_STORE_ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start influxd");
    wait_for_port(port, "influxd");
    Proc {
        child,
        port,
        _dir: None,
    }
}

/// Engine config for `ids`, accelerated by `speed` (5 simulated seconds per tick).
pub fn engine_config(
    ids: &[String],
    mqtt_port: u16,
    version: &str,
    speed: f64,
    data_dir: &Path,
    influx_port: Option<u16>,
) -> Config {
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = {}\nstaleness_s = {}\ncommand_valid_for_s = 30\ntime_scale = {speed}\n\
         [mqtt]\nport = {mqtt_port}\nversion = {version:?}\nclient_id = \"engine-{}\"\n\
         [storage]\nflush_interval_ms = 200\n[api]\nlisten = \"\"\n",
        data_dir.display().to_string(),
        5.0 / speed,
        (30.0 / speed).max(2.0),
        free_port(),
    );
    if let Some(p) = influx_port {
        text.push_str(&format!(
            "[storage.influxdb]\nurl = \"http://127.0.0.1:{p}\"\norg = \"heating\"\nbucket = \"heatgrid\"\ntimeout_s = 5\n"
        ));
    }
    for id in ids {
        text.push_str(&format!(
            "[[station]]\nid = {id:?}\ntags = {{ district = \"test\" }}\n"
        ));
    }
    Config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e:?}"))
}

/// |supply − setpoint| of a station controlled on fresh data.
pub fn error_k(st: &StationStatus) -> Option<f64> {
    if st.stale {
        return None;
    }
    Some((st.reading.as_ref()?.supply_temp_c - st.outputs?.supply_setpoint_c).abs())
}

/// Polls `f` every 100 ms until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Number of samples VictoriaMetrics holds for `metric` (after a forced flush), by station.
pub async fn vm_count(port: u16, metric: &str) -> std::collections::BTreeMap<String, usize> {
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let _ = http
        .get(format!("{base}/internal/force_flush"))
        .send()
        .await;
    let body = http
        .post(format!("{base}/api/v1/export"))
        .form(&[("match[]", format!("{{__name__=\"{metric}\"}}"))])
        .send()
        .await
        .expect("VictoriaMetrics export")
        .text()
        .await
        .unwrap();
    // Distinct (series, timestamp) pairs per station: a point written twice counts once.
    let mut seen =
        std::collections::BTreeMap::<String, std::collections::BTreeSet<(String, i64)>>::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let station = v["metric"]["station"].as_str().unwrap_or("?").to_owned();
        let series = v["metric"].to_string();
        let ts = v["timestamps"].as_array().cloned().unwrap_or_default();
        seen.entry(station).or_default().extend(
            ts.iter()
                .filter_map(|t| t.as_i64())
                .map(|t| (series.clone(), t)),
        );
    }
    seen.into_iter().map(|(k, v)| (k, v.len())).collect()
}

/// Polls VictoriaMetrics until `metric` holds `expected` samples in total (new series take
/// seconds to appear), returning the last count seen.
pub async fn vm_wait_total(port: u16, metric: &str, expected: usize, timeout: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let total: usize = vm_count(port, metric).await.values().sum();
        if total >= expected || tokio::time::Instant::now() >= deadline {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Writes line-protocol `lines` (ms) into the VictoriaMetrics on `port` and makes them
/// searchable at once.
pub async fn vm_write(port: u16, lines: String) {
    let http = reqwest::Client::new();
    let wrote = http
        .post(format!(
            "http://127.0.0.1:{port}/api/v2/write?org=o&bucket=b&precision=ms"
        ))
        .body(lines)
        .send()
        .await
        .unwrap();
    assert_eq!(wrote.status().as_u16(), 204);
    let _ = http
        .get(format!("http://127.0.0.1:{port}/internal/force_flush"))
        .send()
        .await;
}

/// Every one of `expected` telemetry points is in VictoriaMetrics (waits up to 30 s for them,
/// then compares exactly: none lost, none twice).
pub async fn assert_all_telemetry_stored(port: u16, expected: u64) {
    let metric = "telemetry_supply_temp_c";
    let stored = vm_wait_total(port, metric, expected as usize, Duration::from_secs(30)).await;
    assert_eq!(stored as u64, expected, "{metric} points stored");
}

/// The engine's command sequence numbers in `data_dir`, as JSON `{station: seq}`.
pub fn seqs(data_dir: &Path) -> serde_json::Value {
    let store = heatgrid::command::seq::SeqStore::open(
        data_dir,
        heatgrid::store::spool::FsyncPolicy::Never,
    )
    .expect("seq store");
    serde_json::to_value(store.all()).unwrap()
}

/// The lines of measurement `name` an engine without a database wrote to `data_dir/lp`.
pub fn stored_lines(data_dir: &Path, name: &str) -> Vec<String> {
    let prefix = format!("{name},");
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(data_dir.join("lp")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        lines.extend(
            text.lines()
                .filter(|l| l.starts_with(&prefix))
                .map(str::to_owned),
        );
    }
    lines
}

/// The viewer token [`with_viewer`] gives an engine's API.
pub const VIEWER_TOKEN: &str = "viewer-token-for-the-tests-0123456789";

/// Serves `cfg`'s API on a loopback port with [`VIEWER_TOKEN`] as its only (viewer) token.
pub fn with_viewer(cfg: &mut heatgrid::config::Config) {
    cfg.api.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.api.tokens = vec![heatgrid::config::ApiToken {
        name: "viewer".into(),
        role: heatgrid::config::Role::Viewer,
        sha256: heatgrid::api::auth::sha256(VIEWER_TOKEN.as_bytes()),
    }];
}

/// Starts the engine of `cfg` with its API on a loopback port ([`with_viewer`]), subscribed;
/// the engine and its API's base address.
pub async fn start_viewed(
    mut cfg: heatgrid::config::Config,
) -> (heatgrid::app::EngineHandle, String) {
    with_viewer(&mut cfg);
    let engine = heatgrid::app::start(cfg).await.unwrap();
    assert!(engine.wait_subscribed(Duration::from_secs(20)).await);
    let api = format!("http://{}", engine.api_addr().unwrap());
    (engine, api)
}

/// An MQTT client named `name` on the broker at `port`, its event loop polled until the
/// returned task is aborted: a test's own station.
pub fn publisher(port: u16, name: &str) -> (rumqttc::AsyncClient, tokio::task::JoinHandle<()>) {
    let mut opts = rumqttc::MqttOptions::new(name, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 10);
    let poller = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    (client, poller)
}

/// Runs the `heatgrid` binary's `args` against the API at `api` with [`VIEWER_TOKEN`]; its
/// standard output (it must succeed).
pub fn viewer_cli(api: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_heatgrid"))
        .args(args)
        .env("HEATGRID_API", api)
        .env("HEATGRID_TOKEN", VIEWER_TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A figure of the `/metrics` of the engine whose API is on `api_port` (`None`: no answer or
/// no such line).
pub async fn metric(api_port: u16, token: &str, name: &str) -> Option<f64> {
    let text = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{api_port}/metrics"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Runs `cmd` with sh in `dir`; it must succeed.
pub fn sh(dir: &Path, cmd: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Made by openssl in `dir`: a CA (`ca.pem`), a server certificate for localhost and
/// 127.0.0.1 signed by it (`server.pem`, `server.key`), and an unrelated CA (`other-ca.pem`).
pub fn certificates(dir: &Path) {
    let subj = |cn: &str| format!("-subj '/CN={cn}'");
    sh(dir, &format!("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 {} 2>/dev/null", subj("heatgrid test CA")));
    sh(dir, &format!("openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other-ca.pem -days 2 {} 2>/dev/null", subj("someone else")));
    sh(
        dir,
        &format!(
            "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr {} 2>/dev/null",
            subj("localhost")
        ),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    sh(dir, "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null");
}
