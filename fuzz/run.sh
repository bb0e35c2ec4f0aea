#!/usr/bin/env bash
# Build the fuzz targets on stable Rust and run them.
#
#   fuzz/run.sh [TARGET|all] [SECONDS]     # default: all, 60 s per target
#   fuzz/run.sh build                      # only build
#   fuzz/run.sh regressions                # replay fuzz/regressions/*/* with every check strict
#   fuzz/run.sh coverage                   # source lines of crates/ reached by the corpora
#
# Each target runs for SECONDS on its seed corpus (fuzz/corpus/TARGET, read-only: new inputs
# go to fuzz/target/corpus/TARGET) with the dictionary fuzz/ftp.dict where it applies. Crash
# inputs land in fuzz/artifacts/TARGET/. Exits non-zero if any target crashed.
#
# Environment: FERROFTP_FUZZ_ALLOW (known, reported bugs to tolerate; default: the open ones
# in fuzz/README.md; set it empty for strict checks), FUZZ_JOBS (parallel fuzzing processes
# per target, default 1), FUZZ_ARGS (extra libFuzzer flags), FUZZ_TARGET_DIR (build
# directory, default fuzz/target).
set -euo pipefail
cd "$(dirname "$0")"
FUZZ_DIR=$(pwd)

TARGETS=(control_line path_resolver session session_tcp)
what=${1:-all}
secs=${2:-60}
triple=$(rustc -vV | sed -n 's/^host: //p')

# Coverage instrumentation for libFuzzer with stable rustc: the flags cargo-fuzz uses with
# `--sanitizer none`. Passing --target makes cargo apply RUSTFLAGS to the fuzz targets and
# their dependencies only, not to build scripts and proc macros (which must not be
# instrumented: nothing would link libFuzzer's hooks into them).
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing ${RUSTFLAGS:-}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$FUZZ_DIR/target}"
# Open issues found by these targets (fuzz/README.md, "Known issues"); remove an id once fixed.
export FERROFTP_FUZZ_ALLOW="${FERROFTP_FUZZ_ALLOW-}"

build() {
    echo "fuzz/run.sh: building fuzz targets (release, debug assertions and overflow checks on)"
    cargo build --release --locked --target "$triple" --bins
}

bin_of() { echo "$CARGO_TARGET_DIR/$triple/release/$1"; }

run_one() {
    local t=$1
    local work="$CARGO_TARGET_DIR/corpus/$t"
    local art="$FUZZ_DIR/artifacts/$t"
    mkdir -p "$work" "$art"
    local args=(-max_total_time="$secs" -artifact_prefix="$art/" -print_final_stats=1)
    case $t in
        control_line) args+=(-dict="$FUZZ_DIR/ftp.dict" -max_len=4096) ;;
        # len_control=0: long command sequences from the start (lim would stay near the seeds)
        # The session core, no I/O: thousands of command sequences a second.
        session) args+=(-max_len=2048) ;;
        session_tcp) args+=(-dict="$FUZZ_DIR/ftp.dict" -max_len=512 -len_control=0 -timeout=30 -rss_limit_mb=4096) ;;
        path_resolver) args+=(-max_len=8192) ;;
    esac
    if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
        args+=(-fork="$FUZZ_JOBS")
    fi
    # shellcheck disable=SC2086
    args+=(${FUZZ_ARGS:-})
    echo "fuzz/run.sh: $t for ${secs}s"
    local log="$CARGO_TARGET_DIR/$t.log"
    set +e
    "$(bin_of "$t")" "${args[@]}" "$work" "$FUZZ_DIR/corpus/$t" 2>&1 | tee "$log" | grep --line-buffered -E '^(#[0-9]+[[:space:]]+(INITED|DONE|pulse)|stat::|==[0-9]+==|SUMMARY|thread .* panicked|artifact_prefix|Test unit written|.*Crash|.*ERROR)' 
    local rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ]; then
        echo "fuzz/run.sh: $t FAILED (exit $rc); full log: $log; crash inputs: $art/" >&2
        tail -n 40 "$log" >&2
        return 1
    fi
    local execs
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz/run.sh: $t ok: ${execs:-?} executions in ${secs}s"
}

# Replay every saved reproducer, strictly; each one fails until its bug is fixed.
regressions() {
    local bad=0 t f
    for t in "${TARGETS[@]}"; do
        for f in "$FUZZ_DIR/regressions/$t"/*; do
            [ -f "$f" ] || continue
            case $f in *.py | *.md) continue ;; esac
            # Repeated: a session reproducer may need a race to go its way.
            if FERROFTP_FUZZ_ALLOW= "$(bin_of "$t")" -runs=300 "$f" >"$CARGO_TARGET_DIR/regression.log" 2>&1; then
                echo "fuzz/run.sh: fixed:  $t/$(basename "$f")"
            else
                echo "fuzz/run.sh: FAILS:  $t/$(basename "$f")"
                grep -m1 -A2 "panicked" "$CARGO_TARGET_DIR/regression.log" | sed 's/^/    /'
                bad=1
            fi
        done
    done
    return $bad
}

# Line coverage of crates/ by the seed corpora plus what fuzzing found (fuzz/target/corpus).
coverage() {
    echo "fuzz/run.sh: building with --features coverage-report"
    cargo build --release --locked --target "$triple" --bins --features coverage-report
    local pairs=() t
    for t in "${TARGETS[@]}"; do
        local log="$CARGO_TARGET_DIR/$t.coverage.log"
        local dirs=("$FUZZ_DIR/corpus/$t")
        [ -d "$CARGO_TARGET_DIR/corpus/$t" ] && dirs+=("$CARGO_TARGET_DIR/corpus/$t")
        echo "fuzz/run.sh: running the $t corpus"
        "$(bin_of "$t")" -runs=0 -print_full_coverage=1 "${dirs[@]}" >"$log" 2>&1 || {
            echo "fuzz/run.sh: $t failed on its corpus; see $log" >&2
            return 1
        }
        pairs+=("$(bin_of "$t"):$log")
    done
    python3 "$FUZZ_DIR/coverage.py" "${pairs[@]}"
    echo "fuzz/run.sh: (the next plain build drops the coverage hooks again)"
}

case $what in
    build) build; exit 0 ;;
    coverage) coverage; exit $? ;;
    regressions) build; regressions; exit $? ;;
    all) run=("${TARGETS[@]}") ;;
    *)
        if [[ ! " ${TARGETS[*]} " =~ \ $what\  ]]; then
            echo "usage: fuzz/run.sh [build|all|${TARGETS[*]// /|}] [SECONDS]" >&2
            exit 2
        fi
        run=("$what")
        ;;
esac

build
failed=()
for t in "${run[@]}"; do
    run_one "$t" || failed+=("$t")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz/run.sh: crashed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz/run.sh: all ok"
