//! The engine: wires MQTT ingest, the per-station controllers, the command publisher and the
//! storage writer, and shuts them down in order.
//!
//! ```text
//!  MQTT event loop ──► Ingest ──► StationSlot (latest reading, per station) ──► control tick
//!        ▲               │                                                     │
//!        │               └──► StoreHandle ──► Writer ──► InfluxDB / files ◄────┤ command lines
//!        └──────────────────── Link::try_publish (commands, QoS 1) ◄───────────┘
//! ```
//! Shutdown (SIGINT/SIGTERM or [`EngineHandle::shutdown`]): stop the control tick, publish the
//! engine's `offline` presence and let the event loop send what is queued, then close the
//! storage queue and let the writer flush it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::alarms::AlarmBook;
use crate::clock::now_ms;
use crate::command::seq::SeqStore;
use crate::config::{Config, ControlOn, StationConfig};
use crate::control::coordinator::{Coordinator, Observation};
use crate::control::{Outputs, StationController, Tick};
use crate::ingest::mqtt::{self, Link, Presence};
use crate::ingest::{Ingest, StationSlot, Weather};
use crate::model::{Command, Mode, Reading, StationId};
use crate::stats::Stats;
use crate::store::spool::{FsyncPolicy, Spool, SpoolConfig};
use crate::store::{self, line_protocol, Sink, StoreHandle, Writer, WriterConfig};

/// What the engine knows about one station after the last tick.
#[derive(Debug, Clone)]
pub struct StationStatus {
    pub id: StationId,
    pub mode: Mode,
    pub stale: bool,
    pub reading: Option<Reading>,
    pub outputs: Option<Outputs>,
    /// Last command seq sent (0: none yet).
    pub seq: u64,
    pub supply_offset_k: f64,
    /// The district coordinator's offset on the curve, K (0 without a coordinator).
    pub district_offset_k: f64,
    /// Operator's fixed supply setpoint and its expiry (Unix ms).
    pub fixed_supply: Option<(f64, Option<i64>)>,
    /// Highest `seq` the station acknowledged on `…/ack` (0: none), and its last ack error.
    pub acked_seq: u64,
    pub ack_error: Option<String>,
    /// Heat delivered since 00:00 UTC, GJ (integrated from heat_kw over plant time).
    pub heat_today_gj: f64,
    /// Every KPI of the day so far, from telemetry.
    pub kpis_today: crate::kpi::DayKpis,
    /// Recent (supply °C, setpoint °C) samples, one per minute of plant time, oldest first.
    pub trend: Vec<(f64, f64)>,
    pub tags: std::collections::BTreeMap<String, String>,
    /// Heated area: the reading's, else the config's.
    pub area_m2: Option<f64>,
    /// How the station is reached: `mqtt`, or `modbus tcp://host:port unit N`.
    pub link: String,
    /// Modbus: why the last poll or write failed (`None` while it answers).
    pub link_error: Option<String>,
}

/// An operator's change to one station, checked against the station's hard safety limits.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// Offset added to the heating curve (K), and/or a fixed supply setpoint (°C) with an
    /// optional expiry; `clear_fixed` returns to the curve.
    Supply {
        #[serde(default)]
        offset_k: Option<f64>,
        #[serde(default)]
        fixed_c: Option<f64>,
        #[serde(default)]
        expires_in_s: Option<f64>,
        #[serde(default)]
        clear_fixed: bool,
    },
    /// Replace the station's heating curve: [outdoor °C, supply °C] points.
    Curve { points: Vec<[f64; 2]> },
    /// Acknowledge an active alarm (the station is ignored).
    AckAlarm { id: u64 },
    /// Mode change; `manual` needs `valve_pct` and `pump_pct`.
    Mode {
        mode: Mode,
        #[serde(default)]
        valve_pct: Option<f64>,
        #[serde(default)]
        pump_pct: Option<f64>,
    },
}

/// Why a change was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChangeError {
    #[error("unknown station {0:?}")]
    UnknownStation(String),
    #[error("{0}")]
    UnknownAlarm(String),
    #[error("refused by safety limit: {0}")]
    Limit(String),
    #[error("invalid change: {0}")]
    Invalid(String),
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// What an applied change did (also the audit record's before → after).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Applied {
    pub station: String,
    pub action: String,
    pub before: String,
    pub after: String,
}

/// A change on its way to the control task, with the operator's name and the reply slot.
#[derive(Debug)]
pub struct ChangeRequest {
    pub station: String,
    pub change: Change,
    pub user: String,
    pub reply: tokio::sync::oneshot::Sender<Result<Applied, ChangeError>>,
}

/// A running engine.
#[derive(Debug)]
pub struct EngineHandle {
    status: watch::Receiver<Arc<Vec<StationStatus>>>,
    stats: Arc<Stats>,
    stop_control: watch::Sender<bool>,
    stop_mqtt: watch::Sender<bool>,
    link: Link,
    presence: Presence,
    control: JoinHandle<()>,
    event_loop: JoinHandle<()>,
    /// Resolves when the storage writer's thread has finished.
    writer: tokio::sync::oneshot::Receiver<()>,
    stop_writer: watch::Sender<bool>,
    fsync: Option<JoinHandle<()>>,
    spool: Arc<Spool>,
    changes: mpsc::Sender<ChangeRequest>,
    api: Option<(std::net::SocketAddr, JoinHandle<()>)>,
    alarms: watch::Receiver<Arc<AlarmView>>,
    stop_modbus: watch::Sender<bool>,
    pollers: Vec<JoinHandle<()>>,
    modbus: Vec<(StationId, Arc<crate::ingest::modbus::poller::Counters>)>,
}

