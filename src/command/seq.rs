//! Command sequence numbers that survive a restart (contract §2.2: `seq` +1 per command per
//! station, continuing after an engine restart).
//!
//! Owned by the control task. Stored as a snapshot, `data_dir/seq.json` (temp file + rename,
//! so a crash leaves the old or the new file), plus an append-only log, `data_dir/seq.log`, of
//! `station seq` lines. [`SeqStore::persist`] runs *before* a batch of commands is published
//! and appends only the stations that changed, so its cost follows the commands sent, not the
//! fleet size (control following telemetry persists once per batch). When the log outgrows
//! both 8 MiB and four times the snapshot it is folded into a new snapshot (at 10,000
//! commands/s about once a minute: a compaction fsyncs before the control task goes on
//! (off the async workers: the dispatcher persists through `files::off_runtime`), so it must
//! stay rare; replaying an 8 MiB log at start takes well under 0.1 s). On open, the snapshot is read and the log
//! replayed, taking the larger number per station; a torn last line (a crash mid-append) is
//! ignored. A number that reached a station is never handed out again.
//!
//! Durability follows the spool's fsync policy: `always` fsyncs every append, `interval`
//! at most once per interval on the blocking pool, not the control task (a power failure can
//! lose that much; a process crash loses nothing, the data is in the page cache), `never`
//! leaves it to the operating system.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::files::{read_json, StateError};
use crate::model::StationId;
use crate::store::spool::FsyncPolicy;

#[derive(Debug)]
pub struct SeqStore {
    path: PathBuf,
    log_path: PathBuf,
    last: BTreeMap<String, u64>,
    changed: BTreeSet<String>,
    log: Option<File>,
    log_bytes: u64,
    fsync: FsyncPolicy,
    last_sync: Instant,
    compact_min_bytes: u64,
}

/// The log is folded into the snapshot when it is this many times larger, and over
/// [`COMPACT_MIN_BYTES`].
const COMPACT_FACTOR: u64 = 4;
const COMPACT_MIN_BYTES: u64 = 8 << 20;

