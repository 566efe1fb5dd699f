//! Starting the engine: each stage built from its part of the config, in flow order (storage,
//! ingest, Modbus, control, alarms, API), every channel between them created here.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::info;

use super::cluster::start_cluster;
use super::common::{create_dir, Common, StartError};
use super::handle::{EngineHandle, Stages};
use super::inputs::{start_modbus, start_mqtt};
use super::stage::Stage;
use super::storage::start_storage;
use crate::alarms::evaluate::StationAlarms;
use crate::alarms::shared::SharedAlarms;
use crate::alarms::task::AlarmTask;
use crate::alarms::AlarmBook;
use crate::api::{ApiState, StationInfo};
use crate::cluster::state::StateRequest;
use crate::command::dispatch::{Dispatcher, Numbering, Route};
use crate::command::seq::SeqStore;
use crate::config::{Config, StationConfig};
use crate::control::change::Inbox;
use crate::control::coordination::Coordination;
use crate::control::district::District;
use crate::control::plant_task::PlantStatusView;
use crate::control::shared_district::SharedDistrict;
use crate::control::task::{ControlOn, ControlSettings, ControlTask, Station};
use crate::control::StationController;
use crate::ingest::plant::PlantFeed;
use crate::ingest::slot::{StationSlot, Trigger, Weather};
use crate::model::Command;
use crate::stats::Stats;
use crate::store::audit::OperatorLog;
use crate::store::spool::Spool;

/// Control following telemetry: wake-ups queued for the control task (one per burst of
/// readings, each listing its stations).
pub const TRIGGER_CAPACITY: usize = 8_192;

/// Operator changes (and acknowledgements) waiting for the control (alarm) task.
pub const CHANGE_CAPACITY: usize = 64;

/// Runs the engine until `shutdown` resolves, then stops it in order.
pub async fn run(
    cfg: crate::config::Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let mut engine = start(cfg).await?;
    let fatal = tokio::select! {
        _ = shutdown => {
            info!("Shutdown requested.");
            None
        }
        reason = engine.fatal() => Some(reason),
    };
    engine.shutdown().await;
    match fatal {
        Some(reason) => Err(StartError::Cluster(reason)),
        None => Ok(()),
    }
}