/// Starts every task of the engine for `cfg`. Fails only on local problems (data directory,
/// seq file, database URL); an unreachable broker or database is retried in the background.
pub async fn start(cfg: Config) -> anyhow::Result<EngineHandle> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data_dir {}", cfg.data_dir.display()))?;
    let seqs = SeqStore::open(&cfg.data_dir, cfg.storage.fsync).map_err(anyhow::Error::msg)?;
    let stats = Arc::new(Stats::default());

    let sink = match &cfg.storage.influxdb {
        Some(i) => Sink::Influx(Box::new(
            store::influx::InfluxWriter::new(i).map_err(anyhow::Error::msg)?,
        )),
        None => {
            let dir = cfg.data_dir.join("lp");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Sink::Files { dir }
        }
    };
    let spool = Spool::open(SpoolConfig {
        dir: cfg.data_dir.join("spool"),
        segment_bytes: cfg.storage.segment_bytes,
        max_bytes: cfg.storage.max_spool_bytes,
        fsync: cfg.storage.fsync,
    })
    .with_context(|| {
        format!(
            "cannot open the spool in {}",
            cfg.data_dir.join("spool").display()
        )
    })?;
    let store = StoreHandle::new(spool.clone(), stats.clone());
    let (stop_writer, stop_writer_rx) = watch::channel(false);
    let writer = Writer::new(
        WriterConfig {
            batch_size: cfg.storage.batch_size,
            flush_interval: cfg.storage.flush_interval,
            dead_letter_dir: cfg.data_dir.join("dead-letter"),
        },
        sink,
        spool.clone(),
        stats.clone(),
    );
    let writer = spawn_dedicated(
        "heatgrid-writer",
        writer.run(stop_writer_rx.clone(), Duration::from_secs(10)),
    )?;
    let fsync = match cfg.storage.fsync {
        FsyncPolicy::Interval(every) => Some(tokio::spawn(fsync_task(
            spool.clone(),
            every,
            stop_writer_rx,
        ))),
        _ => None,
    };

    // Control following telemetry: accepted readings wake the control task (bounded queue).
    let (trigger_tx, trigger_rx) = match cfg.control_on {
        ControlOn::Telemetry => {
            let (tx, rx) = mpsc::channel(TRIGGER_CAPACITY);
            (Some(tx), Some(rx))
        }
        ControlOn::Tick => (None, None),
    };
    let slots: Vec<(StationConfig, Arc<StationSlot>)> = cfg
        .stations
        .iter()
        .enumerate()
        .map(|(index, s)| {
            let slot = StationSlot {
                latest: Mutex::new(None),
                rejects: Default::default(),
                presence: Default::default(),
                acked_seq: Default::default(),
                ack_error: Mutex::new(None),
                tags: s.tags.clone(),
                area_m2: s.params.heated_area_m2,
                comm_error: Mutex::new(None),
                modbus: s.modbus.as_ref().map(|_| Default::default()),
                accepted_us: Default::default(),
                index,
                trigger: trigger_tx.clone(),
            };
            (s.clone(), Arc::new(slot))
        })
        .collect();
    let weather: Weather = Arc::new(Mutex::new(None));

    let prefix = cfg.mqtt.topic_prefix.clone();
    let presence = Presence {
        topic: format!("{prefix}/engine/state"),
        online: "online",
        offline: "offline",
    };
    let (link, el) = mqtt::connect(&cfg.mqtt, &cfg.mqtt.client_id, Some(&presence));
    let mut ingest = Ingest::new(
        &prefix,
        slots
            .iter()
            .map(|(c, s)| (c.id.clone(), s.clone()))
            .collect(),
        weather.clone(),
        store.clone(),
        stats.clone(),
        cfg.decode,
    );
    let subs = ingest.subscriptions(cfg.mqtt.telemetry_qos == 1);
    let (stop_mqtt, stop_mqtt_rx) = watch::channel(false);
    let ev_stats = stats.clone();
    let event_loop = tokio::spawn(mqtt::run_event_loop(
        el,
        link.clone(),
        cfg.mqtt.ack_after_spool,
        Some(cfg.mqtt.watchdog),
        subs,
        Some(presence.clone()),
        stop_mqtt_rx,
        move |ev| match ev {
            mqtt::Event::Connected => {
                ev_stats.mqtt_connects.fetch_add(1, Ordering::Relaxed);
            }
            mqtt::Event::Subscribed => {
                let n = ev_stats.mqtt_subacks.fetch_add(1, Ordering::Relaxed) + 1;
                if n % crate::ingest::SUBSCRIPTIONS as u64 == 0 {
                    info!("MQTT subscriptions confirmed.");
                }
            }
            mqtt::Event::Watchdog => {
                ev_stats.mqtt_watchdog.fetch_add(1, Ordering::Relaxed);
            }
            mqtt::Event::Message { topic, payload } => ingest.on_message(topic, payload, now_ms()),
            mqtt::Event::BurstEnd => ingest.flush(),
        },
    ));

    // Modbus stations: one poller each, fed commands through a latest-wins channel.
    let (stop_modbus, stop_modbus_rx) = watch::channel(false);
    let mut modbus_tx = Vec::with_capacity(slots.len());
    let mut pollers = Vec::new();
    let modbus: Vec<_> = slots
        .iter()
        .filter_map(|(c, s)| Some((c.id.clone(), s.modbus.clone()?)))
        .collect();
    for (c, slot) in &slots {
        let (Some(m), Some(counters)) = (&c.modbus, &slot.modbus) else {
            modbus_tx.push(None);
            continue;
        };
        let (tx, rx) = watch::channel(None);
        modbus_tx.push(Some(tx));
        pollers.push(tokio::spawn(crate::ingest::modbus::poller::run(
            m.clone(),
            slot.clone(),
            counters.clone(),
            store.clone(),
            stats.clone(),
            cfg.decode,
            cfg.tick.max(m.interval),
            rx,
            stop_modbus_rx.clone(),
        )));
    }
    if !pollers.is_empty() {
        info!(stations = pollers.len(), "Modbus pollers started.");
    }

    let (status_tx, status) = watch::channel(Arc::new(Vec::new()));
    let (stop_control, stop_control_rx) = watch::channel(false);
    // Operator changes: bounded; a full queue makes the API answer 503 rather than wait.
    let (changes, changes_rx) = mpsc::channel(64);
    let audit = crate::api::audit::Audit::open(&cfg.data_dir.join("audit.log"))
        .with_context(|| format!("cannot open {}", cfg.data_dir.join("audit.log").display()))?;
    let alarms = AlarmBook::open(cfg.data_dir.join("alarms.json")).map_err(anyhow::Error::msg)?;
    let (alarms_tx, alarms_rx) = watch::channel(Arc::new(AlarmView::default()));
    let mut control = Control {
        stations: slots
            .into_iter()
            .map(|(c, slot)| {
                let mut ctrl = StationController::new(
                    c.params.clone(),
                    cfg.tick.as_secs_f64() * cfg.time_scale,
                );
                ctrl.set_mode(c.mode, None);
                (c, slot, ctrl)
            })
            .collect(),
        link: link.clone(),
        modbus_tx,
        store,
        seqs,
        weather,
        stats: stats.clone(),
        prefix,
        valid_for_s: cfg.command_valid_for_s,
        default_outdoor_c: cfg.default_outdoor_c,
        weather_max_age_ms: cfg.weather_max_age_ms,
        status_tx,
        audit,
        alarms,
        alarms_tx,
        reject_window: vec![Default::default(); cfg.stations.len()],
        started_ms: now_ms(),
        storage_seen: (0, 0, 0),
        storage_problem_ms: None,
        kpis: vec![Kpi::default(); cfg.stations.len()],
        rate_window: Default::default(),
        dt_s: cfg.tick.as_secs_f64() * cfg.time_scale,
        time_scale: cfg.time_scale,
        ticks: 0,
        control_on: cfg.control_on,
        last_step_ms: vec![0; cfg.stations.len()],
        stepped_ts: vec![i64::MIN; cfg.stations.len()],
        coordinator: None,
        coordinator_path: cfg.data_dir.join("coordinator.json"),
    };
    if let Some(c) = cfg.coordinator.clone() {
        control.coordinator = Some(Coordinator::new(c, cfg.stations.len()));
        control.restore_district_offsets()?;
    }
    control.publish_alarms();
    let control = tokio::spawn(control.run(cfg.tick, stop_control_rx, changes_rx, trigger_rx));
    let api = match cfg.api.listen {
        Some(addr) => {
            let state = crate::api::http::ApiState {
                status: status.clone(),
                stats: stats.clone(),
                spool: spool.clone(),
                changes: changes.clone(),
                tokens: Arc::new(cfg.api.tokens.clone()),
                alarms: alarms_rx.clone(),
                stations: Arc::new(cfg.stations.clone()),
            };
            let (bound, task) = crate::api::http::serve(addr, state, stop_control.subscribe())
                .await
                .with_context(|| format!("cannot listen on api.listen {addr}"))?;
            info!(addr = %bound, tokens = cfg.api.tokens.len(), "Operator API listening.");
            Some((bound, task))
        }
        None => None,
    };
    info!(stations = cfg.stations.len(), broker = %format!("{}:{}", cfg.mqtt.host, cfg.mqtt.port),
        tick_ms = cfg.tick.as_millis() as u64, "Engine started.");
    Ok(EngineHandle {
        status,
        stats,
        stop_control,
        stop_mqtt,
        link,
        presence,
        control,
        event_loop,
        writer,
        stop_writer,
        fsync,
        spool,
        changes,
        api,
        alarms: alarms_rx,
        stop_modbus,
        pollers,
        modbus,
    })
}

