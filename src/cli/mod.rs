//! The operator verbs of the `heatgrid` binary: clients of a running engine's HTTP API.
//!
//! `status`, `stations`, `station ID` read (`--json` prints the API's JSON unchanged);
//! `set ID …` and `mode ID …` change. The engine address and token come from flags or
//! `HEATGRID_API` / `HEATGRID_TOKEN`. Errors are one line on stderr; exit codes: 3 engine
//! unreachable, 4 refused by the engine (token, unknown station, safety limit), 2 other.

pub mod remote;
pub mod top;

use std::process::ExitCode;
use std::time::Duration;

use comfy_table::{presets, CellAlignment, Table};
use serde_json::Value;

pub use remote::Remote;
use remote::{call, Failure};

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
    /// Acknowledge an active alarm by its id.
    Ack { id: u64 },
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

fn split_group(g: &str) -> Result<(&str, &str), Failure> {
    g.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| {
            Failure(
                2,
                format!("--group {g:?}: expected KEY=VALUE, e.g. district=north"),
            )
        })
}

/// "-10:60,0:47.4" → [[-10, 60], [0, 47.4]].
fn parse_curve(s: &str) -> Result<Vec<[f64; 2]>, Failure> {
    s.split(',')
        .map(|p| {
            let (o, c) = p.trim().split_once(':').ok_or(())?;
            Ok([
                o.trim().parse().map_err(|_| ())?,
                c.trim().parse().map_err(|_| ())?,
            ])
        })
        .collect::<Result<_, ()>>()
        .map_err(|_| {
            Failure(
                2,
                format!(
                    "--curve {s:?}: expected outdoor:supply points, e.g. \"-10:60,0:47.4,10:33.3\""
                ),
            )
        })
}

/// A one-line sparkline of `values`.
fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    values
        .iter()
        .map(|v| {
            let x = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
            BARS[((x * 7.0).round() as usize).min(7)]
        })
        .collect()
}

