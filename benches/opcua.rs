//! OPC UA at scale: one engine subscribes to N stations of ten nodes each (default 500) on
//! one OPC UA server at a 1 s sampling and publishing interval, and reports the notification
//! lateness (arrival against the value's source timestamp: p50/p99/max), the readings, the
//! engine's CPU and memory. The server is asyncua (tests/peers/opcua_fleet.py) in its own
//! process on the same machine, so both share its cores, as they would on a small box.
//!
//! `cargo bench --bench opcua` with `HEATGRID_TEST_PYTHON` naming a Python with asyncua (the
//! test command's `.venv/bin/python`). Environment: `HEATGRID_BENCH_STATIONS` (500),
//! `HEATGRID_BENCH_SECONDS` (60). A benchmark, not a test: the figures go to
//! docs/performance.md.

#[allow(dead_code)] // each bench uses part of it
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use heatgrid::config::Config;
use heatgrid::stats::Stats;

const FIELDS: [&str; 10] = [
    "supply_temp_c",
    "return_temp_c",
    "flow_m3h",
    "heated_area_m2",
    "outdoor_temp_c",
    "indoor_temp_c",
    "valve_pct",
    "pump_pct",
    "heat_kw",
    "heat_energy_gj",
];

fn main() {
    let n: usize = common::env("HEATGRID_BENCH_STATIONS", 500);
    let seconds: f64 = common::env("HEATGRID_BENCH_SECONDS", 60.0);
    let python = std::env::var("HEATGRID_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let root = env!("CARGO_MANIFEST_DIR");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(python)
        .arg(format!("{root}/tests/peers/opcua_fleet.py"))
        .args(["--port", &port.to_string(), "--stations", &n.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tests/peers/opcua_fleet.py (asyncua)");
    let mut ready = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(
        ready.starts_with("ready"),
        "the server did not start: {ready:?}"
    );
    let server_pid = server.id();

    let dir = tempfile::tempdir().unwrap();
    let mut map = "device = \"bench\"\nnamespace_uri = \"urn:heatgrid:bench\"\n".to_owned();
    for f in FIELDS {
        map.push_str(&format!(
            "[[node]]\nfield = \"{f}\"\nnode_id = \"s={{node}}.{f}\"\ntype = \"double\"\n"
        ));
    }
    let map_path = dir.path().join("map.toml");
    std::fs::write(&map_path, map).unwrap();
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = 5\nstaleness_s = 30\n\
         [mqtt]\nport = 1\n[api]\nlisten = \"\"\n\
         [[opcua.server]]\nname = \"fleet\"\nendpoint = \"opc.tcp://127.0.0.1:{port}/fleet\"\n\
         interval_s = 1\ntimeout_ms = 10000\n",
        dir.path().join("data").display().to_string()
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[station]]\nid = \"opc-{:03}\"\nopcua = {{ server = \"fleet\", map = {:?} }}\n",
            i + 1,
            map_path
        ));
    }
    let cfg = Config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e:#?}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .try_init();
    rt.block_on(async move {
        let engine = heatgrid::app::start(cfg).await.unwrap();
        let stats = engine.stats().clone();
        // Warm-up: the session, 5,000 monitored items, their first values.
        let deadline = Instant::now() + Duration::from_secs(120);
        while Stats::get(&stats.readings_accepted) < n as u64 * 3 {
            assert!(Instant::now() < deadline, "no readings after 120 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stats.opcua_lateness.reset();
        let (values0, readings0) = (
            Stats::get(&stats.opcua_notifications),
            Stats::get(&stats.readings_accepted),
        );
        let (cpu0, _, _) = common::usage(std::process::id());
        let (scpu0, _, _) = common::usage(server_pid);
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        let wall = t0.elapsed().as_secs_f64();
        let (cpu1, rss, hwm) = common::usage(std::process::id());
        let (scpu1, _, _) = common::usage(server_pid);
        let values = Stats::get(&stats.opcua_notifications) - values0;
        let readings = Stats::get(&stats.readings_accepted) - readings0;
        let q = |x| {
            stats
                .opcua_lateness
                .quantile_us(x)
                .map_or("-".into(), |v| format!("≤ {:.0} ms", v as f64 / 1000.0))
        };
        println!(
            "opcua: {n} stations × 10 nodes at 1 s on one server for {wall:.0} s: {values} values ({:.0}/s, {:.1} % of schedule), \
             {readings} readings ({:.0}/s); notification lateness p50 {} p99 {} max {:.0} ms; \
             engine CPU {:.0} % of a core, RSS {rss:.0} MiB (peak {hwm:.0} MiB); server (asyncua) CPU {:.0} %; rejected {}",
            values as f64 / wall,
            values as f64 / (wall * n as f64 * 10.0) * 100.0,
            readings as f64 / wall,
            q(0.5),
            q(0.99),
            Stats::get(&stats.opcua_lateness.max_us) as f64 / 1000.0,
            (cpu1 - cpu0) / wall * 100.0,
            (scpu1 - scpu0) / wall * 100.0,
            Stats::get(&stats.readings_rejected),
        );
        engine.shutdown().await;
    });
    let _ = server.kill();
    let _ = server.wait();
}
