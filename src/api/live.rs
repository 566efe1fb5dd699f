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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::auth::{authorize, ApiError, Role};
use super::ApiState;
use crate::alarms::{AlarmView, Severity};
use crate::clock::now_ms;
use crate::control::status::StationStatus;
use crate::model::Mode;

/// How often tiles are built and sent.
pub const PERIOD: Duration = Duration::from_secs(1);

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
        let r = s.reading.as_ref();
        let o = s.outputs.as_ref();
        let state = if s.offline || s.link_error.is_some() {
            TileState::CommLost
        } else if s.stale || r.is_none() {
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

/// Every station's tile as this instance knows it.
fn build(status: &[StationStatus], alarms: &AlarmView, me: Option<&str>) -> Vec<Tile> {
    status.iter().map(|s| Tile::of(s, alarms, me)).collect()
}

/// One second of this instance's tiles, with the event bodies every dashboard in step with
/// the hub is sent: serialised once, however many listen.
#[derive(Debug, Default)]
pub struct Frame {
    /// Consecutive while anyone listens.
    pub version: u64,
    pub tiles: Vec<Tile>,
    /// The whole fleet, and what changed since the previous frame (`{now, totals, tiles}`).
    snapshot: String,
    delta: String,
}

impl Frame {
    fn new(version: u64, tiles: Vec<Tile>, before: &[Tile]) -> Self {
        let totals = Totals::of(&tiles);
        let now = now_ms();
        let changed: Vec<&Tile> = if before.len() == tiles.len() {
            tiles
                .iter()
                .zip(before)
                .filter(|(t, b)| t != b)
                .map(|(t, _)| t)
                .collect()
        } else {
            tiles.iter().collect()
        };
        let body =
            |tiles: &[&Tile]| json!({ "now": now, "totals": totals, "tiles": tiles }).to_string();
        Self {
            version,
            snapshot: body(&tiles.iter().collect::<Vec<_>>()),
            delta: body(&changed),
            tiles,
        }
    }
}

/// This instance's tiles, rebuilt once a second while any dashboard listens.
#[derive(Debug, Clone)]
pub struct Hub {
    frames: watch::Receiver<Arc<Frame>>,
    listeners: Arc<AtomicUsize>,
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
    /// The hub over the status and alarm views, and its task (to run on the caller's stage,
    /// until `stop`); `cluster`: the cluster's view, for this instance's name.
    pub fn start(
        status: watch::Receiver<Arc<Vec<StationStatus>>>,
        alarms: watch::Receiver<Arc<AlarmView>>,
        cluster: Option<watch::Receiver<Arc<crate::cluster::view::ClusterView>>>,
        stop: CancellationToken,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, frames) = watch::channel(Arc::new(Frame::default()));
        let listeners = Arc::new(AtomicUsize::new(0));
        let count = listeners.clone();
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
                let tiles = build(&status.borrow(), &alarms, me.as_deref());
                let before = tx.borrow().clone();
                let _ = tx.send(Arc::new(Frame::new(
                    before.version + 1,
                    tiles,
                    &before.tiles,
                )));
            }
        };
        (Self { frames, listeners }, task)
    }

    fn listen(&self) -> (watch::Receiver<Arc<Frame>>, Listening) {
        self.listeners.fetch_add(1, Ordering::Relaxed);
        (self.frames.clone(), Listening(self.listeners.clone()))
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
    let alarms = st.alarms.borrow().clone();
    let local = build(&st.status.borrow(), &alarms, me.as_deref());
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
/// once; then about once a second a `delta` with the tiles that changed, and always the
/// totals and the server's clock. A dashboard in step with the hub is sent the hub's own
/// bodies; one that skipped a frame gets a snapshot again. In a cluster each connection
/// merges the members' tiles and works out its own delta.
pub(super) async fn live(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    authorize(&st.tokens, &headers, Role::Viewer)?;
    let (rx, listening) = st.live.listen();
    let state = Feed {
        st,
        headers,
        rx,
        _listening: listening,
        sent: None,
        version: None,
    };
    let stream = futures::stream::unfold(state, |mut f| async move {
        let (kind, data) = f.next().await?;
        Some((Ok(Event::default().event(kind).data(data)), f))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One dashboard's feed.
struct Feed {
    st: ApiState,
    headers: HeaderMap,
    rx: watch::Receiver<Arc<Frame>>,
    _listening: Listening,
    /// In a cluster: the tiles sent so far.
    sent: Option<HashMap<String, Tile>>,
    /// Alone: the hub's frame sent last (`None`: the first, built at once).
    version: Option<u64>,
}

impl Feed {
    /// The next event: its kind and body.
    async fn next(&mut self) -> Option<(&'static str, String)> {
        if self.st.peers.is_none() {
            return self.next_alone().await;
        }
        if self.sent.is_some() {
            self.rx.changed().await.ok()?;
        }
        let me = self.st.peers.as_ref().map(|p| p.view.borrow().name.clone());
        let local = match self.sent {
            // The first answer at once, not at the hub's next second.
            None => {
                let alarms = self.st.alarms.borrow().clone();
                build(&self.st.status.borrow(), &alarms, me.as_deref())
            }
            Some(_) => self.rx.borrow_and_update().tiles.clone(),
        };
        let tiles = fleet(&self.st, &self.headers, local).await;
        let totals = Totals::of(&tiles);
        let (kind, changed) = match self.sent.as_mut() {
            None => {
                self.sent = Some(tiles.iter().map(|t| (t.id.clone(), t.clone())).collect());
                ("snapshot", tiles)
            }
            Some(before) => {
                let changed: Vec<Tile> = tiles
                    .into_iter()
                    .filter(|t| before.get(&t.id) != Some(t))
                    .collect();
                for t in &changed {
                    before.insert(t.id.clone(), t.clone());
                }
                ("delta", changed)
            }
        };
        let body = json!({ "now": now_ms(), "totals": totals, "tiles": changed });
        Some((kind, body.to_string()))
    }

    async fn next_alone(&mut self) -> Option<(&'static str, String)> {
        let Some(last) = self.version else {
            // The first answer at once, not at the hub's next second; the hub's next frame
            // then goes whole (its delta is from a frame this dashboard did not get).
            self.rx.borrow_and_update();
            self.version = Some(0);
            let alarms = self.st.alarms.borrow().clone();
            let tiles = build(&self.st.status.borrow(), &alarms, None);
            let frame = Frame::new(0, tiles, &[]);
            return Some(("snapshot", frame.snapshot));
        };
        self.rx.changed().await.ok()?;
        let frame = self.rx.borrow_and_update().clone();
        self.version = Some(frame.version);
        // The hub's delta is from its previous frame: only for a dashboard that had it.
        if frame.version == last + 1 && last > 0 {
            Some(("delta", frame.delta.clone()))
        } else {
            Some(("snapshot", frame.snapshot.clone()))
        }
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
    fn a_frame_carries_only_the_changed_tiles_in_its_delta() {
        let before = vec![
            tile("a", TileState::InControl, 100.0, 1.0, 40.0),
            tile("b", TileState::InControl, 50.0, 3.0, 44.0),
        ];
        let mut now = before.clone();
        now[1].state = TileState::Stale;
        let f = Frame::new(7, now, &before);
        let delta: Value = serde_json::from_str(&f.delta).unwrap();
        let snapshot: Value = serde_json::from_str(&f.snapshot).unwrap();
        assert_eq!(delta["tiles"].as_array().unwrap().len(), 1);
        assert_eq!(delta["tiles"][0]["id"], "b");
        assert_eq!(delta["tiles"][0]["state"], "stale");
        assert_eq!(snapshot["tiles"].as_array().unwrap().len(), 2);
        assert_eq!(delta["totals"]["by_state"]["stale"], 1);
        // After a pause (or at the start) everything is new.
        let first = Frame::new(1, before.clone(), &[]);
        assert_eq!(first.delta, first.snapshot);
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