/// Starts every task of the engine for `cfg`. Fails only on local problems (data directory,
/// state files, database URL, API address).
pub async fn start(cfg: Config) -> Result<EngineHandle, StartError> {
    create_dir(&cfg.data_dir, "data_dir ")?;
    let stats = Arc::new(Stats::default());
    let stages = Stages {
        control: Stage::new("control"),
        cluster: Stage::new("cluster"),
        modbus: Stage::new("modbus"),
        mqtt: Stage::new("mqtt"),
        storage: Stage::new("storage"),
    };
    let (spool, store) = start_storage(&cfg, &stats, &stages.storage)?;
    let c = Common {
        cfg: &cfg,
        store: &store,
        stats: &stats,
    };
    let (slots, triggers) = slots(&cfg);
    let weather: Weather = Weather::default();
    let broker_down_since = Arc::new(AtomicI64::new(crate::clock::now_ms()));
    let plant_feed = cfg.plant.as_ref().map(|_| PlantFeed::default());
    let (link, presence) = start_mqtt(
        &c,
        &slots,
        &weather,
        &stages.mqtt,
        &broker_down_since,
        plant_feed.as_ref(),
    );
    let p = &cfg.predictive;
    let source = match (&p.forecast_file, &p.forecast_url) {
        (Some(f), _) => Some(super::forecast::Source::File(f.clone())),
        (None, Some(u)) => Some(super::forecast::Source::Url(u.clone())),
        (None, None) => None,
    };
    if let Some(source) = source.filter(|_| p.enabled) {
        let every = std::time::Duration::from_secs_f64(p.forecast_poll_s);
        let stop = stages.mqtt.token();
        let http = super::forecast::client().map_err(|source| StartError::HttpClient {
            what: "the forecast",
            source,
        })?;
        stages.mqtt.spawn(super::forecast::poll(
            source,
            http,
            every,
            weather.clone(),
            stop,
        ));
    }
    let modbus_tx = start_modbus(&c, &slots, &stages.modbus);
    #[cfg(feature = "opcua")]
    let device_tx = {
        let opcua_tx = super::inputs::start_opcua(&c, &slots, &stages.modbus);
        modbus_tx
            .into_iter()
            .zip(opcua_tx)
            .map(|(m, o)| m.or(o))
            .collect()
    };
    #[cfg(not(feature = "opcua"))]
    let device_tx = modbus_tx;
    let modbus = cfg
        .stations
        .iter()
        .zip(&slots)
        .filter_map(|(c, s)| Some((c.id.clone(), s.modbus.clone()?)))
        .collect();
    // Alone, command numbers survive restarts on disk; in a cluster each epoch starts again.
    let (numbering, cluster, replicate, fatal) = match &cfg.cluster {
        Some(member) => {
            let stages = (&stages.cluster, &stages.mqtt);
            let s = start_cluster(&c, member, &slots, &weather, &broker_down_since, stages);
            (s.numbering, Some(s.view), Some(s.requests), s.fatal)
        }
        None => (
            Numbering::Durable {
                seqs: SeqStore::open(&cfg.data_dir, cfg.storage.fsync)?,
                link: link.clone(),
            },
            None,
            None,
            watch::channel(None).1,
        ),
    };
    // In a cluster the plant is commanded by partition 0's owner: its task needs the leads.
    let leads = match &numbering {
        Numbering::Fenced { leads, .. } => Some(leads.clone()),
        Numbering::Durable { .. } => None,
    };
    let dispatcher = Dispatcher::new(
        routes(&cfg, device_tx),
        numbering,
        cfg.command_valid_for_s,
        store.clone(),
        stats.clone(),
    );
    // The plant task is made first so that the alarm task watches its view; it runs once
    // the control task publishes the fleet's status.
    let plant = super::plant::plant_task(
        &c,
        plant_feed,
        &weather,
        (&link, &stages.modbus),
        (leads, &replicate),
    );
    let plant_view = plant.as_ref().map(|(_, v)| v.clone());
    let live_slots = slots.clone();
    let control = start_control(
        &c,
        slots,
        dispatcher,
        weather,
        (triggers, replicate),
        (&stages.control, plant_view.clone()),
    )?;
    let (inbox, status, alarms) = control;
    if let Some((task, _)) = plant {
        stages
            .control
            .spawn(task.run(status.clone(), stages.control.token()));
    }
    let views = Views {
        status: &status,
        alarms: &alarms,
        cluster: cluster.as_ref(),
        plant: plant_view,
        slots: live_slots,
    };
    let api = start_api(&c, &spool, &inbox, views, &stages.control).await?;
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
        cluster,
        fatal,
    })
}

