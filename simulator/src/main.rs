//! `heatgrid-sim`: run N simulated stations against an MQTT broker until Ctrl-C.

use std::time::Duration;

use clap::Parser;
use heatgrid_sim::{spawn, SimConfig};

#[derive(Parser, Debug)]
#[command(
    name = "heatgrid-sim",
    version,
    about = "District-heating station simulator (heatgrid MQTT contract)"
)]
struct Args {
    /// MQTT broker host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// MQTT broker port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    #[arg(long, default_value = "heating")]
    topic_prefix: String,
    /// Number of stations (ids st-001, st-002, …).
    #[arg(long, short = 'n', default_value_t = 10)]
    stations: usize,
    #[arg(long, default_value = "st-")]
    id_prefix: String,
    /// Seed for the per-station variation (area, heat index, building time constant).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated seconds per wall-clock second (e.g. 60).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Telemetry period per station, simulated seconds.
    #[arg(long, default_value_t = 5.0)]
    telemetry_period_s: f64,
    /// Daily mean outdoor temperature, °C.
    #[arg(long, default_value_t = -5.0, allow_hyphen_values = true)]
    outdoor_mean_c: f64,
    /// Daily outdoor amplitude, K.
    #[arg(long, default_value_t = 4.0)]
    outdoor_amplitude_k: f64,
    /// Publish a 48 h weather forecast (retained, every simulated hour) on
    /// `{prefix}/weather/forecast`, its error this many K (σ) at 24 h; 0 is exact.
    #[arg(long)]
    forecast_sigma_k: Option<f64>,
    /// Serve the stations as Modbus TCP PLCs instead of MQTT: station n listens on this port
    /// + n − 1 (on --host).
    #[arg(long)]
    modbus_base_port: Option<u16>,
    /// Register map the PLCs serve (default: the shipped config/modbus/heatgrid-sim.toml).
    #[arg(long, requires = "modbus_base_port")]
    modbus_map: Option<std::path::PathBuf>,
    /// Modbus: this station's PLC accepts connections and never answers (repeatable).
    #[arg(long, requires = "modbus_base_port")]
    modbus_dead: Vec<String>,
    /// Modbus: this station's PLC answers every request with exception 2 (repeatable).
    #[arg(long, requires = "modbus_base_port")]
    modbus_refuse: Vec<String>,
    /// Modbus: serve every station as units 1…N behind the one port --modbus-base-port (an
    /// RTU-to-TCP gateway) instead of a port each.
    #[arg(long, requires = "modbus_base_port")]
    modbus_gateway: bool,
    /// With --modbus: serve the stations as units 1…N of one RTU line reached over TCP (a
    /// transparent serial server) instead of a port each.
    #[arg(long)]
    modbus_rtu_over_tcp: bool,
    /// Modbus RTU: serve every station as units 1…N on this serial device (8E1), e.g. one end
    /// of `socat pty,raw,echo=0,link=/tmp/sim pty,raw,echo=0,link=/tmp/engine`.
    #[arg(long, requires = "modbus_base_port")]
    modbus_rtu: Option<String>,
    /// Modbus RTU: the line's baud rate.
    #[arg(long, default_value_t = 9600)]
    modbus_baud: u32,
    /// Stop after this many wall-clock seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration_s: Option<f64>,
    /// Simulated hours of local-only operation before going online (settles the plants).
    #[arg(long, default_value_t = 6.0)]
    warmup_h: f64,
    /// Run this many simulated hours offline, as fast as possible (no broker, no PLC
    /// listener), print how long it took and exit. A benchmark of the plant model.
    #[arg(long)]
    offline_hours: Option<f64>,
    /// With --offline-hours: run this named scenario (winter-day, cold-snap, mild) under the
    /// stations' own control and under the baseline (fixed curve, pump at full speed), and
    /// print both runs' KPIs from the simulator's ground truth.
    #[arg(long, requires = "offline_hours")]
    scenario: Option<String>,
    /// With --scenario: print the two runs as JSON (every station's KPIs) instead of a table.
    #[arg(long, requires = "scenario")]
    json: bool,
    /// Replay this network file (docs/network.md) with --inputs and write the results as CSV
    /// (to --out, or standard output), then exit.
    #[arg(long, requires = "inputs")]
    network: Option<std::path::PathBuf>,
    /// With --network: the inputs CSV (time_s, plant_supply_C, optionally ground_C, and per
    /// station S either S_kg_per_s or S_heat_W, optionally S_delta_T_K).
    #[arg(long, requires = "network")]
    inputs: Option<std::path::PathBuf>,
    /// Write a network file for this many stations (ids from --id-prefix, layout from --seed)
    /// to --out (or standard output), then exit.
    #[arg(long)]
    generate_network: Option<usize>,
    /// Where --network or --generate-network writes.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// With --network: integration step, s.
    #[arg(long, default_value_t = 10.0)]
    step_s: f64,
    /// With --network: cell length of every pipe, m.
    #[arg(long, default_value_t = 1.0)]
    cell_m: f64,
    /// With --network: output interval, s (default: at every input row).
    #[arg(long)]
    every_s: Option<f64>,
    /// With --network: a station's cooling when its inputs give none; with
    /// --generate-network: the design ΔT the pipes are sized for. K.
    #[arg(long, default_value_t = 30.0)]
    delta_t_k: f64,
    /// With --network: the flow a station drawing S_heat_W keeps at zero demand, kg/s.
    #[arg(long, default_value_t = 0.0)]
    bypass_kg_s: f64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let a = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttc=warn")),
        )
        .with_target(false)
        .init();
    if a.network.is_some() || a.generate_network.is_some() {
        return network(&a);
    }
    if !(a.speed > 0.0 && a.telemetry_period_s > 0.0) || a.stations == 0 {
        eprintln!("heatgrid-sim: --speed and --telemetry-period-s must be positive and --stations at least 1");
        return std::process::ExitCode::from(2);
    }
    if let (Some(hours), Some(name)) = (a.offline_hours, &a.scenario) {
        let Some(scenario) = heatgrid_sim::scenario::Scenario::parse(name) else {
            eprintln!("heatgrid-sim: unknown scenario {name:?} (winter-day, cold-snap, mild)");
            return std::process::ExitCode::from(2);
        };
        return run_scenario(&a, scenario, hours);
    }
    if let Some(hours) = a.offline_hours {
        return run_offline(&a, hours);
    }
    let modbus = match modbus_settings(&a) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("heatgrid-sim: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let sim = spawn(SimConfig {
        modbus,
        host: a.host,
        port: a.port,
        topic_prefix: a.topic_prefix,
        stations: a.stations,
        id_prefix: a.id_prefix,
        seed: a.seed,
        speed: a.speed,
        telemetry_period_s: a.telemetry_period_s,
        outdoor_mean_c: a.outdoor_mean_c,
        outdoor_amplitude_k: a.outdoor_amplitude_k,
        warmup_h: a.warmup_h,
        forecast: a
            .forecast_sigma_k
            .map(|k| heatgrid_sim::forecast::ForecastError {
                sigma_24h_k: k.max(0.0),
                ..heatgrid_sim::forecast::ForecastError::EXACT
            }),
        ..SimConfig::default()
    })
    .await;
    let until = async {
        match a.duration_s {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(until);
    let mut report = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = &mut until => break,
            _ = report.tick() => {
                let snap = sim.snapshot();
                let engine = snap.iter().filter(|s| s.engine_in_control).count();
                let published: u64 = snap.iter().map(|s| s.published).sum();
                tracing::info!(sim_time_h = format!("{:.2}", sim.sim_time_s() / 3600.0), published,
                    publish_failures = sim.publish_failures(), engine_controlled = engine,
                    local = snap.len() - engine, "Simulator status.");
            }
        }
    }
    print_fleet(&sim.stop().await);
    std::process::ExitCode::SUCCESS
}

