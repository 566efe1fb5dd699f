//! The audit log: every operator change (who, what, before → after, when) as one JSON line in
//! `data_dir/audit.log`, append-only and synced before the change is acknowledged.
//!
//! Written by the control task when it applies a change from the API; the same record also
//! goes to storage as an `operator_action` point.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use tracing::error;

use crate::app::Applied;

#[derive(Debug)]
pub struct Audit {
    file: File,
}

impl Audit {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: OpenOptions::new().create(true).append(true).open(path)?,
        })
    }

    /// Appends one record. A failure is logged as an alarm; the change itself stands.
    pub fn record(&mut self, ts_ms: i64, user: &str, a: &Applied) {
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
        if let Err(e) = self
            .file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
        {
            error!(error = %e, record = %line.trim(), "ALARM cannot write the audit log.");
        }
    }
}
