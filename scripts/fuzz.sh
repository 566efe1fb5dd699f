#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for FUZZ_SECONDS each (default 60) on the
# stable toolchain: the targets are built with the sanitizer-coverage flags cargo-fuzz uses
# (libFuzzer from the libfuzzer-sys crate), starting from the checked-in seed corpus
# (fuzz/corpus/<target>; new inputs go to a temporary directory, the seeds stay as they are).
# A finding stops the run with libFuzzer's report and a non-zero exit; the input that caused
# it is left in fuzz/artifacts/<target>/. With a nightly toolchain and cargo-fuzz installed,
# `cd fuzz && cargo fuzz run decode` runs the same targets.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
target=x86_64-unknown-linux-gnu
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions"
cargo build --release --bins --target "$target" --quiet
# --build-only: the test command builds the targets beside its tests and runs them later.
[ "${1:-}" = "--build-only" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The three targets side by side (each libFuzzer process is single-threaded): the test
# command's fuzz stage takes FUZZ_SECONDS once, not three times.
targets=(decode register_map config)
pids=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "artifacts/$t"
  "target/$target/release/$t" "$work/$t" "corpus/$t" \
    -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 \
    -artifact_prefix="artifacts/$t/" >"$work/$t.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  log="$work/$t.log"
  if ! wait "${pids[$i]}"; then
    tail -40 "$log"
    echo "fuzz: $t FOUND A PROBLEM (input in fuzz/artifacts/$t/)" >&2
    failed=1
    continue
  fi
  runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1)
  echo "fuzz: $t: $runs(s), corpus $(ls "$work/$t" | wc -l) new inputs, no finding"
done
exit "$failed"
