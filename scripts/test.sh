#!/usr/bin/env bash
# Every check and test of heatgrid, on a fresh machine: the README's test command.
#
# 1. With cargo alone, before any system package: installs the test runner (cargo-nextest)
#    and the coverage tool (cargo-llvm-cov) from crates.io if missing; cargo fmt --check; the
#    import-cycle check (scripts/check-cycles.py);
#    clippy -D warnings and the build of every target, both with PROTOC pointing at nothing
#    (a dependency that wants a system tool fails here); cargo doc with warnings as errors.
#    The build is instrumented for line coverage, and the tests and the package reuse it.
# 2. Installs what the tests need when it is missing: mosquitto, VictoriaMetrics and InfluxDB 1.6
#    (Debian packages; VictoriaMetrics accepts the InfluxDB v2 write API, influxdb the 1.x one), etcd (cluster tests),
#    Debian's mbpoll (a Modbus master we did not write), Chromium with chromedriver (the web
#    control room's browser test), systemd-analyze (the package's unit), socat (a serial line
#    for the Modbus RTU test), the LLVM tools of rustc's LLVM version (the coverage report),
#    and a Python virtualenv with paho-mqtt, pymodbus, aiosmtpd and asyncua for the independent
#    peers (tests/peers/station.py, plc.py, smtp.py, opcua_gateway.py; webhook.py needs only
#    Python); cargo-deb comes from crates.io (scripts/package.sh).
# 3. Runs every test of the workspace with nextest (profile `ci` in
#    .config/nextest.toml: four at a time, at most two failover scenarios), prints the line
#    coverage of src/ outside demo/ and the ten slowest tests, builds and checks the Debian
#    package (scripts/package-test.sh), then every fuzz target for a bounded time
#    (scripts/fuzz.sh, 30 s, the three side by side; built beside the tests, at the lowest
#    priority). The integration tests start their own mosquitto, VictoriaMetrics and
#    etcd processes on free loopback ports and stop them by PID when they finish.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
log() { printf '\n== %s (at %d s)\n' "$*" $(($(date +%s) - started)); }

# --- 1. cargo alone ---------------------------------------------------------------------------
if ! cargo nextest --version >/dev/null 2>&1; then
  log "Installing cargo-nextest (crates.io)"
  cargo install cargo-nextest --locked
fi
if ! cargo llvm-cov --version >/dev/null 2>&1; then
  log "Installing cargo-llvm-cov (crates.io)"
  cargo install cargo-llvm-cov --locked --version 0.9.1
fi
# The coverage report reads the profiles with the LLVM of rustc's own version (Debian's
# llvm-N, installed below), never a toolchain component fetched by rustup.
llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
export LLVM_COV=/usr/bin/llvm-cov-$llvm LLVM_PROFDATA=/usr/bin/llvm-profdata-$llvm

log "cargo fmt --check"
cargo fmt --all -- --check

log "no import cycle between modules (scripts/check-cycles.py)"
python3 scripts/check-cycles.py --self-test
python3 scripts/check-cycles.py

log "cargo clippy --all-targets -D warnings, with nothing but cargo (PROTOC=/nonexistent)"
PROTOC=/nonexistent/protoc cargo clippy --locked --workspace --all-targets -- -D warnings

# The docs are developers' docs: private items are documented and may be linked to; a link
# that leads nowhere is an error.
log "cargo doc --no-deps, warnings as errors"
RUSTDOCFLAGS="-D warnings -A rustdoc::private-intra-doc-links" \
  cargo doc --locked --workspace --no-deps --document-private-items --quiet

