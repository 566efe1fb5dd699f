//! The operators' HTTP API (JSON, versioned under `/api/v1`), served with axum.
//!
//! Sits beside the engine: reads the per-station status the control task publishes after every
//! tick and the engine counters; sends changes to the control task over a bounded channel and
//! waits for its verdict (applied, or refused with the limit named). Every request needs a
//! bearer token from `[[api.token]]`; tokens are kept only as SHA-256 and compared in constant
//! time. `viewer` tokens read; `operator` tokens also change. Documented in `docs/api.md`.
//! The same listener serves the web control room (`web.rs`, `live.rs`).

use std::net::SocketAddr;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::auth::{authorize, ApiError, Role};
use super::changes::{ack_alarm, apply_forwarded, group_change, set_curve, set_mode, set_supply};
use super::listener::{Capped, ClientAddr, MAX_CONNECTIONS};
use super::ApiState;
use crate::clock::now_ms;
use crate::control::status::StationStatus;
use crate::model::Mode;
use crate::stats::Stats;

/// Binds `addr` and serves [`router`] until `stop` is cancelled, at most
/// [`MAX_CONNECTIONS`] connections at once. Returns the bound address (port 0 works).
pub async fn serve(
    addr: SocketAddr,
    state: ApiState,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = router(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let listener = Capped::new(listener, MAX_CONNECTIONS);
    let task = tokio::spawn(async move {
        let shutdown = async move { stop.cancelled().await };
        let app = app.into_make_service_with_connect_info::<ClientAddr>();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "Operator API stopped.");
        }
    });
    Ok((bound, task))
}

/// Every route, behind the sign-in brake and the request timeout.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/stations", get(stations))
        .route("/api/v1/stations/{id}", get(station))
        .route("/api/v1/stations/{id}/supply", post(set_supply))
        .route("/api/v1/stations/{id}/mode", post(set_mode))
        .route("/api/v1/stations/{id}/curve", post(set_curve))
        .route("/api/v1/groups/{key}/{value}/{what}", post(group_change))
        .route("/api/v1/alarms", get(alarms))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/plant", get(plant))
        .route("/api/v1/network", get(network))
        .route("/api/v1/cluster/apply/{id}", post(apply_forwarded))
        .route("/metrics", get(metrics))
        .route("/api/v1/alarms/{id}/ack", post(ack_alarm))
        .route("/api/v1/whoami", get(super::web::whoami))
        .route("/api/v1/stations/{id}/history", get(super::web::history))
        .route("/api/v1/live", get(super::live::live))
        .route("/api/v1/report", get(super::report::report))
        .route("/api/v1/live/tiles", get(super::live::tiles))
        .route("/", get(super::web::index))
        .route("/app.js", get(super::web::app_js))
        .route("/app.css", get(super::web::app_css))
        .route("/i18n.js", get(super::i18n::i18n_js))
        .layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::new(super::web::Brake::default()),
            super::web::brake,
        ))
        .layer(axum::middleware::from_fn(super::listener::deadline))
        // Page files and JSON gzipped when the client accepts it (the live feed compresses
        // itself, event by event).
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
}

fn row(s: &StationStatus, now: i64) -> Value {
    let r = s.reading.as_ref();
    let o = s.outputs.as_ref();
    json!({
        "id": s.id.as_str(),
        "mode": s.mode.as_str(),
        "stale": s.stale,
        "age_s": r.map(|r| (now - r.ts_ms) as f64 / 1000.0),
        "supply_temp_c": r.map(|r| r.supply_temp_c),
        "supply_setpoint_c": o.map(|o| o.supply_setpoint_c),
        "return_temp_c": r.map(|r| r.return_temp_c),
        "delta_t_k": r.map(|r| r.delta_t_k()),
        "flow_m3h": r.map(|r| r.flow_m3h),
        "flow_setpoint_m3h": o.map(|o| o.flow_setpoint_m3h),
        "valve_pct": o.map(|o| o.valve_pct),
        "pump_pct": o.map(|o| o.pump_pct),
        "heat_kw": r.map(|r| r.heat_kw()),
        "heat_w_m2": r.zip(s.area_m2.filter(|a| *a > 0.0)).map(|(r, a)| r.heat_kw() * 1000.0 / a),
        "outdoor_temp_c": o.map(|o| o.outdoor_c),
        "indoor_temp_c": r.and_then(|r| r.indoor_temp_c),
        "primary_supply_temp_c": r.and_then(|r| extra(r, "primary_supply_temp_c")),
        "primary_diff_pressure_kpa": r.and_then(|r| extra(r, "primary_diff_pressure_kpa")),
        "seq": s.seq,
        "epoch": s.epoch,
        "acked_seq": s.acked_seq,
        "link": s.link,
        "link_error": s.link_error,
        "heat_today_gj": s.heat_today_gj,
        "tags": s.tags,
        "findings": s.findings.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(),
        "diagnosis": s.findings,
        "unjudged": s.unjudged,
        "predictive": s.predictive.as_ref().map(predictive_json),
    })
}