/// Runs the engine until `shutdown` resolves, then stops it in order.
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let engine = start(cfg).await?;
    shutdown.await;
    info!("Shutdown requested.");
    engine.shutdown().await;
    Ok(())
}

impl EngineHandle {
    /// Per-station state after the last tick.
    pub fn status(&self) -> Arc<Vec<StationStatus>> {
        self.status.borrow().clone()
    }

    /// A receiver that changes after every tick.
    pub fn watch_status(&self) -> watch::Receiver<Arc<Vec<StationStatus>>> {
        self.status.clone()
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Resolves once the broker confirmed every subscription of the first connection (or
    /// `timeout` passed: returns false). Messages published before that reach nobody.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while Stats::get(&self.stats.mqtt_subacks) < crate::ingest::SUBSCRIPTIONS as u64 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Active and recently cleared alarms.
    pub fn alarms(&self) -> Arc<AlarmView> {
        self.alarms.borrow().clone()
    }

    /// Where the operator API listens, if enabled.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.api.as_ref().map(|(a, _)| *a)
    }

    /// Applies an operator change as `user` (what the API does for a request).
    pub async fn apply(
        &self,
        station: &str,
        change: Change,
        user: &str,
    ) -> Result<Applied, ChangeError> {
        crate::api::http::send_change(&self.changes, station, change, user).await
    }

    /// The Modbus stations' poller counters, in config order.
    pub fn modbus_counters(&self) -> &[(StationId, Arc<crate::ingest::modbus::poller::Counters>)] {
        &self.modbus
    }

    /// Points and bytes waiting in the spool now.
    pub fn spool_depth(&self) -> store::spool::Depth {
        self.spool.depth()
    }

    /// Ordered shutdown: control, then MQTT (queued commands and presence go out), then storage.
    pub async fn shutdown(self) {
        let _ = self.stop_control.send(true);
        if let Some((_, api)) = self.api {
            let _ = api.await;
        }
        if let Err(e) = self.control.await {
            error!(error = %e, "Control task failed.");
        }
        // Modbus pollers: each finishes the request in hand (bounded by its timeout).
        let _ = self.stop_modbus.send(true);
        for p in self.pollers {
            if tokio::time::timeout(Duration::from_secs(10), p)
                .await
                .is_err()
            {
                warn!("A Modbus poller did not stop within 10 s.");
            }
        }
        let _ = self.link.try_publish(
            &self.presence.topic,
            true,
            true,
            self.presence.offline.as_bytes().to_vec(),
        );
        self.link.disconnect().await;
        let mut event_loop = self.event_loop;
        if tokio::time::timeout(Duration::from_secs(5), &mut event_loop)
            .await
            .is_err()
        {
            warn!("MQTT did not disconnect within 5 s; closing the connection.");
            let _ = self.stop_mqtt.send(true);
            let _ = event_loop.await;
        }
        // Storage last: it drains the spool for up to 10 s; what is left stays on disk and is
        // written first at the next start.
        let _ = self.stop_writer.send(true);
        if tokio::time::timeout(Duration::from_secs(15), self.writer)
            .await
            .is_err()
        {
            warn!("Storage writer did not finish within 15 s.");
        }
        if let Some(f) = self.fsync {
            let _ = f.await;
        }
        info!(
            written = Stats::get(&self.stats.store_written),
            refused = Stats::get(&self.stats.spool_refused),
            commands = Stats::get(&self.stats.commands_sent),
            "Engine stopped."
        );
    }
}

/// The control task's state.
struct Control {
    stations: Vec<(StationConfig, Arc<StationSlot>, StationController)>,
    link: Link,
    /// Per station: the Modbus poller's command channel (`None`: an MQTT station).
    modbus_tx: Vec<Option<watch::Sender<Option<Command>>>>,
    store: StoreHandle,
    seqs: SeqStore,
    weather: Weather,
    stats: Arc<Stats>,
    prefix: String,
    valid_for_s: u32,
    default_outdoor_c: f64,
    weather_max_age_ms: i64,
    status_tx: watch::Sender<Arc<Vec<StationStatus>>>,
    audit: crate::api::audit::Audit,
    alarms: AlarmBook,
    alarms_tx: watch::Sender<Arc<AlarmView>>,
    /// Per station: (when, rejects so far) samples over the last minute.
    reject_window: Vec<std::collections::VecDeque<(i64, u64)>>,
    started_ms: i64,
    storage_seen: (u64, u64, u64),
    storage_problem_ms: Option<i64>,
    kpis: Vec<Kpi>,
    rate_window: std::collections::VecDeque<(i64, u64)>,
    /// Plant seconds per tick, and plant seconds per wall second.
    dt_s: f64,
    time_scale: f64,
    ticks: u64,
    control_on: ControlOn,
    /// Per station: wall time of its last controller step, and the `ts` of the reading that
    /// step acted on (a reading is acted on once).
    last_step_ms: Vec<i64>,
    stepped_ts: Vec<i64>,
    /// The district coordinator, when enabled: observes every step, moves the stations'
    /// district offsets once per period of plant time.
    coordinator: Option<Coordinator>,
    /// Where the offsets are kept across restarts: `{"station id": offset_k, …}`.
    coordinator_path: std::path::PathBuf,
}

/// Control following telemetry: wake-ups queued for the control task (one per burst of
/// readings, each listing its stations), and the most stations it takes in one batch.
const TRIGGER_CAPACITY: usize = 8_192;
const TRIGGER_BATCH: usize = 4_096;

/// Samples kept for a station's recent trend (one per minute of plant time).
const TREND_LEN: usize = 30;

/// Per-station figures the control task accumulates.
#[derive(Debug, Default, Clone)]
struct Kpi {
    day: i64,
    today: crate::kpi::DayKpis,
    trend: std::collections::VecDeque<(f64, f64)>,
    /// Wall time of the last trend sample (one per minute of plant time).
    trend_at_ms: i64,
}

/// Active and recently cleared alarms, published after every change.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct AlarmView {
    pub active: Vec<crate::alarms::Alarm>,
    pub recent: Vec<crate::alarms::Alarm>,
}

