#!/usr/bin/env bash
# Several instances, measured (benches/cluster.py): takeover after SIGKILL and handover after
# SIGTERM (20 and 10 runs by default), then three instances against one for CPU and latency.
#   bash benches/cluster.sh [KILLS] [TERMS] [CPU_SECONDS]
# Builds the release binaries first; needs etcd, mosquitto and the test virtualenv
# (bash scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p heatgrid -p heatgrid-sim
py=.venv/bin/python
[ -x "$py" ] || py=python3
"$py" benches/cluster.py takeover "${1:-20}" "${2:-10}"
"$py" benches/cluster.py cpu "${3:-60}"
