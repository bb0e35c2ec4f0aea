#!/usr/bin/env bash
# Runs every test of ferroftp: formatting and lints, unit and property tests, and the
# integration tests that drive the real binary with curl, lftp, Python's ftplib and suppaftp.
# Installs the client tools it needs (Debian/Ubuntu) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v lftp >/dev/null 2>&1 || missing+=(lftp)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    echo "scripts/test.sh: installing ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --all-targets

# A short fuzz run of every target (libFuzzer on stable Rust; the property tests ran above),
# then the saved reproducers of bugs the fuzzers found. See fuzz/README.md.
# opt-level 1 builds the targets in half the time, plenty for a smoke run.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=1
fuzz/run.sh all "${FUZZ_SECONDS:-20}"
fuzz/run.sh regressions
