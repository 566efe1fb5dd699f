//! The web control room's live feed: one compact tile per station, pushed as Server-Sent
//! Events at most once a second, deltas only.
//!
//! Where it sits: beside the other API handlers, reading the same status and alarm views.
//! While at least one dashboard listens, the [`Hub`] task turns the newest status snapshot
//! into [`Tile`]s once a second (once for every listener, and not at all while nobody
//! listens). Each connection (`GET /api/v1/live`) sends the whole fleet first, then only the
//! tiles that changed since what it sent last, with the district totals; a connection that
//! falls behind simply skips to the newest tiles. In a cluster a connection adds the other
//! members' tiles (`GET /api/v1/live/tiles?local=1`, each station's from its owner), so any
//! instance's dashboard shows the whole fleet.
//!
//! A tile carries its reading's timestamp and the server's clock, so the page shows every
//! value's age and greys out data that is not fresh; a feed that stops is itself reported.

use std::collections::{BTreeMap, HashMap};
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
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::auth::{authorize, ApiError, Role};
use super::ApiState;
use crate::alarms::{AlarmView, Severity};
use crate::clock::now_ms;
use crate::control::status::StationStatus;
use crate::ingest::slot::StationSlot;
use crate::model::{Mode, Reading};

/// How often tiles are built (from the readings as they arrive) and what changed is sent: a
/// reading reaches its tile within this, plus the way to the browser.
pub const PERIOD: Duration = Duration::from_millis(250);

/// Within this of its setpoint a station is in control, K (`domain.md`: ±1 K).
const IN_CONTROL_K: f64 = 1.0;

/// What a station's tile says at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TileState {
    /// Automatic, fresh, within ±1 K of its setpoint.
    InControl,
    /// Automatic and fresh, but further off.
    Deviating,
    /// No fresh telemetry: control holds.
    Stale,
    /// Its presence says offline, or its Modbus link fails.
    CommLost,
    /// Manual, hold, or a fixed setpoint.
    Manual,
}

/// One station on the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tile {
    pub id: String,
    pub state: TileState,
    /// The reading's time, Unix ms (the page shows its age).
    pub ts: Option<i64>,
    /// Supply, its setpoint and return, °C; flow, m³/h; heat, kW; heated area, m².
    pub sup: Option<f64>,
    pub set: Option<f64>,
    pub ret: Option<f64>,
    pub flow: Option<f64>,
    pub kw: Option<f64>,
    pub area: Option<f64>,
    pub mode: String,
    /// Its active alarms: how many and the worst severity.
    pub alarms: u32,
    pub alarm: Option<Severity>,
    /// In a cluster: the instance that leads it.
    pub owner: Option<String>,
    pub tags: BTreeMap<String, String>,
}

fn round(x: f64, step: f64) -> f64 {
    (x / step).round() * step
}

impl Tile {
    /// The tile of `s` as this instance knows it (`owner`: this instance's name, in a cluster
    /// where it leads the station).
    pub fn of(s: &StationStatus, alarms: &AlarmView, owner: Option<&str>) -> Self {
        Self::with(s, s.reading.as_ref(), s.stale, alarms, owner)
    }

    /// The tile of `s` with reading `r` (`stale`: whether it is).
    fn with(
        s: &StationStatus,
        r: Option<&Reading>,
        stale: bool,
        alarms: &AlarmView,
        owner: Option<&str>,
    ) -> Self {
        let o = s.outputs.as_ref();
        let state = if s.offline || s.link_error.is_some() {
            TileState::CommLost
        } else if stale || r.is_none() {
            TileState::Stale
        } else if s.mode != Mode::Auto || s.fixed_supply.is_some() {
            TileState::Manual
        } else {
            match (r, o) {
                (Some(r), Some(o))
                    if (r.supply_temp_c - o.supply_setpoint_c).abs() <= IN_CONTROL_K =>
                {
                    TileState::InControl
                }
                _ => TileState::Deviating,
            }
        };
        let mine = alarms.active.iter().filter(|a| a.station == s.id.as_str());
        let (count, worst) = mine.fold((0, None), |(n, w): (u32, Option<Severity>), a| {
            (n + 1, Some(w.map_or(a.severity, |w| w.min(a.severity))))
        });
        Self {
            id: s.id.as_str().to_owned(),
            state,
            ts: r.map(|r| r.ts_ms),
            sup: r.map(|r| round(r.supply_temp_c, 0.1)),
            set: o.map(|o| round(o.supply_setpoint_c, 0.1)),
            ret: r.map(|r| round(r.return_temp_c, 0.1)),
            flow: r.map(|r| round(r.flow_m3h, 0.01)),
            kw: r.map(|r| round(r.heat_kw(), 0.1)),
            area: s.area_m2,
            mode: s.mode.as_str().to_owned(),
            alarms: count,
            alarm: worst,
            owner: owner.filter(|_| s.epoch.is_some()).map(str::to_owned),
            tags: s.tags.clone(),
        }
    }
}