impl SeqStore {
    /// Loads `dir/seq.json` and replays `dir/seq.log` if present. A corrupt snapshot or a
    /// corrupt line before the log's last is an error: silently restarting at 1 would make
    /// stations refuse (or, worse, reorder) commands.
    pub fn open(dir: &Path, fsync: FsyncPolicy) -> Result<Self, StateError> {
        let path = dir.join("seq.json");
        let log_path = dir.join("seq.log");
        let mut last: BTreeMap<String, u64> = read_json(&path)?.unwrap_or_default();
        let log_text = match std::fs::read(&log_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StateError::read(&log_path, e)),
        };
        let text = String::from_utf8_lossy(&log_text);
        let lines: Vec<&str> = text.split('\n').collect();
        for (k, line) in lines.iter().enumerate() {
            // The text after the last newline is empty, or a line torn by a crash mid-append
            // (its numbers were never sent: persist had not returned).
            if k + 1 == lines.len() {
                break;
            }
            let parsed = line
                .split_once(' ')
                .and_then(|(id, n)| Some((id, n.parse::<u64>().ok()?)));
            match parsed {
                Some((id, n)) => {
                    let e = last.entry(id.to_owned()).or_insert(0);
                    *e = (*e).max(n);
                }
                None => {
                    return Err(StateError::corrupt(
                        &log_path,
                        format!("line {}: {line:?}", k + 1),
                    ))
                }
            }
        }
        Ok(Self {
            path,
            log_path,
            last,
            changed: BTreeSet::new(),
            log: None,
            log_bytes: log_text.len() as u64,
            fsync,
            last_sync: Instant::now(),
            compact_min_bytes: COMPACT_MIN_BYTES,
        })
    }

    /// The last number handed out for `station` (0 if none).
    pub fn last(&self, station: &StationId) -> u64 {
        self.last.get(station.as_str()).copied().unwrap_or(0)
    }

    /// Every station's last number.
    pub fn all(&self) -> &BTreeMap<String, u64> {
        &self.last
    }

    /// Hands out the next number for `station`.
    pub fn next(&mut self, station: &StationId) -> u64 {
        let id = station.as_str();
        let n = match self.last.get_mut(id) {
            Some(n) => n,
            None => self.last.entry(id.to_owned()).or_insert(0),
        };
        *n += 1;
        let n = *n;
        if !self.changed.contains(id) {
            self.changed.insert(id.to_owned());
        }
        n
    }

    /// Records every number handed out since the last call; must succeed before they are sent.
    pub fn persist(&mut self) -> Result<(), StateError> {
        if self.changed.is_empty() {
            return Ok(());
        }
        let mut body = String::with_capacity(self.changed.len() * 24);
        for id in std::mem::take(&mut self.changed) {
            let n = self.last.get(&id).copied().unwrap_or(0);
            body.push_str(&id);
            body.push(' ');
            body.push_str(&n.to_string());
            body.push('\n');
        }
        let r = self.append(body.as_bytes());
        if r.is_err() {
            // Nothing is known to be on disk: everything is written again next time.
            self.changed.extend(self.last.keys().cloned());
            self.log = None;
        }
        r.map_err(|e| StateError::write(&self.log_path, e))?;
        if self.log_bytes > self.compact_min_bytes
            && self.log_bytes > COMPACT_FACTOR * self.snapshot_size()
        {
            self.compact()
                .map_err(|e| StateError::write(&self.path, e))?;
        }
        Ok(())
    }

    fn append(&mut self, body: &[u8]) -> std::io::Result<()> {
        if self.log.is_none() {
            self.log = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log_path)?,
            );
        }
        let log = self.log.as_mut().expect("opened above");
        log.write_all(body)?;
        self.log_bytes += body.len() as u64;
        let sync = match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(every) => self.last_sync.elapsed() >= every,
            FsyncPolicy::Never => false,
        };
        if sync {
            self.last_sync = Instant::now();
            match self.fsync {
                FsyncPolicy::Always => log.sync_data()?,
                _ => crate::files::sync_detached(log.try_clone()?, self.log_path.clone()),
            }
        }
        Ok(())
    }

    fn snapshot_size(&self) -> u64 {
        self.last.keys().map(|k| k.len() as u64 + 16).sum()
    }

    /// Writes a new snapshot (fsynced), then empties the log.
    fn compact(&mut self) -> std::io::Result<()> {
        let body = serde_json::to_vec(&self.last).map_err(std::io::Error::other)?;
        crate::files::replace(&self.path, &body, true)?;
        // Replay takes the larger number, so a crash between these two steps loses nothing.
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.log_path)?;
        log.sync_data()?;
        self.log = None;
        self.log_bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_continue_after_reopen_and_corruption_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = StationId::new("a").unwrap();
        let mut s = SeqStore::open(dir.path(), FsyncPolicy::Always).unwrap();
        assert_eq!((s.next(&a), s.next(&a)), (1, 2));
        s.persist().unwrap();
        let mut s = SeqStore::open(dir.path(), FsyncPolicy::Always).unwrap();
        assert_eq!(s.last(&a), 2);
        assert_eq!(s.next(&a), 3);
        std::fs::write(dir.path().join("seq.json"), b"{oops").unwrap();
        assert!(SeqStore::open(dir.path(), FsyncPolicy::Always)
            .unwrap_err()
            .to_string()
            .contains("corrupt"));
    }

    #[test]
    fn the_log_is_replayed_compacted_and_survives_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<StationId> = (0..50)
            .map(|i| StationId::new(&format!("st-{i:03}")).unwrap())
            .collect();
        let mut s = SeqStore::open(dir.path(), FsyncPolicy::Never).unwrap();
        s.compact_min_bytes = 4 * 1024;
        // Enough batches to compact several times (the log outgrows the snapshot).
        for round in 1..=2_000u64 {
            let id = &ids[(round % 50) as usize];
            s.next(id);
            s.persist().unwrap();
        }
        let want: Vec<u64> = ids.iter().map(|i| s.last(i)).collect();
        assert_eq!(want.iter().sum::<u64>(), 2_000);
        // A crash mid-append leaves a torn line; it is ignored.
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.path().join("seq.log"))
            .unwrap();
        log.write_all(b"st-001 99").unwrap();
        let s = SeqStore::open(dir.path(), FsyncPolicy::Never).unwrap();
        let got: Vec<u64> = ids.iter().map(|i| s.last(i)).collect();
        assert_eq!(got, want);
        assert!(
            std::fs::metadata(dir.path().join("seq.log")).unwrap().len() < 8 * 1024,
            "the log was never compacted"
        );
        // A corrupt line in the middle is refused.
        std::fs::write(
            dir.path().join("seq.log"),
            b"st-001 5\nnonsense\nst-002 7\n",
        )
        .unwrap();
        assert!(SeqStore::open(dir.path(), FsyncPolicy::Never)
            .unwrap_err()
            .to_string()
            .contains("is corrupt (line 2:"));
    }
}
