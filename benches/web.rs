//! The web control room under load: N simulated stations (2,000) at one reading per second,
//! the engine as its own process (`target/release/heatgrid run`), a headless Chromium through
//! chromedriver. Measures what issue 16 asks:
//!
//! 1. the first complete overview after loading the page (the page's own
//!    `overview-complete` mark, ms from navigation start, signed in already);
//! 2. the browser's cost of the live updates: the Chrome DevTools Protocol's
//!    `Performance.getMetrics` `TaskDuration` over a window, per second of wall time;
//! 3. the engine's extra CPU with that dashboard open, against the same engine with none;
//! 4. the engine's p99 telemetry→command latency (its own histogram, `/metrics`) with no
//!    dashboard and with 10 live feeds, each twice, to see the run-to-run noise. The 10 feeds
//!    are 10 `GET /api/v1/live` streams read like the page reads them, not 10 browsers: ten
//!    Chromiums on these two cores would measure the browsers, not the engine.
//!
//! Runs under `benches/web.sh` (mosquitto on a free port, release build, chromedriver).
//! Environment: `WEB_STATIONS` (2000), `WEB_WINDOW_S` (30), `WEB_SHOT` (a PNG of the overview
//! at 1920 × 1080), and from web.sh `HEATGRID_BENCH_MQTT_PORT`, `HEATGRID_BIN`,
//! `CHROMEDRIVER_PORT`.

#[allow(dead_code)] // each bench uses part of it
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

