#!/usr/bin/env bash
# ferroftp benchmark, one command (as root, on a quiet machine):
#
#   sudo bench/run.sh            # full run: ~45-75 min on a 2-core box, see bench/README.md
#   sudo bench/run.sh --smoke    # small parameters, ~10-15 minutes: checks the pipeline
#
# It builds ferroftp in release mode, creates the fixtures and the test account (peers.sh setup),
# writes a users file and a config for ferroftp, measures the machine's limits, runs the peers and
# ferroftp one after another on the same fixtures (run_all.sh: ftpbench.py + extras.py), then
# writes OUT/table.md (all numbers) and OUT/ratios.md (ferroftp vs the best peer, vs the machine,
# vs the targets).
#
# Environment (all optional):
#   OUT            results dir (default bench/out/<date>_<time>[-smoke])
#   PEERS          peers to run before ferroftp (default: vsftpd pureftpd proftpd pyftpdlib unftp;
#                  missing ones are skipped with a warning; install them with bench/install_peers.sh)
#   PEERS_DIR      where install_peers.sh unpacked vsftpd and pure-ftpd (default bench/.peers)
#   BENCH_STATE    state dir: configs, certs, logs, fixture home (default /var/tmp/ferroftp-bench;
#                  needs ~2.2 GiB on a disk, not tmpfs: STOR targets are written there)
#   FTP_PORT       control port (default 2121); PASV_MIN/PASV_MAX (default 61000-62999: outside the
#                  kernel's ephemeral range, so the client's own sockets never take a passive port)
#   BIG_MB         big fixture in MiB (default 1024; --smoke: 100)
#   FTPBENCH_ARGS  extra args for ftpbench.py run (replace the defaults below)
#   EXTRAS_ARGS    extra args for extras.py run
#   NO_BUILD=1     use the existing target/release/ferroftp
#   FERROFTP_BIN   ferroftp binary (default <repo>/target/release/ferroftp, or $CARGO_TARGET_DIR)
#   ARGON2_M / ARGON2_T   argon2id cost of the benchmark user (default 128 KiB / 1 iteration)
#   CONC_CLIENT    rust (default: bench/loadgen) or python (asyncio) for the idle-session test
#   SKIP_LIMITS=1  skip the machine limits; EXTRAS=0 skips extras.py (100k listing, 1000 at once)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1;;
    -h|--help) sed -n '2,32p' "$0"; exit 0;;
    *) echo "run.sh: unknown argument $arg" >&2; exit 2;;
  esac