/// `--network FILE --inputs CSV` (replay) or `--generate-network N`: no broker, no fleet.
fn network(a: &Args) -> std::process::ExitCode {
    use heatgrid_sim::network::{file, replay};
    let fail = |e: String| {
        eprintln!("heatgrid-sim: {e}");
        std::process::ExitCode::from(2)
    };
    let text = if let Some(n) = a.generate_network {
        let f = file::generate(n.max(1), &a.id_prefix, a.seed, a.delta_t_k);
        match serde_json::to_string_pretty(&f) {
            Ok(t) => t + "\n",
            Err(e) => return fail(e.to_string()),
        }
    } else {
        let (Some(path), Some(inputs)) = (&a.network, &a.inputs) else {
            return fail("--network needs --inputs".into());
        };
        let f = match file::NetworkFile::read(path) {
            Ok(f) => f,
            Err(e) => return fail(e),
        };
        let csv = match std::fs::read_to_string(inputs) {
            Ok(c) => c,
            Err(e) => return fail(format!("{}: {e}", inputs.display())),
        };
        let o = replay::ReplayOptions {
            step_s: a.step_s,
            cell_m: a.cell_m,
            every_s: a.every_s,
            delta_t_k: a.delta_t_k,
            bypass_kg_s: a.bypass_kg_s,
        };
        match replay::replay(&f, &csv, &o) {
            Ok(t) => t,
            Err(e) => return fail(e),
        }
    };
    match &a.out {
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => fail(format!("{}: {e}", path.display())),
        },
        None => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
    }
}

