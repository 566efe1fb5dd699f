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
use crate::stats::Stats;
use crate::store::spool::Spool;

#[derive(Debug)]
struct EngineCollector {
    stats: Arc<Stats>,
    spool: Arc<Spool>,
    status: watch::Receiver<Arc<Vec<StationStatus>>>,
    alarms: watch::Receiver<Arc<AlarmView>>,
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for EngineCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let g = Stats::get;
        counter(
            &mut e,
            "heatgrid_messages_in",
            "MQTT messages received",
            g(&s.messages_in),
        )?;
        counter(
            &mut e,
            "heatgrid_readings_accepted",
            "Telemetry readings accepted",
            g(&s.readings_accepted),
        )?;
        {
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
                ConstCounter::new(n)
                    .encode(m.encode_family(&vec![("reason", reason.to_owned())])?)?;
            }
        }
        counter(
            &mut e,
            "heatgrid_commands_sent",
            "Commands queued for MQTT",
            g(&s.commands_sent),
        )?;
        counter(
            &mut e,
            "heatgrid_commands_failed",
            "Commands that could not be queued",
            g(&s.commands_failed),
        )?;
        counter(
            &mut e,
            "heatgrid_mqtt_connects",
            "MQTT (re)connections",
            g(&s.mqtt_connects),
        )?;
        counter(
            &mut e,
            "heatgrid_control_ticks",
            "Control ticks run",
            g(&s.ticks),
        )?;
        gauge(
            &mut e,
            "heatgrid_control_tick_lateness_us",
            "Lateness of the last control tick, µs",
            g(&s.tick_lateness_us) as i64,
        )?;
        gauge(
            &mut e,
            "heatgrid_control_tick_lateness_max_us",
            "Largest control tick lateness, µs",
            g(&s.tick_lateness_max_us) as i64,
        )?;
        for (name, help, v) in [
            (
                "heatgrid_mqtt_watchdog",
                "Times the MQTT connection was silent for watchdog_s and subscribed again",
                &s.mqtt_watchdog,
            ),
            (
                "heatgrid_modbus_polls",
                "Modbus poll cycles that produced a reading",
                &s.modbus_polls,
            ),
            (
                "heatgrid_modbus_poll_failures",
                "Modbus poll cycles that failed (link, timeout or exception)",
                &s.modbus_poll_failures,
            ),
            (
                "heatgrid_modbus_exceptions",
                "Modbus exception replies (device refused)",
                &s.modbus_exceptions,
            ),
            (
                "heatgrid_modbus_writes",
                "Commands written to Modbus stations",
                &s.modbus_writes,
            ),
            (
                "heatgrid_modbus_write_failures",
                "Modbus command writes that failed",
                &s.modbus_write_failures,
            ),
        ] {
            counter(&mut e, name, help, g(v))?;
        }
        let quantile = |h: &crate::stats::Histogram, q: f64| {
            h.quantile_us(q)
                .map_or(0, |v| v.min(i64::MAX as u64) as i64)
        };
        gauge(
            &mut e,
            "heatgrid_modbus_poll_lateness_p99_us",
            "99th percentile of Modbus poll-cycle lateness (bucket upper bound), µs",
            quantile(&s.modbus_lateness, 0.99),
        )?;
        gauge(
            &mut e,
            "heatgrid_modbus_poll_lateness_max_us",
            "Largest Modbus poll-cycle lateness on any station, µs",
            g(&s.modbus_lateness.max_us) as i64,
        )?;
        gauge(
            &mut e,
            "heatgrid_control_latency_p50_us",
            "Control following telemetry: median time from a reading's acceptance to its command queued (bucket upper bound), µs",
            quantile(&s.control_latency, 0.5),
        )?;
        gauge(
            &mut e,
            "heatgrid_control_latency_p99_us",
            "Control following telemetry: 99th percentile of the same, µs",
            quantile(&s.control_latency, 0.99),
        )?;
        gauge(
            &mut e,
            "heatgrid_control_latency_max_us",
            "Control following telemetry: the largest such time, µs",
            g(&s.control_latency.max_us) as i64,
        )?;
        let depth = self.spool.depth();
        gauge(
            &mut e,
            "heatgrid_storage_backlog_points",
            "Points in the spool not yet confirmed by the database",
            depth.points as i64,
        )?;
        gauge(
            &mut e,
            "heatgrid_storage_backlog_bytes",
            "Bytes in the spool not yet confirmed",
            depth.bytes as i64,
        )?;
        counter(
            &mut e,
            "heatgrid_storage_written_points",
            "Points confirmed by the database",
            g(&s.store_written),
        )?;
        counter(
            &mut e,
            "heatgrid_storage_write_errors",
            "Failed database writes (retried)",
            g(&s.store_write_errors),
        )?;
        counter(
            &mut e,
            "heatgrid_storage_dead_letters",
            "Points refused by the database as bad data",
            g(&s.dead_letters),
        )?;
        counter(
            &mut e,
            "heatgrid_storage_refused_points",
            "Points refused because the spool was full",
            g(&s.spool_refused),
        )?;
        let status = self.status.borrow().clone();
        gauge(
            &mut e,
            "heatgrid_stations",
            "Configured stations",
            status.len() as i64,
        )?;
        gauge(
            &mut e,
            "heatgrid_stations_stale",
            "Stations without fresh telemetry",
            status.iter().filter(|s| s.stale).count() as i64,
        )?;
        let alarms = self.alarms.borrow().clone();
        gauge(
            &mut e,
            "heatgrid_alarms_active",
            "Active alarms",
            alarms.active.len() as i64,
        )?;
        gauge(
            &mut e,
            "heatgrid_alarms_unacknowledged",
            "Active alarms nobody acknowledged",
            alarms
                .active
                .iter()
                .filter(|a| a.acked_by.is_none())
                .count() as i64,
        )?;
        Ok(())
    }
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
