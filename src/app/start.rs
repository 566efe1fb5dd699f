//! Starting the engine: each stage built from its part of the config, in flow order (storage,
//! ingest, Modbus, control, alarms, API), every channel between them created here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::info;

use super::stage::{spawn_dedicated, Stage};
use super::{EngineHandle, Stages, CHANGE_CAPACITY, TRIGGER_CAPACITY};
use crate::alarms::evaluate::StationAlarms;
use crate::alarms::task::AlarmTask;
use crate::alarms::AlarmBook;
use crate::api::http::{ApiState, StationInfo};
use crate::clock::now_ms;
use crate::command::dispatch::{Dispatcher, Route};
use crate::command::seq::SeqStore;
use crate::config::{Config, StationConfig};
use crate::control::change::Inbox;
use crate::control::district::District;
use crate::control::task::{ControlOn, ControlSettings, ControlTask, Station};
use crate::control::StationController;
use crate::ingest::mqtt::{self, Link, Presence};
use crate::ingest::slot::{StationSlot, Trigger, Weather};
use crate::ingest::Ingest;
use crate::model::Command;
use crate::stats::Stats;
use crate::store::audit::OperatorLog;
use crate::store::spool::{FsyncPolicy, Spool, SpoolConfig, SpoolError};
use crate::store::{influx::InfluxWriter, Sink, StoreHandle, Writer, WriterConfig};