/// `--offline-hours` without a scenario: the fleet at full speed, no I/O, timed.
fn run_offline(a: &Args, hours: f64) -> std::process::ExitCode {
    let cfg = SimConfig {
        stations: a.stations,
        seed: a.seed,
        telemetry_period_s: a.telemetry_period_s,
        outdoor_mean_c: a.outdoor_mean_c,
        outdoor_amplitude_k: a.outdoor_amplitude_k,
        warmup_h: a.warmup_h,
        ..SimConfig::default()
    };
    let t0 = std::time::Instant::now();
    let run = cfg.run_offline(hours);
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "{} stations, {hours} h simulated (+{} h warm-up) in {wall:.2} s wall: {} station-steps, \
         {} telemetry payloads ({} bytes), {:.0}x real time",
        a.stations,
        a.warmup_h,
        run.station_steps,
        run.messages,
        run.payload_bytes,
        (hours + a.warmup_h) * 3600.0 / wall
    );
    std::process::ExitCode::SUCCESS
}

/// `--modbus-base-port`: the stations as Modbus TCP PLCs with the given (or shipped) map and
/// the faults asked for.
fn modbus_settings(a: &Args) -> Result<Option<heatgrid_sim::SimModbus>, String> {
    let Some(port) = a.modbus_base_port else {
        return Ok(None);
    };
    let map = match &a.modbus_map {
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?
        }
        None => heatgrid_sim::DEFAULT_MAP.to_owned(),
    };
    let dead = a
        .modbus_dead
        .iter()
        .map(|id| (id.clone(), heatgrid_sim::ModbusFault::Dead));
    let refuse = a
        .modbus_refuse
        .iter()
        .map(|id| (id.clone(), heatgrid_sim::ModbusFault::Refuse));
    Ok(Some(heatgrid_sim::SimModbus {
        host: a.host.clone(),
        base_port: port,
        map,
        faults: dead.chain(refuse).collect(),
        rtu: a.modbus_rtu.clone().map(|p| (p, a.modbus_baud)),
        gateway: a.modbus_gateway,
        rtu_over_tcp: a.modbus_rtu_over_tcp,
        record_reads: false,
    }))
}

/// The fleet at the end of a live run, one row per station.
fn print_fleet(snap: &[heatgrid_sim::StationView]) {
    println!(
        "{:<10} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8}",
        "station", "supply", "return", "indoor", "valve", "pump", "control"
    );
    for s in snap {
        println!(
            "{:<10} {:>8.2} {:>8.2} {:>8.2} {:>7.1} {:>7.1} {:>8}",
            s.id,
            s.supply_c,
            s.return_c,
            s.indoor_c,
            s.valve_pct,
            s.pump_pct,
            if s.engine_in_control {
                "engine"
            } else {
                "local"
            }
        );
    }
}

/// `--scenario`: the scenario under local control and under the baseline, KPIs side by side.
fn run_scenario(
    a: &Args,
    scenario: heatgrid_sim::scenario::Scenario,
    hours: f64,
) -> std::process::ExitCode {
    use heatgrid_sim::scenario::{run, Policy};
    let cfg = SimConfig {
        stations: a.stations,
        seed: a.seed,
        telemetry_period_s: a.telemetry_period_s,
        warmup_h: a.warmup_h,
        ..SimConfig::default()
    };
    let runs = [
        run(&cfg, scenario, hours, Policy::Baseline),
        run(&cfg, scenario, hours, Policy::Local),
    ];
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).unwrap_or_default()
        );
        return std::process::ExitCode::SUCCESS;
    }
    println!(
        "scenario {} · {} stations · seed {} · {hours} h · {:.2} degree-days (base 18 °C)",
        scenario.name(),
        a.stations,
        a.seed,
        runs[0].degree_days
    );
    println!(
        "{:<10} {:>10} {:>12} {:>10} {:>9} {:>8} {:>8} {:>10}",
        "policy", "heat GJ", "GJ/degree-day", "pump h", "18-22 °C", "<18 °C", ">22 °C", "supply±1K"
    );
    for r in &runs {
        println!(
            "{:<10} {:>10.1} {:>12.2} {:>10.1} {:>8.1}% {:>7.1}% {:>7.1}% {:>9.1}%",
            r.policy,
            r.heat_gj,
            r.heat_gj_per_degree_day,
            r.pump_full_speed_h,
            r.indoor_comfort * 100.0,
            r.indoor_under * 100.0,
            r.indoor_over * 100.0,
            r.supply_within_1k * 100.0
        );
    }
    std::process::ExitCode::SUCCESS
}
