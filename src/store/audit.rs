//! The audit trail: every operator action (who, what, before → after, when) as one JSON line
//! in `data_dir/audit.log`, append-only and synced before the action is acknowledged; the same
//! record goes to storage as an `operator_action` point and to the log.
//!
//! Where it sits: the control task (station changes) and the alarm task (acknowledgements)
//! share one [`OperatorLog`]; each records an action once it took effect.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::{error, info};

use super::record::Record;
use super::StoreHandle;
use crate::model::Applied;

/// Where applied operator actions are recorded: the audit file, storage and the log.
#[derive(Debug)]
pub struct OperatorLog {
    file: Mutex<File>,
    store: StoreHandle,
}

impl OperatorLog {
    /// Opens (or creates) the audit file at `path` for appending.
    pub fn open(path: &Path, store: StoreHandle) -> std::io::Result<Self> {
        Ok(Self {
            file: Mutex::new(OpenOptions::new().create(true).append(true).open(path)?),
            store,
        })
    }

    /// Records one applied action by `user` at `ts_ms`. A failing audit write is logged as an
    /// alarm; the action itself stands.
    pub fn record(&self, ts_ms: i64, user: &str, a: &Applied) {
        let rec = serde_json::json!({
            "ts": ts_ms,
            "user": user,
            "station": a.station,
            "action": a.action,
            "before": a.before,
            "after": a.after,
        });
        let mut line = rec.to_string();
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file
            .write_all(line.as_bytes())
            .and_then(|_| file.sync_data())
        {
            error!(error = %e, record = %line.trim(), "ALARM cannot write the audit log.");
        }
        drop(file);
        self.store.submit(&Record::OperatorAction {
            applied: a,
            user,
            ts_ms,
        });
        info!(station = %a.station, user, action = %a.action, before = %a.before, after = %a.after,
            "Operator action applied.");
    }
}