/// Why the engine could not start: a local problem (an unreachable broker or database is
/// retried in the background instead).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] crate::files::StateError),
    #[error(transparent)]
    Influx(#[from] crate::store::influx::SetupError),
    #[error("cannot open the spool in {path}: {source}")]
    Spool { path: String, source: SpoolError },
    #[error("cannot start {name}: {source}")]
    Thread {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Audit {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on api.listen {addr}: {source}")]
    Api {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

fn create_dir(path: &Path, what: &str) -> Result<(), StartError> {
    std::fs::create_dir_all(path).map_err(|source| StartError::Dir {
        path: format!("{what}{}", path.display()),
        source,
    })
}

/// Starts every task of the engine for `cfg`. Fails only on local problems (data directory,
/// seq file, database URL, API address).
pub async fn start(cfg: Config) -> Result<EngineHandle, StartError> {
    create_dir(&cfg.data_dir, "data_dir ")?;
    let seqs = SeqStore::open(&cfg.data_dir, cfg.storage.fsync)?;
    let stats = Arc::new(Stats::default());
    let stages = Stages {
        control: Stage::new("control"),
        modbus: Stage::new("modbus"),
        mqtt: Stage::new("mqtt"),
        storage: Stage::new("storage"),
    };
    let (spool, store) = start_storage(&cfg, &stats, &stages.storage)?;

    // Control following telemetry: accepted readings wake the control task (bounded queue).
    let (trigger, triggers) = match cfg.control_on {
        ControlOn::Telemetry => {
            let (tx, rx) = mpsc::channel(TRIGGER_CAPACITY);
            (Some(tx), Some(rx))
        }
        ControlOn::Tick => (None, None),
    };
    let slots: Vec<Arc<StationSlot>> = cfg
        .stations
        .iter()
        .enumerate()
        .map(|(index, s)| Arc::new(slot(index, s, trigger.clone())))
        .collect();
    let weather: Weather = Arc::new(Mutex::new(None));
    let (link, presence) = start_mqtt(&cfg, &slots, &weather, &store, &stats, &stages.mqtt);
    let modbus_tx = start_modbus(&cfg, &slots, &store, &stats, &stages.modbus);
    let modbus = cfg
        .stations
        .iter()
        .zip(&slots)
        .filter_map(|(c, s)| Some((c.id.clone(), s.modbus.clone()?)))
        .collect();

    let log_path = cfg.data_dir.join("audit.log");
    let log = OperatorLog::open(&log_path, store.clone()).map_err(|source| StartError::Audit {
        path: log_path.display().to_string(),
        source,
    })?;
    let log = Arc::new(log);
    let routes = routes(&cfg, modbus_tx);
    let dispatcher = Dispatcher::new(
        routes,
        link.clone(),
        seqs,
        cfg.command_valid_for_s,
        store.clone(),
        stats.clone(),
    );
    let stations = control_stations(&cfg, slots);
    let district = match cfg.coordinator.clone() {
        Some(c) => Some(District::open(
            c,
            cfg.stations
                .iter()
                .map(|s| (s.id.clone(), s.tags.clone()))
                .collect(),
            cfg.data_dir.join("coordinator.json"),
            store.clone(),
        )?),
        None => None,
    };
    let settings = ControlSettings {
        tick: cfg.tick,
        time_scale: cfg.time_scale,
        control_on: cfg.control_on,
        default_outdoor_c: cfg.default_outdoor_c,
        weather_max_age_ms: cfg.weather_max_age_ms,
    };
    let (control, status) = ControlTask::new(
        stations,
        settings,
        dispatcher,
        weather,
        stats.clone(),
        log.clone(),
        district,
    );
    let book = AlarmBook::open(cfg.data_dir.join("alarms.json"))?;
    let (alarm_task, alarms) = AlarmTask::new(
        book,
        alarm_settings(&cfg),
        store.clone(),
        stats.clone(),
        log,
    );
    let (changes, changes_rx) = mpsc::channel(CHANGE_CAPACITY);
    let (acks, acks_rx) = mpsc::channel(CHANGE_CAPACITY);
    let inbox = Inbox {
        control: changes,
        alarms: acks,
    };
    let stop = stages.control.token();
    stages
        .control
        .spawn(control.run(changes_rx, triggers, stop.clone()));
    stages
        .control
        .spawn(alarm_task.run(status.clone(), acks_rx, stop));
    let api = start_api(
        &cfg,
        &stats,
        &spool,
        &inbox,
        &status,
        &alarms,
        &stages.control,
    )
    .await?;
    info!(stations = cfg.stations.len(), broker = %format!("{}:{}", cfg.mqtt.host, cfg.mqtt.port),
        tick_ms = cfg.tick.as_millis() as u64, "Engine started.");
    Ok(EngineHandle {
        status,
        alarms,
        stats,
        spool,
        inbox,
        api,
        modbus,
        link,
        presence,
        stages,
    })
}

fn slot(index: usize, c: &StationConfig, trigger: Option<Trigger>) -> StationSlot {
    StationSlot::new(
        index,
        c.tags.clone(),
        c.params.heated_area_m2,
        c.modbus.is_some(),
        trigger,
    )
}

/// The spool, the handle every stage stores through, the writer on its own thread and, with
/// the `interval` fsync policy, the task that syncs the spool.
fn start_storage(
    cfg: &Config,
    stats: &Arc<Stats>,
    stage: &Stage,
) -> Result<(Arc<Spool>, StoreHandle), StartError> {
    let sink = match &cfg.storage.influxdb {
        Some(i) => Sink::Influx(Box::new(InfluxWriter::new(i)?)),
        None => {
            let dir = cfg.data_dir.join("lp");
            create_dir(&dir, "")?;
            Sink::Files { dir }
        }
    };
    let dir = cfg.data_dir.join("spool");
    let spool = Spool::open(SpoolConfig {
        dir: dir.clone(),
        segment_bytes: cfg.storage.segment_bytes,
        max_bytes: cfg.storage.max_spool_bytes,
        fsync: cfg.storage.fsync,
    })
    .map_err(|source| StartError::Spool {
        path: dir.display().to_string(),
        source,
    })?;
    let store = StoreHandle::new(spool.clone(), stats.clone());
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
    let done = spawn_dedicated(
        "heatgrid-writer",
        writer.run(stage.token(), Duration::from_secs(10)),
    )
    .map_err(|source| StartError::Thread {
        name: "the storage writer's thread",
        source,
    })?;
    stage.track(done);
    if let FsyncPolicy::Interval(every) = cfg.storage.fsync {
        stage.spawn(fsync_task(spool.clone(), every, stage.token()));
    }
    Ok((spool, store))
}

/// The broker connection and its event loop, which hands every message to [`Ingest`].
fn start_mqtt(
    cfg: &Config,
    slots: &[Arc<StationSlot>],
    weather: &Weather,
    store: &StoreHandle,
    stats: &Arc<Stats>,
    stage: &Stage,
) -> (Link, Presence) {
    let prefix = &cfg.mqtt.topic_prefix;
    let presence = Presence {
        topic: format!("{prefix}/engine/state"),
        online: "online",
        offline: "offline",
    };
    let (link, el) = mqtt::connect(&cfg.mqtt, &cfg.mqtt.client_id, Some(&presence));
    let by_id: HashMap<_, _> = cfg
        .stations
        .iter()
        .zip(slots)
        .map(|(c, s)| (c.id.clone(), s.clone()))
        .collect();
    let mut ingest = Ingest::new(
        prefix,
        by_id,
        weather.clone(),
        store.clone(),
        stats.clone(),
        cfg.decode,
    );
    let subs = ingest.subscriptions(cfg.mqtt.telemetry_qos == 1);
    let ev_stats = stats.clone();
    stage.spawn(mqtt::run_event_loop(
        el,
        link.clone(),
        cfg.mqtt.ack_after_spool,
        Some(cfg.mqtt.watchdog),
        subs,
        Some(presence.clone()),
        stage.token(),
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
    (link, presence)
}

/// One poller per Modbus station; per station (config order) the channel its commands go on
/// (`None`: an MQTT station).
fn start_modbus(
    cfg: &Config,
    slots: &[Arc<StationSlot>],
    store: &StoreHandle,
    stats: &Arc<Stats>,
    stage: &Stage,
) -> Vec<Option<watch::Sender<Option<Command>>>> {
    let mut senders = Vec::with_capacity(slots.len());
    for (c, slot) in cfg.stations.iter().zip(slots) {
        let Some(m) = &c.modbus else {
            senders.push(None);
            continue;
        };
        let (tx, rx) = watch::channel(None);
        senders.push(Some(tx));
        stage.spawn(crate::ingest::modbus::poller::run(
            m.clone(),
            slot.clone(),
            store.clone(),
            stats.clone(),
            cfg.decode,
            cfg.tick.max(m.interval),
            rx,
            stage.token(),
        ));
    }
    let pollers = senders.iter().flatten().count();
    if pollers > 0 {
        info!(stations = pollers, "Modbus pollers started.");
    }
    senders
}

fn routes(cfg: &Config, modbus: Vec<Option<watch::Sender<Option<Command>>>>) -> Vec<Route> {
    cfg.stations
        .iter()
        .zip(modbus)
        .map(|(c, modbus)| Route {
            id: c.id.clone(),
            tags: c.tags.clone(),
            topic: format!("{}/station/{}/command", cfg.mqtt.topic_prefix, c.id),
            modbus,
        })
        .collect()
}

fn control_stations(cfg: &Config, slots: Vec<Arc<StationSlot>>) -> Vec<Station> {
    let dt_s = cfg.tick.as_secs_f64() * cfg.time_scale;
    cfg.stations
        .iter()
        .zip(slots)
        .map(|(c, slot)| {
            let mut ctrl = StationController::new(c.params.clone(), dt_s);
            ctrl.set_mode(c.mode, None);
            let link = match &c.modbus {
                Some(m) => format!("modbus tcp://{} unit {}", m.address, m.unit_id),
                None => "mqtt".into(),
            };
            Station::new(c.id.clone(), c.tags.clone(), link, slot, ctrl)
        })
        .collect()
}

fn alarm_settings(cfg: &Config) -> Vec<StationAlarms> {
    cfg.stations
        .iter()
        .map(|c| {
            let p = &c.params;
            StationAlarms {
                thresholds: c.alarms.clone(),
                supply_max_c: p.supply_max_c,
                return_limit_c: p.return_limit_c,
                valve_min_pct: p.valve.out_min,
                valve_max_pct: p.valve.out_max,
                valve_dead_band_k: p.valve.dead_band,
                staleness_ms: p.staleness_ms,
            }
        })
        .collect()
}

/// The operator API, if `api.listen` is set; part of the control stage.
async fn start_api(
    cfg: &Config,
    stats: &Arc<Stats>,
    spool: &Arc<Spool>,
    inbox: &Inbox,
    status: &watch::Receiver<Arc<Vec<crate::control::status::StationStatus>>>,
    alarms: &watch::Receiver<Arc<crate::alarms::AlarmView>>,
    stage: &Stage,
) -> Result<Option<std::net::SocketAddr>, StartError> {
    let Some(addr) = cfg.api.listen else {
        return Ok(None);
    };
    let state = ApiState {
        status: status.clone(),
        stats: stats.clone(),
        spool: spool.clone(),
        changes: inbox.clone(),
        tokens: Arc::new(cfg.api.tokens.clone()),
        alarms: alarms.clone(),
        stations: Arc::new(
            cfg.stations
                .iter()
                .map(|c| StationInfo {
                    id: c.id.clone(),
                    tags: c.tags.clone(),
                    params: c.params.clone(),
                })
                .collect(),
        ),
    };
    let (bound, task) = crate::api::http::serve(addr, state, stage.token())
        .await
        .map_err(|source| StartError::Api { addr, source })?;
    stage.spawn(async move {
        let _ = task.await;
    });
    info!(addr = %bound, tokens = cfg.api.tokens.len(), "Operator API listening.");
    Ok(Some(bound))
}

/// fsyncs the spool every `every` (the `interval` policy) until `stop`.
async fn fsync_task(spool: Arc<Spool>, every: Duration, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let s = spool.clone();
        match tokio::task::spawn_blocking(move || s.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "ALARM spool fsync failed."),
            Err(e) => tracing::error!(error = %e, "Spool fsync task failed."),
        }
    }
}
