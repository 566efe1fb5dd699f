//! The read verbs: `status`, `stations`, `station ID`, `alarms`. Each asks the API once and
//! prints a table or a block of lines (`--json`: the API's JSON unchanged).

use std::fmt::Write as _;

use comfy_table::CellAlignment;
use reqwest::Method;
use serde_json::{json, Value};

use super::change::split_group;
use super::remote::{call, Failure, Remote};
use super::render::{f, pretty, sparkline, table};

pub(super) async fn status(remote: &Remote, json: bool) -> Result<String, Failure> {
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
        s["total"],
        s["online"],
        s["stale"],
        s["manual"],
        s["hold"],
        f(&v["ingest"]["readings_per_s"], 1),
        v["ingest"]["readings_accepted"],
        v["ingest"]["readings_rejected"],
        v["commands"]["sent"],
        v["commands"]["failed"],
        st["written"],
        st["spool_points"],
        st["spool_bytes"],
        st["dead_letters"],
        st["refused"],
    ))
}

/// Which stations `stations` lists, and in what order.
#[derive(Debug)]
pub(super) struct Filter {
    pub sort: String,
    pub attention: bool,
    pub alarm: bool,
    pub group: Option<String>,
}

pub(super) async fn stations(remote: &Remote, json: bool, w: Filter) -> Result<String, Failure> {
    let v = call(remote, Method::GET, "/api/v1/stations", None).await?;
    if json {
        return Ok(pretty(&v));
    }
    let mut rows: Vec<Value> = v["stations"].as_array().cloned().unwrap_or_default();
    if w.attention {
        rows.retain(|r| r["stale"] == true || r["mode"] != "auto");
    }
    if w.alarm {
        rows.retain(|r| r["alarms"].as_u64().unwrap_or(0) > 0);
    }
    if let Some(g) = &w.group {
        let (k, v) = split_group(g)?;
        rows.retain(|r| r["tags"][k] == v);
    }
    let err = |r: &Value| match (r["supply_temp_c"].as_f64(), r["supply_setpoint_c"].as_f64()) {
        (Some(a), Some(b)) => (a - b).abs(),
        _ => f64::INFINITY,
    };
    let key = |r: &Value, k: &str| r[k].as_f64().unwrap_or(f64::INFINITY);
    match w.sort.as_str() {
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

/// The stations with a finding, worst first (their most confident finding, then the
/// number of findings, then the oldest); then the faults that cannot be judged for lack of
/// telemetry, stations grouped by what they lack.
pub(super) async fn diagnose(remote: &Remote, json: bool) -> Result<String, Failure> {
    let v = call(remote, Method::GET, "/api/v1/stations", None).await?;
    let blind = unjudged(&v);
    let mut rows: Vec<Value> = v["stations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["diagnosis"].as_array().is_some_and(|d| !d.is_empty()))
        .map(|r| json!({ "id": r["id"], "tags": r["tags"], "findings": r["diagnosis"] }))
        .collect();
    let worst = |r: &Value| {
        let f = r["findings"].as_array().cloned().unwrap_or_default();
        let top = f
            .iter()
            .filter_map(|f| f["confidence"].as_f64())
            .fold(0.0, f64::max);
        let since = f
            .iter()
            .filter_map(|f| f["since_ms"].as_i64())
            .min()
            .unwrap_or(i64::MAX);
        (top, f.len(), since)
    };
    rows.sort_by(|a, b| {
        let (x, y) = (worst(a), worst(b));
        y.0.total_cmp(&x.0).then(y.1.cmp(&x.1)).then(x.2.cmp(&y.2))
    });
    if json {
        let unjudged: Vec<Value> = blind
            .iter()
            .map(|(what, ids)| json!({ "cannot_judge": what, "stations": ids }))
            .collect();
        return Ok(pretty(
            &json!({ "stations": rows, "unjudged": unjudged, "needs": needs_json() }),
        ));
    }
    let mut out = String::new();
    if rows.is_empty() {
        let n = v["stations"].as_array().map_or(0, Vec::len);
        out.push_str(&format!("no fault suspected on any of {n} stations\n"));
    } else {
        out.push_str(&findings_table(&rows));
    }
    if !blind.is_empty() {
        out.push_str(
            "\nnot judged for lack of telemetry (these stations are not known healthy for them):\n",
        );
        for (what, ids) in &blind {
            let kinds: Vec<String> = what
                .iter()
                .map(|(k, needs)| format!("{k} (needs {})", needs.join(", ")))
                .collect();
            out.push_str(&format!(
                "  {} station{}: {}\n    {}\n",
                ids.len(),
                if ids.len() == 1 { "" } else { "s" },
                kinds.join("; "),
                ids.join(", ")
            ));
        }
        out.push_str(
            "every detector reads supply, return, flow and the command sent; the rest need more (docs/diagnosis.md)\n",
        );
    }
    Ok(out)
}

/// What each suspect needs beyond supply, return, flow and the command sent.
fn needs_json() -> Value {
    crate::diagnose::NEEDS
        .iter()
        .map(|(k, n)| (k.as_str().to_owned(), json!(n)))
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

/// Stations grouped by the faults they cannot be judged for: ((kind, needs)…, station ids).
type Blind = Vec<(Vec<(String, Vec<String>)>, Vec<String>)>;

fn unjudged(v: &Value) -> Blind {
    let mut groups: Blind = Vec::new();
    for r in v["stations"].as_array().into_iter().flatten() {
        let what: Vec<(String, Vec<String>)> = r["unjudged"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| {
                let kind = u["kind"].as_str().unwrap_or("?").to_owned();
                let needs = u["needs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect();
                (kind, needs)
            })
            .collect();
        if what.is_empty() {
            continue;
        }
        let id = r["id"].as_str().unwrap_or("?").to_owned();
        match groups.iter_mut().find(|(w, _)| *w == what) {
            Some((_, ids)) => ids.push(id),
            None => groups.push((what, vec![id])),
        }
    }
    groups
}

fn findings_table(rows: &[Value]) -> String {
    let mut t = table(&["station", "suspect", "conf", "since (UTC)", "evidence"]);
    for r in rows {
        for f in r["findings"].as_array().into_iter().flatten() {
            let since = f["since_ms"]
                .as_i64()
                .and_then(|ms| {
                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
                })
                .map_or("-".into(), |t| {
                    format!(
                        "{:04}-{:02}-{:02} {:02}:{:02}",
                        t.year(),
                        u8::from(t.month()),
                        t.day(),
                        t.hour(),
                        t.minute()
                    )
                });
            t.add_row(vec![
                r["id"].as_str().unwrap_or("?").to_owned(),
                f["kind"].as_str().unwrap_or("?").to_owned(),
                format!("{:.0} %", f["confidence"].as_f64().unwrap_or(0.0) * 100.0),
                since,
                f["evidence"].as_str().unwrap_or("").to_owned(),
            ]);
        }
    }
    format!("{t}\n")
}

pub(super) async fn station(remote: &Remote, id: &str, json: bool) -> Result<String, Failure> {
    let v = call(remote, Method::GET, &format!("/api/v1/stations/{id}"), None).await?;
    if json {
        return Ok(pretty(&v));
    }
    let mut out = String::new();
    live(&mut out, &v);
    today(&mut out, &v);
    Ok(out)
}

/// The station view's first block: the live state of the station and its loops.
fn live(out: &mut String, v: &Value) {
    let c = &v["controller"];
    let aw = |k: &str| {
        if c[k]["anti_windup"] == true {
            ", anti-windup"
        } else {
            ""
        }
    };
    let fixed = c["fixed_supply_c"]
        .as_f64()
        .map(|x| format!("{x} °C"))
        .unwrap_or_else(|| "no".into());
    let _ = write!(
        out,
        "station   {}  mode {}{}  seq {}\n\
         supply    {} °C, setpoint {} °C\n\
         target    offset {} K, district {} K, fixed {}, return correction {} K\n\
         return    {} °C, ΔT {} K, heat {} kW ({} W/m²)\n\
         flow      {} m³/h, setpoint {} m³/h\n\
         valve     {} % (P {}, I {}{})\n\
         pump      {} % (P {}, I {}{})\n\
         outdoor   {} °C, indoor {} °C, reading age {} s\n",
        v["id"].as_str().unwrap_or("?"),
        v["mode"].as_str().unwrap_or("-"),
        if v["stale"] == true { " STALE" } else { "" },
        v["seq"],
        f(&v["supply_temp_c"], 2),
        f(&v["supply_setpoint_c"], 2),
        f(&c["supply_offset_k"], 1),
        if c["district_held"] == true {
            format!(
                "{} (held: sensor fault suspected)",
                f(&c["district_offset_k"], 2)
            )
        } else {
            f(&c["district_offset_k"], 2)
        },
        fixed,
        f(&c["return_correction_k"], 2),
        f(&v["return_temp_c"], 2),
        f(&v["delta_t_k"], 2),
        f(&v["heat_kw"], 0),
        f(&v["heat_w_m2"], 1),
        f(&v["flow_m3h"], 1),
        f(&v["flow_setpoint_m3h"], 1),
        f(&v["valve_pct"], 1),
        f(&c["valve_loop"]["p"], 2),
        f(&c["valve_loop"]["i"], 2),
        aw("valve_loop"),
        f(&v["pump_pct"], 1),
        f(&c["pump_loop"]["p"], 2),
        f(&c["pump_loop"]["i"], 2),
        aw("pump_loop"),
        f(&v["outdoor_temp_c"], 1),
        f(&v["indoor_temp_c"], 1),
        f(&v["age_s"], 1),
    );
    let _ = writeln!(
        out,
        "link      {}{}",
        v["link"].as_str().unwrap_or("-"),
        v["link_error"]
            .as_str()
            .map(|e| format!(" — FAILING: {e}"))
            .unwrap_or_default(),
    );
    if let Some(p) = v.get("predictive").filter(|p| p.is_object()) {
        let m = &p["model"];
        let _ = writeln!(
            out,
            "predict   {}, weather shift {} K; building UA {} kW/K, τ {} h, \
             fit ±{} K/h over {} h",
            p["state"].as_str().unwrap_or("?"),
            f(&p["weather_shift_k"], 2),
            f(&m["ua_kw_k"], 1),
            f(&m["time_constant_h"], 1),
            f(&m["rmse_k"], 3),
            m["fit_hours"],
        );
    }
    for f in v["diagnosis"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "suspect   {} ({:.0} %): {}",
            f["kind"].as_str().unwrap_or("?"),
            f["confidence"].as_f64().unwrap_or(0.0) * 100.0,
            f["evidence"].as_str().unwrap_or(""),
        );
    }
    let acked = if v["acked_seq"].as_u64().unwrap_or(0) == 0 {
        "never".to_owned()
    } else {
        format!("up to {}", v["acked_seq"])
    };
    let _ = writeln!(
        out,
        "commands  last seq {}, acknowledged {acked}{}",
        v["seq"],
        v["ack_error"]
            .as_str()
            .map(|e| format!(" (refused: {e})"))
            .unwrap_or_default(),
    );
}

/// The station view's second block: today's KPIs, the trend and the limits.
fn today(out: &mut String, v: &Value) {
    let k = &v["kpis_today"];
    let l = &v["limits"];
    let within_pct: Value = k["supply_within_1k"].as_f64().map(|x| x * 100.0).into();
    let comfort = k["indoor_comfort"]
        .as_f64()
        .map(|x| format!("{:.1} %", x * 100.0))
        .unwrap_or_else(|| "- (no sensor)".into());
    // The last half hour (the API keeps four).
    let trend: Vec<f64> = v["trend"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["supply_temp_c"].as_f64())
                .collect::<Vec<_>>()
        })
        .map(|t| t[t.len().saturating_sub(30)..].to_vec())
        .unwrap_or_default();
    let lo = trend.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = trend.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let _ = write!(
        out,
        "heat      {} GJ since 00:00 UTC ({} h), {} W/m², {} GJ/degree-day\n\
         today     supply ±1 K {} %, ΔT {} K, return {} °C (flow-weighted)\n\
         \x20         pump {} full-speed h, valve saturated {} h, 18–22 °C {}\n\
         trend     {} supply, last {} min ({}..{} °C)\n\
         limits    supply {}..{} °C, offset ±{} K, valve {}..{} %, pump {}..{} %\n",
        f(&v["heat_today_gj"], 3),
        f(&k["hours"], 1),
        f(&k["heat_w_m2"], 1),
        f(&k["heat_gj_per_degree_day"], 2),
        f(&within_pct, 1),
        f(&k["delta_t_mean_k"], 1),
        f(&k["return_flow_weighted_c"], 1),
        f(&k["pump_full_speed_h"], 2),
        f(&k["valve_saturated_h"], 2),
        comfort,
        sparkline(&trend),
        trend.len(),
        lo.clamp(-99.0, 999.0).round(),
        hi.clamp(-99.0, 999.0).round(),
        f(&l["supply_min_c"], 0),
        f(&l["supply_max_c"], 0),
        f(&l["supply_offset_max_k"], 0),
        f(&l["valve_min_pct"], 0),
        f(&l["valve_max_pct"], 0),
        f(&l["pump_min_pct"], 0),
        f(&l["pump_max_pct"], 0),
    );
}

pub(super) async fn alarms(remote: &Remote, json: bool, all: bool) -> Result<String, Failure> {
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
        // In a cluster an alarm belongs to the instance that raised it: `b:5`.
        let id = match a["instance"].as_str() {
            Some(i) => format!("{i}:{}", a["id"]),
            None => a["id"].to_string(),
        };
        t.add_row(vec![
            id.clone(),
            a["station"].as_str().unwrap_or("?").to_owned(),
            a["kind"].as_str().unwrap_or("?").to_owned(),
            a["severity"].as_str().unwrap_or("?").to_owned(),
            format!("{}m{:02}s", age / 60, age % 60),
            state,
        ]);
        let _ = writeln!(
            messages,
            "  {id:>4}  {}",
            a["message"].as_str().unwrap_or("")
        );
    }
    Ok(format!("{t}\n{messages}"))
}
