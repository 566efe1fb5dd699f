//! Engine counters: lock-free, shared by every task, read by the status view and logs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Monotonic counters (and one gauge) of the whole engine.
#[derive(Debug, Default)]
pub struct Stats {
    pub messages_in: AtomicU64,
    pub readings_accepted: AtomicU64,
    pub readings_rejected: AtomicU64,
    pub commands_sent: AtomicU64,
    pub commands_failed: AtomicU64,
    /// Points confirmed by the database (or written to the local files).
    pub store_written: AtomicU64,
    /// Write attempts that failed and will be retried.
    pub store_write_errors: AtomicU64,
    pub store_retries: AtomicU64,
    /// Points the database refused as bad data, now in the dead-letter file.
    pub dead_letters: AtomicU64,
    /// Points appended to the spool.
    pub spool_appended: AtomicU64,
    /// Points refused because the spool was full or failed (alarmed).
    pub spool_refused: AtomicU64,
    /// Gauges: spool depth and the timestamp of the oldest point being written.
    pub spool_points: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_oldest_ts_ms: AtomicU64,
    /// Duration of the last successful write, µs.
    pub store_write_us: AtomicU64,
    pub mqtt_connects: AtomicU64,
    /// Subscriptions the broker confirmed (SUBACK), over all connections.
    pub mqtt_subacks: AtomicU64,
    /// Control tick lateness: the last one and the largest seen, µs.
    pub tick_lateness_us: AtomicU64,
    pub tick_lateness_max_us: AtomicU64,
    pub ticks: AtomicU64,
    /// Readings accepted per second over the last ~10 s, × 1000.
    pub ingest_rate_milli: AtomicU64,
    /// Modbus: poll cycles that produced a reading, and those that did not (link failure,
    /// timeout or a device exception), exceptions alone, and command writes.
    pub modbus_polls: AtomicU64,
    pub modbus_poll_failures: AtomicU64,
    pub modbus_exceptions: AtomicU64,
    pub modbus_writes: AtomicU64,
    pub modbus_write_failures: AtomicU64,
    /// Largest Modbus poll-cycle lateness seen on any station, µs.
    pub modbus_lateness_max_us: AtomicU64,
    /// Rejections by reason label.
    pub rejects_by_reason: Mutex<BTreeMap<&'static str, u64>>,
}

impl Stats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn count_reject(&self, label: &'static str) {
        self.readings_rejected.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.rejects_by_reason.lock() {
            *m.entry(label).or_default() += 1;
        }
    }
}
