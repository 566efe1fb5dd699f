#!/usr/bin/env bash
# Every check and test of heatgrid, on a fresh machine: the README's test command.
#
# 0. Builds heatgrid as a new user would, before anything is installed, with PROTOC pointing at
#    nothing: the build needs cargo alone, and a dependency that wants a system tool fails here.
# 1. Installs what the tests need when it is missing: mosquitto and VictoriaMetrics (Debian
#    packages; VictoriaMetrics accepts the InfluxDB v2 write API), etcd (cluster tests) and a
#    Python virtualenv with
#    paho-mqtt and pymodbus for the independent peers (tests/peers/station.py, plc.py),
#    Debian's mbpoll (a Modbus master we did not write), and Chromium with chromedriver (the
#    web control room's browser test), systemd-analyze (the package's unit) and socat (a
#    serial line for the Modbus RTU test); cargo-deb
#    comes from crates.io (scripts/package.sh).
# 2. Runs cargo fmt --check, the import-cycle check (scripts/check-cycles.py), clippy
#    -D warnings, every test of the workspace, builds and checks the Debian package
#    (scripts/package-test.sh), then every fuzz
#    target for a bounded time (scripts/fuzz.sh). The
#    integration tests start their own mosquitto and VictoriaMetrics processes on free loopback
#    ports and stop them by PID when they finish (tests/it/util.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

log "build with nothing but cargo (PROTOC=/nonexistent)"
PROTOC=/nonexistent/protoc cargo build --locked --workspace

missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v mbpoll >/dev/null 2>&1 || missing+=(mbpoll)
# etcd for the cluster tests (the engine speaks to it over its JSON gateway: no protoc).
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
# Chromium and chromedriver for the web control room's browser test (tests/it/web.rs).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
# systemd-analyze verifies the Debian package's unit (scripts/package-test.sh).
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# socat makes the pseudo-terminal pair of the Modbus RTU test (tests/it/modbus.rs).
command -v socat >/dev/null 2>&1 || missing+=(socat)
if [ ${#missing[@]} -gt 0 ]; then
  log "Installing ${missing[*]} (Debian packages)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts the packaged mosquitto service on install on some machines: the tests use
# their own instances on free ports, so that one is left alone.

VENV=.venv
if ! "$VENV/bin/python" -c 'import paho.mqtt, pymodbus' >/dev/null 2>&1; then
  log "Creating $VENV with paho-mqtt and pymodbus (Python peers for the interop tests)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'paho-mqtt==2.1.0' 'pymodbus==3.6.9'
fi
export HEATGRID_TEST_PYTHON="$PWD/$VENV/bin/python"

log "cargo fmt --check"
cargo fmt --all -- --check

log "no import cycle between modules (scripts/check-cycles.py)"
python3 scripts/check-cycles.py --self-test
python3 scripts/check-cycles.py

log "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

log "cargo test (unit + integration against mosquitto, rumqttd, VictoriaMetrics, Python peers)"
cargo test --workspace -- --test-threads 2

log "Debian package: contents, unit, packaged config (scripts/package-test.sh)"
bash scripts/package-test.sh

log "fuzzing: decode, register_map, config for ${FUZZ_SECONDS:-60} s each (scripts/fuzz.sh)"
bash scripts/fuzz.sh
