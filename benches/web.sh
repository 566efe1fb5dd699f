#!/usr/bin/env bash
# The web control room under load (benches/web.rs): mosquitto on a free port, the engine's
# release binary, chromedriver; prints the figures for docs/performance.md, and the page's
# weight compressed. WEB_STATIONS, WEB_WINDOW_S, WEB_SHOT: see benches/web.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p heatgrid
source benches/peers.sh
driver_port=$(free_port)
/usr/bin/chromedriver --port="$driver_port" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$driver_port/status" >/dev/null 2>&1 && break; sleep 0.1; done
for f in web/index.html web/app.js web/app.css; do
  printf '%s: %s bytes, %s gzipped\n' "$f" "$(wc -c <"$f")" "$(gzip -9c "$f" | wc -c)"
done
printf 'page in all, gzipped: %s bytes\n' "$(cat web/index.html web/app.js web/app.css | gzip -9c | wc -c)"
HEATGRID_BENCH_MQTT_PORT=$mq_port CHROMEDRIVER_PORT=$driver_port HEATGRID_BIN=target/release/heatgrid \
  cargo bench -q --bench web
