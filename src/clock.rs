//! The clock: wall time for timestamps and a monotonic instant for latencies.
//!
//! A leaf every stage uses: readings without `ts`, commands, alarms and audit records are
//! stamped with [`now_ms`]; the control-latency histogram measures with [`mono_us`].

/// Current wall-clock time in Unix milliseconds (0 if the system clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Microseconds on a monotonic clock since the first call in this process: a cheap instant
/// to keep in an atomic.
pub fn mono_us() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// `ms` since the epoch as RFC 3339 in UTC (`2026-12-07T16:01:15.200Z`), for people.
pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}