fn f(v: &Value, decimals: usize) -> String {
    v.as_f64()
        .map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| "-".into())
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_header(header.to_vec());
    for i in 1..header.len() {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

async fn execute(remote: &Remote, verb: Verb) -> Result<String, Failure> {
    use reqwest::Method;
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    match verb {
        Verb::Status { json } => {
            let v = call(remote, Method::GET, "/api/v1/status", None).await?;
            if json {
                return Ok(pretty(&v));
            }
            let s = &v["stations"];
            let st = &v["storage"];
            Ok(format!(
                "stations  {} total, {} online, {} stale, {} manual, {} hold\n\
                 ingest    {} readings/s, {} accepted, {} rejected\n\
                 commands  {} sent, {} failed\n\
                 storage   {} points written, backlog {} points ({} bytes), {} dead letters, {} refused\n",
                s["total"], s["online"], s["stale"], s["manual"], s["hold"],
                f(&v["ingest"]["readings_per_s"], 1), v["ingest"]["readings_accepted"], v["ingest"]["readings_rejected"],
                v["commands"]["sent"], v["commands"]["failed"],
                st["written"], st["spool_points"], st["spool_bytes"], st["dead_letters"], st["refused"],
            ))
        }
        Verb::Stations {
            json,
            sort,
            attention,
            alarm,
            group,
        } => {
            let v = call(remote, Method::GET, "/api/v1/stations", None).await?;
            if json {
                return Ok(pretty(&v));
            }
            let mut rows: Vec<Value> = v["stations"].as_array().cloned().unwrap_or_default();
            if attention {
                rows.retain(|r| r["stale"] == true || r["mode"] != "auto");
            }
            if alarm {
                rows.retain(|r| r["alarms"].as_u64().unwrap_or(0) > 0);
            }
            if let Some(g) = &group {
                let (k, v) = split_group(g)?;
                rows.retain(|r| r["tags"][k] == v);
            }
            let err =
                |r: &Value| match (r["supply_temp_c"].as_f64(), r["supply_setpoint_c"].as_f64()) {
                    (Some(a), Some(b)) => (a - b).abs(),
                    _ => f64::INFINITY,
                };
            let key = |r: &Value, k: &str| r[k].as_f64().unwrap_or(f64::INFINITY);
            match sort.as_str() {
                "id" => {}
                "error" => rows.sort_by(|a, b| err(b).total_cmp(&err(a))),
                "age" => rows.sort_by(|a, b| key(b, "age_s").total_cmp(&key(a, "age_s"))),
                "heat" => rows.sort_by(|a, b| key(b, "heat_kw").total_cmp(&key(a, "heat_kw"))),
                other => {
                    return Err(Failure(
                        2,
                        format!("--sort {other:?}: use id, error, age or heat"),
                    ))
                }
            }
            let mut t = table(&[
                "station", "supply", "setpt", "return", "flow", "valve", "pump", "age s", "state",
            ]);
            for r in &rows {
                let state = if r["stale"] == true {
                    "STALE".to_owned()
                } else {
                    r["mode"].as_str().unwrap_or("-").to_owned()
                };
                t.add_row(vec![
                    r["id"].as_str().unwrap_or("?").to_owned(),
                    f(&r["supply_temp_c"], 1),
                    f(&r["supply_setpoint_c"], 1),
                    f(&r["return_temp_c"], 1),
                    f(&r["flow_m3h"], 0),
                    f(&r["valve_pct"], 1),
                    f(&r["pump_pct"], 1),
                    f(&r["age_s"], 0),
                    state,
                ]);
            }
            Ok(format!("{t}\n"))
        }
        Verb::Station { id, json } => {
            let v = call(remote, Method::GET, &format!("/api/v1/stations/{id}"), None).await?;
            if json {
                return Ok(pretty(&v));
            }
            let c = &v["controller"];
            let l = &v["limits"];
            let k = &v["kpis_today"];
            let within_pct: Value = k["supply_within_1k"].as_f64().map(|x| x * 100.0).into();
            let lp = |k: &str| &c[k];
            let aw = |k: &str| {
                if lp(k)["anti_windup"] == true {
                    ", anti-windup"
                } else {
                    ""
                }
            };
            let trend: Vec<f64> = v["trend"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p["supply_temp_c"].as_f64())
                        .collect()
                })
                .unwrap_or_default();
            Ok(format!(
                "station   {}  mode {}{}  seq {}\n\
                 supply    {} °C, setpoint {} °C\n\
                 target    offset {} K, district {} K, fixed {}, return correction {} K\n\
                 return    {} °C, ΔT {} K, heat {} kW ({} W/m²)\n\
                 flow      {} m³/h, setpoint {} m³/h\n\
                 valve     {} % (P {}, I {}{})\n\
                 pump      {} % (P {}, I {}{})\n\
                 outdoor   {} °C, indoor {} °C, reading age {} s\n\
                 link      {}{}\n\
                 commands  last seq {}, acknowledged {}{}\n\
                 heat      {} GJ since 00:00 UTC ({} h), {} W/m², {} GJ/degree-day\n\
                 today     supply ±1 K {} %, ΔT {} K, return {} °C (flow-weighted)\n\
                 \x20         pump {} full-speed h, valve saturated {} h, 18–22 °C {}\n\
                 trend     {} supply, last {} min ({}..{} °C)\n\
                 limits    supply {}..{} °C, offset ±{} K, valve {}..{} %, pump {}..{} %\n",
                v["id"].as_str().unwrap_or("?"),
                v["mode"].as_str().unwrap_or("-"),
                if v["stale"] == true { " STALE" } else { "" },
                v["seq"],
                f(&v["supply_temp_c"], 2),
                f(&v["supply_setpoint_c"], 2),
                f(&c["supply_offset_k"], 1),
                f(&c["district_offset_k"], 2),
                c["fixed_supply_c"]
                    .as_f64()
                    .map(|x| format!("{x} °C"))
                    .unwrap_or_else(|| "no".into()),
                f(&c["return_correction_k"], 2),
                f(&v["return_temp_c"], 2),
                f(&v["delta_t_k"], 2),
                f(&v["heat_kw"], 0),
                f(&v["heat_w_m2"], 1),
                f(&v["flow_m3h"], 1),
                f(&v["flow_setpoint_m3h"], 1),
                f(&v["valve_pct"], 1),
                f(&lp("valve_loop")["p"], 2),
                f(&lp("valve_loop")["i"], 2),
                aw("valve_loop"),
                f(&v["pump_pct"], 1),
                f(&lp("pump_loop")["p"], 2),
                f(&lp("pump_loop")["i"], 2),
                aw("pump_loop"),
                f(&v["outdoor_temp_c"], 1),
                f(&v["indoor_temp_c"], 1),
                f(&v["age_s"], 1),
                v["link"].as_str().unwrap_or("-"),
                v["link_error"]
                    .as_str()
                    .map(|e| format!(" — FAILING: {e}"))
                    .unwrap_or_default(),
                v["seq"],
                if v["acked_seq"].as_u64().unwrap_or(0) == 0 {
                    "never".to_owned()
                } else {
                    format!("up to {}", v["acked_seq"])
                },
                v["ack_error"]
                    .as_str()
                    .map(|e| format!(" (refused: {e})"))
                    .unwrap_or_default(),
                f(&v["heat_today_gj"], 3),
                f(&k["hours"], 1),
                f(&k["heat_w_m2"], 1),
                f(&k["heat_gj_per_degree_day"], 2),
                f(&within_pct, 1),
                f(&k["delta_t_mean_k"], 1),
                f(&k["return_flow_weighted_c"], 1),
                f(&k["pump_full_speed_h"], 2),
                f(&k["valve_saturated_h"], 2),
                k["indoor_comfort"]
                    .as_f64()
                    .map(|x| format!("{:.1} %", x * 100.0))
                    .unwrap_or_else(|| "- (no sensor)".into()),
                sparkline(&trend),
                trend.len(),
                trend
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min)
                    .clamp(-99.0, 999.0)
                    .round(),
                trend
                    .iter()
                    .copied()
                    .fold(f64::NEG_INFINITY, f64::max)
                    .clamp(-99.0, 999.0)
                    .round(),
                f(&l["supply_min_c"], 0),
                f(&l["supply_max_c"], 0),
                f(&l["supply_offset_max_k"], 0),
                f(&l["valve_min_pct"], 0),
                f(&l["valve_max_pct"], 0),
                f(&l["pump_min_pct"], 0),
                f(&l["pump_max_pct"], 0),
            ))
        }
        Verb::Set {
            id,
            group,
            offset,
            fixed,
            expires_in,
            clear,
            curve,
        } => {
            let (what, body) = match (&curve, offset.is_some() || fixed.is_some() || clear) {
                (Some(c), false) => ("curve", serde_json::json!({ "points": parse_curve(c)? })),
                (None, true) => (
                    "supply",
                    serde_json::json!({ "offset_k": offset, "fixed_c": fixed, "expires_in_s": expires_in, "clear_fixed": clear }),
                ),
                (Some(_), true) => {
                    return Err(Failure(
                        2,
                        "--curve goes alone, without --offset/--fixed/--clear".into(),
                    ))
                }
                (None, false) => {
                    return Err(Failure(
                        2,
                        "set needs --offset K, --fixed C, --clear or --curve POINTS".into(),
                    ))
                }
            };
            let path = match (&id, &group) {
                (Some(id), None) => format!("/api/v1/stations/{id}/{what}"),
                (None, Some(g)) => {
                    let (k, v) = split_group(g)?;
                    format!("/api/v1/groups/{k}/{v}/{what}")
                }
                _ => {
                    return Err(Failure(
                        2,
                        "give a station ID or --group KEY=VALUE, not both".into(),
                    ))
                }
            };
            let v = call(remote, Method::POST, &path, Some(body)).await?;
            let applied = match &v["applied"] {
                Value::Array(a) => a.clone(),
                one => vec![one.clone()],
            };
            let mut out = String::new();
            for a in &applied {
                out.push_str(&format!(
                    "{}: {} -> {}\n",
                    a["station"].as_str().unwrap_or(""),
                    a["before"].as_str().unwrap_or(""),
                    a["after"].as_str().unwrap_or("")
                ));
            }
            let refused = v["refused"].as_array().cloned().unwrap_or_default();
            if refused.is_empty() {
                Ok(out)
            } else {
                print!("{out}");
                let list: Vec<String> = refused
                    .iter()
                    .map(|r| {
                        format!(
                            "{}: {}",
                            r["station"].as_str().unwrap_or("?"),
                            r["error"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                Err(Failure(
                    4,
                    format!("refused for {} station(s): {}", list.len(), list.join("; ")),
                ))
            }
        }
        Verb::Top { .. } => Err(Failure(2, "top runs in a terminal".into())),
        Verb::Alarms {
            action: Some(AlarmAction::Ack { id }),
            ..
        } => {
            let v = call(
                remote,
                Method::POST,
                &format!("/api/v1/alarms/{id}/ack"),
                Some(serde_json::json!({})),
            )
            .await?;
            let a = &v["applied"];
            Ok(format!(
                "alarm {id} ({}): {}\n",
                a["station"].as_str().unwrap_or(""),
                a["after"].as_str().unwrap_or("")
            ))
        }
        Verb::Alarms {
            action: None,
            json,
            all,
        } => {
            let v = call(remote, Method::GET, "/api/v1/alarms", None).await?;
            if json {
                return Ok(pretty(&v));
            }
            let mut rows: Vec<Value> = v["active"].as_array().cloned().unwrap_or_default();
            if all {
                rows.extend(v["recent"].as_array().cloned().unwrap_or_default());
            }
            if rows.is_empty() {
                return Ok("no active alarms\n".into());
            }
            let now = crate::clock::now_ms();
            let mut t = table(&["id", "station", "kind", "severity", "since", "state"]);
            if let Some(c) = t.column_mut(1) {
                c.set_cell_alignment(CellAlignment::Left);
            }
            let mut messages = String::new();
            for a in &rows {
                let age = (now - a["raised_ms"].as_i64().unwrap_or(now)) / 1000;
                let state = match (a["cleared_ms"].is_null(), a["acked_by"].as_str()) {
                    (false, _) => "cleared".to_owned(),
                    (true, Some(u)) => format!("acked:{u}"),
                    (true, None) => "ACTIVE".to_owned(),
                };
                t.add_row(vec![
                    a["id"].to_string(),
                    a["station"].as_str().unwrap_or("?").to_owned(),
                    a["kind"].as_str().unwrap_or("?").to_owned(),
                    a["severity"].as_str().unwrap_or("?").to_owned(),
                    format!("{}m{:02}s", age / 60, age % 60),
                    state,
                ]);
                messages.push_str(&format!(
                    "  {:>4}  {}\n",
                    a["id"],
                    a["message"].as_str().unwrap_or("")
                ));
            }
            Ok(format!("{t}\n{messages}"))
        }
        Verb::Mode {
            id,
            mode,
            valve,
            pump,
        } => {
            let body = serde_json::json!({ "mode": mode, "valve_pct": valve, "pump_pct": pump });
            let v = call(
                remote,
                Method::POST,
                &format!("/api/v1/stations/{id}/mode"),
                Some(body),
            )
            .await?;
            let a = &v["applied"];
            Ok(format!(
                "{id}: {} -> {}\n",
                a["before"].as_str().unwrap_or(""),
                a["after"].as_str().unwrap_or("")
            ))
        }
    }
}
