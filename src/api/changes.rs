//! The operator's changes over HTTP: a station's supply (offset, fixed setpoint), curve and
//! mode, a group's supply or curve, an alarm's acknowledgement. Each is checked by the
//! control (or alarm) task and answered with what changed or why it was refused.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::auth::{authorize, ApiError, Role};
use super::peers::send_change;
use super::ApiState;
use crate::control::change::{Change, ChangeError};
use crate::model::Mode;

pub(super) async fn apply(
    st: &ApiState,
    headers: &HeaderMap,
    id: &str,
    change: Change,
) -> Result<Json<Value>, ApiError> {
    let user = authorize(&st.tokens, headers, Role::Operator)?;
    match send_change(st, headers, id, change, &user).await {
        Ok(applied) => Ok(Json(json!({ "applied": applied }))),
        Err(e) => {
            let code = match e {
                ChangeError::UnknownStation(_) | ChangeError::UnknownAlarm(_) => {
                    StatusCode::NOT_FOUND
                }
                ChangeError::Limit(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ChangeError::Invalid(_) => StatusCode::BAD_REQUEST,
                ChangeError::ShuttingDown | ChangeError::Unavailable(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            };
            Err(ApiError(code, e.to_string()))
        }
    }
}

/// `?instance=NAME`: in a cluster, the instance that holds the alarm (as the merged alarms
/// view tags it); another instance's alarm is acknowledged there.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct AlarmOf {
    instance: Option<String>,
}

pub(super) async fn ack_alarm(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(of): axum::extract::Query<AlarmOf>,
) -> Result<Json<Value>, ApiError> {
    // An id that is no number names no alarm: answered like any unknown one, in JSON (to
    // an operator only).
    authorize(&st.tokens, &headers, Role::Operator)?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError(
            axum::http::StatusCode::NOT_FOUND,
            format!(
                "no active alarm {id:?} (an alarm id is a number; in a cluster add ?instance=NAME)"
            ),
        )
    })?;
    if let (Some(peers), Some(instance)) = (&st.peers, &of.instance) {
        authorize(&st.tokens, &headers, Role::Operator)?;
        if let Some(answer) = peers.ack_at(instance, id, &headers).await? {
            return Ok(Json(answer));
        }
    }
    apply(&st, &headers, "", Change::AckAlarm { id }).await
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SupplyBody {
    offset_k: Option<f64>,
    fixed_c: Option<f64>,
    expires_in_s: Option<f64>,
    #[serde(default)]
    clear_fixed: bool,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CurveBody {
    points: Vec<[f64; 2]>,
}

pub(super) async fn set_curve(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&st.tokens, &headers, Role::Operator)?;
    let b: CurveBody = body(&raw)?;
    apply(&st, &headers, &id, Change::Curve { points: b.points }).await
}

/// The same change for every station whose static tag `key` is `value` (e.g. a district).
/// Each station is checked against its own limits: the answer lists what was applied and
/// what was refused.
pub(super) async fn group_change(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path((key, value, what)): Path<(String, String, String)>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let user = authorize(&st.tokens, &headers, Role::Operator)?;
    let change = match what.as_str() {
        "supply" => {
            let b: SupplyBody = body(&raw)?;
            Change::Supply {
                offset_k: b.offset_k,
                fixed_c: b.fixed_c,
                expires_in_s: b.expires_in_s,
                clear_fixed: b.clear_fixed,
            }
        }
        "curve" => Change::Curve {
            points: body::<CurveBody>(&raw)?.points,
        },
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("group changes are supply or curve, not {other:?}"),
            ))
        }
    };
    let members: Vec<String> = st
        .stations
        .iter()
        .filter(|c| c.tags.get(&key) == Some(&value))
        .map(|c| c.id.to_string())
        .collect();
    if members.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no station has tag {key}={value}"),
        ));
    }
    let (mut applied, mut refused) = (Vec::new(), Vec::new());
    for id in members {
        match send_change(&st, &headers, &id, change.clone(), &user).await {
            Ok(a) => applied.push(json!(a)),
            Err(e) => refused.push(json!({ "station": id, "error": e.to_string() })),
        }
    }
    Ok(Json(json!({ "applied": applied, "refused": refused })))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: Mode,
    valve_pct: Option<f64>,
    pump_pct: Option<f64>,
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

pub(super) async fn set_supply(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&st.tokens, &headers, Role::Operator)?;
    let b: SupplyBody = body(&raw)?;
    apply(
        &st,
        &headers,
        &id,
        Change::Supply {
            offset_k: b.offset_k,
            fixed_c: b.fixed_c,
            expires_in_s: b.expires_in_s,
            clear_fixed: b.clear_fixed,
        },
    )
    .await
}

pub(super) async fn set_mode(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&st.tokens, &headers, Role::Operator)?;
    let b: ModeBody = body(&raw)?;
    apply(
        &st,
        &headers,
        &id,
        Change::Mode {
            mode: b.mode,
            valve_pct: b.valve_pct,
            pump_pct: b.pump_pct,
        },
    )
    .await
}

/// A change forwarded by another instance of the cluster (or sent as the JSON of a `Change`):
/// applied here, never forwarded again.
pub(super) async fn apply_forwarded(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&st.tokens, &headers, Role::Operator)?;
    let change: Change = body(&raw)?;
    let mut headers = headers;
    headers.insert(
        super::peers::FORWARDED,
        axum::http::HeaderValue::from_static("1"),
    );
    apply(&st, &headers, &id, change).await
}