/// The district at a glance, over the tiles with fresh data.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub stations: usize,
    pub fresh: usize,
    pub heat_mw: f64,
    pub w_m2: Option<f64>,
    /// Flow-weighted return temperature, °C.
    pub return_c: Option<f64>,
    /// Share of the automatic, fresh stations within ±1 K, %.
    pub in_control_pct: Option<f64>,
    pub alarms: u32,
    pub by_state: BTreeMap<&'static str, usize>,
}

impl Totals {
    pub fn of(tiles: &[Tile]) -> Self {
        let mut t = Totals {
            stations: tiles.len(),
            ..Totals::default()
        };
        let (mut kw, mut area, mut flow, mut flow_ret, mut auto, mut within) =
            (0.0, 0.0, 0.0, 0.0, 0usize, 0usize);
        for tile in tiles {
            t.alarms += tile.alarms;
            let key = match tile.state {
                TileState::InControl => "in_control",
                TileState::Deviating => "deviating",
                TileState::Stale => "stale",
                TileState::CommLost => "comm_lost",
                TileState::Manual => "manual",
            };
            *t.by_state.entry(key).or_default() += 1;
            if matches!(tile.state, TileState::Stale | TileState::CommLost) {
                continue;
            }
            t.fresh += 1;
            if let Some(k) = tile.kw {
                kw += k;
                area += tile.area.filter(|a| *a > 0.0).unwrap_or(0.0);
            }
            if let (Some(f), Some(r)) = (tile.flow, tile.ret) {
                flow += f;
                flow_ret += f * r;
            }
            if matches!(tile.state, TileState::InControl | TileState::Deviating) {
                auto += 1;
                within += usize::from(tile.state == TileState::InControl);
            }
        }
        t.heat_mw = round(kw / 1000.0, 0.001);
        t.w_m2 = (area > 0.0).then(|| round(kw * 1000.0 / area, 0.1));
        t.return_c = (flow > 0.0).then(|| round(flow_ret / flow, 0.1));
        t.in_control_pct = (auto > 0).then(|| round(100.0 * within as f64 / auto as f64, 0.1));
        t
    }
}

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

/// The tile's fields on the wire, in this order: a snapshot's rows and a delta's field
/// numbers follow it (docs/web.md, "The live feed").
pub const FIELDS: [&str; 14] = [
    "id", "state", "ts", "sup", "set", "ret", "flow", "kw", "area", "mode", "alarms", "alarm",
    "owner", "tags",
];

/// Where `ts` is in [`FIELDS`]: a delta carries it as tenths of a second before `now`.
const TS: usize = 2;

fn fields(t: &Tile) -> [Value; 14] {
    [
        json!(t.id),
        json!(t.state),
        json!(t.ts),
        json!(t.sup),
        json!(t.set),
        json!(t.ret),
        json!(t.flow),
        json!(t.kw),
        json!(t.area),
        json!(t.mode),
        json!(t.alarms),
        json!(t.alarm),
        json!(t.owner),
        json!(t.tags),
    ]
}

/// The whole fleet: `{now, totals, fields, rows}`, one row per tile in [`FIELDS`] order.
fn snapshot(tiles: &[Tile], totals: &Totals, now: i64) -> String {
    let rows: Vec<[Value; 14]> = tiles.iter().map(fields).collect();
    json!({ "now": now, "totals": totals, "fields": FIELDS, "rows": rows }).to_string()
}

