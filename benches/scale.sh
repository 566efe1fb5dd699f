#!/usr/bin/env bash
# Fleet size: start-up time and memory of `heatgrid run` configured for N stations (default
# 1, 1,000 and 50,000; SCALE_NS overrides), each idle (no telemetry), then the same engine
# with every station reporting once. Peers: mosquitto and VictoriaMetrics on free loopback
# ports (benches/peers.sh), stopped by PID. Start-up = process start -> the API answers and
# the broker confirmed the subscriptions. Not part of CI; figures in docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
NS=${SCALE_NS:-"1 1000 50000"}
IDLE_S=${IDLE_S:-15}
cargo build --release -q -p heatgrid -p heatgrid-sim
source benches/peers.sh
token=scale-viewer-token-0123456789
hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
ms() { date +%s%3N; }
printf '| stations | config | start-up | RSS idle after %ss | RSS after one reading each | CPU idle |\n|---|---|---|---|---|---|\n' "$IDLE_S"
for n in $NS; do
  api_port=$(free_port)
  dir="$tmp/n$n"; mkdir -p "$dir"
  {
    printf '[engine]\ndata_dir = "%s/data"\ntick_s = 5\nstaleness_s = 30\ncontrol_on = "telemetry"\n' "$dir"
    printf '[mqtt]\nport = %s\nclient_id = "heatgrid-scale-%s"\n' "$mq_port" "$n"
    printf '[storage.influxdb]\nurl = "http://127.0.0.1:%s"\norg = "o"\nbucket = "b"\n' "$vm_port"
    printf '[api]\nlisten = "127.0.0.1:%s"\n[[api.token]]\nname = "scale"\nrole = "viewer"\ntoken_sha256 = "%s"\n' "$api_port" "$hash"
    for i in $(seq 1 "$n"); do printf '[[station]]\nid = "st-%03d"\n' "$i"; done
  } > "$dir/heatgrid.toml"
  size=$(du -k "$dir/heatgrid.toml" | cut -f1)
  t0=$(ms)
  RUST_LOG=info target/release/heatgrid run --config "$dir/heatgrid.toml" >"$dir/engine.log" 2>&1 &
  engine=$!
  pids+=($engine)
  for _ in $(seq 3000); do
    if grep -q "subscriptions confirmed" "$dir/engine.log" 2>/dev/null &&
      curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$api_port/metrics" >/dev/null; then
      break
    fi
    sleep 0.01
  done
  t1=$(ms)
  cpu0=$(awk '{print $14+$15}' /proc/$engine/stat)
  sleep "$IDLE_S"
  cpu1=$(awk '{print $14+$15}' /proc/$engine/stat)
  rss_idle=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$engine/status)
  cpu_idle=$(awk -v a="$cpu0" -v b="$cpu1" -v s="$IDLE_S" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f %%", (b-a)/hz/s*100}')
  # One reading from every station (a 1 s period for 1.5 s), then let the engine settle.
  RUST_LOG=warn timeout 120 target/release/heatgrid-sim --port "$mq_port" -n "$n" \
    --telemetry-period-s 1 --speed 1 --warmup-h 0 >/dev/null 2>"$dir/sim.log" &
  sim=$!
  for _ in $(seq 1200); do
    acc=$(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$api_port/metrics" |
      awk '$1=="heatgrid_readings_accepted_total" {print $2}')
    [ "${acc:-0}" -ge "$n" ] && break
    sleep 0.1
  done
  kill "$sim" 2>/dev/null || true; wait "$sim" 2>/dev/null || true
  sleep 3
  rss_live=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$engine/status)
  kill -INT "$engine"; wait "$engine" 2>/dev/null || true
  printf '| %s | %s KiB | %s ms | %s MiB | %s MiB | %s |\n' "$n" "$size" "$((t1 - t0))" "$rss_idle" "$rss_live" "$cpu_idle"
done