/// The control task and the alarm task (with the operator log they share) on the control
/// stage; the operator's inbox and the two views they publish.
fn start_control(
    c: &Common<'_>,
    slots: Vec<Arc<StationSlot>>,
    dispatcher: Dispatcher,
    weather: Weather,
    (triggers, replicate): (
        Option<mpsc::Receiver<Vec<u32>>>,
        Option<mpsc::Sender<StateRequest>>,
    ),
    (stage, plant): (&Stage, Option<PlantStatusView>),
) -> Result<(Inbox, StatusView, AlarmsView), StartError> {
    let cfg = c.cfg;
    let log_path = cfg.data_dir.join("audit.log");
    let log =
        OperatorLog::open(&log_path, c.store.clone()).map_err(|source| StartError::Audit {
            path: log_path.display().to_string(),
            source,
        })?;
    let log = Arc::new(log);
    let ids = || {
        cfg.stations
            .iter()
            .map(|s| (s.id.clone(), s.tags.clone()))
            .collect()
    };
    // In a cluster the coordinator runs on partition 0's owner, its state in etcd.
    let district = match (cfg.coordinator.clone(), &cfg.cluster, &replicate) {
        (Some(coordinator), Some(member), Some(requests)) => {
            Some(Coordination::Shared(Box::new(SharedDistrict::new(
                coordinator,
                ids(),
                member.partitions,
                requests.clone(),
                c.store.clone(),
            ))))
        }
        (Some(coordinator), _, _) => Some(Coordination::Local(District::open(
            coordinator,
            ids(),
            cfg.data_dir.join("coordinator.json"),
            c.store.clone(),
        )?)),
        (None, _, _) => None,
    };
    let settings = ControlSettings {
        tick: cfg.tick,
        time_scale: cfg.time_scale,
        control_on: cfg.control_on,
        default_outdoor_c: cfg.default_outdoor_c,
        weather_max_age_ms: cfg.weather_max_age_ms,
        diagnosis: cfg.diagnosis.clone(),
        predictive: cfg.predictive.clone(),
    };
    let stations = control_stations(cfg, slots);
    let (control, status) = ControlTask::new(
        stations,
        settings,
        dispatcher,
        weather,
        c.stats.clone(),
        log.clone(),
        district,
    );
    let control = control.replicating_to(replicate.clone());
    let book = AlarmBook::open(cfg.data_dir.join("alarms.json"))?;
    let shared_alarms = cfg.cluster.as_ref().zip(replicate.as_ref()).map(|(m, r)| {
        let ids: Vec<&str> = cfg.stations.iter().map(|s| s.id.as_str()).collect();
        SharedAlarms::new(&ids, m.partitions, r.clone())
    });
    let (alarm_task, alarms) = AlarmTask::new(
        book,
        alarm_settings(cfg),
        c.store.clone(),
        c.stats.clone(),
        log,
    );
    let stop = stage.token();
    let notifier = match &cfg.notify {
        Some(n) => {
            let tags = cfg
                .stations
                .iter()
                .map(|s| (s.id.as_str().to_owned(), s.tags.clone()))
                .collect();
            let source = cfg
                .cluster
                .as_ref()
                .map_or_else(|| "heatgrid".to_owned(), |m| m.name.clone());
            let (notifier, tasks) =
                crate::notify::Notifier::new(n, tags, source, c.stats.clone(), &stop)
                    .map_err(StartError::Notify)?;
            for t in tasks {
                stage.spawn(t);
            }
            Some(Arc::new(notifier) as Arc<dyn crate::alarms::Notify>)
        }
        None => None,
    };
    let alarm_task = alarm_task
        .sharing(shared_alarms)
        .watching_plant(plant)
        .notifying(notifier);
    let (changes, changes_rx) = mpsc::channel(CHANGE_CAPACITY);
    let (acks, acks_rx) = mpsc::channel(CHANGE_CAPACITY);
    stage.spawn(control.run(changes_rx, triggers, stop.clone()));
    stage.spawn(alarm_task.run(status.clone(), acks_rx, stop));
    let inbox = Inbox {
        control: changes,
        alarms: acks,
    };
    Ok((inbox, status, alarms))
}

type StatusView = watch::Receiver<Arc<Vec<crate::control::status::StationStatus>>>;
type AlarmsView = watch::Receiver<Arc<crate::alarms::AlarmView>>;

/// Every station's slot, and with control following telemetry the queue on which accepted
/// readings wake the control task (bounded).
fn slots(cfg: &Config) -> (Vec<Arc<StationSlot>>, Option<mpsc::Receiver<Vec<u32>>>) {
    let (trigger, triggers) = match cfg.control_on {
        ControlOn::Telemetry => {
            let (tx, rx) = mpsc::channel(TRIGGER_CAPACITY);
            (Some(tx), Some(rx))
        }
        ControlOn::Tick => (None, None),
    };
    let slots = cfg
        .stations
        .iter()
        .enumerate()
        .map(|(index, s)| Arc::new(slot(index, s, trigger.clone())))
        .collect();
    (slots, triggers)
}

fn slot(index: usize, c: &StationConfig, trigger: Option<Trigger>) -> StationSlot {
    StationSlot::new(
        index,
        c.tags.clone(),
        c.params.heated_area_m2,
        c.modbus.is_some(),
        trigger,
    )
    .with_mapping(c.mapping.clone())
}

fn routes(cfg: &Config, devices: Vec<Option<watch::Sender<Option<Command>>>>) -> Vec<Route> {
    cfg.stations
        .iter()
        .zip(devices)
        .map(|(c, device)| {
            let native = format!("{}/station/{}/command", cfg.mqtt.topic_prefix, c.id);
            let (topic, template) = match &c.mapping {
                None => (Some(native), None),
                Some(m) => match &m.command {
                    Some(t) => {
                        let own = c.id.as_str().strip_prefix(&m.station_prefix);
                        (
                            Some(t.topic.topic(own.unwrap_or(c.id.as_str()))),
                            Some(t.clone()),
                        )
                    }
                    None => (None, None),
                },
            };
            Route {
                id: c.id.clone(),
                tags: c.tags.clone(),
                topic,
                template,
                device,
            }
        })
        .collect()
}