/// What changed from `before` to `tiles` (the same stations in the same order): `{now, d}`
/// and `totals` when they changed. Each entry of `d` is `[row, field, value, field, value…]`
/// with only the fields that changed; `ts` as tenths of a second before `now`. `None`: the
/// stations differ, send a snapshot.
fn delta(before: &[Tile], tiles: &[Tile], totals: Option<&Totals>, now: i64) -> Option<String> {
    if before.len() != tiles.len() || before.iter().zip(tiles).any(|(b, t)| b.id != t.id) {
        return None;
    }
    let mut d: Vec<Value> = Vec::new();
    for (i, (b, t)) in before
        .iter()
        .zip(tiles)
        .enumerate()
        .filter(|(_, (b, t))| b != t)
    {
        let (old, new) = (fields(b), fields(t));
        let mut entry = vec![json!(i)];
        for (k, (o, n)) in old
            .into_iter()
            .zip(new)
            .enumerate()
            .filter(|(_, (o, n))| o != n)
        {
            let _ = o;
            entry.push(json!(k));
            entry.push(match (k, t.ts) {
                (TS, Some(ts)) => json!(((now - ts) as f64 / 100.0).round() as i64),
                _ => n,
            });
        }
        d.push(Value::Array(entry));
    }
    let mut body = json!({ "now": now, "d": d });
    if let Some(t) = totals {
        body["totals"] = json!(t);
    }
    Some(body.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(id: &str, state: TileState, kw: f64, flow: f64, ret: f64) -> Tile {
        Tile {
            id: id.into(),
            state,
            ts: Some(0),
            sup: Some(60.0),
            set: Some(60.0),
            ret: Some(ret),
            flow: Some(flow),
            kw: Some(kw),
            area: Some(1000.0),
            mode: "auto".into(),
            alarms: 0,
            alarm: None,
            owner: None,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn a_delta_carries_only_the_changed_fields_of_the_changed_tiles() {
        let before = vec![
            tile("a", TileState::InControl, 100.0, 1.0, 40.0),
            tile("b", TileState::InControl, 50.0, 3.0, 44.0),
        ];
        let mut now = before.clone();
        now[1].state = TileState::Stale;
        now[1].ts = Some(10_000);
        let totals = Totals::of(&now);
        let d: Value =
            serde_json::from_str(&delta(&before, &now, Some(&totals), 12_345).unwrap()).unwrap();
        // Row 1: its state (field 1) and its reading's time as tenths of a second ago (field 2).
        assert_eq!(d["d"], json!([[1, 1, "stale", 2, 23]]));
        assert_eq!(d["totals"]["by_state"]["stale"], 1);
        // Nothing changed: no tiles, no totals.
        let quiet: Value = serde_json::from_str(&delta(&now, &now, None, 12_345).unwrap()).unwrap();
        assert_eq!(quiet, json!({"now": 12_345, "d": []}));
        // Other stations: a snapshot instead.
        assert!(delta(&before[..1], &now, None, 0).is_none());
        let snap: Value = serde_json::from_str(&snapshot(&now, &totals, 1)).unwrap();
        assert_eq!(snap["fields"][0], "id");
        assert_eq!(snap["rows"][1][0], "b");
        assert_eq!(snap["rows"][1][1], "stale");
        assert_eq!(snap["rows"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn totals_count_only_fresh_stations_and_weight_the_return_by_flow() {
        let tiles = [
            tile("a", TileState::InControl, 100.0, 1.0, 40.0),
            tile("b", TileState::Deviating, 50.0, 3.0, 44.0),
            tile("c", TileState::Stale, 999.0, 9.0, 90.0),
            tile("d", TileState::Manual, 30.0, 0.0, 50.0),
        ];
        let t = Totals::of(&tiles);
        assert_eq!((t.stations, t.fresh), (4, 3));
        assert!((t.heat_mw - 0.18).abs() < 1e-9);
        assert_eq!(t.w_m2, Some(60.0)); // 180 kW over 3,000 m²
        assert_eq!(t.return_c, Some(43.0)); // (40 + 3 × 44) / 4
        assert_eq!(t.in_control_pct, Some(50.0)); // a of a and b; d is manual
        assert_eq!(t.by_state["stale"], 1);
    }
}
