//! `heatgrid demo`: the whole closed loop in one process, with nothing to install.
//!
//! Starts an embedded MQTT broker (rumqttd, on its own thread: `Broker::start` blocks and has no
//! stop), the station simulator (accelerated) — MQTT stations plus a few Modbus TCP PLCs served
//! from the shipped register map — and the engine with local-file storage, all on loopback. Shows a live per-station summary; with `--duration` it ends with a summary table and
//! exits 1 if any station's supply was not within ±1 K of its setpoint over the last quarter of
//! the run (the settling check).

pub mod report;
pub mod scenario;

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::app;
use crate::config::Config;
use crate::control::status::StationStatus;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Number of simulated stations.
    #[arg(long, default_value_t = 10)]
    pub stations: usize,
    /// Stop after this many seconds, print a summary and exit non-zero if a station did not
    /// settle within ±1 K. Without it the demo runs until Ctrl-C.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Simulated seconds per wall-clock second.
    #[arg(long, default_value_t = 20.0)]
    pub speed: f64,
    /// Where the engine keeps seq numbers and the line-protocol files of the run.
    #[arg(long, default_value = "heatgrid-demo-data")]
    pub data_dir: PathBuf,
    /// Seed of the simulated fleet.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Daily mean outdoor temperature, °C.
    #[arg(long, default_value_t = -5.0, allow_hyphen_values = true)]
    pub outdoor_mean_c: f64,
    /// Settling band, K.
    #[arg(long, default_value_t = 1.0)]
    pub band_k: f64,
    /// How many more stations are Modbus TCP PLCs (ids plc-001…), polled by the same engine.
    #[arg(long, default_value_t = 2)]
    pub modbus_stations: usize,
}

/// Loopback ports of the embedded broker.
#[derive(Debug, Clone, Copy)]
pub struct BrokerPorts {
    pub v311: u16,
    pub v5: u16,
}

/// Starts rumqttd on free loopback ports (one listener for MQTT 3.1.1, one for 5) and waits
/// until both accept connections.
pub fn start_embedded_broker() -> anyhow::Result<BrokerPorts> {
    let free =
        || -> anyhow::Result<u16> { Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
    let (v4, v5) = (free()?, free()?);
    let text = format!(
        r#"
id = 0
[router]
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{v4}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 100
dynamic_filters = true

[v5.1]
name = "v5-1"
listen = "127.0.0.1:{v5}"
next_connection_delay_ms = 1
[v5.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&text).context("embedded broker config")?;
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "Embedded MQTT broker stopped.");
            }
        })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in [v4, v5] {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "embedded MQTT broker did not start on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(BrokerPorts { v311: v4, v5 })
}

/// The operator token of the demo's API (printed at start; the demo is loopback-only).
pub const DEMO_TOKEN: &str = "heatgrid-demo-operator-token";

