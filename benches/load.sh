#!/usr/bin/env bash
# The load ramp of benches/load.rs against the echo engine and heatgrid, with mosquitto and
# VictoriaMetrics on free loopback ports (stopped by PID at the end). Prints Markdown tables
# (docs/performance.md) and writes the latency plot to docs/load-latency.svg.
# LOAD_STATIONS, LOAD_RATES, LOAD_STEP_S: see benches/load.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p heatgrid
source benches/peers.sh
HEATGRID_BENCH_MQTT_PORT=$mq_port HEATGRID_BENCH_VM_PORT=$vm_port cargo bench -q --bench load
