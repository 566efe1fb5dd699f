//! Load generator: N stations' telemetry at a total rate R through mosquitto to a running
//! engine, measuring what an operator would: achieved rate, telemetry→command latency
//! (p50/p99/max), readings left unanswered, engine CPU and RSS; a ramp finds the highest rate
//! the engine sustains. The same ramp runs against a do-nothing "echo engine" (subscribe
//! telemetry, publish a fixed command per message: no decode, no control, no storage) behind
//! the same broker: heatgrid's rate divided by the echo's is the figure that survives a shared,
//! noisy machine.
//!
//! Matching: each command is matched to the **oldest unanswered** telemetry of its station
//! (FIFO), so a latency longer than a station's period is not hidden by matching the latest.
//! A step is sustained when ≥ 99 % of its telemetry is answered within 100 ms of the step's end
//! and the p99 latency is ≤ 100 ms.
//!
//! Runs under `benches/load.sh` (builds release binaries, starts mosquitto and
//! VictoriaMetrics, passes their ports). heatgrid runs as its own process
//! (`target/release/heatgrid run`, `control_on = "telemetry"`, storage to VictoriaMetrics);
//! the echo engine is this binary re-executed with `--echo`. Environment: `LOAD_STATIONS`
//! (1000), `LOAD_RATES` (comma-separated msg/s), `LOAD_STEP_S` (10), `LOAD_OUT` (SVG plot);
//! for diagnosis: `LOAD_FSYNC` (the spool's policy), `LOAD_BATCH` and `LOAD_FLUSH_MS`
//! (storage batch size and flush interval), `LOAD_ENGINE_THREADS` (the engine's tokio
//! workers, via `TOKIO_WORKER_THREADS`) and
//! `LOAD_STORAGE=files` (heatgrid stores to local files instead: the database's share of
//! the machine; stored-vs-sent then reads `?`), `LOAD_TRACE=path` (every answer's send time
//! and latency in µs, one file per ramp and rate: where in time the tail comes from); and in
//! `benches/peers.sh`, `VM_PREFIX` (e.g. `chrt -i 0`: the database at idle CPU priority).

#[allow(dead_code)] // each bench uses part of it
mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

fn client(id: &str, port: u16) -> (AsyncClient, rumqttc::EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(1000);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (c, mut el) = AsyncClient::new(o, 200_000);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    el.set_network_options(net);
    (c, el)
}

/// Telemetry's QoS: 1 against a cluster (`LOAD_CLUSTER`: its partition sessions acknowledge
/// each message once stored), else 0.
fn telemetry_qos() -> QoS {
    if std::env::var("HEATGRID_BENCH_ETCD_PORT").is_ok() {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    }
}