/// A reading's optional field `name` (contract §2.1 and §7), if it came.
fn extra(r: &crate::model::Reading, name: &str) -> Option<f64> {
    r.extra.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

/// The predictive layer of a station: its state (and why it is on the curve), the weather
/// shift, and the building model with its fit.
fn predictive_json(p: &crate::predict::Status) -> Value {
    json!({
        "active": p.state.is_active(),
        "state": p.state.describe(),
        "weather_shift_k": p.shift_k,
        "planned_kw": p.planned_kw,
        "planned_peak_kw": p.planned_peak_kw,
        "planned_indoor_c": p.planned_indoor_c,
        "model": {
            "ua_kw_k": p.model.ua_kw_k,
            "capacity_kwh_k": p.model.c_kwh_k,
            "time_constant_h": p.model.tau_h(),
            "solar_gain_kw_per_w_m2": p.model.gain_kw_per_w_m2,
            "fit_hours": p.fit_hours,
            "rmse_k": p.rmse_k,
            "skill": p.skill,
        },
    })
}

async fn status(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Query(scope): Query<Scope>,
) -> Result<Json<Value>, ApiError> {
    authorize(&st.tokens, &headers, Role::Viewer)?;
    let mut v = local_status(&st);
    if let (Some(peers), None) = (&st.peers, scope.local) {
        let mut unreachable = Vec::new();
        let answers = peers.gather("/api/v1/status?local=1", &headers).await;
        let members = answers.len() + 1;
        for (name, answer) in answers {
            match answer {
                Ok(theirs) => super::peers::add_counts(&mut v, &theirs),
                Err(e) => unreachable.push(format!("{name}: {e}")),
            }
        }
        v["stations"]["total"] = json!(st.stations.len());
        v["cluster"] = json!({ "members": members, "unreachable": unreachable });
    }
    Ok(Json(v))
}

/// This instance's status; in a cluster its station counts cover the stations it leads.
fn local_status(st: &ApiState) -> Value {
    let all = st.status.borrow().clone();
    let mine: Vec<&StationStatus> = all.iter().filter(|s| s.epoch.is_some()).collect();
    let count = |f: &dyn Fn(&StationStatus) -> bool| mine.iter().filter(|s| f(s)).count();
    let g = |c: &std::sync::atomic::AtomicU64| Stats::get(c);
    let depth = st.spool.depth();
    let reasons = st
        .stats
        .rejects_by_reason
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let oldest = g(&st.stats.spool_oldest_ts_ms);
    json!({
        "stations": {
            "total": all.len(),
            "led": mine.len(),
            "online": count(&|s| !s.stale),
            "stale": count(&|s| s.stale),
            "manual": count(&|s| s.mode == Mode::Manual),
            "hold": count(&|s| s.mode == Mode::Hold),
        },
        "ingest": {
            "messages_in": g(&st.stats.messages_in),
            "readings_accepted": g(&st.stats.readings_accepted),
            "readings_per_s": g(&st.stats.ingest_rate_milli) as f64 / 1000.0,
            "readings_rejected": g(&st.stats.readings_rejected),
            "rejects_by_reason": reasons,
        },
        "commands": {
            "sent": g(&st.stats.commands_sent),
            "failed": g(&st.stats.commands_failed),
            "fenced": g(&st.stats.commands_fenced),
        },
        "storage": {
            "spool_points": depth.points,
            "spool_bytes": depth.bytes,
            "oldest_point_age_s": if depth.points > 0 && oldest > 0 { Some((now_ms() - oldest as i64) / 1000) } else { None },
            "written": g(&st.stats.store_written),
            "write_errors": g(&st.stats.store_write_errors),
            "dead_letters": g(&st.stats.dead_letters),
            "refused": g(&st.stats.spool_refused),
        },
    })
}

/// `?local=1`: only what this instance knows (another member gathering the fleet asks so).
#[derive(Debug, Default, serde::Deserialize)]
struct Scope {
    #[serde(default)]
    local: Option<u8>,
}

async fn stations(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Query(scope): Query<Scope>,
) -> Result<Json<Value>, ApiError> {
    authorize(&st.tokens, &headers, Role::Viewer)?;
    let rows = local_rows(&st);
    match &st.peers {
        Some(peers) if scope.local.is_none() => {
            let (rows, unreachable) = super::peers::fleet_rows(peers, &headers, rows).await;
            Ok(Json(
                json!({ "stations": rows, "unreachable": unreachable }),
            ))
        }
        _ => Ok(Json(json!({ "stations": rows }))),
    }
}

/// This instance's row per station (in a cluster, `"owner"` names it where it leads).
fn local_rows(st: &ApiState) -> Vec<Value> {
    let me = st.peers.as_ref().map(|p| p.view.borrow().name.clone());
    let now = now_ms();
    let alarms = st.alarms.borrow().clone();
    st.status
        .borrow()
        .iter()
        .map(|s| {
            let mut r = row(s, now);
            r["alarms"] = json!(alarms
                .active
                .iter()
                .filter(|a| a.station == s.id.as_str())
                .count());
            if let (Some(me), Some(_)) = (&me, s.epoch) {
                r["owner"] = json!(me);
            }
            r
        })
        .collect()
}

async fn station(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(scope): Query<Scope>,
) -> Result<Json<Value>, ApiError> {
    authorize(&st.tokens, &headers, Role::Viewer)?;
    let all = st.status.borrow().clone();
    let s = all
        .iter()
        .find(|s| s.id.as_str() == id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("unknown station {id:?}")))?;
    // In a cluster, the owner knows the station: ask it.
    if let (Some(peers), None, None) = (&st.peers, scope.local, s.epoch) {
        if let Some(v) = peers.from_owner(&id, &headers).await {
            return Ok(Json(v));
        }
    }
    let cfg = st.stations.iter().find(|c| c.id.as_str() == id);
    let mut v = row(s, now_ms());
    let o = s.outputs.as_ref();
    let term = |t: Option<crate::control::pi::PiStep>| {
        // D is 0 by design (district-heating practice); reported so the shape names all terms.
        t.map(|t| json!({ "p": t.p, "i": t.i, "d": 0.0, "output": t.output, "anti_windup": t.anti_windup }))
    };
    v["reading"] = s.reading.as_ref().map_or(Value::Null, |r| {
        let mut m = json!({
            "ts": r.ts_ms, "supply_temp_c": r.supply_temp_c, "return_temp_c": r.return_temp_c,
            "flow_m3h": r.flow_m3h, "heated_area_m2": r.heated_area_m2, "outdoor_temp_c": r.outdoor_temp_c,
            "indoor_temp_c": r.indoor_temp_c, "valve_pct": r.valve_pct, "pump_pct": r.pump_pct,
        });
        for (k, x) in &r.extra {
            m[k] = json!(x);
        }
        m
    });
    v["ack_error"] = json!(s.ack_error);
    // Newest first; acknowledged when the station's highest acknowledged seq reached it.
    v["recent_commands"] = json!(s
        .recent_commands
        .list()
        .iter()
        .rev()
        .map(|c| {
            let mut m = json!(c);
            m["acked"] = json!(c.seq <= s.acked_seq);
            m
        })
        .collect::<Vec<_>>());
    v["trend"] = json!(s.trend.points());
    v["alarms"] = json!(st
        .alarms
        .borrow()
        .active
        .iter()
        .filter(|a| a.station == id)
        .collect::<Vec<_>>());
    v["kpis_today"] = json!(s.kpis_today);
    v["diagnosis"] = json!(s.findings);
    v["controller"] = json!({
        "supply_offset_k": s.supply_offset_k,
        "curve": s.curve,
        "district_offset_k": s.district_offset_k,
        "district_held": s.district_held,
        "fixed_supply_c": s.fixed_supply.map(|f| f.0),
        "fixed_until_ms": s.fixed_supply.and_then(|f| f.1),
        "return_correction_k": o.map(|o| o.return_correction_k),
        "valve_loop": term(o.map(|o| o.valve_terms)),
        "pump_loop": term(o.map(|o| o.pump_terms)),
    });
    if let Some(c) = cfg {
        let p = &c.params;
        v["tags"] = json!(c.tags);
        v["limits"] = json!({
            "supply_min_c": p.supply_min_c, "supply_max_c": p.supply_max_c,
            "supply_offset_max_k": crate::control::change::MAX_OFFSET_K,
            "valve_min_pct": p.valve.out_min, "valve_max_pct": p.valve.out_max,
            "pump_min_pct": p.pump.out_min, "pump_max_pct": p.pump.out_max,
        });
    }
    Ok(Json(v))
}

