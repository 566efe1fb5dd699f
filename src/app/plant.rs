//! The heat plant's part of the wiring: the plant task ([`crate::control::plant_task`]) for a
//! `[plant]` section, with the engine's session alone, or partition 0's leads and the way to
//! etcd in a cluster.

use crate::cluster::partition::partition_of;
use crate::cluster::state::StateRequest;
use crate::command::dispatch::Leads;
use crate::control::plant_task::{ClusterParts, PlantStatusView, PlantTask, PlantTaskParts};
use crate::ingest::mqtt::Link;
use crate::ingest::plant::PlantFeed;
use crate::ingest::slot::Weather;

use super::common::Common;

/// The plant task and its view, when the config has a `[plant]` (and ingest its feed).
pub(super) fn plant_task(
    c: &Common<'_>,
    feed: Option<PlantFeed>,
    weather: &Weather,
    link: &Link,
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
        cluster,
    };
    Some(PlantTask::new(p.clone(), parts))
}
