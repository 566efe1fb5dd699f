#!/usr/bin/env bash
# The load ramp of benches/load.rs against the echo engine and heatgrid, with mosquitto and
# VictoriaMetrics on free loopback ports (stopped by PID at the end). Prints Markdown tables
# (docs/performance.md) and writes the latency plot to docs/load-latency.svg.
# LOAD_STATIONS, LOAD_RATES, LOAD_STEP_S: see benches/load.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p heatgrid
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d)
pids=()
cleanup() { for ((i=${#pids[@]}-1; i>=0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
vm_port=$(free_port); mq_port=$(free_port)
victoria-metrics -storageDataPath="$tmp/vm" -httpListenAddr="127.0.0.1:$vm_port" -loggerLevel=ERROR -search.latencyOffset=0s >/dev/null 2>&1 &
pids+=($!)
cat > "$tmp/mosquitto.conf" <<CONF
listener $mq_port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 0
set_tcp_nodelay true
CONF
/usr/sbin/mosquitto -c "$tmp/mosquitto.conf" >/dev/null 2>&1 &
pids+=($!)
for i in $(seq 100); do curl -sf "http://127.0.0.1:$vm_port/health" >/dev/null 2>&1 && break; sleep 0.1; done
HEATGRID_BENCH_MQTT_PORT=$mq_port HEATGRID_BENCH_VM_PORT=$vm_port cargo bench -q --bench load
