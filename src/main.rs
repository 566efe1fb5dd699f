//! `heatgrid`: the engine and operator binary. Thin: parse flags, init logs, run, map errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use heatgrid::config::{self, Config};

#[derive(Parser, Debug)]
#[command(
    name = "heatgrid",
    version,
    about = "District-heating telemetry and control engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    remote: heatgrid::cli::Remote,
    /// Log lines as text, or as JSON objects one per line (for journald and log shippers).
    /// Default: `[engine] log_format` for `run`, else text.
    #[arg(long, env = "HEATGRID_LOG_FORMAT", global = true, value_enum)]
    log_format: Option<LogFormat>,
}

/// How log lines are written on stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the engine with a configuration file.
    Run {
        #[arg(long, short, env = "HEATGRID_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file and print every error with its place.
    Check {
        #[arg(long, short, env = "HEATGRID_CONFIG")]
        config: PathBuf,
    },
    /// Write the annotated example configuration (to stdout, or to FILE).
    #[command(alias = "generate-config")]
    Init {
        /// Where to write it; refuses to overwrite an existing file.
        file: Option<PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout (`heatgrid man | man -l -`), or write one page
    /// per verb (heatgrid.1, heatgrid-run.1, …) into DIR.
    Man {
        /// Where to write every page; it must exist.
        dir: Option<PathBuf>,
    },
    /// Operator verbs against a running engine (status, stations, station, set, mode).
    #[command(flatten)]
    Operator(heatgrid::cli::Verb),
    /// Zero-setup demonstration: embedded broker, simulated stations, engine, local storage.
    #[cfg(feature = "demo")]
    Demo(heatgrid::demo::DemoArgs),
    /// Run a simulator scenario offline five times — the baseline (fixed curve, pump at full
    /// speed), the stations' own curve, heatgrid's controllers, those with the district
    /// coordinator, and with predictive control as well — and compare heat, pump energy and comfort from the simulator's ground
    /// truth.
    #[cfg(feature = "demo")]
    Scenario(ScenarioArgs),
}

/// `heatgrid scenario`'s arguments.
#[cfg(feature = "demo")]
#[derive(clap::Args, Debug)]
struct ScenarioArgs {
    /// winter-day, cold-snap, mild, fortnight or fortnight-sun; or `diagnosis`: the station diagnosis
    /// measured on faults injected into a fleet over the fortnight (docs/diagnosis.md); or
    /// `network`: the centre's plant loop scored on a generated primary network in the
    /// `--weather` scenario (docs/network.md).
    name: String,
    /// `network`: the weather (a scenario name).
    #[arg(long, default_value = "fortnight")]
    weather: String,
    /// `network`: no hot-water draws and no night setback (space heating only).
    #[arg(long)]
    no_peaks: bool,
    #[arg(long, default_value_t = 100)]
    stations: usize,
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    /// Hours each policy drives the fleet before the measured hours (the buildings take
    /// days to follow a policy).
    #[arg(long, default_value_t = 72.0)]
    lead_hours: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A disturbance on the first tenth of the fleet: comms-loss (08:00–14:00),
    /// sensor-drift (supply sensor +0.5 K/h from 06:00), area-change (+30 % heated area at
    /// 12:00), undersized-hx (half the exchanger's UA) or gains (3 W/m² internal, sun up to
    /// 12 W/m² 08:00–16:00).
    #[arg(long, default_value = "none")]
    disturbance: String,
    /// balanced (radiators and buildings as designed) or unbalanced (radiators 75–135 %
    /// of design, buildings ±5 %: some stations overheat on the common curve, some stay
    /// cold).
    #[arg(long, default_value = "balanced")]
    fleet: String,
    /// The coordinator aims every station at the heat the weather asks for at this indoor
    /// temperature (°C); 0 makes it equalise heat per design m² on the district's mean.
    #[arg(long, default_value_t = 20.0)]
    indoor_target: f64,
    /// Let heatgrid see each station's representative indoor temperature (the coordinator
    /// then steers on it); by default it is withheld, as most stations have no such sensor.
    #[arg(long)]
    indoor_sensor: bool,
    /// The forecast the predictive run plans on: realistic (σ 1.5 K at 24 h), exact,
    /// persistence (the temperature now, held: no forecast) or no-sun (exact temperatures
    /// without the sun).
    #[arg(long, default_value = "realistic")]
    forecast: String,
    /// Also run the predictive policy on the other forecasts, splitting its saving into
    /// its sources.
    #[arg(long)]
    split: bool,
    /// The comfort floor the predictive policy holds, °C (its `indoor_min_c`).
    #[arg(long, default_value_t = 20.0)]
    indoor_floor: f64,
    /// Every run with every station's KPIs, as JSON.
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report with charts to this file.
    #[arg(long)]
    html: Option<PathBuf>,
    /// `diagnosis`: simulated days per run.
    #[arg(long, default_value_t = 14.0)]
    days: f64,
    /// `diagnosis`: one run per seed (comma-separated), scored together; `--seed` if not
    /// given.
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` reads its config before the first log line, so `[engine] log_format` can apply.
    let loaded = match &cli.command {
        Cmd::Run { config } => Some(Config::load(config)),
        _ => None,
    };
    let configured = match &loaded {
        Some(Ok(c)) if c.log_json => LogFormat::Json,
        _ => LogFormat::Text,
    };
    init_logs(cli.log_format.unwrap_or(configured));
    match run(cli, loaded) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("heatgrid: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs on stderr (stdout is the verbs' output and the demo's table). Text has colours only on
/// a terminal: a service's log file (or journald) gets plain text. JSON is one object per line
/// with the event's fields flattened beside `timestamp`, `level` and `message`.
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off,rumqttc=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn run(cli: Cli, loaded: Option<Result<Config, config::ConfigError>>) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "heatgrid", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Man { dir: None } => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Man { dir: Some(dir) } => {
            clap_mangen::generate_to(Cli::command(), &dir)
                .map_err(|e| anyhow::anyhow!("writing the pages to {}: {e}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Operator(verb) => Ok(heatgrid::cli::run(cli.remote, verb)),
        Cmd::Check { config } => {
            let c = Config::load(&config)?;
            let modbus = c.stations.iter().filter(|s| s.modbus.is_some()).count();
            #[cfg(feature = "opcua")]
            let opcua = c.stations.iter().filter(|s| s.opcua.is_some()).count();
            #[cfg(not(feature = "opcua"))]
            let opcua = 0;
            println!(
                "{}: OK ({} stations: {} MQTT, {modbus} Modbus, {opcua} OPC UA; storage: {})",
                config.display(),
                c.stations.len(),
                c.stations.len() - modbus - opcua,
                match &c.storage.influxdb {
                    Some(i) => format!("InfluxDB {}", i.url),
                    None => format!("files in {}", c.data_dir.join("lp").display()),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Init { file: None } => {
            print!("{}", config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Init { file: Some(path) } => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            f.write_all(config::EXAMPLE.as_bytes())?;
            eprintln!("Wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { config } => {
            let c = match loaded {
                Some(c) => c?,
                None => Config::load(&config)?,
            };
            runtime()?.block_on(heatgrid::app::run(c, shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "demo")]
        Cmd::Demo(args) => Ok(runtime()?.block_on(heatgrid::demo::run(args))?),
        #[cfg(feature = "demo")]
        Cmd::Scenario(args) => scenario(args),
    }
}

/// Runs a scenario's four policies and prints (and writes) the comparison.
#[cfg(feature = "demo")]
fn scenario(a: ScenarioArgs) -> anyhow::Result<ExitCode> {
    let ScenarioArgs {
        name,
        weather,
        no_peaks,
        stations,
        hours,
        lead_hours,
        seed,
        disturbance,
        fleet,
        indoor_target,
        indoor_sensor,
        forecast,
        split,
        indoor_floor,
        json,
        html,
        days,
        seeds,
    } = a;
    let Some(forecast) = heatgrid::demo::scenario::ForecastKind::parse(&forecast) else {
        anyhow::bail!("unknown forecast {forecast:?}: realistic, exact, persistence or no-sun");
    };
    let Some(fleet) = heatgrid_sim::Fleet::parse(&fleet) else {
        anyhow::bail!("unknown fleet {fleet:?}: balanced or unbalanced");
    };
    if name == "diagnosis" {
        let seeds = if seeds.is_empty() { vec![seed] } else { seeds };
        let o = heatgrid::demo::diagnosis::Options {
            fleet,
            ..heatgrid::demo::diagnosis::Options::new(stations, days, seed)
        };
        return diagnosis(&o, &seeds, json);
    }
    if name == "network" {
        let Some(scenario) = heatgrid_sim::scenario::Scenario::parse(&weather) else {
            anyhow::bail!("unknown --weather {weather:?}: winter-day, cold-snap, mild, fortnight or fortnight-sun");
        };
        let mut o = heatgrid::demo::network::Options::new(scenario, stations, hours, seed);
        o.fleet = fleet;
        o.lead_h = lead_hours;
        if no_peaks {
            o.loads = heatgrid_sim::scenario::Loads::NONE;
        }
        let runs = heatgrid::demo::network::compare(&o)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&runs)?);
        } else {
            print!("{}", heatgrid::demo::network::table(&runs));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(scenario) = heatgrid_sim::scenario::Scenario::parse(&name) else {
        anyhow::bail!(
            "unknown scenario {name:?}: winter-day, cold-snap, mild, fortnight, fortnight-sun \
             or diagnosis"
        );
    };
    let Some(disturbance) = heatgrid_sim::scenario::Disturbance::parse(&disturbance) else {
        anyhow::bail!(
            "unknown disturbance {disturbance:?}: none, comms-loss, sensor-drift, \
             area-change, undersized-hx or gains"
        );
    };
    let mut opts = heatgrid::demo::scenario::Options::new(scenario, stations, hours, seed);
    opts.disturbance = disturbance;
    opts.fleet = fleet;
    opts.coordinator.indoor_target_c = (indoor_target != 0.0).then_some(indoor_target);
    opts.indoor_sensor = indoor_sensor;
    opts.lead_h = lead_hours;
    opts.forecast = forecast;
    opts.split = split;
    opts.predictive.indoor_min_c = indoor_floor;
    if let Some(p) = opts.predictive.problems().first() {
        anyhow::bail!("--indoor-floor: {p}");
    }
    let runs = heatgrid::demo::scenario::compare(&opts)?;
    let table = heatgrid::demo::scenario::table(&runs);
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else {
        print!("{table}");
    }
    if let Some(path) = html {
        std::fs::write(&path, heatgrid::demo::report::html(&runs, &table))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        eprintln!("report: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The diagnosis evaluation: one run per seed (on parallel threads), scored together.
#[cfg(feature = "demo")]
fn diagnosis(
    o: &heatgrid::demo::diagnosis::Options,
    seeds: &[u64],
    json: bool,
) -> anyhow::Result<ExitCode> {
    use heatgrid::demo::diagnosis as d;
    let runs = std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .iter()
            .map(|&seed| s.spawn(move || d::run(&d::Options { seed, ..o.clone() })))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a diagnosis run panicked"))?
                    .map_err(anyhow::Error::from)
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let score = heatgrid::demo::score::score(&runs);
    if json {
        let body = serde_json::json!({ "runs": runs, "score": score });
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print!("{}", heatgrid::demo::score::table(&runs, &score));
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
