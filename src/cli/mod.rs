//! The operator verbs of the `heatgrid` binary: clients of a running engine's HTTP API.
//!
//! `status`, `stations`, `station ID`, `diagnose`, `report` read (`--json` prints the API's JSON unchanged);
//! `set ID …` and `mode ID …` change. The engine address and token come from flags or
//! `HEATGRID_API` / `HEATGRID_TOKEN`. Errors are one line on stderr; exit codes: 3 engine
//! unreachable, 4 refused by the engine (token, unknown station, safety limit), 2 other.

mod change;
mod cluster;
mod plant;
mod read;
pub mod remote;
mod render;
mod report;
pub mod top;

use std::process::ExitCode;
use std::time::Duration;

use remote::Failure;
pub use remote::Remote;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Verb {
    /// Engine health: stations online/stale/manual, ingest, commands, storage backlog.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// One row per station.
    Stations {
        #[arg(long)]
        json: bool,
        /// Sort by: id, error (|supply − setpoint|, largest first), age, heat.
        #[arg(long, default_value = "id")]
        sort: String,
        /// Only stations that are stale or not in auto.
        #[arg(long)]
        attention: bool,
        /// Only stations with an active alarm.
        #[arg(long)]
        alarm: bool,
        /// Only stations with this static tag, e.g. district=north.
        #[arg(long, value_name = "KEY=VALUE")]
        group: Option<String>,
    },
    /// Everything about one station.
    Station {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// The stations the diagnosis suspects of a fault, worst first: kind, confidence, since
    /// when, and the figures behind it.
    Diagnose {
        #[arg(long)]
        json: bool,
    },
    /// Change a station's (or a group's) supply target or heating curve within safety limits.
    Set {
        /// The station; or use --group.
        id: Option<String>,
        /// Every station with this static tag, e.g. district=north.
        #[arg(long, value_name = "KEY=VALUE")]
        group: Option<String>,
        /// Offset on the heating curve, K.
        #[arg(long, allow_hyphen_values = true)]
        offset: Option<f64>,
        /// Fixed supply setpoint, °C (replaces the curve).
        #[arg(long)]
        fixed: Option<f64>,
        /// With --fixed: back to the curve after this many seconds.
        #[arg(long)]
        expires_in: Option<f64>,
        /// Remove a fixed setpoint (back to the curve).
        #[arg(long)]
        clear: bool,
        /// New heating curve: outdoor:supply points, e.g. "-10:60,0:47.4,10:33.3".
        #[arg(long, allow_hyphen_values = true)]
        curve: Option<String>,
    },
    /// List active alarms (and recently cleared ones with --all), or acknowledge one.
    Alarms {
        #[command(subcommand)]
        action: Option<AlarmAction>,
        #[arg(long)]
        json: bool,
        /// Include recently cleared alarms.
        #[arg(long)]
        all: bool,
    },
    /// Live full-screen view of all stations and alarms (keys: s sort, f filter, q quit).
    Top {
        /// Refresh interval, ms.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// Several instances: members, partitions led and stood by for, last takeovers.
    Cluster {
        #[arg(long)]
        json: bool,
        /// Also list every partition with its leader, epoch and standbys.
        #[arg(long)]
        partitions: bool,
    },
    /// The heat plant: its reading, what the plant loop asks of it and why, its last command,
    /// the network's pressure.
    Plant {
        #[arg(long)]
        json: bool,
    },
    /// The energy report of a period: per station and for the district, heat (GJ, GJ/m², GJ
    /// per degree-day), mean supply, return and ΔT, comfort, alarms, coverage, and the
    /// stations furthest above the fleet's weather-normalised consumption.
    Report {
        /// Start: a date (2026-11-01, midnight UTC) or RFC 3339 (2026-11-01T00:00:00+08:00);
        /// default 7 days before --to.
        #[arg(long)]
        from: Option<String>,
        /// End (excluded); default now.
        #[arg(long)]
        to: Option<String>,
        /// csv, html (a printable page) or json.
        #[arg(long, default_value = "csv", value_parser = ["csv", "html", "json"])]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        out: Option<std::path::PathBuf>,
    },
    /// Change a station's mode; manual needs --valve and --pump.
    Mode {
        id: String,
        #[arg(value_parser = ["auto", "manual", "hold"])]
        mode: String,
        #[arg(long)]
        valve: Option<f64>,
        #[arg(long)]
        pump: Option<f64>,
    },
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum AlarmAction {
    /// Acknowledge an active alarm by its id (in a cluster `instance:id`, as listed).
    Ack { id: String },
}

pub fn run(remote: Remote, verb: Verb) -> ExitCode {
    if let Verb::Top { interval_ms } = verb {
        return top::run(remote, Duration::from_millis(interval_ms.max(100)));
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("heatgrid: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(execute(&remote, verb)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(Failure(code, msg)) => {
            eprintln!("heatgrid: {msg}");
            ExitCode::from(code)
        }
    }
}

async fn execute(remote: &Remote, verb: Verb) -> Result<String, Failure> {
    match verb {
        Verb::Status { json } => read::status(remote, json).await,
        Verb::Stations {
            json,
            sort,
            attention,
            alarm,
            group,
        } => {
            let filter = read::Filter {
                sort,
                attention,
                alarm,
                group,
            };
            read::stations(remote, json, filter).await
        }
        Verb::Station { id, json } => read::station(remote, &id, json).await,
        Verb::Diagnose { json } => read::diagnose(remote, json).await,
        Verb::Cluster { json, partitions } => cluster::cluster(remote, json, partitions).await,
        Verb::Plant { json } => plant::plant(remote, json).await,
        Verb::Report {
            from,
            to,
            format,
            out,
        } => report::report(remote, (from, to), &format, out).await,
        Verb::Set {
            id,
            group,
            offset,
            fixed,
            expires_in,
            clear,
            curve,
        } => {
            let s = change::Set {
                id,
                group,
                offset,
                fixed,
                expires_in,
                clear,
                curve,
            };
            change::set(remote, s).await
        }
        Verb::Top { .. } => Err(Failure(2, "top runs in a terminal".into())),
        Verb::Alarms {
            action: Some(AlarmAction::Ack { id }),
            ..
        } => change::ack(remote, &id).await,
        Verb::Alarms {
            action: None,
            json,
            all,
        } => read::alarms(remote, json, all).await,
        Verb::Mode {
            id,
            mode,
            valve,
            pump,
        } => change::mode(remote, &id, &mode, valve, pump).await,
    }
}
