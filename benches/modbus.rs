//! Modbus polling at scale: one engine polls N simulated PLCs (default 2,000) at a 1 s interval
//! and reports the poll-cycle lateness (p50/p99/max), the cycles that read, the engine's CPU and
//! memory. The simulator runs as its own process (`heatgrid-sim --modbus-base-port`) on the
//! same machine, so both share its cores, as they would on a small box.
//!
//! `cargo build --release -p heatgrid-sim && cargo bench --bench modbus` (benches/run.sh does
//! both). Environment: `HEATGRID_BENCH_STATIONS` (2000), `HEATGRID_BENCH_SECONDS` (60),
//! `HEATGRID_BENCH_BASE_PORT` (31000: N consecutive ports must be free),
//! `HEATGRID_BENCH_FAULTY=1` makes one PLC dead and one refusing (the isolation figure),
//! `HEATGRID_BENCH_MAP=scattered` maps only 8 of the simulator's 13 readings, in four blocks
//! with gaps of 1–4 registers (a controller with scattered parameters), and
//! `HEATGRID_BENCH_MAX_GAP` (the engine's default, 10) sets how far reads coalesce across
//! them: 0 gives one request per block, 10 one request per poll.
//! A benchmark, not a test: the figures go to docs/performance.md.

#[allow(dead_code)] // each bench uses part of it
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use heatgrid::config::Config;
use heatgrid::stats::Stats;

fn main() {
    let n: usize = common::env("HEATGRID_BENCH_STATIONS", 2000);
    let seconds: f64 = common::env("HEATGRID_BENCH_SECONDS", 60.0);
    let base: u16 = common::env("HEATGRID_BENCH_BASE_PORT", 31000);
    let faulty = std::env::var("HEATGRID_BENCH_FAULTY").is_ok_and(|v| v == "1");
    let scattered = std::env::var("HEATGRID_BENCH_MAP").is_ok_and(|v| v == "scattered");
    let max_gap: u16 = common::env("HEATGRID_BENCH_MAX_GAP", 10);
    let root = env!("CARGO_MANIFEST_DIR");
    let sim_bin = format!("{root}/target/release/heatgrid-sim");
    assert!(
        std::path::Path::new(&sim_bin).exists(),
        "build the simulator first: cargo build --release -p heatgrid-sim"
    );
    let mut args = vec![
        "-n".to_owned(),
        n.to_string(),
        "--id-prefix".into(),
        "plc-".into(),
        "--modbus-base-port".into(),
        base.to_string(),
    ];
    if faulty {
        args.extend(["--modbus-dead", "plc-004", "--modbus-refuse", "plc-009"].map(String::from));
    }
    let mut sim = Command::new(&sim_bin)
        .args(&args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start heatgrid-sim");

    let dir = tempfile::tempdir().unwrap();
    let mut map = format!("{root}/config/modbus/heatgrid-sim.toml");
    if scattered {
        // The simulator's map without area (4–5), indoor (7) and the primary side (10–13):
        // input blocks 0–3, 6, 8–9, 14–17.
        let full = std::fs::read_to_string(&map).unwrap();
        let mut parts = full.split("[[register]]");
        let mut text = parts.next().unwrap_or_default().to_owned();
        for reg in parts {
            let dropped = ["heated_area_m2", "indoor_temp_c", "primary_"]
                .iter()
                .any(|f| reg.contains(&format!("field = \"{f}")));
            if !dropped {
                text.push_str("[[register]]");
                text.push_str(reg);
            }
        }
        map = dir.path().join("scattered.toml").display().to_string();
        std::fs::write(&map, text).unwrap();
    }
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = 5\nstaleness_s = 30\n\
         [mqtt]\nport = 1\n[api]\nlisten = \"\"\n",
        dir.path().display().to_string()
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[station]]\nid = \"plc-{:03}\"\nheated_area_m2 = 80000\nmodbus = {{ address = \"127.0.0.1:{}\", map = {map:?}, poll_interval_s = 1, timeout_ms = 500, max_gap = {max_gap} }}\n",
            i + 1,
            base as usize + i
        ));
    }
    let cfg = Config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e:#?}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // The simulator warms its plants up (6 simulated hours) before it listens.
        let last = format!("127.0.0.1:{}", base as usize + n - 1);
        let deadline = Instant::now() + Duration::from_secs(300);
        while tokio::net::TcpStream::connect(&last).await.is_err() {
            assert!(Instant::now() < deadline, "heatgrid-sim never listened on {last}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let engine = heatgrid::app::start(cfg).await.unwrap();
        let stats = engine.stats().clone();
        // Warm-up: connections, first cycles. Then measure from a clean histogram.
        tokio::time::sleep(Duration::from_secs(10)).await;
        stats.modbus_lateness.reset();
        let (polls0, fails0) = (
            Stats::get(&stats.modbus_polls),
            Stats::get(&stats.modbus_poll_failures),
        );
        let requests0: u64 = engine
            .modbus_counters()
            .iter()
            .map(|(_, c)| c.read_requests.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let (cpu0, _, _) = common::usage(std::process::id());
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        let wall = t0.elapsed().as_secs_f64();
        let (cpu1, rss, hwm) = common::usage(std::process::id());
        let requests: u64 = engine
            .modbus_counters()
            .iter()
            .map(|(_, c)| c.read_requests.load(std::sync::atomic::Ordering::Relaxed))
            .sum::<u64>()
            - requests0;
        let per_poll: u64 = engine
            .modbus_counters()
            .iter()
            .map(|(_, c)| c.requests_per_poll.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let polls = Stats::get(&stats.modbus_polls) - polls0;
        let fails = Stats::get(&stats.modbus_poll_failures) - fails0;
        let q = |x| {
            stats
                .modbus_lateness
                .quantile_us(x)
                .map_or("-".into(), |v| format!("≤ {:.1} ms", v as f64 / 1000.0))
        };
        println!(
            "modbus: {n} stations at 1 s{} for {wall:.0} s: {polls} polls ok ({:.0}/s, {:.2} % of schedule), \
             {fails} failed; lateness p50 {} p99 {} max {:.1} ms; engine CPU {:.0} % of a core, RSS {rss:.0} MiB (peak {hwm:.0} MiB); \
             writes {}; map {}, max_gap {max_gap}: {:.2} read requests per poll ({:.0}/s)",
            if faulty { " (1 dead, 1 refusing)" } else { "" },
            polls as f64 / wall,
            polls as f64 / (wall * n as f64) * 100.0,
            q(0.5),
            q(0.99),
            Stats::get(&stats.modbus_lateness.max_us) as f64 / 1000.0,
            (cpu1 - cpu0) / wall * 100.0,
            Stats::get(&stats.modbus_writes),
            if scattered { "scattered" } else { "heatgrid-sim" },
            per_poll as f64 / n as f64,
            requests as f64 / wall,
        );
        engine.shutdown().await;
    });
    let _ = sim.kill();
    let _ = sim.wait();
}
