//! Command sequence numbers that survive a restart (contract §2.2: `seq` +1 per command per
//! station, continuing after an engine restart).
//!
//! Owned by the control task. The whole map is written to `data_dir/seq.json` (temp file +
//! rename, so a crash leaves the old or the new file, never half of one) once per tick,
//! *before* the tick's commands are published: a number that reached a station is never
//! handed out again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::model::StationId;

#[derive(Debug)]
pub struct SeqStore {
    path: PathBuf,
    last: BTreeMap<String, u64>,
    dirty: bool,
}

impl SeqStore {
    /// Loads `dir/seq.json` if present. A corrupt file is an error: silently restarting at 1
    /// would make stations refuse (or, worse, reorder) commands.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let path = dir.join("seq.json");
        let last = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is corrupt ({e}); fix or remove it", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Self {
            path,
            last,
            dirty: false,
        })
    }

    /// The last number handed out for `station` (0 if none).
    pub fn last(&self, station: &StationId) -> u64 {
        self.last.get(station.as_str()).copied().unwrap_or(0)
    }

    /// Hands out the next number for `station`.
    pub fn next(&mut self, station: &StationId) -> u64 {
        let n = self.last.entry(station.as_str().to_owned()).or_insert(0);
        *n += 1;
        self.dirty = true;
        *n
    }

    /// Writes the map if it changed since the last call.
    pub fn persist(&mut self) -> Result<(), String> {
        if !self.dirty {
            return Ok(());
        }
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec(&self.last).map_err(|e| e.to_string())?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_data()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        self.dirty = false;
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
        let mut s = SeqStore::open(dir.path()).unwrap();
        assert_eq!((s.next(&a), s.next(&a)), (1, 2));
        s.persist().unwrap();
        let mut s = SeqStore::open(dir.path()).unwrap();
        assert_eq!(s.last(&a), 2);
        assert_eq!(s.next(&a), 3);
        std::fs::write(dir.path().join("seq.json"), b"{oops").unwrap();
        assert!(SeqStore::open(dir.path()).unwrap_err().contains("corrupt"));
    }
}