/// The engine configuration of the demo: `n` MQTT stations `st-001…` and one Modbus station
/// `plc-001…` per address in `plcs` (register map at `map`), local files, accelerated, the
/// operator API on `api_listen` with [`DEMO_TOKEN`].
pub fn demo_config(
    n: usize,
    port: u16,
    speed: f64,
    data_dir: &std::path::Path,
    api_listen: &str,
    plcs: &[SocketAddr],
    map: &std::path::Path,
) -> anyhow::Result<Config> {
    let tick_s = 5.0 / speed; // 5 simulated seconds per tick
    let mut text = format!(
        r#"
[engine]
data_dir = {dir:?}
tick_s = {tick_s}
staleness_s = {stale}
command_valid_for_s = 30
time_scale = {speed}
[mqtt]
port = {port}
client_id = "heatgrid-demo-engine"
[storage]
flush_interval_ms = 500
[coordinator]
enabled = true
period_s = 300
indoor_target_c = 20.0
[api]
listen = "{api_listen}"
[[api.token]]
name = "demo"
role = "operator"
token_sha256 = "{token_hash}"
"#,
        token_hash = crate::api::auth::sha256(DEMO_TOKEN.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        dir = data_dir.display().to_string(),
        stale = (30.0 / speed).max(2.0),
    );
    for i in 1..=n {
        let _ = writeln!(
            text,
            "[[station]]\nid = \"st-{i:03}\"\ntags = {{ district = \"{}\" }}",
            ["north", "south", "east", "west"][i % 4]
        );
    }
    for (i, addr) in plcs.iter().enumerate() {
        let _ = writeln!(
            text,
            "[[station]]\nid = \"plc-{:03}\"\ntags = {{ district = \"plc\" }}\n\
             modbus = {{ address = \"{addr}\", map = {:?}, poll_interval_s = {}, timeout_ms = {} }}",
            i + 1,
            map.display().to_string(),
            tick_s,
            (tick_s * 600.0) as u64,
        );
    }
    Config::parse(&text, &|_| None).map_err(|e| anyhow::anyhow!("demo config: {}", e.join("; ")))
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.stations >= 1, "--stations must be at least 1");
    anyhow::ensure!(
        args.speed > 0.0 && args.speed <= 1000.0,
        "--speed must be within 0..1000"
    );
    let port = start_embedded_broker()?.v311;
    // The CLI's default address if it is free, else any free port.
    let api_listen = if TcpListener::bind("127.0.0.1:8080").is_ok() {
        "127.0.0.1:8080"
    } else {
        "127.0.0.1:0"
    };
    // The Modbus PLCs listen first: the engine's config names their addresses.
    let plcs = if args.modbus_stations > 0 {
        Some(
            heatgrid_sim::spawn(heatgrid_sim::SimConfig {
                stations: args.modbus_stations,
                id_prefix: "plc-".into(),
                seed: args.seed + 1000,
                speed: args.speed,
                outdoor_mean_c: args.outdoor_mean_c,
                modbus: Some(heatgrid_sim::SimModbus::default()),
                ..heatgrid_sim::SimConfig::default()
            })
            .await,
        )
    } else {
        None
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let map = args.data_dir.join("heatgrid-sim.modbus.toml");
    std::fs::write(&map, heatgrid_sim::DEFAULT_MAP)
        .with_context(|| format!("cannot write {}", map.display()))?;
    let addrs = plcs
        .as_ref()
        .map(|p| p.modbus_addrs().to_vec())
        .unwrap_or_default();
    let cfg = demo_config(
        args.stations,
        port,
        args.speed,
        &args.data_dir,
        api_listen,
        &addrs,
        &map,
    )?;
    let engine = app::start(cfg).await?;
    // Telemetry published before the engine's subscriptions exist would reach nobody.
    if !engine.wait_subscribed(Duration::from_secs(10)).await {
        tracing::warn!("The engine's MQTT subscriptions were not confirmed within 10 s.");
    }
    let sim = heatgrid_sim::spawn(heatgrid_sim::SimConfig {
        port,
        stations: args.stations,
        seed: args.seed,
        speed: args.speed,
        outdoor_mean_c: args.outdoor_mean_c,
        ..heatgrid_sim::SimConfig::default()
    })
    .await;
    eprintln!(
        "heatgrid demo: {} MQTT stations (broker 127.0.0.1:{port}) + {} Modbus TCP PLCs ({}), simulator at {}x, storage {}",
        args.stations,
        addrs.len(),
        addrs
            .first()
            .map(|a| format!("from {a}"))
            .unwrap_or_else(|| "none".into()),
        args.speed,
        args.data_dir.join("lp").display()
    );
    if let Some(addr) = engine.api_addr() {
        eprintln!(
            "operator API: HEATGRID_API=http://{addr} HEATGRID_TOKEN={DEMO_TOKEN} heatgrid stations   (also: status, station st-001, set, mode)"
        );
    }

    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let window_from = args.duration.map(|d| d * 0.75);
    let total = args.stations + addrs.len();
    let mut worst: Vec<f64> = vec![0.0; total];
    let mut samples: Vec<u32> = vec![0; total];
    let mut sample = tokio::time::interval(Duration::from_millis(250));
    let mut last_print = Instant::now() - Duration::from_secs(60);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = sample.tick() => {}
            _ = &mut ctrl_c => break,
        }
        let elapsed = started.elapsed().as_secs_f64();
        if args.duration.is_some_and(|d| elapsed >= d) {
            break;
        }
        let status = engine.status();
        if window_from.is_some_and(|w| elapsed >= w) {
            for (i, st) in status.iter().enumerate().take(total) {
                // A station without a fresh reading and an output counts as not settled.
                let err = error_k(st).unwrap_or(f64::INFINITY);
                worst[i] = worst[i].max(err);
                samples[i] += 1;
            }
        }
        let every = if tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        if last_print.elapsed() >= every {
            last_print = Instant::now();
            let mut views = sim.snapshot();
            views.extend(plcs.iter().flat_map(|p| p.snapshot()));
            let table = render(&status, &views, sim.sim_time_s());
            if tty {
                print!("\x1b[2J\x1b[H");
            }
            println!(
                "heatgrid demo, {elapsed:.0} s{}",
                args.duration
                    .map(|d| format!(" of {d:.0} s"))
                    .unwrap_or_default()
            );
            print!("{table}");
        }
    }
    let final_status = engine.status();
    let mut final_sim = sim.stop().await;
    if let Some(p) = plcs {
        final_sim.extend(p.stop().await);
    }
    let stats = engine.stats().clone();
    engine.shutdown().await;

    println!("\nFinal state:");
    print!("{}", render(&final_status, &final_sim, 0.0));
    use crate::stats::Stats;
    println!(
        "readings accepted {}, rejected {}, commands sent {}, points stored {}, refused by the spool {}",
        Stats::get(&stats.readings_accepted),
        Stats::get(&stats.readings_rejected),
        Stats::get(&stats.commands_sent),
        Stats::get(&stats.store_written),
        Stats::get(&stats.spool_refused),
    );
    let Some(_) = args.duration else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut failed = Vec::new();
    for (i, st) in final_status.iter().enumerate() {
        if samples[i] == 0 || worst[i] > args.band_k {
            failed.push(format!(
                "{} (worst |supply − setpoint| {:.2} K)",
                st.id, worst[i]
            ));
        }
    }
    let max = worst.iter().copied().fold(0.0, f64::max);
    if failed.is_empty() {
        println!(
            "Settled: all {} stations within ±{} K of setpoint over the last quarter of the run (worst {max:.2} K).",
            final_status.len(),
            args.band_k
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("NOT settled: {}", failed.join(", "));
        Ok(ExitCode::from(1))
    }
}

