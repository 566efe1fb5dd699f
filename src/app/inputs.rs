//! The ingest stages: the broker connection with its event loop feeding [`Ingest`], and one
//! poller per Modbus station.

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::info;

use super::common::Common;
use super::stage::Stage;
use crate::config::Config;
use crate::ingest::event_loop::{run_event_loop, Acks, LoopSettings};
use crate::ingest::modbus::line::LineHandle;
use crate::ingest::mqtt::{self, Link, Presence};
use crate::ingest::plant::PlantFeed;
use crate::ingest::slot::{StationSlot, Weather};
use crate::ingest::Ingest;
use crate::model::Command;

/// The broker connection and its event loop, which hands every message to [`Ingest`].
pub(super) fn start_mqtt(
    c: &Common<'_>,
    slots: &[Arc<StationSlot>],
    weather: &Weather,
    stage: &Stage,
    down_since: &Arc<AtomicI64>,
    plant: Option<&PlantFeed>,
) -> (Link, Presence) {
    let (cfg, store, stats) = (c.cfg, c.store, c.stats);
    let prefix = &cfg.mqtt.topic_prefix;
    // In a cluster each instance has its own presence and client id; telemetry comes on the
    // partitions' sessions (`super::cluster`).
    let (topic, client_id) = match &cfg.cluster {
        None => (format!("{prefix}/engine/state"), cfg.mqtt.client_id.clone()),
        Some(m) => (
            format!("{prefix}/engine/{}/state", m.name),
            format!("{}-{}", cfg.mqtt.client_id, m.name),
        ),
    };
    let presence = Presence {
        topic,
        online: "online",
        offline: "offline",
    };
    let mut mqtt_cfg = cfg.mqtt.clone();
    if cfg.cluster.is_some() {
        mqtt_cfg.ack_after_spool = false; // only the weather and presence on this session
    }
    let (link, el) = mqtt::connect(&mqtt_cfg, &client_id, Some(&presence));
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
    if let (Some(p), Some(feed)) = (&cfg.plant, plant) {
        ingest = ingest.with_plant(&p.id, feed.clone());
    }
    let qos1 = cfg.mqtt.telemetry_qos == 1;
    let mut subscriptions = match cfg.cluster {
        None => ingest.subscriptions(qos1),
        Some(_) => ingest.shared_subscriptions(),
    };
    // The plant speaks to every instance on its own session.
    subscriptions.extend(ingest.plant_subscriptions(qos1));
    let settings = LoopSettings {
        acks: if mqtt_cfg.ack_after_spool {
            Acks::AfterBurst
        } else {
            Acks::Auto
        },
        // The weather may be silent for long: no watchdog without telemetry on this session.
        watchdog: cfg.cluster.is_none().then_some(cfg.mqtt.watchdog),
        subscriptions,
        presence: Some(presence.clone()),
        connect_while: None,
        down_since: Some(down_since.clone()),
    };
    stage.spawn(run_event_loop(
        el,
        link.clone(),
        settings,
        stage.token(),
        ingest,
    ));
    (link, presence)
}

/// One poller per Modbus station; per station (config order) the channel its commands go on
/// (`None`: an MQTT station).
pub(super) fn start_modbus(
    c: &Common<'_>,
    slots: &[Arc<StationSlot>],
    stage: &Stage,
) -> Vec<Option<watch::Sender<Option<Command>>>> {
    let (cfg, store, stats) = (c.cfg, c.store, c.stats);
    let lines = start_lines(cfg, stage);
    let mut senders = Vec::with_capacity(slots.len());
    for (station, slot) in cfg.stations.iter().zip(slots) {
        let Some(m) = &station.modbus else {
            senders.push(None);
            continue;
        };
        let (tx, rx) = watch::channel(None);
        senders.push(Some(tx));
        let mut m = m.clone();
        m.line = lines.get(&m.transport.key()).cloned();
        let retry_for = cfg.tick.max(m.interval);
        stage.spawn(crate::ingest::modbus::poller::run(
            m,
            slot.clone(),
            store.clone(),
            stats.clone(),
            cfg.decode,
            retry_for,
            rx,
            stage.token(),
        ));
    }
    let pollers = senders.iter().flatten().count();
    if pollers > 0 {
        info!(
            stations = pollers,
            lines = lines.len(),
            "Modbus pollers started."
        );
    }
    senders
}

#[cfg(feature = "opcua")]
/// One task per OPC UA server, and one writer per OPC UA station; per station (config order)
/// the channel its commands go on (`None`: not behind OPC UA).
pub(super) fn start_opcua(
    c: &Common<'_>,
    slots: &[Arc<StationSlot>],
    stage: &Stage,
) -> Vec<Option<watch::Sender<Option<Command>>>> {
    use crate::ingest::opcua::{server, write};
    let cfg = c.cfg;
    let parts = server::Parts {
        store: c.store.clone(),
        stats: c.stats.clone(),
        limits: cfg.decode,
    };
    let mut senders = vec![None; slots.len()];
    for (k, server_cfg) in cfg.opcua_servers.iter().enumerate() {
        let (live, _) = watch::channel(None);
        let mut members = Vec::new();
        for (i, (station, slot)) in cfg.stations.iter().zip(slots).enumerate() {
            let Some((s, nodes)) = &station.opcua else {
                continue;
            };
            if *s != k {
                continue;
            }
            let (tx, rx) = watch::channel(None);
            senders[i] = Some(tx);
            stage.spawn(write::run(
                nodes.clone(),
                slot.clone(),
                parts.clone(),
                server_cfg.timeout,
                cfg.tick.max(server_cfg.interval),
                live.subscribe(),
                rx,
                stage.token(),
            ));
            members.push((nodes.clone(), slot.clone()));
        }
        if members.is_empty() {
            continue;
        }
        info!(server = %server_cfg.name, endpoint = %server_cfg.endpoint, stations = members.len(),
            "OPC UA server task started.");
        stage.spawn(server::run(
            server_cfg.clone(),
            members,
            parts.clone(),
            live,
            stage.token(),
        ));
    }
    senders
}

/// One task per shared line: every serial port and RTU-over-TCP address, and every Modbus
/// TCP address whose device takes one request at a time. A station at a Modbus TCP address
/// taking requests side by side (the default) keeps its own connection.
fn start_lines(cfg: &Config, stage: &Stage) -> HashMap<String, LineHandle> {
    use crate::ingest::modbus::line::{self, Transport};
    let mut by_key: HashMap<String, (Transport, usize, Option<Duration>)> = HashMap::new();
    for m in cfg.stations.iter().filter_map(|s| s.modbus.as_ref()) {
        let e = by_key
            .entry(m.transport.key())
            .or_insert((m.transport.clone(), 0, m.frame_gap));
        e.1 += 1;
        e.2 = e.2.or(m.frame_gap);
    }
    by_key
        .into_iter()
        .filter(|(_, (t, _, _))| !matches!(t, Transport::Tcp(_)))
        .map(|(key, (transport, n, gap))| {
            let gap = gap.unwrap_or_else(|| transport.default_gap());
            let (handle, task) = line::spawn(transport, gap, n, stage.token());
            stage.spawn(task);
            (key, handle)
        })
        .collect()
}