# From here on every build of our crates is instrumented for line coverage.
eval "$(cargo llvm-cov show-env --sh 2>/dev/null)"
rm -f target/*.profraw

log "build of every target, with nothing but cargo (PROTOC=/nonexistent)"
PROTOC=/nonexistent/protoc cargo build --locked --workspace --all-targets

# --- 2. what the tests need -------------------------------------------------------------------
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
# InfluxDB 1.6 for the v1 write API and InfluxQL (tests/it/influx_v1.rs).
command -v influxd >/dev/null 2>&1 || missing+=(influxdb)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v mbpoll >/dev/null 2>&1 || missing+=(mbpoll)
# etcd for the cluster tests (the engine speaks to it over its JSON gateway: no protoc).
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
# Chromium and chromedriver for the web control room's browser test (tests/it/web.rs).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# A font with Chinese glyphs, for the control room's screenshots in Chinese.
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
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
# The LLVM tools of rustc's version for the coverage report. A Debian without that version
# (a newer toolchain) costs the coverage figure, not the run.
if ! { [ -x "$LLVM_COV" ] && [ -x "$LLVM_PROFDATA" ]; }; then
  log "Installing llvm-$llvm (Debian package, for the coverage report)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "llvm-$llvm" >/dev/null; } ||
    echo "llvm-$llvm is not available: the coverage is not measured in this run"
fi
# Debian starts the packaged mosquitto (and influxdb) service on install on some machines: the
# tests use their own instances on free ports, so those are left alone.

VENV=.venv
if ! "$VENV/bin/python" -c 'import paho.mqtt, pymodbus, aiosmtpd, asyncua' >/dev/null 2>&1; then
  log "Creating $VENV with paho-mqtt, pymodbus, aiosmtpd and asyncua (Python peers for the interop, notification and OPC UA tests)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'paho-mqtt==2.1.0' 'pymodbus==3.6.9' 'aiosmtpd==1.4.6' 'asyncua==2.1.0'
fi
export HEATGRID_TEST_PYTHON="$PWD/$VENV/bin/python"

# --- 3. checks and tests ----------------------------------------------------------------------
# The fuzz targets build beside the tests, at the lowest priority, on the CPU the tests leave
# idle (most of them wait on plant time, brokers and databases); the fuzz stage then only runs
# them. They build with their own flags, without the coverage wrapper.
no_coverage=(RUSTC_WRAPPER LLVM_PROFILE_FILE CARGO_LLVM_COV CARGO_LLVM_COV_SHOW_ENV
  CARGO_LLVM_COV_TARGET_DIR CARGO_LLVM_COV_BUILD_DIR __CARGO_LLVM_COV_RUSTC_WRAPPER
  __CARGO_LLVM_COV_RUSTC_WRAPPER_RUSTFLAGS __CARGO_LLVM_COV_RUSTC_WRAPPER_CRATE_NAMES)
# In a process group of its own, stopped whole (cargo and its rustc) if this script ends first.
(unset "${no_coverage[@]}"; exec setsid nice -n 19 bash scripts/fuzz.sh --build-only) >target/fuzz-build.log 2>&1 &
fuzz_build=$!
trap 'kill -- -"$fuzz_build" 2>/dev/null || true' EXIT

log "tests: unit, property and integration (against mosquitto, rumqttd, VictoriaMetrics, etcd, Chromium, Python peers)"
tests=0
cargo nextest run --locked --workspace --profile ci || tests=$?

log "line coverage of src/ outside demo/ (cargo llvm-cov)"
if [ -x "$LLVM_COV" ] && [ -x "$LLVM_PROFDATA" ]; then
  cargo llvm-cov report --summary-only \
    --ignore-filename-regex '(^|/)(demo|simulator|kpi|tests|benches|fuzz)/' | tail -n 2 |
    awk '$1 == "TOTAL" { print "coverage: " $10 " of " $8 " lines (" $9 " not run)" }'
else
  echo "coverage: not measured (no llvm-$llvm)"
fi

log "the ten slowest tests"
python3 - target/nextest/ci/junit.xml <<'PY'
import sys
import xml.etree.ElementTree as ET
cases = [(float(c.get("time", 0)), f"{c.get('classname')} {c.get('name')}")
         for c in ET.parse(sys.argv[1]).iter("testcase")]
for t, name in sorted(cases, reverse=True)[:10]:
    print(f"{t:7.1f} s  {name}")
print(f"{len(cases)} tests, {sum(t for t, _ in cases):.0f} s of test time in all")
PY
[ "$tests" -eq 0 ] || { echo "tests FAILED (nextest exit $tests)" >&2; exit "$tests"; }

log "Debian package: contents, unit, packaged config (scripts/package-test.sh)"
bash scripts/package-test.sh

# The fuzzers run with their own flags, without the coverage wrapper, once their build beside
# the tests is done.
unset "${no_coverage[@]}"
# 30 s each in the test command (scripts/fuzz.sh alone: 60 s); FUZZ_SECONDS sets it.
export FUZZ_SECONDS=${FUZZ_SECONDS:-30}
log "fuzzing: decode, register_map, config for $FUZZ_SECONDS s each (scripts/fuzz.sh)"
if ! wait "$fuzz_build"; then
  tail -40 target/fuzz-build.log
  echo "the fuzz targets did not build (target/fuzz-build.log)" >&2
  exit 1
fi
bash scripts/fuzz.sh
log "done"
