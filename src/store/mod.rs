//! Storage: every accepted point goes to the durable spool first, and one writer task drains
//! the spool, in order, to InfluxDB (v2 write API) or, without a database, to local files.
//!
//! ```text
//!  ingest / control ── StoreHandle::append ──► Spool (segment files) ──► Writer ──► InfluxDB
//!   (ingest: once per     (a write to disk,       │ fsync task           (own thread) │ files
//!    burst of readings)    never waits on the DB) └─ cursor: first unconfirmed line  └─► dead letters
//! ```
//! The writer runs on its own thread (see `app::stage::spawn_dedicated`): its per-batch work must
//! not delay the MQTT event loop and the control task.
//! Write-error policy of the writer: 2xx → confirmed; 413 → split the batch; 400/422 (bad
//! data) → split down to the offending lines, which go to `data_dir/dead-letter/*.lp` with the
//! server's reason (an operator can inspect and replay them with `influx write`), never retried
//! forever, never dropped silently; 401/403 → keep and retry, logged as a credentials problem;
//! 429/503 → wait `Retry-After` if given, else back off; other 5xx, network errors and
//! timeouts → back off with jitter (200 ms → 30 s). A spool full (`max_spool_mb`) refuses new
//! points: counted and logged as an error (the operator's alarm) — never silent.

pub mod audit;
pub mod history;
pub mod influx;
pub mod line_protocol;
pub mod record;
mod segment;
pub mod spool;
mod writer;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::error;

use crate::stats::Stats;
use record::Record;
use spool::{Spool, SpoolError};
pub use writer::{Sink, Writer, WriterConfig};

/// The storage stage's settings (`[storage]`).
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub max_spool_bytes: u64,
    pub segment_bytes: u64,
    pub fsync: spool::FsyncPolicy,
    /// `None`: line protocol to local files under `data_dir/lp`.
    pub influxdb: Option<influx::InfluxConfig>,
}

/// The appending side, cloned into ingest and control.
/// Records encoded and waiting for one spool append ([`StoreHandle::append_points`]).
#[derive(Debug, Default)]
pub struct Points {
    body: Vec<u8>,
    lines: u64,
}

impl Points {
    /// Encodes `r` (a record without a line is skipped).
    pub fn push(&mut self, r: &Record<'_>) {
        if let Some(line) = line_protocol::encode(r) {
            self.body.extend_from_slice(line.as_bytes());
            self.body.push(b'\n');
            self.lines += 1;
        }
    }

    /// Points waiting.
    pub fn len(&self) -> u64 {
        self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }
}

#[derive(Debug, Clone)]
pub struct StoreHandle {
    spool: Arc<Spool>,
    stats: Arc<Stats>,
}

impl StoreHandle {
    pub fn new(spool: Arc<Spool>, stats: Arc<Stats>) -> Self {
        Self { spool, stats }
    }

    /// For unit tests: a store over a spool in `dir` that never syncs.
    #[cfg(test)]
    pub(crate) fn in_dir(dir: &std::path::Path, stats: Arc<Stats>) -> Self {
        let spool = Spool::open(spool::SpoolConfig {
            dir: dir.to_path_buf(),
            segment_bytes: 1 << 20,
            max_bytes: 1 << 30,
            fsync: spool::FsyncPolicy::Never,
        })
        .expect("a spool in a temporary directory");
        Self::new(spool, stats)
    }

    /// Stores one record durably. `false` if it was refused (spool full or disk error):
    /// counted and logged, and the caller must not treat the point as stored.
    pub fn submit(&self, r: &Record<'_>) -> bool {
        let mut points = Points::default();
        points.push(r);
        self.append_points(&mut points)
    }

    /// Stores several records in one write.
    pub fn submit_many<'a>(&self, records: impl IntoIterator<Item = Record<'a>>) -> bool {
        let mut points = Points::default();
        for r in records {
            points.push(&r);
        }
        self.append_points(&mut points)
    }

    /// Appends what `points` gathered in one write and empties it (see [`Self::submit`]).
    pub fn append_points(&self, points: &mut Points) -> bool {
        if points.is_empty() {
            return true;
        }
        let ok = self.append(&points.body, points.lines);
        points.body.clear();
        points.lines = 0;
        ok
    }

    /// Appends `lines` complete, `\n`-terminated lines in one write (see [`Self::submit`]).
    fn append(&self, body: &[u8], lines: u64) -> bool {
        match self.spool.append(body, lines) {
            Ok(()) => {
                self.stats
                    .spool_appended
                    .fetch_add(lines, Ordering::Relaxed);
                true
            }
            Err(e) => {
                let n = self.stats.spool_refused.fetch_add(lines, Ordering::Relaxed);
                if n == 0 || (n + lines).ilog2() != n.max(1).ilog2() {
                    match e {
                        SpoolError::Full { .. } => error!(error = %e, refused_total = n + lines,
                            "ALARM spool full: new points are refused until the database catches up or max_spool_mb is raised."),
                        SpoolError::Io(_) => error!(error = %e, refused_total = n + lines,
                            "ALARM spool write failed: points refused."),
                    }
                }
                false
            }
        }
    }

    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spool::{FsyncPolicy, SpoolConfig};
    use std::time::Instant;
    use tokio_util::sync::CancellationToken;

    fn append(spool: &Spool, range: std::ops::Range<u32>) {
        let body: Vec<u8> = range
            .clone()
            .flat_map(|i| format!("m,station=s v={i} {i}\n").into_bytes())
            .collect();
        spool.append(&body, range.len() as u64).unwrap();
    }

    /// Lines the file sink has written so far.
    fn written(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .map(|t| t.lines().count())
                    .sum()
            })
            .unwrap_or(0)
    }

    async fn wait_written(dir: &std::path::Path, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while written(dir) < n {
            assert!(Instant::now() < deadline, "{} of {n} written", written(dir));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_tenth_of_a_batch_is_written_at_once_and_less_waits_for_the_flush_interval() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("lp");
        std::fs::create_dir(&out).unwrap();
        let spool = Spool::open(SpoolConfig {
            dir: dir.path().join("spool"),
            segment_bytes: 1 << 20,
            max_bytes: 1 << 30,
            fsync: FsyncPolicy::Never,
        })
        .unwrap();
        // A backlog from before the start: written at once, in batches of at most 100.
        append(&spool, 0..250);
        let writer = Writer::new(
            WriterConfig {
                batch_size: 100,
                flush_interval: Duration::from_secs(3600),
                dead_letter_dir: dir.path().join("dead-letter"),
            },
            Sink::Files { dir: out.clone() },
            spool.clone(),
            Arc::new(Stats::default()),
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(writer.run(stop.clone(), Duration::from_secs(5)));
        wait_written(&out, 250).await;

        // 9 points: under a tenth of a batch, they wait for the (hour-long) flush interval.
        append(&spool, 250..259);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(written(&out), 250);
        // The tenth point starts a write, long before a whole batch is there.
        append(&spool, 259..260);
        wait_written(&out, 260).await;

        // Stopping drains what is left, however little.
        append(&spool, 260..263);
        stop.cancel();
        task.await.unwrap();
        assert_eq!(written(&out), 263);
        assert_eq!(spool.depth().points, 0);
    }
}