/// |supply − setpoint| of a station that is being controlled on fresh data.
fn error_k(st: &StationStatus) -> Option<f64> {
    if st.stale {
        return None;
    }
    Some((st.reading.as_ref()?.supply_temp_c - st.outputs?.supply_setpoint_c).abs())
}

fn render(status: &[StationStatus], sim: &[heatgrid_sim::StationView], sim_time_s: f64) -> String {
    let mut s = String::new();
    if sim_time_s > 0.0 {
        let _ = writeln!(s, "simulated time {:.1} h", sim_time_s / 3600.0);
    }
    let _ = writeln!(
        s,
        "{:<8} {:>7} {:>7} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6} {:>8} {:>6}",
        "station",
        "supply",
        "setpt",
        "error",
        "valve",
        "pump",
        "flow",
        "flowsp",
        "indoor",
        "district",
        "state"
    );
    for st in status {
        let r = st.reading.as_ref();
        let o = st.outputs.as_ref();
        let indoor = sim
            .iter()
            .find(|v| v.id == st.id.as_str())
            .map(|v| v.indoor_c);
        let f =
            |x: Option<f64>, p: usize| x.map(|v| format!("{v:.p$}")).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "{:<8} {:>7} {:>7} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6} {:>8} {:>6}",
            st.id.as_str(),
            f(r.map(|r| r.supply_temp_c), 2),
            f(o.map(|o| o.supply_setpoint_c), 2),
            f(error_k(st), 2),
            f(o.map(|o| o.valve_pct), 1),
            f(o.map(|o| o.pump_pct), 1),
            f(r.map(|r| r.flow_m3h), 0),
            f(o.map(|o| o.flow_setpoint_m3h), 0),
            f(indoor, 1),
            format!("{:+.2}", st.district_offset_k),
            if st.stale { "STALE" } else { st.mode.as_str() },
        );
    }
    s
}
