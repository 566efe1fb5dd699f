//! The change verbs: `set` (offset, fixed setpoint, curve; one station or a group), `mode`,
//! `alarms ack`. Each sends one request; the engine checks it against the station's limits and
//! answers what changed (before → after) or why it refused.

use reqwest::Method;
use serde_json::{json, Value};

use super::remote::{call, Failure, Remote};

/// What `set` changes.
#[derive(Debug)]
pub(super) struct Set {
    pub id: Option<String>,
    pub group: Option<String>,
    pub offset: Option<f64>,
    pub fixed: Option<f64>,
    pub expires_in: Option<f64>,
    pub clear: bool,
    pub curve: Option<String>,
}

pub(super) async fn set(remote: &Remote, s: Set) -> Result<String, Failure> {
    let (what, body) = match (&s.curve, s.offset.is_some() || s.fixed.is_some() || s.clear) {
        (Some(c), false) => ("curve", json!({ "points": parse_curve(c)? })),
        (None, true) => (
            "supply",
            json!({ "offset_k": s.offset, "fixed_c": s.fixed, "expires_in_s": s.expires_in, "clear_fixed": s.clear }),
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
    let path = match (&s.id, &s.group) {
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
    applied_or_refused(&v)
}

/// The lines of what was applied; a failure (exit 4) listing what was refused, after
/// printing what was applied.
fn applied_or_refused(v: &Value) -> Result<String, Failure> {
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
        return Ok(out);
    }
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

pub(super) async fn mode(
    remote: &Remote,
    id: &str,
    mode: &str,
    valve: Option<f64>,
    pump: Option<f64>,
) -> Result<String, Failure> {
    let body = json!({ "mode": mode, "valve_pct": valve, "pump_pct": pump });
    let path = format!("/api/v1/stations/{id}/mode");
    let v = call(remote, Method::POST, &path, Some(body)).await?;
    let a = &v["applied"];
    Ok(format!(
        "{id}: {} -> {}\n",
        a["before"].as_str().unwrap_or(""),
        a["after"].as_str().unwrap_or("")
    ))
}

/// Acknowledges alarm `id`: `5`, or `b:5` for instance b's alarm 5 in a cluster (as
/// `alarms` lists it).
pub(super) async fn ack(remote: &Remote, id: &str) -> Result<String, Failure> {
    let (instance, number) = match id.split_once(':') {
        Some((i, n)) => (Some(i), n),
        None => (None, id),
    };
    let number: u64 = number.parse().map_err(|_| {
        Failure(
            2,
            format!("alarm id {id:?}: a number, or instance:number as `alarms` lists it"),
        )
    })?;
    let path = match instance {
        Some(i) => format!("/api/v1/alarms/{number}/ack?instance={i}"),
        None => format!("/api/v1/alarms/{number}/ack"),
    };
    let v = call(remote, Method::POST, &path, Some(json!({}))).await?;
    let a = &v["applied"];
    Ok(format!(
        "alarm {id} ({}): {}\n",
        a["station"].as_str().unwrap_or(""),
        a["after"].as_str().unwrap_or("")
    ))
}

pub(super) fn split_group(g: &str) -> Result<(&str, &str), Failure> {
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
pub(super) fn parse_curve(s: &str) -> Result<Vec<[f64; 2]>, Failure> {
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
