#!/usr/bin/env bash
# Runs the benchmarks with their peers: mosquitto and VictoriaMetrics on free loopback ports,
# stopped by PID at the end. Figures go to stdout; docs/performance.md records them.
set -euo pipefail
cd "$(dirname "$0")/.."
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
vm_port=$(free_port); mq_port=$(free_port)
victoria-metrics -storageDataPath="$tmp/vm" -httpListenAddr="127.0.0.1:$vm_port" -loggerLevel=ERROR >/dev/null 2>&1 &
pids+=($!)
cat > "$tmp/mosquitto.conf" <<CONF
listener $mq_port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
max_queued_messages 0
set_tcp_nodelay true
CONF
/usr/sbin/mosquitto -c "$tmp/mosquitto.conf" >/dev/null 2>&1 &
pids+=($!)
for i in $(seq 100); do
  curl -sf "http://127.0.0.1:$vm_port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
HEATGRID_BENCH_INFLUX_URL="http://127.0.0.1:$vm_port" HEATGRID_BENCH_MQTT_PORT="$mq_port" \
  cargo bench --bench durability
cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3
# Modbus at scale: 2,000 simulated PLCs (a separate heatgrid-sim process) polled at 1 s.
cargo build --release -p heatgrid-sim
cargo bench --bench modbus
HEATGRID_BENCH_FAULTY=1 cargo bench --bench modbus