done
die() { echo "run.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (peers.sh setup creates the unix user 'ftpbench' and /etc/pam.d/ftpbench)"

export PEERS_DIR="${PEERS_DIR:-$HERE/.peers}"
export BENCH_STATE="${BENCH_STATE:-/var/tmp/ferroftp-bench}"
export FTP_HOST="${FTP_HOST:-127.0.0.1}" FTP_PORT="${FTP_PORT:-2121}"
export PASV_MIN="${PASV_MIN:-61000}" PASV_MAX="${PASV_MAX:-62999}"
export FTP_USER="${FTP_USER:-ftpbench}" FTP_PASS="${FTP_PASS:-ftpbench-pw}"
export PYTHON="${PYTHON:-python3}"
ARGON2_M="${ARGON2_M:-128}" ARGON2_T="${ARGON2_T:-1}"
ulimit -n "$(ulimit -Hn)"
NOFILE="$(ulimit -n)"

# idle-session levels: 100 ... up to what RLIMIT_NOFILE allows the client (one fd per session)
conc_levels() {
  local max=$((NOFILE - 1000)) out="" n
  for n in "$@"; do [ "$n" -le "$max" ] && out="$out,$n"; done
  # one more level at the fd limit if it is above the last listed one
  local last="${*: -1}"
  [ "$max" -gt "$last" ] && [ "$max" -lt $((last * 3)) ] && out="$out,$max"
  echo "${out#,}"
}
if [ "$SMOKE" = 1 ]; then
  export BIG_MB="${BIG_MB:-100}"
  export FTPBENCH_ARGS="${FTPBENCH_ARGS:---reps 1 --list-reps 3 --small-n 200 --ttfb-n 20 --conc 100,1000}"
  export EXTRAS_ARGS="${EXTRAS_ARGS:---list-reps 1 --xfer-n 1000}"
  OUT="${OUT:-$HERE/out/$(date +%Y-%m-%d_%H%M%S)-smoke}"
else
  export BIG_MB="${BIG_MB:-1024}"
  export FTPBENCH_ARGS="${FTPBENCH_ARGS:---reps 3 --list-reps 5 --small-n 2000 --ttfb-n 200 --conc $(conc_levels 100 1000 5000 10000 15000)}"
  export EXTRAS_ARGS="${EXTRAS_ARGS:---list-reps 3 --xfer-n 1000}"
  OUT="${OUT:-$HERE/out/$(date +%Y-%m-%d_%H%M%S)}"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
exec > >(tee -a "$OUT/run.log") 2>&1
echo "== ferroftp benchmark -> $OUT (smoke=$SMOKE)"
echo "   FTPBENCH_ARGS=$FTPBENCH_ARGS"
echo "   EXTRAS_ARGS=$EXTRAS_ARGS"
echo "   BIG_MB=$BIG_MB port=$FTP_PORT passive=$PASV_MIN-$PASV_MAX state=$BENCH_STATE peers_dir=$PEERS_DIR"

read -r EPH_LO EPH_HI < /proc/sys/net/ipv4/ip_local_port_range
if [ "$PASV_MAX" -ge "$EPH_LO" ] && [ "$PASV_MIN" -le "$EPH_HI" ]; then
  echo "WARNING: passive range $PASV_MIN-$PASV_MAX overlaps the ephemeral range $EPH_LO-$EPH_HI: with thousands"
  echo "         of client sockets some passive ports will be taken (PASV failures in the 1000-at-once test)"
fi
if (exec 3<>"/dev/tcp/$FTP_HOST/$FTP_PORT") 2>/dev/null; then
  die "$FTP_HOST:$FTP_PORT is already in use (another FTP server?); set FTP_PORT"
fi

# ---- 1. build ferroftp
if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "== cargo build --release"
  (cd "$REPO" && cargo build --release) || die "cargo build --release failed"
fi
FERROFTP_BIN="${FERROFTP_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/ferroftp}"
[ -x "$FERROFTP_BIN" ] || die "no ferroftp binary at $FERROFTP_BIN"

# the login client of the idle-session test (Rust, one thread): Python's asyncio costs ~1 ms of
# CPU per login here, more than the servers, so it would measure itself. CONC_CLIENT=python: old way.
LOADGEN="$HERE/loadgen/target/release/ftp-loadgen"
if [ "${CONC_CLIENT:-rust}" = rust ]; then
  echo "== building bench/loadgen (login client)"
  ( cd "$HERE/loadgen" && export CARGO_TARGET_DIR="$HERE/loadgen/target" &&
      { cargo build --release --offline -q 2>/dev/null || cargo build --release -q; } ) \
    || die "building bench/loadgen failed (CONC_CLIENT=python to use the asyncio client)"
  FTPBENCH_ARGS="$FTPBENCH_ARGS --conc-client $LOADGEN"
  export FTPBENCH_ARGS
fi

# ---- 2. peers available?
PEERS="${PEERS:-vsftpd pureftpd proftpd pyftpdlib unftp}"
[ "$PEERS" = none ] && PEERS=""
avail=""
for p in $PEERS; do
  case "$p" in
    vsftpd) b="${VSFTPD_BIN:-$(command -v vsftpd || echo "$PEERS_DIR/vsftpd/usr/sbin/vsftpd")}";;
    pureftpd) b="${PUREFTPD_BIN:-$(command -v pure-ftpd || echo "$PEERS_DIR/pure-ftpd/usr/sbin/pure-ftpd")}";;
    proftpd) b="${PROFTPD_BIN:-$(command -v proftpd || echo /nonexistent)}";;
    unftp) b="${UNFTP_BIN:-$(command -v unftp || echo "${CARGO_HOME:-$HOME/.cargo}/bin/unftp")}";;
    pyftpdlib) "$PYTHON" -c 'import pyftpdlib, OpenSSL' 2>/dev/null && b=/bin/true || b=/nonexistent;;
    *) b=/bin/true;;
  esac
  if [ -x "$b" ]; then avail="$avail $p"; else echo "WARNING: peer $p not installed ($b); skipped (bench/install_peers.sh)"; fi
