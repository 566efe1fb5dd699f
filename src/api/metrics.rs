//! Prometheus metrics at `/metrics` (text exposition), built with prometheus-client.
//!
//! A collector reads the engine's counters ([`Stats`]), the spool depth, the per-station status
//! and the active alarms at scrape time, so the hot paths only bump atomics.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::alarms::AlarmView;
use crate::control::status::StationStatus;
use crate::stats::{Histogram, Stats};
use crate::store::spool::Spool;

#[derive(Debug)]
struct EngineCollector {
    stats: Arc<Stats>,
    spool: Arc<Spool>,
    status: watch::Receiver<Arc<Vec<StationStatus>>>,
    alarms: watch::Receiver<Arc<AlarmView>>,
}

/// One metric's value at scrape time.
enum Value {
    Counter(u64),
    Gauge(i64),
}
use Value::{Counter, Gauge};

/// Name, help, value.
type Metric = (&'static str, &'static str, Value);

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
        }
    }
    Ok(())
}

fn gauge_u(v: u64) -> Value {
    Gauge(v.min(i64::MAX as u64) as i64)
}

/// A histogram's quantile (its bucket's upper bound), µs; 0 when empty.
fn quantile(h: &Histogram, q: f64) -> Value {
    gauge_u(h.quantile_us(q).unwrap_or(0))
}

impl Collector for EngineCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        emit(&mut e, ingest_metrics(s))?;
        rejected_by_reason(&mut e, s)?;
        emit(&mut e, control_metrics(s))?;
        emit(&mut e, modbus_metrics(s))?;
        emit(&mut e, storage_metrics(s, &self.spool))?;
        let status = self.status.borrow().clone();
        let alarms = self.alarms.borrow().clone();
        emit(&mut e, fleet_metrics(&status, &alarms))
    }
}

fn ingest_metrics(s: &Stats) -> Vec<Metric> {
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

fn control_metrics(s: &Stats) -> Vec<Metric> {
    let g = Stats::get;
    vec![
        ("heatgrid_commands_sent", "Commands queued for MQTT", Counter(g(&s.commands_sent))),
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
        ("heatgrid_mqtt_connects", "MQTT (re)connections", Counter(g(&s.mqtt_connects))),
        ("heatgrid_control_ticks", "Control ticks run", Counter(g(&s.ticks))),
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
            "heatgrid_mqtt_watchdog",
            "Times the MQTT connection was silent for watchdog_s and subscribed again",
            Counter(g(&s.mqtt_watchdog)),
        ),
        (
            "heatgrid_control_latency_p50_us",
            "Control following telemetry: median time from a reading's acceptance to its command queued (bucket upper bound), µs",
            quantile(&s.control_latency, 0.5),
        ),
        (
            "heatgrid_control_latency_p99_us",
            "Control following telemetry: 99th percentile of the same, µs",
            quantile(&s.control_latency, 0.99),
        ),
        (
            "heatgrid_control_latency_max_us",
            "Control following telemetry: the largest such time, µs",
            gauge_u(g(&s.control_latency.max_us)),
        ),
    ]
}

fn modbus_metrics(s: &Stats) -> Vec<Metric> {
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
            "heatgrid_modbus_poll_lateness_p99_us",
            "99th percentile of Modbus poll-cycle lateness (bucket upper bound), µs",
            quantile(&s.modbus_lateness, 0.99),
        ),
        (
            "heatgrid_modbus_poll_lateness_max_us",
            "Largest Modbus poll-cycle lateness on any station, µs",
            gauge_u(g(&s.modbus_lateness.max_us)),
        ),
    ]
}

fn storage_metrics(s: &Stats, spool: &Spool) -> Vec<Metric> {
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
    ]
}

fn fleet_metrics(status: &[StationStatus], alarms: &AlarmView) -> Vec<Metric> {
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
