//! The heat plant's part of the wiring: the plant task ([`crate::control::plant_task`]) for a
//! `[plant]` section, with the engine's session alone, or partition 0's leads and the way to
//! etcd in a cluster; and, for a plant on Modbus, its poller
//! ([`crate::ingest::modbus::plant`]) on the Modbus stage, which the task's commands go to.

use crate::cluster::partition::partition_of;
use crate::cluster::state::StateRequest;
use crate::command::dispatch::Leads;
use crate::control::plant_task::{ClusterParts, PlantStatusView, PlantTask, PlantTaskParts};
use crate::ingest::mqtt::Link;
use crate::ingest::plant::PlantFeed;
use crate::ingest::slot::Weather;

use super::common::Common;
use super::stage::Stage;

/// The plant task and its view, when the config has a `[plant]` (and ingest its feed).
pub(super) fn plant_task(
    c: &Common<'_>,
    feed: Option<PlantFeed>,
    weather: &Weather,
    (link, modbus_stage): (&Link, &Stage),
    (leads, requests): (
        Option<tokio::sync::watch::Receiver<std::sync::Arc<Leads>>>,
        &Option<tokio::sync::mpsc::Sender<StateRequest>>,
    ),
) -> Option<(PlantTask, PlantStatusView)> {
    let cfg = c.cfg;
    let (p, feed) = (cfg.plant.as_ref()?, feed?);
    let cluster = match (leads, requests, &cfg.cluster) {
        (Some(leads), Some(requests), Some(m)) => Some(ClusterParts {
            leads,
            requests: requests.clone(),
            partition: cfg
                .stations
                .iter()
                .map(|s| partition_of(s.id.as_str(), m.partitions))
                .collect(),
        }),
        _ => None,
    };
    // Every instance reads a plant on Modbus (its view and alarms); only the commander writes.
    let modbus = cfg.plant_modbus.as_ref().map(|m| {
        let (tx, commands) = tokio::sync::watch::channel(None);
        let parts = crate::ingest::modbus::plant::PlantPollerParts {
            plant: p.id.clone(),
            feed: feed.clone(),
            store: c.store.clone(),
            stats: c.stats.clone(),
            limits: cfg.decode,
            commands,
        };
        let poller = crate::ingest::modbus::plant::run(m.clone(), parts, modbus_stage.token());
        modbus_stage.spawn(poller);
        tx
    });
    let parts = PlantTaskParts {
        feed,
        weather: weather.clone(),
        link: Some(link.clone()),
        prefix: cfg.mqtt.topic_prefix.clone(),
        store: c.store.clone(),
        data_dir: cfg.data_dir.clone(),
        default_outdoor_c: cfg.default_outdoor_c,
        time_scale: cfg.time_scale,
        fleet_size: cfg.stations.len(),
        modbus,
        cluster,
    };
    Some(PlantTask::new(p.clone(), parts))
}
