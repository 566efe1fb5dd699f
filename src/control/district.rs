//! The district coordinator in the running engine: feeds it every automatic step, moves the
//! stations' district offsets when it updates, stores the offsets and keeps them across
//! restarts (`data_dir/coordinator.json`).
//!
//! Where it sits: inside the control task. [`super::coordinator`] is the pure balancing
//! rule; this is its state on disk and in storage for the only engine
//! ([`super::shared_district`] is its counterpart for several instances).

use std::collections::BTreeMap;
use std::path::PathBuf;

use tracing::{error, info};

use super::coordinator::{Coordinator, CoordinatorConfig, Member, Observation};
use super::{Outputs, StationController};
use crate::files::{read_json, StateError};
use crate::model::{Mode, Reading, StationId};
use crate::store::record::{CoordinatorPoint, Record};
use crate::store::StoreHandle;

/// The coordinator with its persistence.
#[derive(Debug)]
pub struct District {
    coordinator: Coordinator,
    /// The stations, config order: their ids and tags for the stored points and the file.
    stations: Vec<(StationId, BTreeMap<String, String>)>,
    /// Where the offsets are kept across restarts: `{"station id": offset_k, …}`.
    path: PathBuf,
    store: StoreHandle,
}

impl District {
    /// A coordinator over `stations` (config order), with the offsets the last run kept in
    /// `path` (none if there is no file) restored, clamped to today's bound; offsets of
    /// stations no longer configured are dropped. A corrupt file stops the start-up, like the
    /// other state files. The controllers take [`District::offset_k`] before the first tick.
    pub fn open(
        cfg: CoordinatorConfig,
        stations: Vec<(StationId, BTreeMap<String, String>)>,
        path: PathBuf,
        store: StoreHandle,
    ) -> Result<Self, StateError> {
        let mut coordinator = Coordinator::new(cfg, stations.len());
        if let Some(kept) = read_json::<BTreeMap<String, f64>>(&path)? {
            let mut restored = 0;
            for (i, (id, _)) in stations.iter().enumerate() {
                if let Some(&k) = kept.get(id.as_str()) {
                    coordinator.restore(i, k);
                    restored += 1;
                }
            }
            info!(restored, path = %path.display(), "District offsets restored.");
        }
        Ok(Self {
            coordinator,
            stations,
            path,
            store,
        })
    }

    /// Station `i`'s district offset now, K.
    /// See [`super::coordination::Coordination::set_planned_indoor`].
    pub fn set_planned_indoor(&mut self, i: usize, indoor_c: Option<f64>) {
        self.coordinator.set_planned_indoor(i, indoor_c);
    }

    pub fn offset_k(&self, i: usize) -> f64 {
        self.coordinator.offset_k(i)
    }

    /// Feeds one step of station `i` that acted on reading `r`. Only automatic control on the
    /// curve is coordinated: an operator's manual, hold or fixed setpoint is left alone (and
    /// its offset held).
    pub fn observe(
        &mut self,
        i: usize,
        ctrl: &StationController,
        r: &Reading,
        o: &Outputs,
        dt_s: f64,
    ) {
        if o.mode == Mode::Auto && ctrl.fixed_supply().is_none() {
            self.coordinator
                .observe(i, &Observation::of_step(ctrl, r, o, dt_s));
        }
    }

    /// Advances the coordinator by `dt_s` of plant time. After an update: stores the offsets
    /// (`coordinator` measurement), keeps them on disk, and returns them (config order) for
    /// the controllers.
    pub fn advance(&mut self, dt_s: f64, now: i64) -> Option<Vec<f64>> {
        let c = &mut self.coordinator;
        if !c.advance(dt_s) {
            return None;
        }
        store_points(&self.store, &self.stations, c.members(), now);
        let offsets: Vec<f64> = c.members().iter().map(|m| m.offset_k).collect();
        // Kept across restarts (temp file + rename): without them a restart would drop every
        // station back to its bare curve and the cold ones would take hours to recover.
        let kept: BTreeMap<&str, f64> = self
            .stations
            .iter()
            .zip(&offsets)
            .map(|((id, _), k)| (id.as_str(), *k))
            .collect();
        let r = serde_json::to_vec(&kept)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::files::replace(&self.path, &b, false));
        if let Err(e) = r {
            error!(error = %e, path = %self.path.display(), "Cannot persist the district offsets.");
        }
        Some(offsets)
    }

    /// Updates made so far.
    pub fn updates(&self) -> u64 {
        self.coordinator.updates()
    }
}

/// Stores the coordinator's state after an update (`coordinator` measurement): one point per
/// station that has a ratio (one that never reported has nothing to store).
pub(super) fn store_points(
    store: &StoreHandle,
    stations: &[(StationId, BTreeMap<String, String>)],
    members: &[Member],
    now: i64,
) {
    let points = stations.iter().zip(members).filter_map(|((id, tags), m)| {
        Some(Record::Coordinator(CoordinatorPoint {
            station: id,
            tags,
            offset_k: m.offset_k,
            load_ratio: m.ratio?,
            target_ratio: m.target_ratio,
            ts_ms: now,
        }))
    });
    store.submit_many(points);
}
