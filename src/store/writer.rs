//! The storage writer: drains the spool, in order, to InfluxDB or local files under the
//! write-error policy of [`super`]'s docs, on its own thread.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::influx::{self, WriteError};
use super::spool::{self, Batch, Spool};
use crate::backoff::Backoff;
use crate::stats::Stats;

/// A write asked for by a waiting acknowledgement waits this long after the last write, so
/// that the bursts of many partition sessions go in one body (measured: one write per burst
/// cost the engine a third more CPU at 5,000 msg/s).
const HURRY_GAP: Duration = Duration::from_millis(25);

/// Where batches go.
#[derive(Debug)]
pub enum Sink {
    Influx(Box<influx::InfluxWriter>),
    /// Appends to `dir/points-YYYY-MM-DD.lp` (UTC day of the write).
    Files {
        dir: PathBuf,
    },
}

impl Sink {
    async fn write(&self, body: &[u8]) -> Result<(), WriteError> {
        match self {
            Sink::Influx(w) => w.write(body.to_vec()).await,
            Sink::Files { dir } => {
                let day = time::OffsetDateTime::now_utc().date();
                let path = dir.join(format!("points-{day}.lp"));
                let io = async {
                    let mut f = tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .await?;
                    f.write_all(body).await?;
                    f.flush().await
                };
                io.await
                    .map_err(|e| WriteError::Network(format!("{}: {e}", path.display())))
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Sink::Influx(w) => format!("InfluxDB at {}", w.url()),
            Sink::Files { dir } => format!("line-protocol files in {}", dir.display()),
        }
    }
}

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub dead_letter_dir: PathBuf,
}

impl WriterConfig {
    /// A write starts once a tenth of a batch is waiting; each write still takes up to a
    /// whole batch. At a steady high rate the database gets small, frequent bodies (500 lines
    /// every 25 ms at 20,000 points/s) instead of a full batch every quarter second: parsing a
    /// 1.2 MB body takes the database both cores for milliseconds, which showed in the
    /// engine's p99 when they share a machine (docs/performance.md). A backlog (catch-up
    /// after an outage) is still written in full batches.
    fn write_at(&self) -> u64 {
        (self.batch_size as u64 / 10).max(1)
    }
}

/// The writer task: owns the sink, drains the spool in order.
#[derive(Debug)]
pub struct Writer {
    cfg: WriterConfig,
    sink: Sink,
    spool: Arc<Spool>,
    stats: Arc<Stats>,
}

/// Why a delivery stopped early.
struct Interrupted;

impl Writer {
    pub fn new(cfg: WriterConfig, sink: Sink, spool: Arc<Spool>, stats: Arc<Stats>) -> Self {
        Self {
            cfg,
            sink,
            spool,
            stats,
        }
    }