async fn metrics(State(st): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&st.tokens, &headers, Role::Viewer)?;
    let registry = crate::api::metrics::registry(
        st.stats.clone(),
        st.spool.clone(),
        st.status.clone(),
        st.alarms.clone(),
    );
    let body = crate::api::metrics::render(&registry);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

async fn alarms(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Query(scope): Query<Scope>,
) -> Result<Json<Value>, ApiError> {
    authorize(&st.tokens, &headers, Role::Viewer)?;
    let view = st.alarms.borrow().clone();
    let mut v = json!({ "active": view.active, "recent": view.recent });
    let Some(peers) = st.peers.as_ref().filter(|_| scope.local.is_none()) else {
        return Ok(Json(v));
    };
    // In a cluster each instance raises its own stations' alarms (and its own engine's):
    // every alarm is tagged with the instance that holds it (acknowledge it there).
    let me = peers.view.borrow().name.clone();
    super::peers::tag(&mut v, &me);
    let mut unreachable = Vec::new();
    for (name, answer) in peers.gather("/api/v1/alarms?local=1", &headers).await {
        match answer {
            Ok(mut theirs) => {
                super::peers::tag(&mut theirs, &name);
                for list in ["active", "recent"] {
                    if let (Some(m), Some(t)) = (v[list].as_array_mut(), theirs[list].as_array()) {
                        m.extend(t.iter().cloned());
                    }
                }
            }
            Err(e) => unreachable.push(format!("{name}: {e}")),
        }
    }
    v["unreachable"] = json!(unreachable);
    Ok(Json(v))
}

