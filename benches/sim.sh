#!/usr/bin/env bash
# The simulator's own speed (issue 7): (1) a 24-hour day of 100 stations offline at full
# speed (no broker: the plant model and the telemetry payloads); (2) SIM_N (default 50,000)
# stations at a 1 s telemetry period in real time for SIM_S (60) s, the simulator pinned to
# one core (taskset) and publishing through mosquitto (benches/peers.sh) on the other; reports
# its CPU, telemetry published, publish failures (its client queue overflowing) and what the
# broker received. Not part of CI; figures in docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SIM_N=${SIM_N:-50000}
SIM_S=${SIM_S:-60}
cargo build --release -q -p heatgrid-sim
echo "== offline: 100 stations, 24 h"
/usr/bin/time -f "wall %e s, max RSS %M KiB" target/release/heatgrid-sim -n 100 --offline-hours 24 --telemetry-period-s 5
source benches/peers.sh
echo "sys_interval 1" >> "$tmp/mosquitto.conf"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'
/usr/sbin/mosquitto -c "$tmp/mosquitto.conf" >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
received() { mosquitto_sub -p "$mq_port" -t '$SYS/broker/publish/messages/received' -C 1 -W 5; }
echo "== real time: $SIM_N stations at 1 s for ${SIM_S} s, one core"
RUST_LOG=info taskset -c 1 target/release/heatgrid-sim --port "$mq_port" -n "$SIM_N" \
  --telemetry-period-s 1 --speed 1 --warmup-h 0.1 --duration-s $((SIM_S + 60)) >"$tmp/sim.log" 2>&1 &
sim=$!
pids+=($sim)
# The warm-up (0.1 h of plant) runs before the first publish: start counting at the first.
for _ in $(seq 600); do grep -q "Simulator started" "$tmp/sim.log" && break; sleep 0.2; done
sleep 5
r0=$(received); c0=$(awk '{print $14+$15}' /proc/$sim/stat); t0=$(date +%s.%N)
sleep "$SIM_S"
r1=$(received); c1=$(awk '{print $14+$15}' /proc/$sim/stat); t1=$(date +%s.%N)
rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$sim/status)
awk -v r0="$r0" -v r1="$r1" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" -v n="$SIM_N" -v rss="$rss" 'BEGIN {
  w = t1 - t0
  printf "broker received %.0f msg/s (offered %d), simulator CPU %.0f %% of its one core, RSS %s MiB\n", (r1 - r0) / w, n, (c1 - c0) / hz / w * 100, rss }'
grep "Simulator status" "$tmp/sim.log" | tail -1