    /// Drains the spool until `stop` is cancelled; then drains what is there for at most
    /// `drain_grace` more and returns (the rest stays in the spool for the next start).
    pub async fn run(self, stop: CancellationToken, drain_grace: Duration) {
        let mut reader = match self.spool.reader() {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "ALARM cannot read the spool; nothing will be written to storage.");
                return;
            }
        };
        let write_at = self.cfg.write_at();
        self.spool.wake_writer_at(write_at);
        let start_depth = self.spool.depth();
        info!(sink = %self.sink.describe(), spool_points = start_depth.points, spool_bytes = start_depth.bytes,
            "Storage writer started; replaying the spool first.");
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut last_write = Instant::now();
        let mut last_report = Instant::now();
        loop {
            if deadline.is_none() && stop.is_cancelled() {
                deadline = Some(tokio::time::Instant::now() + drain_grace);
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                break;
            }
            let depth = self.spool.depth();
            self.note_backlog(depth, &mut last_report);
            // A waiting acknowledgement hurries the write (its session holds it until then),
            // to at most one write per HURRY_GAP: what comes meanwhile joins the same body.
            let hurried = self.spool.hurried();
            let since = last_write.elapsed();
            let due = depth.points >= write_at
                || (depth.points > 0
                    && ((hurried && since >= HURRY_GAP)
                        || since >= self.cfg.flush_interval
                        || deadline.is_some()));
            if !due {
                if deadline.is_some() && depth.points == 0 {
                    break;
                }
                let until = if hurried && depth.points > 0 {
                    HURRY_GAP
                } else {
                    self.cfg.flush_interval
                };
                let wait = until.saturating_sub(since).max(Duration::from_millis(5));
                tokio::select! {
                    _ = self.spool.appended(), if depth.points > 0 || deadline.is_none() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled(), if deadline.is_none() => {}
                }
                continue;
            }
            self.spool.take_hurry();
            let Some(batch) = self.read_batch(&mut reader).await else {
                continue;
            };
            match self.deliver(&batch, &stop, deadline).await {
                Ok(()) => {
                    last_write = Instant::now();
                    if let Err(e) = reader.commit(&batch) {
                        error!(error = %e, "Cannot record the spool cursor; the batch may be written again after a restart.");
                    }
                }
                Err(Interrupted) => break,
            }
        }
        if let Err(e) = self.spool.sync() {
            error!(error = %e, "Spool fsync failed at shutdown.");
        }
        let depth = self.spool.depth();
        info!(left_in_spool = depth.points, "Storage writer stopped.");
    }

    /// Publishes the spool's depth; every 30 s while more than a batch waits, logs the backlog.
    fn note_backlog(&self, depth: spool::Depth, last_report: &mut Instant) {
        self.stats
            .spool_points
            .store(depth.points, Ordering::Relaxed);
        self.stats.spool_bytes.store(depth.bytes, Ordering::Relaxed);
        if last_report.elapsed() >= Duration::from_secs(30)
            && depth.points > self.cfg.batch_size as u64
        {
            *last_report = Instant::now();
            info!(
                spool_points = depth.points,
                spool_bytes = depth.bytes,
                oldest_age_s = age_s(self.stats.spool_oldest_ts_ms.load(Ordering::Relaxed)),
                last_write_ms = Stats::get(&self.stats.store_write_us) / 1000,
                retries = Stats::get(&self.stats.store_retries),
                dead_letters = Stats::get(&self.stats.dead_letters),
                "Storage backlog."
            );
        }
    }

    /// The next batch from the spool, noting its oldest point's age; `None` (after a short
    /// wait) if there is none yet or the spool cannot be read now.
    async fn read_batch(&self, reader: &mut spool::Reader) -> Option<Batch> {
        match reader.next_batch(self.cfg.batch_size, 8 << 20) {
            Ok(Some(batch)) => {
                self.stats.spool_oldest_ts_ms.store(
                    first_ts_ms(&batch.body).unwrap_or(0) as u64,
                    Ordering::Relaxed,
                );
                Some(batch)
            }
            Ok(None) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                None
            }
            Err(e) => {
                error!(error = %e, "ALARM cannot read the spool; retrying.");
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
        }
    }

    /// Writes `batch` under the error policy. Returns when every line is either confirmed by
    /// the sink or set aside as a dead letter; `Interrupted` if the shutdown deadline passed.
    async fn deliver(
        &self,
        batch: &Batch,
        stop: &CancellationToken,
        mut deadline: Option<tokio::time::Instant>,
    ) -> Result<(), Interrupted> {
        let lines: Vec<&[u8]> = batch.body.split_inclusive(|b| *b == b'\n').collect();
        let mut work = vec![(0, lines.len())];
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        while let Some((a, b)) = work.pop() {
            let body = lines[a..b].concat();
            loop {
                let started = Instant::now();
                let result = self.sink.write(&body).await;
                let split = |work: &mut Vec<(usize, usize)>| {
                    let mid = a + (b - a) / 2;
                    work.push((mid, b)); // popped second
                    work.push((a, mid)); // popped first: order is kept
                };
                let delay = match decide(&result, b - a) {
                    Decision::Written => {
                        self.spool.set_failing(false);
                        self.stats
                            .store_written
                            .fetch_add((b - a) as u64, Ordering::Relaxed);
                        self.stats
                            .store_write_us
                            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                        backoff.reset();
                        break;
                    }
                    Decision::Split => {
                        split(&mut work);
                        break;
                    }
                    Decision::DeadLetter { status, reason } => {
                        self.dead_letter(lines[a], status, reason).await;
                        break;
                    }
                    Decision::Retry(e) => {
                        self.spool.set_failing(true);
                        self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
                        let (delay, what) = retry_delay(e, &mut backoff);
                        let n = self
                            .stats
                            .store_write_errors
                            .fetch_add(1, Ordering::Relaxed);
                        if n.is_power_of_two() || n == 0 {
                            warn!(error = %e, lines = b - a, retry_in_ms = delay.as_millis() as u64, errors_total = n + 1,
                                "Storage write failed ({what}); points stay in the spool and are retried.");
                        }
                        delay
                    }
                };
                // Wait before retrying, unless the shutdown deadline comes first.
                if deadline.is_none() && stop.is_cancelled() {
                    deadline = Some(tokio::time::Instant::now() + Duration::ZERO);
                }
                if let Some(d) = deadline {
                    if tokio::time::Instant::now() + delay >= d {
                        return Err(Interrupted);
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled(), if deadline.is_none() => {}
                }
            }
        }
        Ok(())
    }

    async fn dead_letter(&self, line: &[u8], status: u16, reason: &str) {
        self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
        let day = time::OffsetDateTime::now_utc().date();
        let path = self.cfg.dead_letter_dir.join(format!("dead-{day}.lp"));
        let reason = reason.replace(['\n', '\r'], " ");
        let mut text = format!("# HTTP {status}: {reason}\n").into_bytes();
        text.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            text.push(b'\n');
        }
        let io = async {
            tokio::fs::create_dir_all(&self.cfg.dead_letter_dir).await?;
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await?;
            f.write_all(&text).await?;
            f.sync_data().await
        };
        match io.await {
            Ok(()) => error!(status, reason = %reason, file = %path.display(),
                "ALARM database refused a point as bad data; moved to the dead-letter file."),
            Err(e) => error!(error = %e, line = %String::from_utf8_lossy(line),
                "ALARM cannot write the dead-letter file; the refused point is only in this log."),
        }
    }
}

