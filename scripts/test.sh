#!/usr/bin/env bash
# Runs every test of ferroftp: formatting and lints, unit and property tests, the
# integration tests that drive the real binary with curl, lftp, Python's ftplib and suppaftp,
# and the manual's checks (crates/ferroftp/tests/docs.rs, which also builds it with mdBook).
# Installs the client tools it needs (Debian/Ubuntu) and mdBook when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v lftp >/dev/null 2>&1 || missing+=(lftp)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
# nft: the NAT test (tests/nat_netns.rs) builds a DNAT gateway in a network namespace (as root).
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
# logrotate: the production recipe test (tests/production.rs) runs the shipped contrib config.
command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ] || missing+=(logrotate)
if [ ${#missing[@]} -gt 0 ]; then
    echo "scripts/test.sh: installing ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    # Packages such as haproxy would start a system service; the tests run their own.
    policy=/usr/sbin/policy-rc.d
    added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod +x "$policy"
        added_policy=1
    fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    if [ "$added_policy" = 1 ]; then $sudo rm -f "$policy"; fi
fi

# mdBook builds the manual (docs/); crates/ferroftp/tests/docs.rs builds it and, under CI=true,
# fails without it. Debian (bookworm) has no package of it, so it comes from crates.io: the
# official release, pinned, with its lock file, search only (no web server, no file watcher).
# About 3 CPU-minutes, once per machine (~/.cargo/bin keeps it).
if ! command -v mdbook >/dev/null 2>&1; then
    echo "scripts/test.sh: installing mdbook"
    cargo install mdbook --version 0.5.4 --locked --no-default-features --features search
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
