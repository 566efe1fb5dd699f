//! Storage: batches line-protocol points and writes them to InfluxDB (v2 write API) or, without
//! a configured database, to local files.
//!
//! Sits beside the control path: ingest and control hand encoded lines to [`StoreHandle::submit`]
//! (never blocking: control never waits on storage), and one writer task batches them by size
//! and time. A failed write is kept and retried with capped, jittered backoff while new points
//! queue behind it in order. Overflow policy of the queue: when it is full the newest point is
//! refused, counted (`store_dropped`) and logged; the durable spool that removes that case is a
//! later stage and slots in between `submit` and the writer.

pub mod influx;
pub mod line_protocol;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::stats::Stats;

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
    async fn write(&mut self, body: &str) -> Result<(), String> {
        match self {
            Sink::Influx(w) => w.write(body).await,
            Sink::Files { dir } => {
                let day = time::OffsetDateTime::now_utc().date();
                let path = dir.join(format!("points-{day}.lp"));
                let mut f = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .await
                    .map_err(|e| format!("open {}: {e}", path.display()))?;
                f.write_all(body.as_bytes())
                    .await
                    .map_err(|e| format!("write {}: {e}", path.display()))?;
                f.flush().await.map_err(|e| e.to_string())
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

/// The sending side, cloned into ingest and control.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<String>,
    stats: Arc<Stats>,
}

impl StoreHandle {
    /// Queues one line; never waits. A full queue refuses the line, counts and logs it.
    pub fn submit(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = self.stats.store_dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    warn!(dropped_total = n + 1, "Storage queue full: point dropped.");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.stats.store_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub queue_capacity: usize,
    /// On shutdown, how long to keep retrying the last batches.
    pub shutdown_grace: Duration,
}

/// Creates the queue; run the returned [`Writer`] in its own task.
pub fn channel(cfg: WriterConfig, sink: Sink, stats: Arc<Stats>) -> (StoreHandle, Writer) {
    let (tx, rx) = mpsc::channel(cfg.queue_capacity);
    (
        StoreHandle {
            tx,
            stats: stats.clone(),
        },
        Writer {
            cfg,
            sink,
            rx,
            stats,
        },
    )
}

/// The writer task: owns the sink, drains the queue in order.
#[derive(Debug)]
pub struct Writer {
    cfg: WriterConfig,
    sink: Sink,
    rx: mpsc::Receiver<String>,
    stats: Arc<Stats>,
}

impl Writer {
    /// Runs until every [`StoreHandle`] is dropped and the queue is written (or the shutdown
    /// grace period after the close ran out, which is counted and logged as lost).
    pub async fn run(mut self) {
        info!(sink = %self.sink.describe(), "Storage writer started.");
        let mut batch = String::new();
        let mut lines = 0usize;
        let mut closed = false;
        while !closed {
            let deadline = tokio::time::Instant::now() + self.cfg.flush_interval;
            while lines < self.cfg.batch_size {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(line)) => {
                        batch.push_str(&line);
                        batch.push('\n');
                        lines += 1;
                    }
                    Ok(None) => {
                        closed = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if lines > 0 {
                self.write_with_retry(&batch, lines, closed).await;
                batch.clear();
                lines = 0;
            }
        }
        info!("Storage writer stopped.");
    }

    async fn write_with_retry(&mut self, batch: &str, lines: usize, closing: bool) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let give_up_at = closing.then(|| tokio::time::Instant::now() + self.cfg.shutdown_grace);
        loop {
            let started = std::time::Instant::now();
            match self.sink.write(batch).await {
                Ok(()) => {
                    self.stats
                        .store_written
                        .fetch_add(lines as u64, Ordering::Relaxed);
                    self.stats
                        .store_write_us
                        .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    if backoff.attempts() > 0 {
                        info!(
                            lines,
                            retries = backoff.attempts(),
                            "Storage write succeeded after retries."
                        );
                    }
                    return;
                }
                Err(err) => {
                    self.stats
                        .store_write_errors
                        .fetch_add(1, Ordering::Relaxed);
                    let delay = backoff.next_delay();
                    if backoff.attempts() == 1 || backoff.attempts().is_power_of_two() {
                        warn!(error = %err, lines, attempt = backoff.attempts(), retry_in_ms = delay.as_millis() as u64,
                            "Storage write failed; batch kept for retry.");
                    }
                    if give_up_at.is_some_and(|t| tokio::time::Instant::now() + delay > t) {
                        self.stats
                            .store_dropped
                            .fetch_add(lines as u64, Ordering::Relaxed);
                        warn!(lines, "Storage write failed at shutdown; batch lost.");
                        return;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