done

# ---- 3. fixtures, test account, ferroftp users file and config
echo "== setup (fixtures in $BENCH_STATE/home)"
"$HERE/peers.sh" setup >/dev/null
CERT="$BENCH_STATE/tls/cert.pem"; KEY="$BENCH_STATE/tls/key.pem"; HOMEDIR="$BENCH_STATE/home"
USERS="$BENCH_STATE/etc/ferroftp-users.toml"; CONF="$BENCH_STATE/etc/ferroftp.toml"
rm -f "$USERS"
printf '%s\n' "$FTP_PASS" | "$FERROFTP_BIN" passwd --users "$USERS" "$FTP_USER" \
  --argon2-memory "$ARGON2_M" --argon2-iterations "$ARGON2_T" >/dev/null
cat > "$CONF" <<EOF
# written by bench/run.sh
root = "$HOMEDIR"
users_file = "$USERS"
[[listener]]
bind = "$FTP_HOST:$FTP_PORT"
mode = "explicit"
[passive]
ports = "$PASV_MIN-$PASV_MAX"
[limits]
max_sessions = 60000
max_sessions_per_ip = 60000
[tls]
cert = "$CERT"
key = "$KEY"
[log]
level = "warn"
EOF
"$FERROFTP_BIN" check-config "$CONF" >/dev/null || die "ferroftp check-config $CONF failed"

# ---- 4. what the run is: machine, versions, load, login cost
md5_ms="$("$PYTHON" - <<'EOF' 2>/dev/null || echo n/a
import time, warnings
warnings.simplefilter("ignore")
import crypt
s = crypt.mksalt(crypt.METHOD_MD5); crypt.crypt("x", s); t = time.perf_counter()
for _ in range(200): crypt.crypt("ftpbench-pw", s)
print(f"{(time.perf_counter() - t) / 200 * 1000:.3f}")
EOF
)"
{
  echo "command: ${0} $*"
  echo "smoke: $SMOKE"
  echo "FTPBENCH_ARGS: $FTPBENCH_ARGS"
  echo "EXTRAS_ARGS: $EXTRAS_ARGS"
  echo "BIG_MB: $BIG_MB"
  echo "ferroftp: $("$FERROFTP_BIN" --version) (git $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo '+uncommitted changes in crates/'))"
  echo "rustc: $(rustc --version 2>/dev/null || echo n/a)"
  echo "ferroftp login cost: argon2id m=${ARGON2_M} KiB t=${ARGON2_T} (users file made by ferroftp passwd)"
  echo "peers login cost: MD5-crypt (chpasswd -c ${PASS_HASH:-MD5}) ${md5_ms} ms per hash here (python crypt); pyftpdlib and unftp compare plaintext"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "RLIMIT_NOFILE: $NOFILE; pid_max: $(cat /proc/sys/kernel/pid_max); ephemeral ports: $EPH_LO-$EPH_HI"
} > "$OUT/run-info.txt"
cp "$CONF" "$OUT/ferroftp.toml"

# ---- 5. limits + peers + ferroftp, one after another
CUSTOM_CMD="$(printf '%q' "$FERROFTP_BIN") serve --config $(printf '%q' "$CONF")"
export CUSTOM_CMD CUSTOM_NAME=ferroftp
echo "== run_all.sh:$avail ferroftp"
t0=$(date +%s)
BENCH_STATE="$BENCH_STATE" "$HERE/run_all.sh" "$OUT" $avail custom
t1=$(date +%s)
{
  echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "duration: $(( (t1 - t0) / 60 )) min $(( (t1 - t0) % 60 )) s"
} >> "$OUT/run-info.txt"
cat "$OUT/versions.txt" >> "$OUT/run-info.txt" 2>/dev/null || true

# ---- 6. ratios
"$PYTHON" "$HERE/ratios.py" "$OUT" --ferro ferroftp > "$OUT/ratios.md" || echo "WARNING: ratios.py failed"
echo "== done in $(( (t1 - t0) / 60 )) min: $OUT/table.md, $OUT/ratios.md, $OUT/run-info.txt"