impl Control {
    async fn run(
        mut self,
        tick: Duration,
        mut stop: watch::Receiver<bool>,
        mut changes: mpsc::Receiver<ChangeRequest>,
        mut triggers: Option<mpsc::Receiver<Vec<u32>>>,
    ) {
        async fn next(rx: &mut Option<mpsc::Receiver<Vec<u32>>>) -> Option<Vec<u32>> {
            match rx {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        }
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                scheduled = interval.tick() => {
                    let late = scheduled.elapsed().as_micros() as u64;
                    self.stats.tick_lateness_us.store(late, Ordering::Relaxed);
                    self.stats.tick_lateness_max_us.fetch_max(late, Ordering::Relaxed);
                    self.stats.ticks.fetch_add(1, Ordering::Relaxed);
                    self.tick(now_ms());
                }
                Some(mut batch) = next(&mut triggers) => {
                    // Everything queued now goes in one batch: one seq fsync for all of it.
                    if let Some(rx) = triggers.as_mut() {
                        while batch.len() < TRIGGER_BATCH {
                            match rx.try_recv() {
                                Ok(more) => batch.extend(more),
                                Err(_) => break,
                            }
                        }
                    }
                    self.on_telemetry(&batch, now_ms());
                }
                Some(req) = changes.recv() => {
                    let result = self.apply(&req.station, &req.change, &req.user);
                    let _ = req.reply.send(result);
                }
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Applies one operator change within the station's hard limits, audits it, and returns
    /// what changed. The next tick's command carries it to the station.
    fn apply(
        &mut self,
        station: &str,
        change: &Change,
        user: &str,
    ) -> Result<Applied, ChangeError> {
        if let Change::AckAlarm { id } = change {
            return self.ack_alarm(*id, user);
        }
        let (_, _, ctrl) = self
            .stations
            .iter_mut()
            .find(|(c, _, _)| c.id.as_str() == station)
            .ok_or_else(|| ChangeError::UnknownStation(station.to_owned()))?;
        let p = ctrl.params().clone();
        let finite = |name: &str, x: Option<f64>| match x {
            Some(v) if !v.is_finite() => Err(ChangeError::Invalid(format!(
                "{name} must be a finite number"
            ))),
            _ => Ok(()),
        };
        let (action, before, after) = match change {
            Change::Supply {
                offset_k,
                fixed_c,
                expires_in_s,
                clear_fixed,
            } => {
                finite("offset_k", *offset_k)?;
                finite("fixed_c", *fixed_c)?;
                finite("expires_in_s", *expires_in_s)?;
                if offset_k.is_none() && fixed_c.is_none() && !clear_fixed {
                    return Err(ChangeError::Invalid(
                        "give offset_k, fixed_c or clear_fixed".into(),
                    ));
                }
                if let Some(k) = offset_k {
                    if k.abs() > MAX_OFFSET_K {
                        return Err(ChangeError::Limit(format!(
                            "supply offset {k} K is outside ±{MAX_OFFSET_K} K"
                        )));
                    }
                }
                if let Some(c) = fixed_c {
                    if *c < p.supply_min_c || *c > p.supply_max_c {
                        return Err(ChangeError::Limit(format!(
                            "supply setpoint {c} °C is outside supply_min_c..supply_max_c = {}..{} °C",
                            p.supply_min_c, p.supply_max_c
                        )));
                    }
                }
                if expires_in_s.is_some_and(|e| e <= 0.0) {
                    return Err(ChangeError::Invalid("expires_in_s must be positive".into()));
                }
                let describe = |c: &StationController| match c.fixed_supply() {
                    Some((v, exp)) => format!(
                        "offset {:+} K, fixed {v} °C{}",
                        c.supply_offset_k(),
                        exp.map(|e| format!(" until {e}")).unwrap_or_default()
                    ),
                    None => format!("offset {:+} K, curve", c.supply_offset_k()),
                };
                let before = describe(ctrl);
                if let Some(k) = offset_k {
                    ctrl.set_supply_offset_k(*k);
                }
                if *clear_fixed {
                    ctrl.set_fixed_supply(None);
                }
                if let Some(c) = fixed_c {
                    let exp = expires_in_s.map(|s| now_ms() + (s * 1000.0) as i64);
                    ctrl.set_fixed_supply(Some((*c, exp)));
                }
                ("set_supply", before, describe(ctrl))
            }
            Change::AckAlarm { .. } => {
                return Err(ChangeError::Invalid("not a station change".into()))
            }
            Change::Curve { points } => {
                let curve = crate::control::curve::Curve::new(
                    points.iter().map(|p| (p[0], p[1])).collect(),
                )
                .map_err(ChangeError::Invalid)?;
                if let Some((o, c)) = curve
                    .points()
                    .iter()
                    .find(|(_, c)| *c < p.supply_min_c || *c > p.supply_max_c)
                {
                    return Err(ChangeError::Limit(format!(
                        "curve point [{o}, {c}] is outside supply_min_c..supply_max_c = {}..{} °C",
                        p.supply_min_c, p.supply_max_c
                    )));
                }
                let show = |c: &crate::control::curve::Curve| {
                    c.points()
                        .iter()
                        .map(|(o, s)| format!("{o}:{s}"))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let before = show(&p.curve);
                let after = show(&curve);
                ctrl.set_curve(curve);
                ("set_curve", before, after)
            }
            Change::Mode {
                mode,
                valve_pct,
                pump_pct,
            } => {
                finite("valve_pct", *valve_pct)?;
                finite("pump_pct", *pump_pct)?;
                let manual = match (mode, valve_pct, pump_pct) {
                    (Mode::Manual, Some(v), Some(pu)) => {
                        if *v < p.valve.out_min || *v > p.valve.out_max {
                            return Err(ChangeError::Limit(format!(
                                "valve {v} % is outside valve_min_pct..valve_max_pct = {}..{} %",
                                p.valve.out_min, p.valve.out_max
                            )));
                        }
                        if *pu < p.pump.out_min || *pu > p.pump.out_max {
                            return Err(ChangeError::Limit(format!(
                                "pump {pu} % is outside pump_min_pct..pump_max_pct = {}..{} %",
                                p.pump.out_min, p.pump.out_max
                            )));
                        }
                        Some((*v, *pu))
                    }
                    (Mode::Manual, _, _) => {
                        return Err(ChangeError::Invalid(
                            "manual mode needs valve_pct and pump_pct".into(),
                        ))
                    }
                    (_, None, None) => None,
                    _ => {
                        return Err(ChangeError::Invalid(
                            "valve_pct/pump_pct only go with manual".into(),
                        ))
                    }
                };
                let before = ctrl.mode().as_str().to_owned();
                ctrl.set_mode(*mode, manual);
                let after = match manual {
                    Some((v, pu)) => format!("manual (valve {v} %, pump {pu} %)"),
                    None => mode.as_str().to_owned(),
                };
                ("set_mode", before, after)
            }
        };
        let applied = Applied {
            station: station.to_owned(),
            action: action.to_owned(),
            before,
            after,
        };
        self.record_action(now_ms(), user, &applied);
        Ok(applied)
    }

    /// An applied operator action goes to the audit log, to storage (`operator_action`, with
    /// "before -> after" as its detail) and to the log.
    fn record_action(&mut self, now: i64, user: &str, a: &Applied) {
        self.audit.record(now, user, a);
        let line = line_protocol::LineBuilder::new("operator_action")
            .tag("station", &a.station)
            .tag("action", &a.action)
            .tag("user", user)
            .string("detail", &format!("{} -> {}", a.before, a.after))
            .finish(now);
        if let Some(line) = line {
            self.store.submit(line);
        }
        info!(station = %a.station, user, action = %a.action, before = %a.before, after = %a.after,
            "Operator action applied.");
    }

    fn fallback_outdoor(&self, now: i64) -> f64 {
        match *self.weather.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((ts, t)) if now - ts <= self.weather_max_age_ms => t,
            _ => self.default_outdoor_c,
        }
    }

    /// Runs station `i`'s controller on its latest reading at `now`, covering `dt_s` plant
    /// seconds; the command to send if it acted.
    fn step(&mut self, i: usize, now: i64, fallback_outdoor: f64, dt_s: f64) -> Option<Command> {
        let (cfg, slot, ctrl) = &mut self.stations[i];
        let reading = slot
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let day = now.div_euclid(86_400_000);
        let kpi = &mut self.kpis[i];
        if kpi.day != day {
            kpi.day = day;
            kpi.today = Default::default();
        }
        ctrl.set_dt(dt_s);
        self.last_step_ms[i] = now;
        match ctrl.tick(reading.as_ref(), fallback_outdoor, now) {
            Tick::Act(o) => {
                if let Some(r) = &reading {
                    // Only automatic control with the curve is coordinated: an operator's
                    // manual, hold or fixed setpoint is left alone (and its offset held).
                    if let Some(c) = &mut self.coordinator {
                        if o.mode == Mode::Auto && ctrl.fixed_supply().is_none() {
                            c.observe(i, &Observation::of_step(ctrl, r, &o, dt_s));
                        }
                    }
                    self.stepped_ts[i] = r.ts_ms;
                    // kW × s = kJ; 1 GJ = 10⁶ kJ. Plant time, so an accelerated run adds up.
                    let area = r.heated_area_m2.or(ctrl.params().heated_area_m2);
                    kpi.today.record(r, &o, area, dt_s);
                    if now - kpi.trend_at_ms >= (60_000.0 / self.time_scale) as i64 {
                        kpi.trend_at_ms = now;
                        kpi.trend.push_back((r.supply_temp_c, o.supply_setpoint_c));
                        if kpi.trend.len() > TREND_LEN {
                            kpi.trend.pop_front();
                        }
                    }
                }
                Some(Command {
                    seq: self.seqs.next(&cfg.id),
                    ts: now,
                    mode: o.mode,
                    supply_setpoint_c: round2(o.supply_setpoint_c),
                    valve_pct: round2(o.valve_pct),
                    pump_pct: round2(o.pump_pct),
                    flow_setpoint_m3h: round2(o.flow_setpoint_m3h),
                    valid_for_s: self.valid_for_s,
                    epoch: None,
                })
            }
            Tick::Stale {
                age_ms,
                newly: true,
            } => {
                warn!(station = %cfg.id, age_s = age_ms.map(|a| a / 1000),
                    "Station stale: outputs held, no command sent until fresh telemetry arrives.");
                None
            }
            Tick::Stale { .. } => None,
        }
    }

    /// Advances the coordinator by one tick of plant time; after an update, hands each station
    /// its new district offset and stores them (`coordinator` measurement).
    fn coordinate(&mut self, now: i64) {
        let Some(c) = &mut self.coordinator else {
            return;
        };
        if !c.advance(self.dt_s) {
            return;
        }
        let mut lines = Vec::new();
        let (mut moved, mut largest) = (0usize, 0.0f64);
        for (i, (cfg, _, ctrl)) in self.stations.iter_mut().enumerate() {
            let m = &c.members()[i];
            if m.offset_k != ctrl.district_offset_k() {
                moved += 1;
            }
            largest = largest.max(m.offset_k.abs());
            ctrl.set_district_offset_k(m.offset_k);
            let Some(ratio) = m.ratio else {
                continue; // never reported: nothing to store
            };
            let mut b =
                line_protocol::LineBuilder::new("coordinator").tag("station", cfg.id.as_str());
            for (k, v) in &cfg.tags {
                b = b.tag(k, v);
            }
            let mut b = b.float("offset_k", m.offset_k).float("load_ratio", ratio);
            if let Some(t) = m.target_ratio {
                b = b.float("target_ratio", t);
            }
            if let Some(line) = b.finish(now) {
                lines.push(line);
            }
        }
        self.store.submit_many(&lines);
        info!(
            update = c.updates(),
            moved,
            largest_offset_k = largest,
            "District coordinator updated the stations' offsets."
        );
        // Kept across restarts (temp file + rename): without them a restart would drop every
        // station back to its bare curve and the cold ones would take hours to recover.
        let offsets: std::collections::BTreeMap<&str, f64> = self
            .stations
            .iter()
            .map(|(cfg, _, ctrl)| (cfg.id.as_str(), ctrl.district_offset_k()))
            .collect();
        let r = serde_json::to_vec(&offsets)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::files::replace(&self.coordinator_path, &b, false));
        if let Err(e) = r {
            error!(error = %e, path = %self.coordinator_path.display(),
                "Cannot persist the district offsets.");
        }
    }

    /// Loads the district offsets kept by the last run (none if there is no file) and hands
    /// them to the coordinator and the controllers, clamped to today's bound; offsets of
    /// stations no longer configured are dropped. A corrupt file stops the start-up, like the
    /// other state files: fix or remove it.
    fn restore_district_offsets(&mut self) -> anyhow::Result<()> {
        let Some(c) = &mut self.coordinator else {
            return Ok(());
        };
        let path = &self.coordinator_path;
        let kept: std::collections::BTreeMap<String, f64> = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                anyhow::anyhow!("{} is corrupt ({e}); fix or remove it", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        let mut restored = 0;
        for (i, (cfg, _, ctrl)) in self.stations.iter_mut().enumerate() {
            if let Some(&k) = kept.get(cfg.id.as_str()) {
                c.restore(i, k);
                ctrl.set_district_offset_k(c.offset_k(i));
                restored += 1;
            }
        }
        info!(restored, path = %path.display(), "District offsets restored.");
        Ok(())
    }

    /// Control following telemetry: steps each station in `which` that has a reading it has
    /// not acted on yet, with the plant time since its last step, and sends the commands.
    fn on_telemetry(&mut self, which: &[u32], now: i64) {
        let fallback = self.fallback_outdoor(now);
        let mut commands = Vec::with_capacity(which.len());
        for &i in which {
            let i = i as usize;
            let Some(ts) = self.stations.get(i).and_then(|(_, slot, _)| {
                slot.latest
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .map(|r| r.ts_ms)
            }) else {
                continue;
            };
            if ts <= self.stepped_ts[i] {
                continue; // already acted on (duplicate trigger)
            }
            let dt = self.event_dt(i, now);
            if let Some(cmd) = self.step(i, now, fallback, dt) {
                commands.push((i, cmd));
            }
        }
        self.send(commands, true);
    }

    /// Plant seconds since station `i`'s last step, within [tick/20, 4 × tick].
    fn event_dt(&self, i: usize, now: i64) -> f64 {
        let last = self.last_step_ms[i];
        if last == 0 {
            return self.dt_s;
        }
        ((now - last) as f64 / 1000.0 * self.time_scale).clamp(self.dt_s / 20.0, self.dt_s * 4.0)
    }

    /// Persists the sequence numbers, then publishes (MQTT) or hands to the poller (Modbus)
    /// each command, and stores the ones that went out.
    ///
    /// `following`: the commands answer new readings (control following telemetry); each
    /// one's time since its reading was accepted goes to the `control_latency` histogram.
    fn send(&mut self, commands: Vec<(usize, Command)>, following: bool) {
        if commands.is_empty() {
            return;
        }
        // Numbers are on disk before any of them can reach a station.
        if let Err(e) = self.seqs.persist() {
            error!(error = %e, "Cannot persist command sequence numbers; commands withheld.");
            return;
        }
        let mut lines = Vec::with_capacity(commands.len());
        let now_us = crate::clock::mono_us();
        for (i, cmd) in commands {
            if following {
                let accepted = self.stations[i].1.accepted_us.load(Ordering::Relaxed);
                self.stats
                    .control_latency
                    .record(now_us.saturating_sub(accepted));
            }
            if let Some(tx) = &self.modbus_tx[i] {
                // The poller writes it now and counts and stores it once the device confirmed.
                tx.send_replace(Some(cmd));
                continue;
            }
            let (cfg, _, _) = &self.stations[i];
            let topic = format!("{}/station/{}/command", self.prefix, cfg.id);
            let payload = serde_json::to_vec(&cmd).unwrap_or_default();
            match self.link.try_publish(&topic, true, false, payload) {
                Ok(()) => {
                    self.stats.commands_sent.fetch_add(1, Ordering::Relaxed);
                    lines.push(line_protocol::command(&cfg.id, &cfg.tags, &cmd));
                }
                Err(e) => {
                    let n = self.stats.commands_failed.fetch_add(1, Ordering::Relaxed);
                    if n.is_power_of_two() {
                        warn!(station = %cfg.id, error = %e, failed_total = n + 1, "Command not queued for MQTT.");
                    }
                }
            }
        }
        self.store.submit_many(&lines);
    }

    fn tick(&mut self, now: i64) {
        let fallback_outdoor = self.fallback_outdoor(now);
        let mut commands = Vec::new();
        let mut status = Vec::with_capacity(self.stations.len());
        for i in 0..self.stations.len() {
            let reading_ts = self.stations[i]
                .1
                .latest
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|r| r.ts_ms);
            let step = match self.control_on {
                ControlOn::Tick => Some(self.dt_s),
                // Following telemetry, the tick only steps a station whose data went stale
                // (so it is marked stale) or whose trigger was missed.
                ControlOn::Telemetry => {
                    let stale = reading_ts
                        .is_none_or(|ts| now - ts > self.stations[i].2.params().staleness_ms);
                    let missed = reading_ts.is_some_and(|ts| ts > self.stepped_ts[i]);
                    (stale || missed).then(|| self.event_dt(i, now))
                }
            };
            if let Some(dt) = step {
                if let Some(cmd) = self.step(i, now, fallback_outdoor, dt) {
                    commands.push((i, cmd));
                }
            }
            let (cfg, slot, ctrl) = &self.stations[i];
            let reading = slot
                .latest
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let area_m2 = reading
                .as_ref()
                .and_then(|r| r.heated_area_m2)
                .or(ctrl.params().heated_area_m2);
            status.push(StationStatus {
                id: cfg.id.clone(),
                mode: ctrl.mode(),
                stale: ctrl.is_stale(),
                reading,
                outputs: ctrl.last_outputs().copied(),
                seq: self.seqs.last(&cfg.id),
                supply_offset_k: ctrl.supply_offset_k(),
                district_offset_k: ctrl.district_offset_k(),
                fixed_supply: ctrl.fixed_supply(),
                acked_seq: slot.acked_seq.load(Ordering::Relaxed),
                ack_error: slot.ack_error.lock().ok().and_then(|e| e.clone()),
                heat_today_gj: self.kpis[i].today.heat_gj,
                kpis_today: self.kpis[i].today.clone(),
                trend: self.kpis[i].trend.iter().copied().collect(),
                tags: cfg.tags.clone(),
                area_m2,
                link: match &cfg.modbus {
                    Some(m) => format!("modbus tcp://{} unit {}", m.address, m.unit_id),
                    None => "mqtt".into(),
                },
                link_error: slot.comm_error.lock().ok().and_then(|e| e.clone()),
            });
        }
        self.ticks += 1;
        // Ingest rate over the last ~10 s, for the status view.
        let accepted = Stats::get(&self.stats.readings_accepted);
        self.rate_window.push_back((now, accepted));
        while self.rate_window.len() > 2
            && self
                .rate_window
                .front()
                .is_some_and(|(t, _)| now - t > 10_000)
        {
            self.rate_window.pop_front();
        }
        if let (Some((t0, a0)), Some((t1, a1))) =
            (self.rate_window.front(), self.rate_window.back())
        {
            if t1 > t0 {
                let per_s_milli = (a1 - a0) * 1_000_000 / (t1 - t0) as u64;
                self.stats
                    .ingest_rate_milli
                    .store(per_s_milli, Ordering::Relaxed);
            }
        }
        self.send(commands, false);
        self.coordinate(now);
        self.evaluate_alarms(&status, now);
        let _ = self.status_tx.send(Arc::new(status));
    }
}

impl Control {
    fn ack_alarm(&mut self, id: u64, user: &str) -> Result<Applied, ChangeError> {
        let now = now_ms();
        let a = self
            .alarms
            .ack(id, user, now)
            .map_err(ChangeError::UnknownAlarm)?;
        self.alarms.persist();
        self.publish_alarms();
        let applied = Applied {
            station: a.station.clone(),
            action: "ack_alarm".into(),
            before: format!("alarm {} {} raised", a.id, a.kind.as_str()),
            after: format!("acknowledged by {}", a.acked_by.as_deref().unwrap_or(user)),
        };
        self.record_action(now, user, &applied);
        Ok(applied)
    }

