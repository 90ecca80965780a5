#!/usr/bin/env bash
# Runs fuzz targets one after another, each for SECONDS (default 60) on one core, and prints
# what each did. Exits non-zero if any target found a crash, a hang or a memory blow-up; the
# input that did it is in fuzz/artifacts/<target>/ (docs/fuzzing.md says what to do with it).
#
#   fuzz/run.sh                  # every target, 60 s each
#   fuzz/run.sh 600              # every target, 10 minutes each
#   fuzz/run.sh 30 forward_answer upgrade_request
#   FUZZ_SANITIZER=none fuzz/run.sh 300   # no AddressSanitizer: faster, real RSS
#
# Needs a nightly toolchain (`cargo +nightly`) and cargo-fuzz (`cargo install cargo-fuzz --locked`);
# FUZZ_TOOLCHAIN=stable FUZZ_SANITIZER=none runs on stable (libFuzzer needs no nightly; the
# sanitizer does).
# New inputs go to fuzz/work/corpus/<target> (not committed); the seeds in fuzz/corpus/ are only
# read. Logs: fuzz/work/logs/<target>.log.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

toolchain=${FUZZ_TOOLCHAIN:-nightly}
seconds=${1:-60}
shift || true
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: fuzz/run.sh [seconds] [target...]" >&2; exit 2; }
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi

# The dictionary that tells the fuzzer the words of each target's input.
dictionary() {
    case $1 in
        envelope_client | envelope_publish | session) echo fuzz/envelope.dict ;;
        forward_answer) echo fuzz/forward.dict ;;
        upgrade_request) echo fuzz/upgrade.dict ;;
        *) echo "" ;;
    esac
}

# Optimised, with debug assertions and overflow checks: an overflow is a bug worth finding.
# AddressSanitizer by default (it checks the unsafe code of the dependencies); FUZZ_SANITIZER=none
# runs about eight times as many inputs and shows the targets' own memory in the RSS figures.
build=(--release --debug-assertions --sanitizer "${FUZZ_SANITIZER:-address}")
echo "==> building the fuzz targets"
cargo "+$toolchain" fuzz build "${build[@]}"
mkdir -p fuzz/work/logs
failed=()
for target in "${targets[@]}"; do
    mkdir -p "fuzz/work/corpus/$target" "fuzz/corpus/$target"
    log="fuzz/work/logs/$target.log"
    args=(
        -max_total_time="$seconds"
        # A hang is an input that takes 10 s; the default (20 minutes) would hide one.
        -timeout=10
        -rss_limit_mb=2048
        -print_final_stats=1
    )
    dict=$(dictionary "$target")
    [[ -n $dict ]] && args+=(-dict="$dict")
    echo "==> $target: ${seconds} s"
    if cargo "+$toolchain" fuzz run "${build[@]}" "$target" "fuzz/work/corpus/$target" "fuzz/corpus/$target" \
        -- "${args[@]}" >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$target")
        grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written to" "$log" | head -n 8 || true
    fi
    # The last status line (coverage and corpus) and the final statistics.
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    stat() { grep -E "^stat::$1:" "$log" | awk '{print $2}'; }
    echo "    $status: $(stat number_of_executed_units) runs, $(stat average_exec_per_sec) exec/s," \
        "peak RSS $(stat peak_rss_mb) MB, slowest input $(stat slowest_unit_time_sec) s"
    echo "    ${last:-no status line; see $log}"
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzzing FAILED: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/work/logs/)" >&2
    exit 1
fi
echo "fuzzing passed: ${targets[*]}, ${seconds} s each"