/// The echo engine: a fixed command per telemetry message, nothing else.
async fn echo(port: u16) {
    let (c, mut el) = client(&format!("echo-{}", std::process::id()), port);
    let payload = br#"{"seq":1,"ts":0,"mode":"auto","supply_setpoint_c":50.0,"valve_pct":50.0,"pump_pct":70.0,"flow_setpoint_m3h":100.0,"valid_for_s":300}"#;
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                let _ = c.try_subscribe("heating/station/+/telemetry", QoS::AtMostOnce);
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                if let Some(id) = p
                    .topic
                    .strip_prefix("heating/station/")
                    .and_then(|r| r.strip_suffix("/telemetry"))
                {
                    let _ = c.try_publish(
                        format!("heating/station/{id}/command"),
                        QoS::AtLeastOnce,
                        false,
                        payload.to_vec(),
                    );
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Per station: send instants of telemetry not yet answered, oldest first.
struct Pending {
    queues: Vec<VecDeque<Instant>>,
    latencies_us: Vec<u32>,
    /// (send time in µs since the step began, latency µs) of every answer: `LOAD_TRACE`.
    trace: Vec<(u64, u32)>,
    step_start: Instant,
}

#[derive(Debug, Clone)]
struct StepResult {
    offered: f64,
    sent: u64,
    achieved: f64,
    answered_pct: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    cpu_pct: f64,
    rss_mib: f64,
}

impl StepResult {
    fn sustained(&self) -> bool {
        self.answered_pct >= 99.0 && self.p99_ms <= 100.0
    }
}

/// Runs the ramp against whatever answers on `port`; `pid` is the engine process.
async fn ramp(port: u16, n: usize, rates: &[f64], step_s: f64, pid: u32) -> Vec<StepResult> {
    let pending = Arc::new(Mutex::new(Pending {
        queues: vec![VecDeque::new(); n],
        latencies_us: Vec::new(),
        trace: Vec::new(),
        step_start: Instant::now(),
    }));
    // Commands back: one subscriber connection.
    // Client ids unique per ramp, and every connection closed at its end: a second ramp
    // reusing an id would have the broker hand the session back and forth between the two.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_007)
        .unwrap_or(0);
    let mut tasks = Vec::new();
    let (sub, mut sub_el) = client(&format!("load-sub-{nonce}"), port);
    let (ready_tx, mut ready) = tokio::sync::watch::channel(false);
    {
        let pending = pending.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match sub_el.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        let _ = sub.try_subscribe("heating/station/+/command", QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        let _ = ready_tx.send(true);
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let now = Instant::now();
                        let idx = p
                            .topic
                            .strip_prefix("heating/station/st-")
                            .and_then(|r| r.strip_suffix("/command"))
                            .and_then(|r| r.parse::<usize>().ok());
                        if let Some(i) = idx.and_then(|i| i.checked_sub(1)).filter(|i| *i < n) {
                            let mut pd = pending.lock().unwrap();
                            if let Some(t) = pd.queues[i].pop_front() {
                                let us = now.duration_since(t).as_micros().min(u32::MAX as u128);
                                pd.latencies_us.push(us as u32);
                                let at = t.saturating_duration_since(pd.step_start).as_micros();
                                pd.trace.push((at as u64, us as u32));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("load: command subscriber connection error: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                }
            }
        }));
    }
    let _ = ready.wait_for(|r| *r).await;
    // Telemetry out: two publisher connections, stations split between them.
    let publishers: Vec<AsyncClient> = (0..2)
        .map(|k| {
            let (c, mut el) = client(&format!("load-pub-{k}-{nonce}"), port);
            tasks.push(tokio::spawn(async move {
                loop {
                    if let Err(e) = el.poll().await {
                        eprintln!("load: telemetry publisher connection error: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }));
            c
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Warm-up: until the engine answers at all (it may still be subscribing), one station.
    let deadline = Instant::now() + Duration::from_secs(60);
    while pending.lock().unwrap().latencies_us.is_empty() {
        assert!(Instant::now() < deadline, "the engine never answered");
        pending.lock().unwrap().queues[0].push_back(Instant::now());
        let _ = publishers[0].try_publish(
            "heating/station/st-0001/telemetry",
            QoS::AtMostOnce,
            false,
            r#"{"supply_temp_c":52.0,"return_temp_c":40.1,"flow_m3h":210.5,"heated_area_m2":100000}"#,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let mut pd = pending.lock().unwrap();
        pd.latencies_us.clear();
        pd.queues.iter_mut().for_each(VecDeque::clear);
    }

    let mut results = Vec::new();
    let mut next_station = 0usize;
    for &rate in rates {
        let (cpu0, _, _) = common::usage(pid);
        let t0 = Instant::now();
        {
            let mut pd = pending.lock().unwrap();
            pd.latencies_us.clear();
            pd.trace.clear();
            pd.step_start = t0;
        }
        let mut sent = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while t0.elapsed().as_secs_f64() < step_s {
            tick.tick().await;
            let due = (t0.elapsed().as_secs_f64() * rate) as u64;
            while sent < due {
                let i = next_station;
                next_station = (next_station + 1) % n;
                let ts = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                let payload = format!(
                    r#"{{"ts":{ts},"supply_temp_c":{:.2},"return_temp_c":40.1,"flow_m3h":210.5,"heated_area_m2":100000,"outdoor_temp_c":-5.0,"valve_pct":45.0,"pump_pct":70.0}}"#,
                    52.0 + (sent % 7) as f64 * 0.1
                );
                let topic = format!("heating/station/st-{:04}/telemetry", i + 1);
                pending.lock().unwrap().queues[i].push_back(Instant::now());
                if publishers[i % 2]
                    .try_publish(topic, telemetry_qos(), false, payload)
                    .is_err()
                {
                    pending.lock().unwrap().queues[i].pop_back();
                    break; // the client is saturated: this is the achieved rate
                }
                sent += 1;
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        // Answers arriving up to 100 ms after the step count.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (cpu1, rss, _) = common::usage(pid);
        let mut lat = {
            let mut pd = pending.lock().unwrap();
            // Whatever is still unanswered is lost for this step's purposes.
            for q in pd.queues.iter_mut() {
                q.clear();
            }
            if let Ok(path) = std::env::var("LOAD_TRACE") {
                let text: String = pd
                    .trace
                    .iter()
                    .map(|(at, us)| format!("{at} {us}\n"))
                    .collect();
                let _ = std::fs::write(format!("{path}.{pid}.{rate}"), text);
            }
            std::mem::take(&mut pd.latencies_us)
        };
        let answered = lat.len() as u64;
        lat.sort_unstable();
        let pct = |q: f64| {
            lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
                .map_or(f64::NAN, |v| *v as f64 / 1000.0)
        };
        let r = StepResult {
            offered: rate,
            sent,
            achieved: sent as f64 / wall,
            answered_pct: if sent == 0 {
                0.0
            } else {
                answered as f64 / sent as f64 * 100.0
            },
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            max_ms: lat.last().map_or(f64::NAN, |v| *v as f64 / 1000.0),
            cpu_pct: (cpu1 - cpu0) / (wall + 0.1) * 100.0,
            rss_mib: rss,
        };
        eprintln!("{r:?}");
        let stop = !r.sustained();
        results.push(r);
        // Let the queues drain before the next step.
        tokio::time::sleep(Duration::from_secs(1)).await;
        if stop {
            break;
        }
    }
    for t in tasks {
        t.abort();
    }
    results
}

fn table(name: &str, rs: &[StepResult]) -> String {
    let mut s = format!(
        "\n**{name}**\n\n| offered msg/s | achieved msg/s | answered | p50 ms | p99 ms | max ms | engine CPU | RSS MiB | sustained |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in rs {
        s.push_str(&format!(
            "| {:.0} | {:.0} | {:.2} % | {:.2} | {:.2} | {:.1} | {:.0} % | {:.0} | {} |\n",
            r.offered,
            r.achieved,
            r.answered_pct,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.cpu_pct,
            r.rss_mib,
            if r.sustained() { "yes" } else { "no" }
        ));
    }
    s
}

/// p99 latency against offered rate, both engines, as an SVG.
fn plot(series: &[(&str, &str, &[StepResult])]) -> String {
    let (w, h, m) = (640.0, 400.0, 60.0);
    let max_rate = series
        .iter()
        .flat_map(|(_, _, r)| r.iter().map(|x| x.offered))
        .fold(1.0, f64::max);
    let max_lat = series
        .iter()
        .flat_map(|(_, _, r)| r.iter().map(|x| x.p99_ms).filter(|v| v.is_finite()))
        .fold(1.0, f64::max)
        .min(1000.0);
    let x = |v: f64| m + v / max_rate * (w - 2.0 * m);
    let y = |v: f64| h - m - v.min(max_lat) / max_lat * (h - 2.0 * m);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<line x1="{m}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{m}" y1="{m}" x2="{m}" y2="{b}" stroke="black"/>
<text x="{cx}" y="{ty}" text-anchor="middle">offered telemetry rate, msg/s (0 … {max_rate:.0})</text>
<text x="15" y="{cy}" transform="rotate(-90 15 {cy})" text-anchor="middle">p99 telemetry→command latency, ms (0 … {max_lat:.0})</text>
<line x1="{m}" y1="{l100}" x2="{r}" y2="{l100}" stroke="grey" stroke-dasharray="4"/><text x="{r}" y="{l100}" text-anchor="end" fill="grey">100 ms</text>
"#,
        b = h - m,
        r = w - m,
        cx = w / 2.0,
        ty = h - 20.0,
        cy = h / 2.0,
        l100 = y(100.0),
    );
    for (k, (name, colour, rs)) in series.iter().enumerate() {
        let pts: Vec<String> = rs
            .iter()
            .filter(|r| r.p99_ms.is_finite())
            .map(|r| format!("{:.1},{:.1}", x(r.offered), y(r.p99_ms)))
            .collect();
        s.push_str(&format!(
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>
<text x="{}" y="{}" fill="{colour}">{name}</text>
"#,
            pts.join(" "),
            m + 10.0,
            m + 15.0 * (k as f64 + 1.0)
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    if let Some(p) = args.iter().position(|a| a == "--echo") {
        let port: u16 = args[p + 1].parse().unwrap();
        rt.block_on(echo(port));
        return;
    }
    let port: u16 = common::env("HEATGRID_BENCH_MQTT_PORT", 0);
    let vm: u16 = common::env("HEATGRID_BENCH_VM_PORT", 0);
    assert!(port > 0 && vm > 0, "run through benches/load.sh");
    let n: usize = common::env("LOAD_STATIONS", 1000);
    let step_s: f64 = common::env("LOAD_STEP_S", 10.0);
    let rates: Vec<f64> = std::env::var("LOAD_RATES")
        .unwrap_or_else(|_| "1000,2000,5000,10000,15000,20000,25000,30000,40000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let root = env!("CARGO_MANIFEST_DIR");

    // 1. The echo engine (`LOAD_ECHO=0`: skipped, e.g. when comparing two builds).
    let echo_results = if std::env::var("LOAD_ECHO").is_ok_and(|e| e == "0") {
        Vec::new()
    } else {
        let mut echo_child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--echo", &port.to_string()])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(1));
        let r = rt.block_on(ramp(port, n, &rates, step_s, echo_child.id()));
        let _ = echo_child.kill();
        let _ = echo_child.wait();
        r
    };

    // 2. heatgrid, following telemetry, storing every point in VictoriaMetrics.
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = 5\nstaleness_s = 30\ncontrol_on = \"telemetry\"\n\
         [mqtt]\nport = {port}\nclient_id = \"heatgrid-load\"\ntelemetry_qos = {qos}\n\
         [storage]\nfsync = \"{fsync}\"\n[storage.influxdb]\nurl = \"http://127.0.0.1:{vm}\"\norg = \"o\"\nbucket = \"b\"\n\
         [api]\nlisten = \"127.0.0.1:{api}\"\n[[api.token]]\nname = \"load\"\nrole = \"viewer\"\ntoken_env = \"LOAD_API_TOKEN\"\n",
        dir.path().join("data").display().to_string(),
        fsync = std::env::var("LOAD_FSYNC").unwrap_or_else(|_| "interval".into()),
        qos = telemetry_qos() as u8,
        api = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    );
    let api_port: u16 = text
        .split("listen = \"127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    for i in 1..=n {
        text.push_str(&format!("[[station]]\nid = \"st-{i:04}\"\n"));
    }
    if let Ok(b) = std::env::var("LOAD_BATCH") {
        text = text.replace("[storage]\n", &format!("[storage]\nbatch_size = {b}\n"));
    }
    if let Ok(ms) = std::env::var("LOAD_FLUSH_MS") {
        text = text.replace(
            "[storage]\n",
            &format!("[storage]\nflush_interval_ms = {ms}\n"),
        );
    }
    // LOAD_CLUSTER (benches/load.sh): a one-member cluster on one etcd node, 64 partitions
    // led by this instance, each on its own persistent session.
    if let Ok(etcd) = std::env::var("HEATGRID_BENCH_ETCD_PORT") {
        text.push_str(&format!(
            "[cluster]\nname = \"load\"\netcd_endpoints = [\"http://127.0.0.1:{etcd}\"]\npartitions = 64\n"
        ));
    }
    if std::env::var("LOAD_STORAGE").is_ok_and(|s| s == "files") {
        let db = format!(
            "[storage.influxdb]\nurl = \"http://127.0.0.1:{vm}\"\norg = \"o\"\nbucket = \"b\"\n"
        );
        text = text.replace(&db, "");
    }
    let cfg = dir.path().join("heatgrid.toml");
    std::fs::write(&cfg, text).unwrap();
    let started = Instant::now();
    let binary =
        std::env::var("LOAD_ENGINE").unwrap_or_else(|_| format!("{root}/target/release/heatgrid"));
    let mut engine = std::process::Command::new(&binary)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .env("LOAD_API_TOKEN", "load-bench-viewer-token")
        .envs(std::env::var("LOAD_ENGINE_THREADS").map(|n| ("TOKIO_WORKER_THREADS", n)))
        .spawn()
        .expect("target/release/heatgrid (cargo build --release)");
    std::thread::sleep(Duration::from_secs(2));
    let (_, rss_idle, _) = common::usage(engine.id());
    let hg_results = rt.block_on(ramp(port, n, &rates, step_s, engine.id()));
    // The engine's own counters, for the record.
    let counters = rt.block_on(async {
        let text = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{api_port}/metrics"))
            .bearer_auth("load-bench-viewer-token")
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        Some(
            text.lines()
                .filter(|l| {
                    [
                        "readings_accepted_total",
                        "readings_rejected",
                        "commands_sent_total",
                        "commands_failed_total",
                        "messages_in_total",
                        "mqtt_connects_total",
                        "mqtt_watchdog_total",
                        "control_latency_",
                        "mqtt_acks_",
                    ]
                    .iter()
                    .any(|k| l.starts_with(&format!("heatgrid_{k}")))
                })
                .collect::<Vec<_>>()
                .join("; "),
        )
    });
    println!("heatgrid counters: {}", counters.unwrap_or_default());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &engine.id().to_string()])
        .status();
    let _ = engine.wait();
    let run_s = started.elapsed().as_secs_f64();
    // Stored vs sent: every telemetry point heatgrid received must be in the database.
    let sent: u64 = hg_results.iter().map(|r| r.sent).sum();
    let stored = rt.block_on(async {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{vm}");
        let _ = http
            .get(format!("{base}/internal/force_flush"))
            .send()
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let v: serde_json::Value = http
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", "sum(count_over_time(telemetry_supply_temp_c[1h]))")])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["data"]["result"][0]["value"][1]
            .as_str()?
            .parse::<u64>()
            .ok()
    });

    let best = |rs: &[StepResult]| {
        rs.iter()
            .filter(|r| r.sustained())
            .map(|r| r.achieved)
            .fold(0.0, f64::max)
    };
    let (e, h) = (best(&echo_results), best(&hg_results));
    println!(
        "# Load ramp: {n} stations, {step_s} s per step, telemetry QoS {}, commands QoS 1{}; engine {binary}",
        telemetry_qos() as u8,
        if telemetry_qos() == QoS::AtLeastOnce {
            " (a one-member cluster, 64 partitions)"
        } else {
            ""
        }
    );
    println!(
        "{}",
        table(
            "echo engine (no decode, no control, no storage)",
            &echo_results
        )
    );
    println!(
        "{}",
        table(
            if std::env::var("LOAD_STORAGE").is_ok_and(|s| s == "files") {
                "heatgrid (control_on = telemetry, every point stored in local files)"
            } else {
                "heatgrid (control_on = telemetry, every point stored in VictoriaMetrics)"
            },
            &hg_results
        )
    );
    println!(
        "\nmax sustained: echo {e:.0} msg/s, heatgrid {h:.0} msg/s: **ratio {:.2}**; heatgrid RSS at {n} stations idle {rss_idle:.0} MiB; \
         telemetry sent to heatgrid {sent}, stored {}; run {run_s:.0} s",
        if e > 0.0 { h / e } else { f64::NAN },
        stored.map_or("?".into(), |s| s.to_string()),
    );
    let out = std::env::var("LOAD_OUT").unwrap_or_else(|_| format!("{root}/docs/load-latency.svg"));
    let svg = plot(&[
        ("echo engine", "#888888", &echo_results),
        ("heatgrid", "#c0392b", &hg_results),
    ]);
    std::fs::write(&out, svg).unwrap();
    println!("plot: {out}");
}