/// A station behind OPC UA: its server's endpoint and its node name.
#[cfg(feature = "opcua")]
fn opcua_link(cfg: &Config, c: &StationConfig) -> Option<String> {
    let (s, n) = c.opcua.as_ref()?;
    let server = cfg
        .opcua_servers
        .get(*s)
        .map_or("", |s| s.endpoint.as_str());
    Some(format!("opcua {server} node {}", n.node))
}

#[cfg(not(feature = "opcua"))]
fn opcua_link(_: &Config, _: &StationConfig) -> Option<String> {
    None
}

fn control_stations(cfg: &Config, slots: Vec<Arc<StationSlot>>) -> Vec<Station> {
    let dt_s = cfg.tick.as_secs_f64() * cfg.time_scale;
    cfg.stations
        .iter()
        .zip(slots)
        .map(|(c, slot)| {
            let mut ctrl = StationController::new(c.params.clone(), dt_s);
            ctrl.set_mode(c.mode, None);
            let link = match (&c.modbus, &c.mapping, opcua_link(cfg, c)) {
                (Some(m), _, _) => format!("modbus {} unit {}", m.transport.key(), m.unit_id),
                (None, _, Some(link)) => link,
                (None, Some(m), None) if m.command.is_none() => {
                    format!("mqtt mapping {} (monitor only)", m.name)
                }
                (None, Some(m), None) => format!("mqtt mapping {}", m.name),
                (None, None, None) => "mqtt".into(),
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

/// What the API reads.
struct Views<'a> {
    status: &'a StatusView,
    alarms: &'a AlarmsView,
    cluster: Option<&'a watch::Receiver<Arc<crate::cluster::view::ClusterView>>>,
    plant: Option<PlantStatusView>,
    /// The stations' slots: the live feed shows each reading as it arrives.
    slots: Vec<Arc<StationSlot>>,
}

/// The operator API, if `api.listen` is set; part of the control stage.
async fn start_api(
    c: &Common<'_>,
    spool: &Arc<Spool>,
    inbox: &Inbox,
    views: Views<'_>,
    stage: &Stage,
) -> Result<Option<std::net::SocketAddr>, StartError> {
    let Views {
        status,
        alarms,
        cluster,
        plant,
        slots,
    } = views;
    let (cfg, stats) = (c.cfg, c.stats);
    let Some(addr) = cfg.api.listen else {
        return Ok(None);
    };
    let (live, hub) = crate::api::live::Hub::start(
        status.clone(),
        alarms.clone(),
        cluster.cloned(),
        slots,
        stage.token(),
    );
    stage.spawn(hub);
    let state = ApiState {
        reports: Arc::new(crate::report::source::Source::for_config(
            &cfg.storage,
            &cfg.data_dir,
        )),
        status: status.clone(),
        stats: stats.clone(),
        spool: spool.clone(),
        changes: inbox.clone(),
        tokens: Arc::new(cfg.api.tokens.clone()),
        alarms: alarms.clone(),
        stations: Arc::new(
            cfg.stations
                .iter()
                .map(|s| StationInfo {
                    id: s.id.clone(),
                    tags: s.tags.clone(),
                    params: s.params.clone(),
                })
                .collect(),
        ),
        peers: cluster
            .cloned()
            .map(|v| crate::api::peers::Peers::new(v, cfg.coordinator.is_some()))
            .transpose()
            .map_err(|source| StartError::HttpClient {
                what: "the cluster's peers",
                source,
            })?,
        history: cfg
            .storage
            .influxdb
            .as_ref()
            .map(crate::store::history::History::for_config)
            .transpose()
            .map(Option::flatten)
            .map_err(|source| StartError::HttpClient {
                what: "the history reader",
                source,
            })?,
        live,
        plant,
        network: cfg.plant.as_ref().and_then(|p| p.layout.clone()),
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
