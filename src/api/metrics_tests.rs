//! The latency histograms as Prometheus writes them: cumulative buckets, in seconds.

use super::*;
use prometheus_client::collector::Collector;

#[derive(Debug)]
struct One(Arc<Stats>);

impl Collector for One {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        emit(&mut e, control_metrics(&self.0))
    }
}

#[test]
fn latencies_are_cumulative_histograms_in_seconds() {
    let stats = Arc::new(Stats::default());
    for us in [40, 40, 900, 3_000_000] {
        stats.control_latency.record(us);
    }
    let mut r = Registry::default();
    r.register_collector(Box::new(One(stats)));
    let text = render(&r);
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} missing:\n{text}"))
            .to_owned()
    };
    assert!(text.contains("# TYPE heatgrid_control_latency_seconds histogram"));
    assert!(line("heatgrid_control_latency_seconds_bucket{le=\"0.00005\"}").ends_with(" 2"));
    assert!(line("heatgrid_control_latency_seconds_bucket{le=\"0.001\"}").ends_with(" 3"));
    assert!(line("heatgrid_control_latency_seconds_bucket{le=\"+Inf\"}").ends_with(" 4"));
    assert!(line("heatgrid_control_latency_seconds_count").ends_with(" 4"));
    let sum: f64 = line("heatgrid_control_latency_seconds_sum")
        .split_whitespace()
        .last()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!((sum - 3.00098).abs() < 1e-9, "{sum}");
    assert!(!text.contains("p99"), "{text}");
}
