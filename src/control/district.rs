//! The district coordinator in the running engine: feeds it every automatic step, moves the
//! stations' district offsets when it updates, stores the offsets and keeps them across
//! restarts (`data_dir/coordinator.json`).
//!
//! Where it sits: inside the control task. [`super::coordinator`] is the pure balancing
//! rule; this is its state on disk and in storage.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tracing::{error, info};

use super::coordinator::{Coordinator, CoordinatorConfig, Observation};
use super::task::Station;
use super::{Outputs, StationController};
use crate::model::{Mode, Reading};
use crate::store::{line_protocol, StoreHandle};

/// Why the kept offsets could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{path} is corrupt ({error}); fix or remove it")]
    Corrupt {
        path: String,
        error: serde_json::Error,
    },
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
}

/// The coordinator with its persistence.
#[derive(Debug)]
pub struct District {
    coordinator: Coordinator,
    /// Where the offsets are kept across restarts: `{"station id": offset_k, …}`.
    path: PathBuf,
    store: StoreHandle,
}

impl District {
    /// A coordinator over `stations`, with the offsets the last run kept in `path` (none if
    /// there is no file) restored into it and into the controllers, clamped to today's bound;
    /// offsets of stations no longer configured are dropped. A corrupt file stops the start-up,
    /// like the other state files.
    pub fn open(
        cfg: CoordinatorConfig,
        path: PathBuf,
        store: StoreHandle,
        stations: &mut [Station],
    ) -> Result<Self, RestoreError> {
        let mut coordinator = Coordinator::new(cfg, stations.len());
        let shown = path.display().to_string();
        let kept: BTreeMap<String, f64> = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|error| RestoreError::Corrupt {
                path: shown.clone(),
                error,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => return Err(RestoreError::Read { path: shown, error }),
        };
        if !kept.is_empty() {
            let mut restored = 0;
            for (i, s) in stations.iter_mut().enumerate() {
                if let Some(&k) = kept.get(s.id.as_str()) {
                    coordinator.restore(i, k);
                    s.ctrl.set_district_offset_k(coordinator.offset_k(i));
                    restored += 1;
                }
            }
            info!(restored, path = %shown, "District offsets restored.");
        }
        Ok(Self {
            coordinator,
            path,
            store,
        })
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

    /// Advances the coordinator by `dt_s` of plant time; after an update, hands each station
    /// its new district offset, stores them (`coordinator` measurement) and keeps them on disk.
    pub fn advance(&mut self, dt_s: f64, stations: &mut [Station], now: i64) {
        let c = &mut self.coordinator;
        if !c.advance(dt_s) {
            return;
        }
        let mut lines = Vec::new();
        let (mut moved, mut largest) = (0usize, 0.0f64);
        for (s, m) in stations.iter_mut().zip(c.members()) {
            if m.offset_k != s.ctrl.district_offset_k() {
                moved += 1;
            }
            largest = largest.max(m.offset_k.abs());
            s.ctrl.set_district_offset_k(m.offset_k);
            let Some(ratio) = m.ratio else {
                continue; // never reported: nothing to store
            };
            lines.extend(line_protocol::coordinator(
                &s.id,
                &s.tags,
                m.offset_k,
                ratio,
                m.target_ratio,
                now,
            ));
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
        let offsets: BTreeMap<&str, f64> = stations
            .iter()
            .map(|s| (s.id.as_str(), s.ctrl.district_offset_k()))
            .collect();
        let r = serde_json::to_vec(&offsets)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::files::replace(&self.path, &b, false));
        if let Err(e) = r {
            error!(error = %e, path = %self.path.display(), "Cannot persist the district offsets.");
        }
    }
}
