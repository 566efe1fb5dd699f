//! The API through its router, in-process and without a socket: authentication and roles,
//! error bodies, body limits, and changes handed to the control and alarm queues (answered
//! here by a task standing in for them).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::auth::{sha256, ApiToken, Role};
use super::{http, live, ApiState};
use crate::control::change::{Change, ChangeError, ChangeRequest, Inbox};
use crate::model::Applied;
use crate::stats::Stats;
use crate::store::spool::{FsyncPolicy, Spool, SpoolConfig};

const VIEWER: &str = "viewer-token-0123456789";
const OPERATOR: &str = "operator-token-0123456789";

/// The state of an engine with no station data, whose control task knows `st-1` only and
/// whose alarm task knows alarm 7 only.
fn state(dir: &std::path::Path) -> ApiState {
    let (_status_tx, status) = watch::channel(Arc::new(Vec::new()));
    let (_alarms_tx, alarms) = watch::channel(Arc::new(crate::alarms::AlarmView::default()));
    let (control, control_rx) = mpsc::channel(8);
    let (alarm_q, alarm_rx) = mpsc::channel(8);
    tokio::spawn(answer(control_rx));
    tokio::spawn(answer(alarm_rx));
    let spool = Spool::open(SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 20,
        segment_bytes: 1 << 16,
        fsync: FsyncPolicy::Never,
    })
    .expect("a spool");
    let (live, _task) = live::Hub::start(
        status.clone(),
        alarms.clone(),
        None,
        Vec::new(),
        CancellationToken::new(),
    );
    let token = |name: &str, role, secret: &str| ApiToken {
        name: name.into(),
        role,
        sha256: sha256(secret.as_bytes()),
    };
    ApiState {
        status,
        stats: Arc::new(Stats::default()),
        spool,
        changes: Inbox {
            control,
            alarms: alarm_q,
        },
        tokens: Arc::new(vec![
            token("wall", Role::Viewer, VIEWER),
            token("ops", Role::Operator, OPERATOR),
        ]),
        alarms,
        stations: Arc::new(Vec::new()),
        peers: None,
        live,
        history: None,
        reports: Arc::new(Ok(crate::report::source::Source::Files {
            dir: dir.join("lp"),
        })),
        plant: None,
        network: None,
    }
}

/// Stands in for the control or alarm task: `st-1` and alarm 7 exist, nothing else does.
async fn answer(mut rx: mpsc::Receiver<ChangeRequest>) {
    while let Some(req) = rx.recv().await {
        let r = match (&req.change, req.station.as_str()) {
            (Change::AckAlarm { id: 7 }, _) | (Change::Mode { .. }, "st-1") => Ok(Applied {
                station: req.station.clone(),
                action: "test".into(),
                before: "before".into(),
                after: format!("by {}", req.user),
            }),
            (Change::AckAlarm { id }, _) => {
                Err(ChangeError::UnknownAlarm(format!("no active alarm {id}")))
            }
            _ => Err(ChangeError::UnknownStation(req.station.clone())),
        };
        let _ = req.reply.send(r);
    }
}

async fn call(
    st: &ApiState,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let req = req
        .header("Content-Type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("a request");
    let resp = http::router(st.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("a body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn reads_need_a_known_token_and_errors_say_why_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let (code, body) = call(&st, "GET", "/api/v1/status", None, "").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    let (code, _) = call(&st, "GET", "/api/v1/status", Some("guess-guess-guess"), "").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, body) = call(&st, "GET", "/api/v1/status", Some(VIEWER), "").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert!(body.is_object(), "{body}");
    let (code, body) = call(&st, "GET", "/api/v1/stations/nope", Some(VIEWER), "").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn changes_need_an_operator_and_a_valid_body() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let mode = r#"{"mode": "manual"}"#;
    let (code, body) = call(
        &st,
        "POST",
        "/api/v1/stations/st-1/mode",
        Some(VIEWER),
        mode,
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    let (code, body) = call(
        &st,
        "POST",
        "/api/v1/stations/st-1/mode",
        Some(OPERATOR),
        mode,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["applied"]["after"], "by ops", "{body}");
    // The control task does not know the station: 404 with its words.
    let (code, body) = call(
        &st,
        "POST",
        "/api/v1/stations/st-9/mode",
        Some(OPERATOR),
        mode,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("st-9"),
        "{body}"
    );
    // Not JSON, or a field the contract does not have: 400 before anything is sent.
    for bad in ["{oops", r#"{"offset_k": 1, "colour": "red"}"#] {
        let (code, body) = call(
            &st,
            "POST",
            "/api/v1/stations/st-1/supply",
            Some(OPERATOR),
            bad,
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or("")
                .contains("invalid JSON body"),
            "{body}"
        );
    }
    // A body over the limit is refused unread.
    let huge = format!(r#"{{"points": [{}]}}"#, "[0,0],".repeat(400_000));
    let (code, _) = call(
        &st,
        "POST",
        "/api/v1/stations/st-1/curve",
        Some(OPERATOR),
        &huge,
    )
    .await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn an_alarm_is_acknowledged_through_the_alarm_queue() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let (code, body) = call(&st, "POST", "/api/v1/alarms/7/ack", Some(OPERATOR), "").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, body) = call(&st, "POST", "/api/v1/alarms/8/ack", Some(OPERATOR), "").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("8"), "{body}");
    let (code, _) = call(&st, "POST", "/api/v1/alarms/7/ack", Some(VIEWER), "").await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // A cluster's `b:5` typed where a number belongs: a JSON error, not the router's text.
    let (code, body) = call(&st, "POST", "/api/v1/alarms/b:5/ack", Some(OPERATOR), "").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("b:5"),
        "{body}"
    );
    let (code, _) = call(&st, "POST", "/api/v1/alarms/b:5/ack", None, "").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn metrics_are_behind_the_tokens_too() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let (code, _) = call(&st, "GET", "/metrics", None, "").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let req = Request::builder()
        .uri("/metrics")
        .header("Authorization", format!("Bearer {VIEWER}"))
        .body(Body::empty())
        .unwrap();
    let resp = http::router(st).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("heatgrid_control_latency_seconds"), "{text}");
}
