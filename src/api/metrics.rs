//! Prometheus metrics at `/metrics` (text exposition), built with prometheus-client.
//!
//! A collector reads the engine's counters ([`Stats`]), the spool depth, the per-station status
//! and the active alarms at scrape time, so the hot paths only bump atomics.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::alarms::AlarmView;
use crate::control::status::StationStatus;
use crate::stats::{Histogram, Stats, BUCKETS_US};
use crate::store::spool::Spool;

#[derive(Debug)]
struct EngineCollector {
    stats: Arc<Stats>,
    spool: Arc<Spool>,
    status: watch::Receiver<Arc<Vec<StationStatus>>>,
    alarms: watch::Receiver<Arc<AlarmView>>,
}

/// One metric's value at scrape time.
enum Value<'a> {
    Counter(u64),
    Gauge(i64),
    /// Durations in seconds, over the engine's fixed buckets.
    Seconds(&'a Histogram),
}
use Value::{Counter, Gauge, Seconds};

/// Name, help, value.
type Metric<'a> = (&'static str, &'static str, Value<'a>);

/// A [`Histogram`] as Prometheus reads one: `_bucket{le}` cumulative, `_sum`, `_count`, in
/// seconds.
struct SecondsHistogram<'a>(&'a Histogram);

impl std::fmt::Debug for SecondsHistogram<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SecondsHistogram").finish()
    }
}

impl EncodeMetric for SecondsHistogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        let counts = self.0.counts();
        let buckets: Vec<(f64, u64)> = counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let le = BUCKETS_US
                    .get(i)
                    .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
                (le, n)
            })
            .collect();
        let sum = Stats::get(&self.0.sum_us) as f64 / 1e6;
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sum,
            counts.iter().sum(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn emit(e: &mut DescriptorEncoder, metrics: Vec<Metric>) -> std::fmt::Result {
    for (name, help, v) in metrics {
        match v {
            Counter(v) => {
                let c = ConstCounter::new(v);
                c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)?;
            }
            Gauge(v) => {
                let g = ConstGauge::new(v);
                g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
            Seconds(h) => {
                let h = SecondsHistogram(h);
                h.encode(e.encode_descriptor(name, help, None, h.metric_type())?)?;
            }
        }
    }
    Ok(())
}

fn gauge_u(v: u64) -> Value<'static> {
    Gauge(v.min(i64::MAX as u64) as i64)
}

impl Collector for EngineCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        emit(&mut e, ingest_metrics(s))?;
        rejected_by_reason(&mut e, s)?;
        emit(&mut e, control_metrics(s))?;
        emit(&mut e, modbus_metrics(s))?;
        emit(&mut e, opcua_metrics(s))?;
        emit(&mut e, storage_metrics(s, &self.spool))?;
        let status = self.status.borrow().clone();
        let alarms = self.alarms.borrow().clone();
        emit(&mut e, fleet_metrics(&status, &alarms))
    }
}

fn ingest_metrics(s: &Stats) -> Vec<Metric<'_>> {
    let g = Stats::get;
    vec![
        (
            "heatgrid_messages_in",
            "MQTT messages received",
            Counter(g(&s.messages_in)),
        ),
        (
            "heatgrid_readings_accepted",
            "Telemetry readings accepted",
            Counter(g(&s.readings_accepted)),
        ),
    ]
}

fn rejected_by_reason(e: &mut DescriptorEncoder, s: &Stats) -> std::fmt::Result {
    let reasons = s
        .rejects_by_reason
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let mut m = e.encode_descriptor(
        "heatgrid_readings_rejected",
        "Telemetry payloads rejected, by reason",
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (reason, n) in reasons {
        ConstCounter::new(n).encode(m.encode_family(&vec![("reason", reason.to_owned())])?)?;
    }
    Ok(())
}

fn control_metrics(s: &Stats) -> Vec<Metric<'_>> {
    let g = Stats::get;
    vec![
        (
            "heatgrid_commands_sent",
            "Commands queued for MQTT",
            Counter(g(&s.commands_sent)),
        ),
        (
            "heatgrid_commands_failed",
            "Commands that could not be queued",
            Counter(g(&s.commands_failed)),
        ),
        (
            "heatgrid_commands_fenced",
            "Commands not sent: another instance of the cluster leads the station (or nobody)",
            Counter(g(&s.commands_fenced)),
        ),
        (
            "heatgrid_mqtt_connects",
            "MQTT (re)connections",
            Counter(g(&s.mqtt_connects)),
        ),
        (
            "heatgrid_control_ticks",
            "Control ticks run",
            Counter(g(&s.ticks)),
        ),
        (
            "heatgrid_control_tick_lateness_us",
            "Lateness of the last control tick, µs",
            gauge_u(g(&s.tick_lateness_us)),
        ),
        (
            "heatgrid_control_tick_lateness_max_us",
            "Largest control tick lateness, µs",
            gauge_u(g(&s.tick_lateness_max_us)),
        ),
        (
            "heatgrid_alarm_acks_failed",
            "Manual alarm acknowledgements refused (unknown alarm, not kept in the cluster)",
            Counter(g(&s.alarm_acks_failed)),
        ),
        (
            "heatgrid_mqtt_watchdog",
            "Times the MQTT connection was silent for watchdog_s and subscribed again",
            Counter(g(&s.mqtt_watchdog)),
        ),
        (
            "heatgrid_mqtt_acks_held",
            "Cluster: messages whose acknowledgement waits for their points to be written",
            gauge_u(g(&s.acks_held)),
        ),
        (
            "heatgrid_mqtt_acks_before_write",
            "Cluster: messages acknowledged before their points were written (database out or slow)",
            Counter(g(&s.acks_unwritten)),
        ),
        (
            "heatgrid_control_latency_seconds",
            "Control following telemetry: time from a reading's acceptance to its command queued",
            Seconds(&s.control_latency),
        ),
        (
            "heatgrid_control_latency_max_us",
            "Control following telemetry: the largest such time, µs",
            gauge_u(g(&s.control_latency.max_us)),
        ),
    ]
}

