//! The web control room's page: its files built into the binary (the words: [`super::i18n`]) (no CDN, no internet, no
//! JavaScript toolchain), served on the API's own listener with a strict
//! Content-Security-Policy; who is signed in; and the brake on failed sign-ins.
//!
//! Where it sits: beside the JSON handlers of [`super::http`]. The page (`web/`) signs in with
//! an API token kept in the tab's `sessionStorage` and sent as a bearer header, reads the
//! same API as the CLI and listens to [`super::live`]. It holds no secret of its own: a
//! viewer's token gets a page without change controls, and a change it forges anyway is
//! refused by the API (403), like from the CLI.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::auth::{identify, ApiError};
use super::listener::ClientAddr;
use super::ApiState;

const INDEX: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");

/// Scripts and styles only from the engine itself, nothing inline, no frames, no forms
/// posted elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(super) fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A new engine version serves new files: never a stale page from a cache.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub(super) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

pub(super) async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

pub(super) async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

/// `GET /api/v1/whoami`: the token's name and role, and this instance's name in a cluster.
pub(super) async fn whoami(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let token = identify(&st.tokens, &headers)?;
    let instance = st.peers.as_ref().map(|p| p.view.borrow().name.clone());
    Ok(Json(json!({
        "name": token.name,
        "role": token.role,
        "instance": instance,
        "history": st.history.is_some(),
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

/// `?hours=H&step_s=S`: how far back (4 h) and one sample per how many seconds (60).
#[derive(Debug, serde::Deserialize)]
pub(super) struct Span {
    hours: Option<f64>,
    step_s: Option<f64>,
}

/// `GET /api/v1/stations/{id}/history`: the station's trend read back from the database
/// (`{"source": "database", "points": [...]}`), for when the engine's memory is short.
pub(super) async fn history(
    State(st): State<ApiState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(span): axum::extract::Query<Span>,
) -> Result<Json<Value>, ApiError> {
    super::auth::authorize(&st.tokens, &headers, super::auth::Role::Viewer)?;
    if !st.stations.iter().any(|s| s.id.as_str() == id) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("unknown station {id:?}"),
        ));
    }
    let Some(h) = &st.history else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "no database to read history from ([storage.influxdb] history_url, or api = \"v1\")"
                .into(),
        ));
    };
    let hours = span
        .hours
        .filter(|h| h.is_finite() && *h > 0.0)
        .unwrap_or(4.0)
        .min(48.0);
    let step_ms = (span
        .step_s
        .filter(|s| s.is_finite() && *s >= 1.0)
        .unwrap_or(60.0)
        * 1000.0) as i64;
    let to = crate::clock::now_ms();
    let from = to - (hours * 3_600_000.0) as i64;
    let points = h
        .station(&id, from, to, step_ms)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, e))?;
    Ok(Json(json!({ "source": "database", "points": points })))
}

/// Failed sign-ins in the last [`Brake::WINDOW`], per client address: each one is answered
/// after a delay that grows with that address's number of failures, one at a time, so guessing
/// tokens from one address is slow however many requests it sends at once, and nobody else
/// waits for it. A request with a valid token never waits here.
#[derive(Debug, Default)]
pub struct Brake {
    by_client: std::sync::Mutex<HashMap<IpAddr, Arc<tokio::sync::Mutex<VecDeque<Instant>>>>>,
}

impl Brake {
    const WINDOW: Duration = Duration::from_secs(60);
    const STEP: Duration = Duration::from_millis(250);
    const MAX_STEPS: u32 = 8;
    /// Addresses remembered at most; past it, those without a failure in the window go.
    const MAX_CLIENTS: usize = 10_000;

    /// The failure queue of `ip`, made if new.
    fn of(&self, ip: IpAddr) -> Arc<tokio::sync::Mutex<VecDeque<Instant>>> {
        let mut m = self.by_client.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= Self::MAX_CLIENTS && !m.contains_key(&ip) {
            let now = Instant::now();
            m.retain(|_, q| {
                q.try_lock()
                    .map_or(true, |q| q.back().is_some_and(|t| now - *t <= Self::WINDOW))
            });
        }
        m.entry(ip).or_default().clone()
    }
}

/// The middleware: a `401` answer is held back by the brake of the client's address.
pub(super) async fn brake(State(brake): State<Arc<Brake>>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0 .0.ip());
    let resp = next.run(req).await;
    if resp.status() == StatusCode::UNAUTHORIZED {
        let queue = brake.of(ip);
        // Held while waiting: this address's failed attempts queue behind each other.
        let mut recent = queue.lock().await;
        let now = Instant::now();
        while recent.front().is_some_and(|t| now - *t > Brake::WINDOW) {
            recent.pop_front();
        }
        recent.push_back(now);
        let steps = (recent.len() as u32).min(Brake::MAX_STEPS);
        tokio::time::sleep(Brake::STEP * steps).await;
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;

    #[tokio::test]
    async fn failed_requests_are_answered_ever_slower_and_valid_ones_at_once() {
        let app = Router::new()
            .route("/no", get(|| async { StatusCode::UNAUTHORIZED }))
            .route("/yes", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(Brake::default()),
                brake,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = super::super::listener::Capped::new(listener, 64);
        tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<ClientAddr>();
            axum::serve(listener, app).await
        });
        let http = reqwest::Client::new();
        let get = |path: &'static str| {
            let http = http.clone();
            async move {
                let t = std::time::Instant::now();
                let r = http
                    .get(format!("http://{addr}{path}"))
                    .send()
                    .await
                    .unwrap();
                (r.status(), t.elapsed())
            }
        };
        // Three failures at once: queued, 250 + 500 + 750 ms of brake in all.
        let started = std::time::Instant::now();
        let answers = futures::future::join_all([get("/no"), get("/no"), get("/no")]).await;
        assert!(answers.iter().all(|(s, _)| *s == StatusCode::UNAUTHORIZED));
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{answers:?}"
        );
        // A request that passes never waits for the brake (a fourth failure now waits 1 s).
        let (status, took) = get("/yes").await;
        assert_eq!(status, StatusCode::OK);
        assert!(took < Duration::from_millis(900), "{took:?}");
        // Another address's first failure waits one step, not behind 127.0.0.1's queue.
        let elsewhere = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()
            .unwrap();
        let t = std::time::Instant::now();
        let r = elsewhere
            .get(format!("http://{addr}/no"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            t.elapsed() < Duration::from_millis(600),
            "{:?}",
            t.elapsed()
        );
    }
}