/// Stop asked for, or its sender dropped (the engine handle went away without a shutdown).
/// The timestamp (last field) of the first line of a batch.
/// What the writer does with a write's result for a batch of `lines` lines.
#[derive(Debug, PartialEq)]
enum Decision<'a> {
    /// Confirmed: counted, and the next batch follows.
    Written,
    /// Halved and each half written on its own, in order (too large, or bad data somewhere).
    Split,
    /// One line the database refuses as bad data: set aside with the status and reason.
    DeadLetter { status: u16, reason: &'a str },
    /// Anything else (network, 5xx, 429, 401/403): the batch stays and is tried again.
    Retry(&'a WriteError),
}

/// The write-error policy of [`super`]'s docs, as a pure function.
fn decide(result: &Result<(), WriteError>, lines: usize) -> Decision<'_> {
    match result {
        Ok(()) => Decision::Written,
        Err(WriteError::Status {
            status: 400 | 413 | 422,
            ..
        }) if lines > 1 => Decision::Split,
        Err(WriteError::Status {
            status: status @ (400 | 422),
            body,
            ..
        }) => Decision::DeadLetter {
            status: *status,
            reason: body,
        },
        // One line larger than the server takes: it can never be written.
        Err(WriteError::Status {
            status: 413, body, ..
        }) => Decision::DeadLetter {
            status: 413,
            reason: body,
        },
        Err(e) => Decision::Retry(e),
    }
}

