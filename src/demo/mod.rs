//! `heatgrid demo`: the whole closed loop in one process, with nothing to install.
//!
//! Starts an embedded MQTT broker (rumqttd, on its own thread: `Broker::start` blocks and has no
//! stop), the station simulator (accelerated) — MQTT stations plus a few Modbus TCP PLCs served
//! from the shipped register map — and the engine with local-file storage, all on loopback.
//! Shows a live per-station summary; with `--duration` it ends with a summary table and exits 1 if any station's supply was not within ±1 K of its setpoint over the last quarter of
//! the run (the settling check).

mod broker;
mod controller;
pub mod diagnosis;
mod error;
pub mod network;
pub mod report;
pub mod scenario;
pub mod score;
mod setup;
pub mod watch;

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::app::EngineHandle;
use crate::control::status::StationStatus;
use crate::stats::Stats;

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

pub use broker::{start_embedded_broker, BrokerPorts};
use error::io;
pub use error::DemoError;
pub use setup::{demo_config, DEMO_TOKEN};

/// What runs during the demo.
struct Running {
    engine: EngineHandle,
    sim: heatgrid_sim::SimHandle,
    plcs: Option<heatgrid_sim::SimHandle>,
    /// The PLCs' Modbus addresses.
    plc_count: usize,
}

/// Per station (config order): the largest |supply − setpoint| over the settling window, and
/// how many samples it saw.
struct Settling {
    worst: Vec<f64>,
    samples: Vec<u32>,
}

pub async fn run(args: DemoArgs) -> Result<ExitCode, DemoError> {
    if args.stations < 1 {
        return Err(DemoError::Args("--stations must be at least 1"));
    }
    if !(args.speed > 0.0 && args.speed <= 1000.0) {
        return Err(DemoError::Args("--speed must be within 0..1000"));
    }
    let running = start(&args).await?;
    let settling = watch(&args, &running).await;
    Ok(finish(&args, running, settling).await)
}

/// Starts the broker, the PLCs, the engine and the MQTT stations, and says where they are.
async fn start(args: &DemoArgs) -> Result<Running, DemoError> {
    let port = start_embedded_broker().await?.v311;
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
        .map_err(io(format!("cannot create {}", args.data_dir.display())))?;
    let map = args.data_dir.join("heatgrid-sim.modbus.toml");
    std::fs::write(&map, heatgrid_sim::DEFAULT_MAP)
        .map_err(io(format!("cannot write {}", map.display())))?;
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
    let engine = crate::app::start(cfg).await?;
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
        eprintln!("web control room: http://{addr}/   (sign in with the token {DEMO_TOKEN})");
        eprintln!(
            "operator API: HEATGRID_API=http://{addr} HEATGRID_TOKEN={DEMO_TOKEN} heatgrid stations   (also: status, station st-001, set, mode)"
        );
    }
    Ok(Running {
        engine,
        sim,
        plcs,
        plc_count: addrs.len(),
    })
}

/// Shows the live table until `--duration` or Ctrl-C, sampling each station's error over the
/// last quarter of the run.
async fn watch(args: &DemoArgs, r: &Running) -> Settling {
    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let window_from = args.duration.map(|d| d * 0.75);
    let total = args.stations + r.plc_count;
    let mut s = Settling {
        worst: vec![0.0; total],
        samples: vec![0; total],
    };
    let mut sample = tokio::time::interval(Duration::from_millis(250));
    let mut last_print = Instant::now() - Duration::from_secs(60);
    let every = Duration::from_secs(if tty { 1 } else { 10 });
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
        let status = r.engine.status();
        if window_from.is_some_and(|w| elapsed >= w) {
            for (i, st) in status.iter().enumerate().take(total) {
                // A station without a fresh reading and an output counts as not settled.
                let err = error_k(st).unwrap_or(f64::INFINITY);
                s.worst[i] = s.worst[i].max(err);
                s.samples[i] += 1;
            }
        }
        if last_print.elapsed() >= every {
            last_print = Instant::now();
            let mut views = r.sim.snapshot();
            views.extend(r.plcs.iter().flat_map(|p| p.snapshot()));
            let table = render(&status, &views, r.sim.sim_time_s());
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
    s
}

/// Stops everything, prints the final table and the closing figures, and judges settling.
async fn finish(args: &DemoArgs, r: Running, s: Settling) -> ExitCode {
    let final_status = r.engine.status();
    let mut final_sim = r.sim.stop().await;
    if let Some(p) = r.plcs {
        final_sim.extend(p.stop().await);
    }
    let stats = r.engine.stats().clone();
    r.engine.shutdown().await;

    println!("\nFinal state:");
    print!("{}", render(&final_status, &final_sim, 0.0));
    println!(
        "readings accepted {}, rejected {}, commands sent {}, points stored {}, refused by the spool {}",
        Stats::get(&stats.readings_accepted),
        Stats::get(&stats.readings_rejected),
        Stats::get(&stats.commands_sent),
        Stats::get(&stats.store_written),
        Stats::get(&stats.spool_refused),
    );
    if args.duration.is_none() {
        return ExitCode::SUCCESS;
    }
    let mut failed = Vec::new();
    for (i, st) in final_status.iter().enumerate() {
        if s.samples[i] == 0 || s.worst[i] > args.band_k {
            failed.push(format!(
                "{} (worst |supply − setpoint| {:.2} K)",
                st.id, s.worst[i]
            ));
        }
    }
    let max = s.worst.iter().copied().fold(0.0, f64::max);
    if failed.is_empty() {
        println!(
            "Settled: all {} stations within ±{} K of setpoint over the last quarter of the run (worst {max:.2} K).",
            final_status.len(),
            args.band_k
        );
        ExitCode::SUCCESS
    } else {
        println!("NOT settled: {}", failed.join(", "));
        ExitCode::from(1)
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