const TOKEN: &str = "web-bench-operator-token-0123";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The engine as its own process, killed on drop.
struct Engine {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn engine(n: usize, mqtt: u16) -> Engine {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = 5\ncontrol_on = \"telemetry\"\n[mqtt]\nport = {mqtt}\nclient_id = \"engine-web-bench\"\n\
         [api]\nlisten = \"127.0.0.1:{api}\"\n\
         [[api.token]]\nname = \"bench\"\nrole = \"operator\"\ntoken_env = \"WEB_BENCH_TOKEN\"\n",
        dir.path().join("data").display().to_string()
    );
    for i in 1..=n {
        let district = ["north", "south", "east", "west"][i % 4];
        text.push_str(&format!(
            "[[station]]\nid = \"st-{i:03}\"\ntags = {{ district = \"{district}\" }}\n"
        ));
    }
    let config = dir.path().join("hg.toml");
    std::fs::write(&config, text).unwrap();
    let bin = std::env::var("HEATGRID_BIN").unwrap_or_else(|_| "target/release/heatgrid".into());
    let child = Command::new(bin)
        .args(["run", "--config"])
        .arg(&config)
        .env("WEB_BENCH_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start heatgrid");
    let e = Engine {
        child,
        base: format!("http://127.0.0.1:{api}"),
        _dir: dir,
    };
    // Every station fresh.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let online = get(&e.base, "/api/v1/status").await.and_then(|v| {
            let s = &v["stations"];
            Some(s["total"].as_u64()? - s["stale"].as_u64()?)
        });
        if online == Some(n as u64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet did not come online: {online:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    e
}

async fn get(base: &str, path: &str) -> Option<Value> {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

async fn p99_us(base: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The histogram's cumulative buckets: the first whose count reaches 99 % of the total.
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("heatgrid_control_latency_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, rest) = l.split_once('"')?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.split_whitespace().last()?.parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .iter()
        .find(|(_, n)| total > 0.0 && *n >= 0.99 * total)
        .map_or(f64::NAN, |(le, _)| le * 1e6)
}

/// What one live feed moved, read as the page reads it (gzip accepted).
#[derive(Debug, Default, Clone)]
struct FeedBytes {
    /// Compressed bytes up to the end of the first event (the whole fleet).
    snapshot: usize,
    /// Compressed bytes after it, and over how long.
    live: usize,
    live_s: f64,
    /// Snapshots after the first (none expected).
    snapshots: usize,
    /// Each delta tile's reading age when sent, s (its `ts` field: tenths of a second).
    ages: Vec<f64>,
}

/// Reads the live feed at `base` until `stop`, decompressing it as it arrives.
async fn read_feed(base: String, stop: Instant) -> FeedBytes {
    use std::io::Write;
    let mut r = reqwest::Client::new()
        .get(format!("{base}/api/v1/live"))
        .bearer_auth(TOKEN)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    let gzip = r
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let mut gunzip = flate2::write::GzDecoder::new(Vec::new());
    let (mut text, mut out, mut wire) = (String::new(), FeedBytes::default(), 0usize);
    let mut live_from: Option<Instant> = None;
    while Instant::now() < stop {
        let left = stop.saturating_duration_since(Instant::now());
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, r.chunk()).await else {
            break;
        };
        wire += chunk.len();
        if gzip {
            gunzip.write_all(&chunk).unwrap();
            gunzip.flush().unwrap();
            text.push_str(&String::from_utf8_lossy(&std::mem::take(gunzip.get_mut())));
        } else {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        while let Some(cut) = text.find("\n\n") {
            let block: String = text.drain(..cut + 2).collect();
            let snapshot = block.starts_with("event: snapshot");
            if live_from.is_none() {
                out.snapshot = wire;
                live_from = Some(Instant::now());
                continue;
            }
            out.snapshots += usize::from(snapshot);
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            for e in v["d"].as_array().into_iter().flatten() {
                let kv = e.as_array().map(|a| &a[1..]).unwrap_or_default();
                for pair in kv.chunks(2) {
                    if pair.len() == 2 && pair[0] == 2 {
                        if let Some(tenths) = pair[1].as_f64() {
                            out.ages.push(tenths / 10.0);
                        }
                    }
                }
            }
        }
    }
    out.live = wire - out.snapshot;
    out.live_s = live_from.map_or(0.0, |t| t.elapsed().as_secs_f64());
    out
}

fn quantile(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * q).round() as usize]
}

/// `feeds` live streams read to the end of `window`; the engine's CPU % and p99 over it, and
/// what the feeds moved.
async fn measure(e: &Engine, feeds: usize, window: Duration) -> (f64, f64, Vec<FeedBytes>) {
    let stop = Instant::now() + Duration::from_secs(3) + window;
    let tasks: Vec<_> = (0..feeds)
        .map(|_| tokio::spawn(read_feed(e.base.clone(), stop)))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await; // the feeds' first snapshots
    let pid = e.child.id();
    let (c0, t0) = (common::usage(pid).0, Instant::now());
    tokio::time::sleep(window).await;
    let cpu = (common::usage(pid).0 - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let p99 = p99_us(&e.base).await;
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap_or_default());
    }
    (cpu, p99, got)
}

/// The page's files as a browser gets them (gzip accepted): bytes on the wire.
async fn page_bytes(base: &str) -> usize {
    let mut total = 0;
    for path in ["/", "/app.js", "/app.css"] {
        let r = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .unwrap();
        total += r.bytes().await.unwrap().len();
    }
    total
}

