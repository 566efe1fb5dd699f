//! The web control room's live feed: one compact tile per station ([`super::tiles`]), pushed
//! as Server-Sent Events every 250 ms, deltas only.
//!
//! Where it sits: beside the other API handlers, reading the same status and alarm views and
//! the stations' slots. While at least one dashboard listens, the [`Hub`] task turns the
//! newest status, with each station's newer reading if its slot has one, into [`Tile`]s every
//! [`PERIOD`] (once for every listener, and not at all while nobody listens). Each connection
//! (`GET /api/v1/live`) sends the whole fleet first, then only the fields that changed since
//! what it itself sent, gzipped when the browser accepts it. In a cluster a connection adds
//! the other members' tiles (`GET /api/v1/live/tiles?local=1`, each station's from its
//! owner), so any instance's dashboard shows the whole fleet.
//!
//! A tile carries its reading's timestamp and the server's clock, so the page shows every
//! value's age and greys out data that is not fresh; a feed that stops is itself reported.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use axum::Json;
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::auth::{authorize, ApiError, Role};
use super::tiles::{delta, snapshot, Tile, Totals};
use super::ApiState;
use crate::alarms::AlarmView;
use crate::clock::now_ms;
use crate::control::status::StationStatus;
use crate::ingest::slot::StationSlot;
use crate::model::Reading;

/// How often tiles are built (from the readings as they arrive) and what changed is sent: a
/// reading reaches its tile within this, plus the way to the browser.
pub const PERIOD: Duration = Duration::from_millis(250);

/// Every station's tile as this instance knows it: the control task's status, each with the
/// reading its slot took in since, if newer (`slots` in the status's order; empty: the status
/// alone).
fn build(
    status: &[StationStatus],
    slots: &[Arc<StationSlot>],
    alarms: &AlarmView,
    me: Option<&str>,
) -> Vec<Tile> {
    let fresher = |i: usize, s: &StationStatus| -> Option<Reading> {
        let slot = slots.get(i).filter(|_| slots.len() == status.len())?;
        let latest = slot.latest.lock().unwrap_or_else(|p| p.into_inner());
        let known = s.reading.as_ref().map_or(i64::MIN, |r| r.ts_ms);
        latest.as_ref().filter(|r| r.ts_ms > known).cloned()
    };
    status
        .iter()
        .enumerate()
        .map(|(i, s)| match fresher(i, s) {
            // Newer than the tick's status: shown at once, fresh, against the setpoint in force.
            Some(r) => Tile::with(s, Some(&r), false, alarms, me),
            None => Tile::of(s, alarms, me),
        })
        .collect()
}

/// The hub's tiles at one instant.
#[derive(Debug, Default)]
pub struct Frame {
    /// Consecutive while anyone listens.
    pub version: u64,
    pub tiles: Arc<Vec<Tile>>,
}

/// This instance's tiles, rebuilt every [`PERIOD`] while any dashboard listens.
#[derive(Debug, Clone)]
pub struct Hub {
    frames: watch::Receiver<Arc<Frame>>,
    listeners: Arc<AtomicUsize>,
    slots: Arc<Vec<Arc<StationSlot>>>,
}