fn modbus_metrics(s: &Stats) -> Vec<Metric<'_>> {
    let g = Stats::get;
    vec![
        (
            "heatgrid_modbus_polls",
            "Modbus poll cycles that produced a reading",
            Counter(g(&s.modbus_polls)),
        ),
        (
            "heatgrid_modbus_poll_failures",
            "Modbus poll cycles that failed (link, timeout or exception)",
            Counter(g(&s.modbus_poll_failures)),
        ),
        (
            "heatgrid_modbus_exceptions",
            "Modbus exception replies (device refused)",
            Counter(g(&s.modbus_exceptions)),
        ),
        (
            "heatgrid_modbus_writes",
            "Commands written to Modbus stations",
            Counter(g(&s.modbus_writes)),
        ),
        (
            "heatgrid_modbus_write_failures",
            "Modbus command writes that failed",
            Counter(g(&s.modbus_write_failures)),
        ),
        (
            "heatgrid_modbus_poll_lateness_seconds",
            "Modbus poll cycles' lateness against their schedule",
            Seconds(&s.modbus_lateness),
        ),
        (
            "heatgrid_modbus_poll_lateness_max_us",
            "Largest Modbus poll-cycle lateness on any station, µs",
            gauge_u(g(&s.modbus_lateness.max_us)),
        ),
    ]
}

fn opcua_metrics(s: &Stats) -> Vec<Metric<'_>> {
    let g = Stats::get;
    vec![
        (
            "heatgrid_opcua_notifications",
            "OPC UA values received (data changes, or polled values)",
            Counter(g(&s.opcua_notifications)),
        ),
        (
            "heatgrid_opcua_resent",
            "OPC UA readings dropped as not newer than the station's last (values sent again)",
            Counter(g(&s.opcua_resent)),
        ),
        (
            "heatgrid_opcua_link_failures",
            "OPC UA connects, reads and sessions that failed",
            Counter(g(&s.opcua_link_failures)),
        ),
        (
            "heatgrid_opcua_writes",
            "Commands written to OPC UA stations",
            Counter(g(&s.opcua_writes)),
        ),
        (
            "heatgrid_opcua_write_failures",
            "OPC UA command writes that failed or were refused",
            Counter(g(&s.opcua_write_failures)),
        ),
        (
            "heatgrid_opcua_notification_lateness_seconds",
            "OPC UA values' arrival against their source timestamp",
            Seconds(&s.opcua_lateness),
        ),
    ]
}

fn storage_metrics(s: &Stats, spool: &Spool) -> Vec<Metric<'static>> {
    let g = Stats::get;
    let depth = spool.depth();
    vec![
        (
            "heatgrid_storage_backlog_points",
            "Points in the spool not yet confirmed by the database",
            gauge_u(depth.points),
        ),
        (
            "heatgrid_storage_backlog_bytes",
            "Bytes in the spool not yet confirmed",
            gauge_u(depth.bytes),
        ),
        (
            "heatgrid_storage_written_points",
            "Points confirmed by the database",
            Counter(g(&s.store_written)),
        ),
        (
            "heatgrid_storage_write_errors",
            "Failed database writes (retried)",
            Counter(g(&s.store_write_errors)),
        ),
        (
            "heatgrid_storage_dead_letters",
            "Points refused by the database as bad data",
            Counter(g(&s.dead_letters)),
        ),
        (
            "heatgrid_storage_refused_points",
            "Points refused because the spool was full",
            Counter(g(&s.spool_refused)),
        ),
        (
            "heatgrid_notifications_sent",
            "Alarm notifications delivered",
            Counter(g(&s.notifications_sent)),
        ),
        (
            "heatgrid_notification_retries",
            "Alarm notification attempts that failed and were retried",
            Counter(g(&s.notify_retries)),
        ),
        (
            "heatgrid_notification_dead_letters",
            "Alarm notifications given up on (or dropped with a full queue)",
            Counter(g(&s.notify_dead_letters) + g(&s.notify_dropped)),
        ),
    ]
}

fn fleet_metrics(status: &[StationStatus], alarms: &AlarmView) -> Vec<Metric<'static>> {
    let unacked = alarms.active.iter().filter(|a| a.acked_by.is_none());
    vec![
        (
            "heatgrid_stations",
            "Configured stations",
            gauge_u(status.len() as u64),
        ),
        (
            "heatgrid_stations_stale",
            "Stations without fresh telemetry",
            gauge_u(status.iter().filter(|s| s.stale).count() as u64),
        ),
        (
            "heatgrid_alarms_active",
            "Active alarms",
            gauge_u(alarms.active.len() as u64),
        ),
        (
            "heatgrid_alarms_unacknowledged",
            "Active alarms nobody acknowledged",
            gauge_u(unacked.count() as u64),
        ),
    ]
}

/// The registry served at `/metrics`.
pub fn registry(
    stats: Arc<Stats>,
    spool: Arc<Spool>,
    status: watch::Receiver<Arc<Vec<StationStatus>>>,
    alarms: watch::Receiver<Arc<AlarmView>>,
) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(EngineCollector {
        stats,
        spool,
        status,
        alarms,
    }));
    r
}

/// Renders the registry in the Prometheus text format.
pub fn render(r: &Registry) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, r);
    out
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