async fn cdp(c: &Client, driver: u16, cmd: &str) -> Value {
    let sid = c.session_id().await.unwrap().unwrap();
    reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{driver}/session/{sid}/goog/cdp/execute"
        ))
        .json(&json!({"cmd": cmd, "params": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn task_s(c: &Client, driver: u16) -> f64 {
    let m = cdp(c, driver, "Performance.getMetrics").await;
    m["value"]["metrics"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == "TaskDuration"))
        .and_then(|m| m["value"].as_f64())
        .unwrap_or(f64::NAN)
}

async fn browser_run(e: &Engine, n: usize, window: Duration) -> (f64, f64, f64) {
    let driver: u16 = common::env("CHROMEDRIVER_PORT", 9515);
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--no-first-run", "--window-size=1920,1080",
                format!("--user-data-dir={}", profile.path().display())],
        }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver}"))
        .await
        .expect("a Chromium session");
    c.goto(&format!("{}/", e.base)).await.unwrap();
    c.execute(
        &format!("sessionStorage.setItem('heatgrid.token', '{TOKEN}');"),
        vec![],
    )
    .await
    .unwrap();
    c.refresh().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let first_ms = loop {
        let v = c
            .execute(
                "const m = performance.getEntriesByName('overview-complete'); \
                 return m.length ? [m[0].startTime, document.querySelectorAll('.tile').length] : null;",
                vec![],
            )
            .await
            .unwrap();
        if let Some(a) = v.as_array() {
            assert_eq!(
                a[1].as_u64(),
                Some(n as u64),
                "every station on the overview"
            );
            break a[0].as_f64().unwrap_or(f64::NAN);
        }
        assert!(Instant::now() < deadline, "no complete overview");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cdp(&c, driver, "Performance.enable").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = e.child.id();
    let (b0, c0, t0) = (
        task_s(&c, driver).await,
        common::usage(pid).0,
        Instant::now(),
    );
    tokio::time::sleep(window).await;
    let wall = t0.elapsed().as_secs_f64();
    let browser = (task_s(&c, driver).await - b0) / wall * 100.0;
    let engine = (common::usage(pid).0 - c0) / wall * 100.0;
    if let Ok(path) = std::env::var("WEB_SHOT") {
        std::fs::write(path, c.screenshot().await.unwrap()).unwrap();
    }
    c.close().await.unwrap();
    (first_ms, browser, engine)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let n: usize = common::env("WEB_STATIONS", 2000);
        let window = Duration::from_secs(common::env("WEB_WINDOW_S", 30));
        let mqtt: u16 = common::env("HEATGRID_BENCH_MQTT_PORT", 1883);
        let _sim = heatgrid_sim::spawn(heatgrid_sim::SimConfig {
            port: mqtt,
            stations: n,
            id_prefix: "st-".into(),
            telemetry_period_s: 1.0,
            speed: 1.0,
            warmup_h: 1.0,
            ..heatgrid_sim::SimConfig::default()
        })
        .await;
        println!(
            "| run | engine CPU % | engine p99 telemetry→command ms | feeds | first snapshot kB (gzip) | live kB/s per feed | reading age when sent p50 / p99 s | later snapshots |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let mut quiet_cpu = Vec::new();
        let mut page = 0;
        for rep in 1..=2 {
            for feeds in [0, 1, 10] {
                let e = engine(n, mqtt).await;
                page = page_bytes(&e.base).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                let (cpu, p99, got) = measure(&e, feeds, window).await;
                if feeds == 0 {
                    quiet_cpu.push(cpu);
                }
                let k = got.len().max(1) as f64;
                let snap = got.iter().map(|f| f.snapshot).sum::<usize>() as f64 / k / 1000.0;
                let rate = got
                    .iter()
                    .map(|f| f.live as f64 / f.live_s.max(1e-9))
                    .sum::<f64>()
                    / k
                    / 1000.0;
                let mut ages: Vec<f64> = got.iter().flat_map(|f| f.ages.clone()).collect();
                let later: usize = got.iter().map(|f| f.snapshots).sum();
                println!(
                    "| {rep}: {feeds} feeds | {cpu:.1} | {:.2} | {feeds} | {snap:.1} | {rate:.1} | {:.1} / {:.1} | {later} |",
                    p99 / 1000.0,
                    quantile(&mut ages, 0.5),
                    quantile(&mut ages, 0.99),
                );
            }
        }
        println!("\npage files on the wire (gzip): {:.1} kB", page as f64 / 1000.0);
        let e = engine(n, mqtt).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (first_ms, browser, engine_cpu) = browser_run(&e, n, window).await;
        let quiet = quiet_cpu.iter().sum::<f64>() / quiet_cpu.len() as f64;
        println!(
            "\n{n} stations at 1 s: first complete overview {first_ms:.0} ms after navigation; \
             the browser's tasks {browser:.1} % of one core while live; the engine {engine_cpu:.1} % \
             with the dashboard against {quiet:.1} % without (extra {:.1} % of one core)",
            engine_cpu - quiet
        );
    });
}