/// A dashboard listening; the hub stops building when the last one is dropped.
#[derive(Debug)]
struct Listening(Arc<AtomicUsize>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hub {
    /// The hub over the status and alarm views and the stations' slots (config order, as the
    /// status), and its task (to run on the caller's stage, until `stop`); `cluster`: the
    /// cluster's view, for this instance's name.
    pub fn start(
        status: watch::Receiver<Arc<Vec<StationStatus>>>,
        alarms: watch::Receiver<Arc<AlarmView>>,
        cluster: Option<watch::Receiver<Arc<crate::cluster::view::ClusterView>>>,
        slots: Vec<Arc<StationSlot>>,
        stop: CancellationToken,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, frames) = watch::channel(Arc::new(Frame::default()));
        let listeners = Arc::new(AtomicUsize::new(0));
        let count = listeners.clone();
        let slots = Arc::new(slots);
        let mine = slots.clone();
        let task = async move {
            let mut every = tokio::time::interval(PERIOD);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stop.cancelled() => return,
                }
                if count.load(Ordering::Relaxed) == 0 {
                    continue; // nobody watches: no work
                }
                let me = cluster.as_ref().map(|v| v.borrow().name.clone());
                let alarms = alarms.borrow().clone();
                let status = status.borrow().clone();
                let tiles = build(&status, &mine, &alarms, me.as_deref());
                let version = tx.borrow().version + 1;
                let _ = tx.send(Arc::new(Frame {
                    version,
                    tiles: Arc::new(tiles),
                }));
            }
        };
        (
            Self {
                frames,
                listeners,
                slots,
            },
            task,
        )
    }

    fn listen(&self) -> (watch::Receiver<Arc<Frame>>, Listening) {
        self.listeners.fetch_add(1, Ordering::Relaxed);
        (self.frames.clone(), Listening(self.listeners.clone()))
    }

    /// The tiles now, built for the caller (a dashboard's first answer, a peer's question).
    fn now(&self, st: &ApiState, me: Option<&str>) -> Vec<Tile> {
        let alarms = st.alarms.borrow().clone();
        let status = st.status.borrow().clone();
        build(&status, &self.slots, &alarms, me)
    }
}

/// `?local=1`: only this instance's tiles.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Scope {
    local: Option<u8>,
}

/// `GET /api/v1/live/tiles`: the current tiles, as JSON (the other members ask with
/// `?local=1`).
pub(super) async fn tiles(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Query(scope): Query<Scope>,
) -> Result<Json<Value>, ApiError> {
    authorize(&st.tokens, &headers, Role::Viewer)?;
    let me = st.peers.as_ref().map(|p| p.view.borrow().name.clone());
    let local = st.live.now(&st, me.as_deref());
    let tiles = match (&st.peers, scope.local) {
        (Some(_), None) => fleet(&st, &headers, local).await,
        _ => local,
    };
    Ok(Json(json!({ "tiles": tiles, "now": now_ms() })))
}

/// `local` with every other member's tiles of the stations it leads.
async fn fleet(st: &ApiState, headers: &HeaderMap, local: Vec<Tile>) -> Vec<Tile> {
    let mut tiles = local;
    let Some(peers) = &st.peers else {
        return tiles;
    };
    let index: HashMap<String, usize> = tiles
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.clone(), i))
        .collect();
    for (_, answer) in peers.gather("/api/v1/live/tiles?local=1", headers).await {
        let Ok(v) = answer else {
            continue; // shown as this instance knows them (stale, no owner)
        };
        let theirs: Vec<Tile> = serde_json::from_value(v["tiles"].clone()).unwrap_or_default();
        for t in theirs.into_iter().filter(|t| t.owner.is_some()) {
            if let Some(&i) = index.get(&t.id) {
                if tiles[i].owner.is_none() {
                    tiles[i] = t;
                }
            }
        }
    }
    tiles
}

