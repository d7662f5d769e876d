#!/usr/bin/env bash
# Fuzzes the guest's pure logic (config parsing/validation/planning, JetStream API replies,
# durations), compiled natively with libFuzzer, on the stable toolchain and without cargo-fuzz.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      (default: 30 s each, every target)
#
# It builds guest/fuzz like `cargo fuzz build` does (SanitizerCoverage + libFuzzer, release
# with debug assertions and overflow checks; those flags are all stable), then runs each target
# on a copy of its committed corpus (guest/fuzz/corpus/<t>/) for SECONDS, with a dictionary.
# One line per target, then `fuzz: <targets> targets, <runs> runs, <crashes> crashes`; the
# exit status is non-zero on any crash, with the input saved in
# guest/fuzz/artifacts/<t>/ (replay it: guest/fuzz/target/x86_64-unknown-linux-gnu/release/<t> FILE).
#
# Environment: FUZZ_ASAN=1 adds AddressSanitizer (-Zsanitizer=address, through RUSTC_BOOTSTRAP=1
# on stable; it builds and runs, but with about 10x fewer runs, and the guest has no unsafe
# code, so the default is without it). FUZZ_JOBS=N runs N targets at once (default: all at
# once, so the run takes SECONDS whatever the CPUs). FUZZ_MERGE=1 merges the run's new inputs
# back into the committed corpus (minimised).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/guest/fuzz"
secs="${1:-30}"
shift || true
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in "$fuzz"/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
triple=x86_64-unknown-linux-gnu
jobs="${FUZZ_JOBS:-${#targets[@]}}"

flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
flags+=" -Cdebug-assertions -Coverflow-checks -Cforce-frame-pointers"
bootstrap=()
if [ "${FUZZ_ASAN:-0}" = 1 ]; then
    flags+=" -Zsanitizer=address"
    bootstrap=(RUSTC_BOOTSTRAP=1)
fi

build_start=$SECONDS
env "${bootstrap[@]}" RUSTFLAGS="$flags" cargo build --manifest-path "$fuzz/Cargo.toml" \
    --target-dir "$fuzz/target" --release --target "$triple" --bins --locked
build_secs=$((SECONDS - build_start))
bin="$fuzz/target/$triple/release"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

run_one() {
    local t="$1" dir="$work/$1"
    mkdir -p "$dir/corpus" "$fuzz/artifacts/$t"
    if [ -d "$fuzz/corpus/$t" ]; then cp -R "$fuzz/corpus/$t/." "$dir/corpus/"; fi
    # A target's own dictionary, else the JSON one (keys and enum values from guest/src).
    local dict="$fuzz/$t.dict"
    [ -f "$dict" ] || dict="$fuzz/json.dict"
    local rc=0
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}" "$bin/$t" "$dir/corpus" -dict="$dict" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$fuzz/artifacts/$t/" >"$dir/log" 2>&1 || rc=$?
    echo "$rc" >"$dir/rc"
}

run_start=$SECONDS
running=0
for t in "${targets[@]}"; do
    [ -x "$bin/$t" ] || { echo "fuzz: no such target: $t" >&2; exit 2; }
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait
run_secs=$((SECONDS - run_start))

total_runs=0
total_crashes=0
for t in "${targets[@]}"; do
    dir="$work/$t"
    rc="$(cat "$dir/rc")"
    stat_of() { sed -n "s/^stat::$1: *//p" "$dir/log" | tail -1; }
    runs="$(stat_of number_of_executed_units)"
    speed="$(stat_of average_exec_per_sec)"
    # The last status line: `#N  DONE  cov: C ft: F corp: U/S ...`.
    last="$(grep -E '^#[0-9]+' "$dir/log" | tail -1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
    corp="$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")"
    seeds="$(find "$fuzz/corpus/$t" -type f 2>/dev/null | wc -l)"
    crashes=0
    if [ "$rc" != 0 ]; then
        crashes=1
        echo "---- $t failed (exit $rc):"
        # The panic (or sanitizer report), the guest's frames, and where the input was saved.
        grep -E -A1 "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$dir/log" | head -20 || true
        grep -E "eventbus_guest::" "$dir/log" | head -8 || true
        grep -E "^(SUMMARY|Test unit written|Base64)|^artifact_prefix" "$dir/log" || true
        echo "----"
    fi
    total_runs=$((total_runs + ${runs:-0}))
    total_crashes=$((total_crashes + crashes))
    if [ "$crashes" = 0 ]; then
        echo "fuzz: $t: ${runs:-0} runs in ${secs}s (${speed:-0}/s), cov ${cov:-?}, features ${ft:-?}, corpus ${seeds} -> ${corp:-?}, 0 crashes"
    else
        echo "fuzz: $t: CRASHED after ${runs:-0} runs (input in guest/fuzz/artifacts/$t/), 1 crashes"
    fi
    if [ "${FUZZ_MERGE:-0}" = 1 ] && [ "$rc" = 0 ]; then
        mkdir -p "$fuzz/corpus/$t"
        "$bin/$t" -merge=1 "$fuzz/corpus/$t" "$dir/corpus" >/dev/null 2>&1
    fi
done
echo "fuzz: build ${build_secs}s, runs ${run_secs}s (${jobs} at once)"
echo "fuzz: ${#targets[@]} targets, $total_runs runs, $total_crashes crashes"
[ "$total_crashes" = 0 ]
