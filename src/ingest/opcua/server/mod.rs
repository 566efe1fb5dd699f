//! One task per OPC UA server: keep its session, subscribe to (or poll) every read node of
//! its stations, and turn the values into readings.
//!
//! Data flow: each data change carries its station and node in the monitored item's client
//! handle. A publish response's changes are applied together to each station's latest values;
//! every station they touched gives one reading, stamped with the newest source timestamp
//! among them, handed to the same decoder and [`crate::ingest::slot::accept`] as an MQTT payload. A station
//! whose values did not change is read again from its latest values once per interval while
//! the subscription is alive (the server's keep-alive says they are still current), so a
//! steady station with a deadband does not go stale.
//!
//! Faults: a value whose status is not Good (Bad or Uncertain) makes its station's readings
//! refused with the status as the reason, counted as a reject, until a Good value replaces it.
//! A reading not newer than the station's last one is dropped: after a reconnect the server
//! sends every item's current value again, which is already stored. While the link is down
//! every station of the server has its `comm_error` set (the comm-lost alarm) and goes stale;
//! the first connect is retried here with backoff, later ones by the session's event loop. A
//! dead server costs only its own stations: each server has its own task and session.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

mod readings;
mod subscription;

use opcua::client::Session;
use opcua::types::{DataValue, NodeId, ReadValueId, TimestampsToReturn, Variant};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::map::Access;
use super::session::{self, LinkEvent};
use super::{Mode, ServerConfig, StationNodes};
use crate::backoff::Backoff;
use crate::ingest::decode::DecodeLimits;
use crate::ingest::slot::StationSlot;
use crate::stats::Stats;
use crate::store::StoreHandle;

/// The session a station's writer may use: set while the server is connected.
#[derive(Clone)]
pub struct Live {
    pub session: Arc<Session>,
    /// The index of the map's `namespace_uri` on this server (0 without one).
    pub ns: u16,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Live(ns {})", self.ns)
    }
}

/// What the server's task needs besides its config.
#[derive(Debug, Clone)]
pub struct Parts {
    pub store: StoreHandle,
    pub stats: Arc<Stats>,
    pub limits: DecodeLimits,
}

/// One monitored (or polled) node: its station and its index in the station's map.
struct Item {
    station: usize,
    node: usize,
    id: NodeId,
    deadband: Option<f64>,
}

/// A station's latest values, by index into its map's nodes.
struct Latest {
    values: Vec<Option<DataValue>>,
    /// Newest source timestamp among the changes not yet read into a reading (ms).
    pending_ts: Option<i64>,
    /// The last reading's timestamp: a reading must be newer.
    last_ts: i64,
    /// When a reading was last made from this station's values.
    last_read: Instant,
    /// The reject last logged, so a status that stays bad is logged once.
    logged: Option<String>,
}

/// The monitored items' changes of one publish response: (client handle, value).
type Batch = Vec<(u32, DataValue)>;

/// The server's task: its stations, their latest values, the items that carry them.
struct Server {
    cfg: ServerConfig,
    stations: Vec<(StationNodes, Arc<StationSlot>)>,
    latest: Vec<Latest>,
    items: Vec<Item>,
    parts: Parts,
    live: watch::Sender<Option<Live>>,
    /// Polling instead of a subscription (configured, or the server refused one).
    polling: bool,
    /// The link's last problem, logged once per change.
    logged: Option<String>,
    /// A publish response arrived since the last interval: the subscription is alive.
    published: bool,
    /// The index of the maps' namespace URI, found on the first connect.
    ns: u16,
    /// The subscription on the current session.
    subscription: Option<u32>,
    /// The session is up (between an `Up` and a `Down`).
    connected: bool,
}

