#!/usr/bin/env bash
# Soak: the engine under a steady 5,000 telemetry messages/s for SOAK_S seconds (default
# 3600) with storage on, sampling its RSS every SAMPLE_S (60) seconds. Memory must stay flat.
# Not part of CI. Peers: mosquitto and VictoriaMetrics on free loopback ports, heatgrid-sim
# (1,000 stations, 0.2 s telemetry period = 5,000 msg/s) as its own process; all stopped by
# PID at the end. Output: a CSV of samples and a summary line (docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_S=${SOAK_S:-3600}
SAMPLE_S=${SAMPLE_S:-60}
N=${STATIONS:-1000}
PERIOD=${PERIOD_S:-0.2}
cargo build --release -q -p heatgrid -p heatgrid-sim
source benches/peers.sh
api_port=$(free_port)
token=soak-viewer-token-0123456789
hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
{
  printf '[engine]\ndata_dir = "%s/data"\ntick_s = 5\nstaleness_s = 30\n' "$tmp"
  printf '[mqtt]\nport = %s\nclient_id = "heatgrid-soak"\n' "$mq_port"
  printf '[storage.influxdb]\nurl = "http://127.0.0.1:%s"\norg = "o"\nbucket = "b"\n' "$vm_port"
  printf '[api]\nlisten = "127.0.0.1:%s"\n[[api.token]]\nname = "soak"\nrole = "viewer"\ntoken_sha256 = "%s"\n' "$api_port" "$hash"
  for i in $(seq 1 "$N"); do printf '[[station]]\nid = "st-%03d"\n' "$i"; done
} > "$tmp/heatgrid.toml"
RUST_LOG=warn target/release/heatgrid run --config "$tmp/heatgrid.toml" 2>"$tmp/engine.log" &
engine=$!
pids+=($engine)
sleep 2
RUST_LOG=warn target/release/heatgrid-sim --port "$mq_port" -n "$N" --telemetry-period-s "$PERIOD" \
  --speed 1 >/dev/null 2>"$tmp/sim.log" &
pids+=($!)
metric() { curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$api_port/metrics" | awk -v m="$1" '$1==m {print $2}'; }
# The simulator warms its plants up before it publishes: start the clock at the first reading.
for i in $(seq 600); do
  [ "$(metric heatgrid_readings_accepted_total || echo 0)" != "0" ] && break
  sleep 0.5
done
out=${SOAK_CSV:-soak.csv}
echo "elapsed_s,rss_mib,readings_accepted,commands_sent,points_written,backlog_points" > "$out"
start=$(date +%s)
while :; do
  now=$(date +%s); el=$((now - start))
  rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$engine/status)
  echo "$el,$rss,$(metric heatgrid_readings_accepted_total),$(metric heatgrid_commands_sent_total),$(metric heatgrid_storage_written_points_total),$(metric heatgrid_storage_backlog_points)" >> "$out"
  [ "$el" -ge "$SOAK_S" ] && break
  sleep "$SAMPLE_S"
done
first=$(sed -n 3p "$out"); last=$(tail -1 "$out")
echo "soak: $N stations every ${PERIOD}s for ${SOAK_S}s; samples in $out"
echo "  first sample after ${SAMPLE_S}s: $first"
echo "  last sample:                    $last"