    fn publish_alarms(&self) {
        let _ = self.alarms_tx.send(Arc::new(AlarmView {
            active: self.alarms.active(),
            recent: self.alarms.recent(),
        }));
    }

    /// Every station's alarm conditions, and the engine's storage condition, at `now`.
    fn evaluate_alarms(&mut self, status: &[StationStatus], now: i64) {
        use crate::alarms::AlarmKind as K;
        let mut lines = Vec::new();
        for (i, st) in status.iter().enumerate() {
            let (cfg, slot, ctrl) = &self.stations[i];
            let th = &cfg.alarms;
            let p = ctrl.params();
            let id = st.id.as_str();
            let book = &mut self.alarms;
            let mut eval = |kind, cond: bool, hold: i64, value: f64, msg: &dyn Fn() -> String| {
                if let Some(l) = book.evaluate(id, kind, cond, hold, value, now, msg) {
                    lines.push(l);
                }
            };
            let age_s = st.reading.as_ref().map(|r| (now - r.ts_ms) as f64 / 1000.0);
            let stale =
                st.stale && (st.reading.is_some() || now - self.started_ms > p.staleness_ms);
            eval(K::Stale, stale, 0, age_s.unwrap_or(-1.0), &|| match age_s {
                Some(a) => {
                    format!("no fresh telemetry for {a:.0} s; outputs held, no command sent")
                }
                None => "no telemetry received since the engine started".into(),
            });
            let offline = slot.presence.load(Ordering::Relaxed) == 2;
            let link = slot.comm_error.lock().ok().and_then(|e| e.clone());
            eval(
                K::CommLost,
                offline || link.is_some(),
                0,
                0.0,
                &|| match &link {
                    Some(e) => format!("Modbus: {e}"),
                    None => "station presence is offline".into(),
                },
            );

            let window = &mut self.reject_window[i];
            let rejects = slot.rejects.load(Ordering::Relaxed);
            window.push_back((now, rejects));
            while window.front().is_some_and(|(t, _)| now - t > 60_000) {
                window.pop_front();
            }
            let per_min = rejects - window.front().map_or(rejects, |(_, r)| *r);
            eval(
                K::RejectedRepeatedly,
                per_min > th.rejected_per_min,
                0,
                per_min as f64,
                &|| format!("{per_min} payloads rejected in the last minute"),
            );

            let fresh = !st.stale;
            // Without fresh data the remaining conditions cannot be judged: they keep their state.
            let (Some(r), Some(o)) = (st.reading.as_ref().filter(|_| fresh), st.outputs.as_ref())
            else {
                continue;
            };
            let limit = p.supply_max_c + th.out_of_range_margin_k;
            eval(
                K::OutOfRange,
                r.supply_temp_c > limit,
                0,
                r.supply_temp_c,
                &|| {
                    format!(
                        "supply reading {:.1} °C above {limit:.1} °C",
                        r.supply_temp_c
                    )
                },
            );
            let auto = st.mode == Mode::Auto;
            let dev = r.supply_temp_c - o.supply_setpoint_c;
            eval(
                K::SupplyDeviation,
                auto && dev.abs() > th.deviation_k,
                th.deviation_for_ms,
                dev,
                &|| {
                    format!(
                        "supply {:.1} °C is {dev:+.1} K from its setpoint {:.1} °C",
                        r.supply_temp_c, o.supply_setpoint_c
                    )
                },
            );
            eval(
                K::ReturnHigh,
                r.return_temp_c > p.return_limit_c,
                th.return_high_for_ms,
                r.return_temp_c,
                &|| {
                    format!(
                        "return {:.1} °C above its limit {:.1} °C",
                        r.return_temp_c, p.return_limit_c
                    )
                },
            );
            let db = p.valve.dead_band;
            let saturated = auto
                && ((o.valve_pct >= p.valve.out_max - 0.5 && dev < -db)
                    || (o.valve_pct <= p.valve.out_min + 0.5 && dev > db));
            eval(
                K::ValveSaturated,
                saturated,
                th.valve_saturated_for_ms,
                o.valve_pct,
                &|| {
                    format!("valve at {:.0} % and supply still {dev:+.1} K from setpoint: cannot reach it", o.valve_pct)
                },
            );
            let dt = r.delta_t_k();
            eval(
                K::LowDeltaT,
                r.flow_m3h > 0.0 && dt < th.low_delta_t_k,
                th.low_delta_t_for_ms,
                dt,
                &|| {
                    format!(
                        "supply − return only {dt:.1} K (below {:.1} K): poor cooling",
                        th.low_delta_t_k
                    )
                },
            );
        }
        // Storage: write failures, refusals or dead letters in the last 30 s, for 15 s.
        let seen = (
            Stats::get(&self.stats.store_write_errors),
            Stats::get(&self.stats.spool_refused),
            Stats::get(&self.stats.dead_letters),
        );
        if seen != self.storage_seen {
            self.storage_seen = seen;
            self.storage_problem_ms = Some(now);
        }
        let problem = self.storage_problem_ms.is_some_and(|t| now - t < 30_000);
        let (errors, refused, dead) = seen;
        if let Some(l) = self.alarms.evaluate("engine", K::Storage, problem, 15_000, refused as f64, now, || {
            format!("storage trouble: {errors} write errors, {refused} points refused, {dead} dead letters so far")
        }) {
            lines.push(l);
        }
        if !lines.is_empty() {
            self.store.submit_many(&lines);
            self.alarms.persist();
            self.publish_alarms();
        }
    }
}

/// Largest operator offset on the heating curve, K (the config allows the same).
pub const MAX_OFFSET_K: f64 = 20.0;

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Runs `task` on its own thread with a single-threaded runtime; the receiver resolves when it
/// has finished (or the thread died).
///
/// For the storage writer: reading a 5,000-line batch from the spool and handing it to the
/// HTTP client is a few milliseconds of work between two awaits, and on the shared runtime
/// the MQTT event loop and the control task waited behind it. Measured at 10,000 msg/s
/// (local files, so the database's own CPU is out of the figure): telemetry → command p99
/// 5.8 ms with 5,000-line batches, 1.7 ms with 500-line ones. Its wake-ups are per batch, so
/// the thread hop costs nothing measurable.
fn spawn_dedicated(
    name: &str,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .with_context(|| format!("cannot build the runtime of {name}"))?;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            rt.block_on(task);
            let _ = done.send(());
        })
        .with_context(|| format!("cannot start thread {name}"))?;
    Ok(finished)
}

/// fsyncs the spool every `every` (the `interval` policy) until `stop`.
async fn fsync_task(spool: Arc<Spool>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let s = spool.clone();
        match tokio::task::spawn_blocking(move || s.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!(error = %e, "ALARM spool fsync failed."),
            Err(e) => error!(error = %e, "Spool fsync task failed."),
        }
    }
}
