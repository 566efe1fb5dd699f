#!/usr/bin/env bash
# Runs the benchmarks with their peers: mosquitto and VictoriaMetrics on free loopback ports,
# stopped by PID at the end. Figures go to stdout; docs/performance.md records them.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/peers.sh
HEATGRID_BENCH_INFLUX_URL="http://127.0.0.1:$vm_port" HEATGRID_BENCH_MQTT_PORT="$mq_port" \
  cargo bench --bench durability
cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3
# Modbus at scale: 2,000 simulated PLCs (a separate heatgrid-sim process) polled at 1 s.
cargo build --release -p heatgrid-sim
cargo bench --bench modbus
HEATGRID_BENCH_FAULTY=1 cargo bench --bench modbus