/// The plant: its latest reading, the loop's plan and its last command, the pressure
/// points; 404 without a `[plant]`, 503 before the loop's first period.
async fn plant(State(st): State<ApiState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&st.tokens, &headers, Role::Viewer)?;
    let Some(view) = st.plant.as_ref() else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "no plant is configured (no [plant] in the config)".into(),
        ));
    };
    let Some(status) = view.borrow().clone() else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the plant loop has not run its first period yet".into(),
        ));
    };
    Ok(Json(json!(*status)))
}

/// The network's layout from the plant's network file (static: the control room reads it
/// once and draws the live values on it).
async fn network(State(st): State<ApiState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&st.tokens, &headers, Role::Viewer)?;
    match st.network.as_ref() {
        Some(layout) => Ok(Json(json!(**layout))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            "no network file is configured ([plant] network)".into(),
        )),
    }
}

async fn cluster(State(st): State<ApiState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&st.tokens, &headers, Role::Viewer)?;
    let Some(peers) = st.peers.as_ref() else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "this engine runs alone (no [cluster] in its config)".into(),
        ));
    };
    let view = peers.view.borrow().clone();
    let mut v = json!(*view);
    // The district coordinator runs where partition 0 is led.
    v["district_coordinator"] = match peers.coordinator {
        true => json!(view.table.first().and_then(|r| r.leader.clone())),
        false => Value::Null,
    };
    Ok(Json(v))
}