/// How long to wait before writing again after `e`, and why (for the log): the server's
/// `Retry-After` on 429/503 when it gives one, else the next backoff step.
fn retry_delay(e: &WriteError, backoff: &mut Backoff) -> (Duration, &'static str) {
    match e {
        WriteError::Status {
            status: 401 | 403, ..
        } => (backoff.next_delay(), "credentials rejected"),
        WriteError::Status {
            status: 429 | 503,
            retry_after: Some(d),
            ..
        } => (*d, "server asked to retry later"),
        WriteError::Status { status: 429, .. } => (backoff.next_delay(), "rate limited"),
        WriteError::Status { status: 404, .. } => (
            backoff.next_delay(),
            "no such database, bucket or retention policy (create it; the points wait)",
        ),
        WriteError::Status { .. } => (backoff.next_delay(), "server error"),
        WriteError::Network(_) => (backoff.next_delay(), "database unreachable"),
    }
}

fn first_ts_ms(body: &[u8]) -> Option<i64> {
    let end = body.iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&body[..end]).ok()?;
    line.rsplit(' ').next()?.parse().ok()
}

fn age_s(ts_ms: u64) -> i64 {
    if ts_ms == 0 {
        return 0;
    }
    (crate::clock::now_ms() - ts_ms as i64) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, retry_after: Option<u64>) -> Result<(), WriteError> {
        Err(WriteError::Status {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: format!("answer {status}"),
        })
    }

    #[test]
    fn each_status_code_gets_its_decision() {
        assert_eq!(decide(&Ok(()), 10), Decision::Written);
        // Bad data or too large: halve while more than one line, then set the line aside.
        for code in [400, 413, 422] {
            assert_eq!(decide(&status(code, None), 10), Decision::Split, "{code}");
            assert_eq!(
                decide(&status(code, None), 1),
                Decision::DeadLetter {
                    status: code,
                    reason: &format!("answer {code}")
                },
                "{code}"
            );
        }
        // Everything else is retried, whatever the batch's size.
        for code in [401, 403, 404, 429, 500, 502, 503] {
            for lines in [1, 10] {
                assert!(
                    matches!(decide(&status(code, None), lines), Decision::Retry(_)),
                    "{code}"
                );
            }
        }
        let down = Err(WriteError::Network("connection refused".into()));
        assert!(matches!(decide(&down, 1), Decision::Retry(_)));
    }

    #[test]
    fn retries_honour_retry_after_and_otherwise_back_off() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let e = |r: Result<(), WriteError>| r.unwrap_err();
        assert_eq!(
            retry_delay(&e(status(429, Some(2))), &mut b),
            (Duration::from_secs(2), "server asked to retry later")
        );
        assert_eq!(
            retry_delay(&e(status(503, Some(7))), &mut b).0,
            Duration::from_secs(7)
        );
        // Without Retry-After the backoff grows, capped at 30 s.
        let mut delays = Vec::new();
        for _ in 0..20 {
            let (d, what) = retry_delay(&e(status(500, None)), &mut b);
            assert_eq!(what, "server error");
            delays.push(d);
        }
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(30)),
            "{delays:?}"
        );
        assert!(delays[19] > delays[0], "{delays:?}");
        let mut why = |r| retry_delay(&e(r), &mut b).1;
        assert_eq!(why(status(401, None)), "credentials rejected");
        assert_eq!(why(status(429, None)), "rate limited");
        assert!(why(status(404, None)).starts_with("no such database"));
        assert_eq!(
            why(Err(WriteError::Network("x".into()))),
            "database unreachable"
        );
    }

    #[test]
    fn a_batch_knows_its_first_timestamp() {
        assert_eq!(
            first_ts_ms(b"m,a=b f=1 1700000000000\nm f=2 2\n"),
            Some(1_700_000_000_000)
        );
        assert_eq!(first_ts_ms(b"no newline"), None);
        assert_eq!(age_s(0), 0);
    }
}
