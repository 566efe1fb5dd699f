#!/usr/bin/env bash
# The load ramp of benches/load.rs against the echo engine and heatgrid, with mosquitto and
# VictoriaMetrics on free loopback ports (stopped by PID at the end). Prints Markdown tables
# (docs/performance.md) and writes the latency plot to docs/load-latency.svg.
# LOAD_STATIONS, LOAD_RATES, LOAD_STEP_S: see benches/load.rs. LOAD_CLUSTER=1: heatgrid runs as
# a one-member cluster (one etcd node here, 64 partition sessions, telemetry at QoS 1, each
# message acknowledged once stored). LOAD_ENGINE: the heatgrid binary to measure (default:
# this checkout's release build). LOAD_ECHO=0: skip the echo engine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p heatgrid
source benches/peers.sh
if [ "${LOAD_CLUSTER:-0}" = 1 ]; then
  etcd_port=$(free_port); etcd_peer=$(free_port)
  etcd --name load --data-dir "$tmp/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "load=http://127.0.0.1:$etcd_peer" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break; sleep 0.1; done
  export HEATGRID_BENCH_ETCD_PORT=$etcd_port
fi
HEATGRID_BENCH_MQTT_PORT=$mq_port HEATGRID_BENCH_VM_PORT=$vm_port cargo bench -q --bench load