/// Reads the stations of one server until `stop` is cancelled. `live` tells the stations'
/// writers which session to write on.
pub async fn run(
    cfg: ServerConfig,
    stations: Vec<(StationNodes, Arc<StationSlot>)>,
    parts: Parts,
    live: watch::Sender<Option<Live>>,
    stop: CancellationToken,
) {
    // Files, off the async workers.
    let pki = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || session::prepare_pki(&cfg))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    };
    if let Err(e) = pki {
        warn!(server = %cfg.name, problem = %e, "OPC UA certificate store not usable; the server's stations stay stale.");
        let mut s = Server::new(cfg, stations, parts, live);
        s.down(&format!("certificate store: {e}"));
        stop.cancelled().await;
        return;
    }
    let mut s = Server::new(cfg, stations, parts, live);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let connected = tokio::select! {
            c = session::connect(&s.cfg) => c,
            _ = stop.cancelled() => return,
        };
        match connected {
            Ok((session, events, task)) => {
                backoff.reset();
                s.serve(session.clone(), events, &stop).await;
                s.live.send_replace(None);
                s.connected = false;
                // Closing the session politely is worth a second, not the stop's whole grace.
                let polite = s.cfg.timeout.min(Duration::from_secs(1));
                let _ = tokio::time::timeout(polite, session.disconnect()).await;
                task.abort();
                if stop.is_cancelled() {
                    return;
                }
            }
            Err(e) => {
                s.down(&format!("connect to {}: {e}", s.cfg.endpoint));
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

impl Server {
    fn new(
        cfg: ServerConfig,
        stations: Vec<(StationNodes, Arc<StationSlot>)>,
        parts: Parts,
        live: watch::Sender<Option<Live>>,
    ) -> Self {
        let latest = stations
            .iter()
            .map(|(n, _)| Latest {
                values: vec![None; n.map.nodes.len()],
                pending_ts: None,
                last_ts: 0,
                last_read: Instant::now(),
                logged: None,
            })
            .collect();
        let polling = cfg.mode == Mode::Poll;
        Self {
            cfg,
            stations,
            latest,
            items: Vec::new(),
            parts,
            live,
            polling,
            logged: None,
            published: false,
            ns: 0,
            subscription: None,
            connected: false,
        }
    }

    /// Serves one connected session until its event loop ends or `stop`.
    async fn serve(
        &mut self,
        session: Arc<Session>,
        mut events: mpsc::UnboundedReceiver<LinkEvent>,
        stop: &CancellationToken,
    ) {
        let (tx, mut batches) = mpsc::unbounded_channel::<Batch>();
        let mut subscribed = false;
        // The subscription publishes (data or keep-alive) every interval: silence this long on
        // a live session means it is gone.
        let silent = self.cfg.interval * 4 + self.cfg.timeout;
        let mut last_publish = Instant::now();
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    None => return,
                    Some(LinkEvent::Up { .. }) if !subscribed => {
                        // The first connect: resolve the namespace, then subscribe (or poll).
                        match self.set_up(&session, tx.clone()).await {
                            Ok(()) => subscribed = true,
                            Err(e) => {
                                self.down(&e);
                                return; // reconnect from scratch, with backoff
                            }
                        }
                    }
                    Some(LinkEvent::Up { new_session }) => {
                        // The old session again keeps its subscription; a new one (the server
                        // restarted, or forgot us) gets a new subscription from us: the
                        // client cannot transfer it.
                        if new_session && !self.polling {
                            if let Err(e) = self.resubscribe(&session, tx.clone()).await {
                                self.down(&e);
                                return;
                            }
                        }
                        last_publish = Instant::now();
                        self.up(&session);
                    }
                    Some(LinkEvent::Down(why)) => {
                        self.live.send_replace(None);
                        self.connected = false;
                        self.down(&why);
                    }
                    Some(LinkEvent::Published) => {
                        self.published = true;
                        last_publish = Instant::now();
                    }
                },
                Some(batch) = batches.recv() => {
                    let mut more = vec![batch];
                    while let Ok(b) = batches.try_recv() {
                        more.push(b);
                    }
                    self.apply(more.into_iter().flatten());
                }
                _ = tick.tick() => {
                    let live = subscribed && self.connected;
                    if live && self.polling {
                        self.poll(&session).await;
                    } else if live && last_publish.elapsed() > silent {
                        // Connected, yet neither data nor keep-alive: the server dropped the
                        // subscription (its lifetime ran out during a long cut, or it was
                        // deleted). A new one, rather than waiting forever.
                        warn!(server = %self.cfg.name, silent_s = last_publish.elapsed().as_secs(),
                            "OPC UA subscription silent on a live session; creating it again.");
                        last_publish = Instant::now();
                        if let Err(e) = self.resubscribe(&session, tx.clone()).await {
                            self.down(&e);
                            return;
                        }
                    }
                    self.refresh();
                }
                _ = stop.cancelled() => return,
            }
        }
    }

    /// After the first connect: the namespace index, the items, and the subscription (or
    /// polling when configured or when the server refuses to subscribe).
    async fn set_up(
        &mut self,
        session: &Arc<Session>,
        tx: mpsc::UnboundedSender<Batch>,
    ) -> Result<(), String> {
        let ns = self.namespace(session).await?;
        self.ns = ns;
        self.items.clear();
        for (si, (st, _)) in self.stations.iter().enumerate() {
            for (ni, node) in st.map.nodes.iter().enumerate() {
                if node.access != Access::Read {
                    continue;
                }
                let id = st.map.node_id(node, &st.node, ns)?;
                self.items.push(Item {
                    station: si,
                    node: ni,
                    id,
                    deadband: node.deadband,
                });
            }
        }
        if !self.polling {
            self.subscribe_or_poll(session, tx).await?;
        }
        self.up(session);
        info!(server = %self.cfg.name, endpoint = %self.cfg.endpoint, items = self.items.len(),
            polling = self.polling, "OPC UA server connected.");
        Ok(())
    }

    /// The index of the maps' namespace URI on this server (0 when no map names one).
    async fn namespace(&self, session: &Arc<Session>) -> Result<u16, String> {
        let Some(uri) = self
            .stations
            .iter()
            .find_map(|(s, _)| s.map.namespace_uri.clone())
        else {
            return Ok(0);
        };
        let array = NodeId::new(0, 2255u32); // Server_NamespaceArray
        let read = tokio::time::timeout(
            self.cfg.timeout,
            session.read(
                &[ReadValueId::from(array)],
                TimestampsToReturn::Neither,
                0.0,
            ),
        )
        .await
        .map_err(|_| "reading the namespace array: timed out".to_owned())?
        .map_err(|e| format!("reading the namespace array: {e}"))?;
        let names: Vec<String> = match read.first().and_then(|v| v.value.clone()) {
            Some(Variant::Array(a)) => a
                .values
                .iter()
                .map(|v| match v {
                    Variant::String(s) => s.as_ref().to_owned(),
                    _ => String::new(),
                })
                .collect(),
            _ => Vec::new(),
        };
        names
            .iter()
            .position(|n| *n == uri)
            .map(|i| i as u16)
            .ok_or_else(|| format!("the server has no namespace {uri:?} (it has {names:?})"))
    }

    /// The link is up: the stations' link errors clear (a node the server lacks stays named).
    fn up(&mut self, session: &Arc<Session>) {
        self.connected = true;
        if self.logged.take().is_some() {
            info!(server = %self.cfg.name, endpoint = %self.cfg.endpoint, "OPC UA server answering again.");
        }
        if self.live.borrow().is_none() {
            self.live.send_replace(Some(Live {
                session: session.clone(),
                ns: self.ns,
            }));
        }
        for (_, slot) in &self.stations {
            let mut e = slot.comm_error.lock().unwrap_or_else(|p| p.into_inner());
            if e.as_deref().is_some_and(|t| t.starts_with("OPC UA server")) {
                *e = None;
            }
        }
    }

    /// The link is down: every station of the server shows why (the comm-lost alarm).
    fn down(&mut self, why: &str) {
        self.parts
            .stats
            .opcua_link_failures
            .fetch_add(1, Ordering::Relaxed);
        let text = format!(
            "OPC UA server {} ({}): {why}",
            self.cfg.name, self.cfg.endpoint
        );
        let kind = why.split(':').next().unwrap_or_default().to_owned();
        if self.logged.as_deref() != Some(&kind) {
            warn!(server = %self.cfg.name, endpoint = %self.cfg.endpoint, problem = %why,
                "OPC UA server unreachable; its stations go stale and it is retried with backoff.");
            self.logged = Some(kind);
        }
        for (_, slot) in &self.stations {
            *slot.comm_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text.clone());
        }
    }
}