/// `GET /api/v1/live`: Server-Sent Events. The first event (`snapshot`) has every tile, at
/// once; then every [`PERIOD`] in which something changed (and at least once a second) a
/// `delta` with only the fields that changed since what this connection was sent. The
/// stream is gzip-compressed when the browser accepts it, flushed at every event, so one
/// dictionary serves the whole connection. In a cluster each connection merges the members'
/// tiles, asking them at most once a second.
pub(super) async fn live(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st.tokens, &headers, Role::Viewer)?;
    let gzip = headers
        .get(axum::http::header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip"))
        });
    let (rx, listening) = st.live.listen();
    let feed = Feed {
        st,
        headers,
        rx,
        _listening: listening,
        sent: None,
        totals: None,
        last_event: std::time::Instant::now(),
        peers: None,
        gz: gzip.then(|| GzEncoder::new(Vec::new(), Compression::fast())),
    };
    let stream = futures::stream::unfold(feed, |mut f| async move {
        let bytes = f.next().await?;
        Some((Ok::<_, Infallible>(bytes), f))
    });
    let mut response = Response::new(axum::body::Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    if gzip {
        h.insert(
            axum::http::header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
    }
    Ok(response)
}

/// One dashboard's feed.
struct Feed {
    st: ApiState,
    headers: HeaderMap,
    rx: watch::Receiver<Arc<Frame>>,
    _listening: Listening,
    /// The tiles this connection was sent (`None`: nothing yet).
    sent: Option<Arc<Vec<Tile>>>,
    totals: Option<Totals>,
    last_event: std::time::Instant,
    /// In a cluster: the merged fleet and when the members were last asked.
    peers: Option<(std::time::Instant, Arc<Vec<Tile>>)>,
    gz: Option<GzEncoder<Vec<u8>>>,
}

impl Feed {
    /// The next event's bytes, as they go on the wire.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            let (kind, body) = self.event().await?;
            let text = format!("event: {kind}\ndata: {body}\n\n");
            let Some(gz) = self.gz.as_mut() else {
                return Some(Bytes::from(text));
            };
            // A sync flush ends the event's bytes here, the dictionary kept for the next.
            if gz
                .write_all(text.as_bytes())
                .and_then(|()| gz.flush())
                .is_err()
            {
                return None;
            }
            let out = std::mem::take(gz.get_mut());
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
        }
    }

    /// The next event: its kind and body.
    async fn event(&mut self) -> Option<(&'static str, String)> {
        let me = self.st.peers.as_ref().map(|p| p.view.borrow().name.clone());
        loop {
            let tiles = match self.sent {
                // The first answer at once, not at the hub's next frame.
                None => {
                    self.rx.borrow_and_update();
                    Arc::new(self.st.live.now(&self.st, me.as_deref()))
                }
                Some(_) => {
                    self.rx.changed().await.ok()?;
                    let frame = self.rx.borrow_and_update().clone();
                    frame.tiles.clone()
                }
            };
            let tiles = match &self.st.peers {
                None => tiles,
                Some(_) => self.merged(tiles).await,
            };
            let now = now_ms();
            let totals = Totals::of(&tiles);
            let new_totals = (self.totals.as_ref() != Some(&totals)).then_some(&totals);
            let event = match self.sent.as_deref() {
                Some(before) => match delta(before, &tiles, new_totals, now) {
                    Some(body) => {
                        let quiet = body.len() < 40 && new_totals.is_none();
                        if quiet && self.last_event.elapsed() < Duration::from_secs(1) {
                            continue; // nothing new: a heartbeat at most once a second
                        }
                        ("delta", body)
                    }
                    None => ("snapshot", snapshot(&tiles, &totals, now)),
                },
                None => ("snapshot", snapshot(&tiles, &totals, now)),
            };
            self.sent = Some(tiles);
            self.totals = Some(totals);
            self.last_event = std::time::Instant::now();
            return Some(event);
        }
    }

    /// In a cluster: `local` with the members' tiles, asked at most once a second.
    async fn merged(&mut self, local: Arc<Vec<Tile>>) -> Arc<Vec<Tile>> {
        if let Some((at, fleet)) = &self.peers {
            if at.elapsed() < Duration::from_secs(1) {
                // The members' tiles as last asked, this instance's as they are now.
                let mut tiles = (**fleet).clone();
                for (t, l) in tiles.iter_mut().zip(local.iter()) {
                    if l.owner.is_some() && t.id == l.id {
                        *t = l.clone();
                    }
                }
                return Arc::new(tiles);
            }
        }
        let tiles = Arc::new(fleet(&self.st, &self.headers, (*local).clone()).await);
        self.peers = Some((std::time::Instant::now(), tiles.clone()));
        tiles
    }
}
