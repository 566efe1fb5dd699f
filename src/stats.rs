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
    /// Commands not sent because this instance did not lead the station's partition (cluster).
    pub commands_fenced: AtomicU64,
    /// Points confirmed by the database (or written to the local files).
    pub store_written: AtomicU64,
    /// Write attempts that failed and will be retried.
    pub store_write_errors: AtomicU64,
    pub store_retries: AtomicU64,
    /// Points the database refused as bad data, now in the dead-letter file.
    pub dead_letters: AtomicU64,
    /// Alarm notifications delivered, tries that failed and were retried, those given up on
    /// (alarmed) and those dropped because a channel's queue was full.
    pub notifications_sent: AtomicU64,
    pub notify_retries: AtomicU64,
    pub notify_dead_letters: AtomicU64,
    pub notify_dropped: AtomicU64,
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
    /// Cluster: messages whose acknowledgement waits for their points to be written (gauge),
    /// and those acknowledged before (the database out, or held too long).
    pub acks_held: AtomicU64,
    pub acks_unwritten: AtomicU64,
    pub mqtt_connects: AtomicU64,
    /// Subscriptions the broker confirmed (SUBACK), over all connections.
    pub mqtt_subacks: AtomicU64,
    /// Times the MQTT watchdog found the connection silent and subscribed again.
    pub mqtt_watchdog: AtomicU64,
    /// Control tick lateness: the last one and the largest seen, µs.
    pub tick_lateness_us: AtomicU64,
    pub tick_lateness_max_us: AtomicU64,
    pub ticks: AtomicU64,
    /// Control following telemetry: wake-ups lost to a full queue (the tick catches up).
    pub control_triggers_dropped: AtomicU64,
    /// Readings accepted per second over the last ~10 s, × 1000.
    pub ingest_rate_milli: AtomicU64,
    /// Modbus: poll cycles that produced a reading, and those that did not (link failure,
    /// timeout or a device exception), exceptions alone, and command writes.
    pub modbus_polls: AtomicU64,
    pub modbus_poll_failures: AtomicU64,
    pub modbus_exceptions: AtomicU64,
    pub modbus_writes: AtomicU64,
    pub modbus_write_failures: AtomicU64,
    /// Modbus poll-cycle lateness against its schedule, every cycle of every station.
    pub modbus_lateness: Histogram,
    /// OPC UA: data changes (or polled values) received; readings dropped as not newer than
    /// the station's last (a value the server sent again); link failures; command writes.
    pub opcua_notifications: AtomicU64,
    pub opcua_resent: AtomicU64,
    pub opcua_link_failures: AtomicU64,
    pub opcua_writes: AtomicU64,
    pub opcua_write_failures: AtomicU64,
    /// OPC UA notification lateness: arrival against the value's source timestamp.
    pub opcua_lateness: Histogram,
    /// Control following telemetry: from a reading's acceptance to its station's command
    /// queued for the broker (decode, storage append, control step, seq log), per command.
    pub control_latency: Histogram,
    /// Manual alarm acknowledgements refused (unknown alarm, or not kept in the cluster).
    pub alarm_acks_failed: AtomicU64,
    /// Rejections by reason label.
    pub rejects_by_reason: Mutex<BTreeMap<&'static str, u64>>,
}

/// Upper bounds of a [`Histogram`]'s buckets, µs; one more bucket holds the rest.
pub const BUCKETS_US: [u64; 19] = [
    50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 50_000, 75_000, 100_000,
    200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

/// A lock-free histogram of durations in µs over fixed buckets ([`BUCKETS_US`]), with the
/// largest value seen. Quantiles are bucket upper bounds.
#[derive(Debug, Default)]
pub struct Histogram {
    pub max_us: AtomicU64,
    /// The sum of everything recorded, µs (Prometheus' `_sum`).
    pub sum_us: AtomicU64,
    counts: [AtomicU64; BUCKETS_US.len() + 1],
}

impl Histogram {
    pub fn record(&self, us: u64) {
        self.max_us.fetch_max(us, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        let i = BUCKETS_US.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets everything recorded (benchmarks measure from a clean histogram).
    pub fn reset(&self) {
        for c in &self.counts {
            c.store(0, Ordering::Relaxed);
        }
        self.max_us.store(0, Ordering::Relaxed);
        self.sum_us.store(0, Ordering::Relaxed);
    }

    /// Each bucket's count (not cumulative), the last one above [`BUCKETS_US`].
    pub fn counts(&self) -> [u64; BUCKETS_US.len() + 1] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The upper bound of the bucket holding quantile `q` (0–1) of what was recorded, µs
    /// (`u64::MAX`: above the last bound); `None` before anything was recorded.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(BUCKETS_US.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let h = Histogram::default();
        assert_eq!(h.quantile_us(0.99), None);
        for _ in 0..98 {
            h.record(300);
        }
        h.record(15_000);
        h.record(19_000_000);
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile_us(0.5), Some(500));
        assert_eq!(h.quantile_us(0.99), Some(20_000));
        assert_eq!(h.quantile_us(1.0), Some(u64::MAX));
        assert_eq!(Stats::get(&h.max_us), 19_000_000);
        h.reset();
        assert_eq!((h.quantile_us(0.5), h.count()), (None, 0));
    }
}
