#!/usr/bin/env bash
# ferroftp benchmark, one command (as root, on a quiet machine):
#
#   sudo bench/run.sh            # full run: about 15-20 min on a 2-core box (printed at the start)
#   sudo bench/run.sh --smoke    # small parameters, 2 rounds: checks the pipeline
#
# It builds ferroftp in release mode, creates the fixtures and the test account (peers.sh setup),
# writes a users file and configs for ferroftp, measures the machine's limits, then runs ROUNDS
# rounds. In each round every server in turn is started, runs one repetition of every test
# (ftpbench.py run --reps 1), and is stopped: A, B, C, A, B, C, ... so that slow drifts of the
# machine hit every server alike. Then ratios.py writes OUT/table.md (each server's median and
# min-max over the rounds), OUT/ratios.md (same-run ratios with their spread and ties) and
# OUT/summary.json (for mkdoc.py, which turns two or more runs into docs/BENCHMARKS.md).
#
# Servers, in this order in every round: the PEERS, then ferroftp (its default config, so
# uploads.fsync = "replacements"), ferroftp-nofsync (the same binary with uploads.fsync = "never";
# bulk STOR tests only) and, when FERROFTP_BEFORE_BIN is set, ferroftp-before (that binary, the
# default config), for before/after ratios.
#
# Environment (all optional):
#   ROUNDS         rounds, i.e. repetitions of every test on every server (default 5; --smoke: 2)
#   OUT            results dir (default bench/out/<date>_<time>[-smoke])
#   PEERS          peers (default: vsftpd pureftpd unftp; proftpd and pyftpdlib are optional, slow;
#                  missing ones are skipped with a warning; install them with bench/install_peers.sh)
#   PEERS_DIR      where install_peers.sh unpacked vsftpd and pure-ftpd (default bench/.peers)
#   BENCH_STATE    state dir: configs, certs, logs, fixture home (default /var/tmp/ferroftp-bench;
#                  needs ~2 GiB on a disk, not tmpfs: STOR targets are written there)
#   FTP_PORT       control port (default 2121); PASV_MIN/PASV_MAX (default 61000-62999: outside the
#                  kernel's ephemeral range, so the client's own sockets never take a passive port)
#   BIG_MB         big fixture in MiB (default 512; --smoke: 64)
#   FTPBENCH_ARGS  args of ftpbench.py run for every server and round (replace the defaults below)
#   OVERWRITE      modes in which a STOR replacing an existing file is measured (default: plain)
#   NOFSYNC=0      no ferroftp-nofsync server
#   FERROFTP_BEFORE_BIN   a second ferroftp binary, run as the server "ferroftp-before";
#                  FERROFTP_BEFORE_LABEL says what it is in run-info.txt (e.g. "git dcdc4b7")
#   NO_BUILD=1     use the existing target/release/ferroftp
#   FERROFTP_BIN   ferroftp binary (default <repo>/target/release/ferroftp, or $CARGO_TARGET_DIR)
#   ARGON2_M / ARGON2_T   argon2id cost of ferroftp's benchmark user (default 128 KiB / 1 iteration)
#   UNFTP_PBKDF2_ITER     PBKDF2 iterations of unFTP's user (default: the count that costs what
#                  ferroftp's argon2id costs on this machine, from ftp-loadgen hashcost; 0: plaintext)
#   CONC_CLIENT    rust (default: bench/loadgen) or python (asyncio) for the idle-session test
#   SKIP_LIMITS=1  skip the machine limits
#   EXTRAS=1       also run extras.py (100k listing, 1000 at once) once per server after the rounds
#                  (not part of the ratios' rounds; adds several minutes); EXTRAS_ARGS its arguments
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1;;
    -h|--help) sed -n '2,44p' "$0"; exit 0;;
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
OVERWRITE="${OVERWRITE:-plain}"
ulimit -n "$(ulimit -Hn)"
NOFILE="$(ulimit -n)"

if [ "$SMOKE" = 1 ]; then
  ROUNDS="${ROUNDS:-2}"
  export BIG_MB="${BIG_MB:-64}"
  FTPBENCH_ARGS="${FTPBENCH_ARGS:---list-reps 2 --small-n 200 --small-secs 2 --ttfb-n 20 --conc 100,1000}"
  OUT="${OUT:-$HERE/out/$(date +%Y-%m-%d_%H%M%S)-smoke}"
else
  ROUNDS="${ROUNDS:-5}"
  export BIG_MB="${BIG_MB:-512}"
  FTPBENCH_ARGS="${FTPBENCH_ARGS:---list-reps 3 --small-n 1000 --small-secs 3 --ttfb-n 30 --conc 1000,5000}"
  OUT="${OUT:-$HERE/out/$(date +%Y-%m-%d_%H%M%S)}"
fi
[ "$ROUNDS" -ge 1 ] || die "ROUNDS must be >= 1"
# one repetition of each test per round; the rounds are the repetitions
FTPBENCH_ARGS="--reps 1 --stor-overwrite $OVERWRITE $FTPBENCH_ARGS"
mkdir -p "$OUT/rounds" "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
exec > >(tee -a "$OUT/run.log") 2>&1
echo "== ferroftp benchmark -> $OUT (smoke=$SMOKE, $ROUNDS rounds)"

read -r EPH_LO EPH_HI < /proc/sys/net/ipv4/ip_local_port_range
if [ "$PASV_MAX" -ge "$EPH_LO" ] && [ "$PASV_MIN" -le "$EPH_HI" ]; then
  echo "WARNING: passive range $PASV_MIN-$PASV_MAX overlaps the ephemeral range $EPH_LO-$EPH_HI: with thousands"
  echo "         of client sockets some passive ports will be taken (PASV failures in the 1000-at-once test)"
fi
if (exec 3<>"/dev/tcp/$FTP_HOST/$FTP_PORT") 2>/dev/null; then
  die "$FTP_HOST:$FTP_PORT is already in use (another FTP server?); set FTP_PORT"
fi

# ---- 1. build ferroftp and the login client
if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "== cargo build --release"
  (cd "$REPO" && cargo build --release) || die "cargo build --release failed"
fi
FERROFTP_BIN="${FERROFTP_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/ferroftp}"
[ -x "$FERROFTP_BIN" ] || die "no ferroftp binary at $FERROFTP_BIN"
if [ -n "${FERROFTP_BEFORE_BIN:-}" ]; then
  [ -x "$FERROFTP_BEFORE_BIN" ] || die "no ferroftp binary at FERROFTP_BEFORE_BIN=$FERROFTP_BEFORE_BIN"
fi

# the login client of the idle-session test (Rust, one thread): Python's asyncio costs ~1 ms of
# CPU per login here, more than the servers, so it would measure itself. It also times the
# password hashes (hashcost). CONC_CLIENT=python: the asyncio client.
LOADGEN="$HERE/loadgen/target/release/ftp-loadgen"
echo "== building bench/loadgen (login client, hash cost)"
( cd "$HERE/loadgen" && export CARGO_TARGET_DIR="$HERE/loadgen/target" &&
    { cargo build --release --offline -q 2>/dev/null || cargo build --release -q; } ) \
  || die "building bench/loadgen failed"
if [ "${CONC_CLIENT:-rust}" = rust ]; then
  FTPBENCH_ARGS="$FTPBENCH_ARGS --conc-client $LOADGEN"
fi

# ---- 2. which servers: the peers that are installed, then the ferroftp variants
PEERS="${PEERS:-vsftpd pureftpd unftp}"
[ "$PEERS" = none ] && PEERS=""
SERVERS=""
for p in $PEERS; do
  case "$p" in
    vsftpd) b="${VSFTPD_BIN:-$(command -v vsftpd || echo "$PEERS_DIR/vsftpd/usr/sbin/vsftpd")}";;
    pureftpd) b="${PUREFTPD_BIN:-$(command -v pure-ftpd || echo "$PEERS_DIR/pure-ftpd/usr/sbin/pure-ftpd")}";;
    proftpd) b="${PROFTPD_BIN:-$(command -v proftpd || echo /nonexistent)}";;
    unftp) b="${UNFTP_BIN:-$(command -v unftp || echo "${CARGO_HOME:-$HOME/.cargo}/bin/unftp")}";;
    pyftpdlib) "$PYTHON" -c 'import pyftpdlib, OpenSSL' 2>/dev/null && b=/bin/true || b=/nonexistent;;
    *) die "unknown peer $p (known: vsftpd pureftpd proftpd pyftpdlib unftp)";;
  esac
  if [ -x "$b" ]; then SERVERS="$SERVERS $p"; else echo "WARNING: peer $p not installed ($b); skipped (bench/install_peers.sh)"; fi
done
SERVERS="$SERVERS ferroftp"
[ "${NOFSYNC:-1}" != 0 ] && SERVERS="$SERVERS ferroftp-nofsync"
[ -n "${FERROFTP_BEFORE_BIN:-}" ] && SERVERS="$SERVERS ferroftp-before"
SERVERS="${SERVERS# }"

# per-server additions to FTPBENCH_ARGS: ferroftp-nofsync differs from ferroftp only in what
# happens after an upload, so it runs the STOR tests only
server_args() {
  case "$1" in
    ferroftp-nofsync) echo "--tests bulk --bulk-ops stor";;
    *) echo "";;
  esac
}

# seconds per round, from earlier runs on a 2-core box (load 2-5), for the estimate printed below
est_secs() {
  local s
  case "$1" in
    vsftpd) s=60;; pureftpd) s=30;; unftp) s=48;; proftpd) s=150;; pyftpdlib) s=45;;
    ferroftp-nofsync) s=8;; ferroftp*) s=26;; *) s=60;;
  esac
  [ "$SMOKE" = 1 ] && s=$((s / 2))
  echo "$s"
}
est=0
for s in $SERVERS; do est=$((est + $(est_secs "$s"))); done
est_total=$((est * ROUNDS + 90 + (${SKIP_LIMITS:-0} == 1 ? 0 : 30)))
[ "${EXTRAS:-0}" = 1 ] && est_total=$((est_total + 60 * $(echo $SERVERS | wc -w)))
echo "   servers: $SERVERS"
echo "   FTPBENCH_ARGS=$FTPBENCH_ARGS"
echo "   BIG_MB=$BIG_MB port=$FTP_PORT passive=$PASV_MIN-$PASV_MAX state=$BENCH_STATE peers_dir=$PEERS_DIR"
echo "== expected duration: about $((est_total / 60)) min ($ROUNDS rounds of about $((est / 60)) min $((est % 60)) s, plus setup)"

# ---- 3. fixtures, test account, password costs, ferroftp users file and configs
echo "== setup (fixtures in $BENCH_STATE/home)"
"$HERE/peers.sh" setup >/dev/null
CERT="$BENCH_STATE/tls/cert.pem"; KEY="$BENCH_STATE/tls/key.pem"; HOMEDIR="$BENCH_STATE/home"
USERS="$BENCH_STATE/etc/ferroftp-users.toml"
rm -f "$USERS"
printf '%s\n' "$FTP_PASS" | "$FERROFTP_BIN" passwd --users "$USERS" "$FTP_USER" \
  --argon2-memory "$ARGON2_M" --argon2-iterations "$ARGON2_T" >/dev/null 2>&1 || die "ferroftp passwd failed"
# the login test compares logins/s at an equal password cost: unFTP's user gets a PBKDF2-HMAC-SHA256
# hash whose iteration count costs what ferroftp's argon2id costs (both timed here, with the crates
# the two servers use); the C peers check an MD5-crypt hash through crypt(3)
if [ -z "${UNFTP_PBKDF2_ITER:-}" ]; then
  # the median of 5 calibrations: one can be off by a third when the machine's load changes
  UNFTP_PBKDF2_ITER="$(for _ in 1 2 3 4 5; do "$LOADGEN" hashcost --argon2-m "$ARGON2_M" --argon2-t "$ARGON2_T" || echo '{}'; done |
    "$PYTHON" -c 'import json,statistics,sys; v=[json.loads(l).get("pbkdf2_iter_equal") for l in sys.stdin]; v=[x for x in v if x]; print(round(statistics.median(v)) if v else 0)')"
fi
[ "$UNFTP_PBKDF2_ITER" = 0 ] && UNFTP_PBKDF2_ITER=""
export UNFTP_PBKDF2_ITER
# both costs as paid in this run, timed in turn, for run-info.txt
HASHCOST="$("$LOADGEN" hashcost --argon2-m "$ARGON2_M" --argon2-t "$ARGON2_T" ${UNFTP_PBKDF2_ITER:+--pbkdf2-iter "$UNFTP_PBKDF2_ITER"} || echo '{}')"
md5_ms="$("$PYTHON" - <<'EOF' 2>/dev/null || echo n/a
import time, warnings
warnings.simplefilter("ignore")
import crypt
s = crypt.mksalt(crypt.METHOD_MD5); crypt.crypt("x", s); t = time.perf_counter()
for _ in range(200): crypt.crypt("ftpbench-pw", s)
print(f"{(time.perf_counter() - t) / 200 * 1000:.3f}")
EOF
)"

write_conf() { # $1 = file, $2 = extra TOML appended
  cat > "$1" <<EOF
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
$2
EOF
}
CONF="$BENCH_STATE/etc/ferroftp.toml"; CONF_NOFSYNC="$BENCH_STATE/etc/ferroftp-nofsync.toml"
write_conf "$CONF" ""
write_conf "$CONF_NOFSYNC" $'[uploads]\nfsync = "never"'
"$FERROFTP_BIN" check-config "$CONF" >"$OUT/logs/check-config.log" 2>&1 || { cat "$OUT/logs/check-config.log"; die "ferroftp check-config $CONF failed"; }
"$FERROFTP_BIN" check-config "$CONF_NOFSYNC" >"$OUT/logs/check-config.log" 2>&1 || { cat "$OUT/logs/check-config.log"; die "ferroftp check-config $CONF_NOFSYNC failed"; }
if [ -n "${FERROFTP_BEFORE_BIN:-}" ]; then
  "$FERROFTP_BEFORE_BIN" check-config "$CONF" >"$OUT/logs/check-config.log" 2>&1 \
    || { cat "$OUT/logs/check-config.log"; die "ferroftp-before check-config $CONF failed"; }
fi
cp "$CONF" "$OUT/ferroftp.toml"; cp "$CONF_NOFSYNC" "$OUT/ferroftp-nofsync.toml"

# ---- 4. what the run is: machine, versions, load, login cost
git_of() { # the commit of the repository a binary was built in, when it is ours
  local d; d="$(cd "$(dirname "$1")/../.." 2>/dev/null && pwd)"
  if git -C "$d" rev-parse --short HEAD >/dev/null 2>&1; then
    echo "git $(git -C "$d" rev-parse --short HEAD)$(git -C "$d" diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo ' +uncommitted changes in crates/')"
  else echo "git unknown"; fi
}
{
  echo "command: ${0} $*"
  echo "smoke: $SMOKE"
  echo "rounds: $ROUNDS"
  echo "servers: $SERVERS"
  echo "FTPBENCH_ARGS: $FTPBENCH_ARGS"
  echo "BIG_MB: $BIG_MB"
  echo "ferroftp: $("$FERROFTP_BIN" --version) ($FERROFTP_BIN, $(git_of "$FERROFTP_BIN"))"
  [ -n "${FERROFTP_BEFORE_BIN:-}" ] && echo "ferroftp-before: $("$FERROFTP_BEFORE_BIN" --version) ($FERROFTP_BEFORE_BIN, ${FERROFTP_BEFORE_LABEL:-$(git_of "$FERROFTP_BEFORE_BIN")})"
  echo "ferroftp configs: ferroftp and ferroftp-before: defaults (uploads.fsync = \"replacements\"); ferroftp-nofsync: uploads.fsync = \"never\""
  echo "rustc: $(rustc --version 2>/dev/null || echo n/a)"
  echo "ferroftp login cost: argon2id m=${ARGON2_M} KiB t=${ARGON2_T} p=1 (users file made by ferroftp passwd)"
  if [ -n "$UNFTP_PBKDF2_ITER" ]; then
    echo "unftp login cost: PBKDF2-HMAC-SHA256, $UNFTP_PBKDF2_ITER iterations (json authenticator)"
  else echo "unftp login cost: plaintext password (json authenticator)"; fi
  echo "hash cost here (ftp-loadgen hashcost, one core, median): $HASHCOST"
  echo "C peers login cost: MD5-crypt (chpasswd -c ${PASS_HASH:-MD5}) ${md5_ms} ms per hash here (python crypt); pyftpdlib compares plaintext"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "RLIMIT_NOFILE: $NOFILE; pid_max: $(cat /proc/sys/kernel/pid_max); ephemeral ports: $EPH_LO-$EPH_HI"
} > "$OUT/run-info.txt"

# versions and machine (as run_all.sh writes them)
{
  echo "date: $(date -Is)"; echo "kernel: $(uname -r)"; echo "cpus: $(nproc)"
  grep -m1 'model name' /proc/cpuinfo
  echo "mem: $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "curl: $(curl --version | head -1)"
  echo "openssl: $(openssl version)"
  echo "python: $($PYTHON --version 2>&1)"
  echo "pyftpdlib: $($PYTHON -c 'import pyftpdlib;print(pyftpdlib.__ver__)' 2>&1)"
  echo "vsftpd: $("${VSFTPD_BIN:-$PEERS_DIR/vsftpd/usr/sbin/vsftpd}" -v 0>&1 2>&1 | head -1)"
  echo "pure-ftpd: $("${PUREFTPD_BIN:-$PEERS_DIR/pure-ftpd/usr/sbin/pure-ftpd}" --help 2>&1 | head -1)"
  echo "proftpd: $(proftpd -v 2>&1 | head -1)"
  echo "unftp: $("${UNFTP_BIN:-$(command -v unftp || echo "${CARGO_HOME:-$HOME/.cargo}/bin/unftp")}" --version 2>&1 | head -1)"
  echo "iperf3: $(iperf3 --version | head -1)"
} > "$OUT/versions.txt" 2>&1

t0=$(date +%s)
if [ "${SKIP_LIMITS:-0}" != 1 ]; then
  echo "== machine limits"
  "$PYTHON" "$HERE/ftpbench.py" limits --file "$HOMEDIR/big.bin" --out "$OUT/limits.json" >/dev/null
fi

# ---- 5. the rounds
start_server() { # $1 = server name; sets PEER (the peers.sh name)
  case "$1" in
    ferroftp) PEER=custom; CUSTOM_CMD="$(printf '%q' "$FERROFTP_BIN") serve --config $(printf '%q' "$CONF")";;
    ferroftp-nofsync) PEER=custom; CUSTOM_CMD="$(printf '%q' "$FERROFTP_BIN") serve --config $(printf '%q' "$CONF_NOFSYNC")";;
    ferroftp-before) PEER=custom; CUSTOM_CMD="$(printf '%q' "$FERROFTP_BEFORE_BIN") serve --config $(printf '%q' "$CONF")";;
    *) PEER="$1"; CUSTOM_CMD="";;
  esac
  CUSTOM_NAME="$1" CUSTOM_CMD="$CUSTOM_CMD" "$HERE/peers.sh" start "$PEER" >/dev/null
}
printf 'round\tserver\tstart\tseconds\texit\tloadavg1_start\tloadavg1_end\n' > "$OUT/rounds/timing.tsv"
for r in $(seq 1 "$ROUNDS"); do
  tr0=$(date +%s)
  echo "== round $r/$ROUNDS ($(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1 /proc/loadavg))"
  for s in $SERVERS; do
    ts=$(date +%s); l0="$(cut -d' ' -f1 /proc/loadavg)"
    rc=0
    if ! start_server "$s"; then
      echo "{\"name\": \"$s\", \"error\": \"failed to start\"}" > "$OUT/rounds/$s.r$r.json"; rc=failed-to-start
    else
      sleep 1
      # shellcheck disable=SC2046,SC2086
      "$PYTHON" "$HERE/ftpbench.py" run --name "$s" --host "$FTP_HOST" --port "$FTP_PORT" \
         --user "$FTP_USER" --password "$FTP_PASS" --tls --server-pid "$("$HERE/peers.sh" pid "$PEER")" \
         --local-big "$HOMEDIR/big.bin" --out "$OUT/rounds/$s.r$r.json" $FTPBENCH_ARGS $(server_args "$s") \
         >/dev/null 2>"$OUT/logs/$s.r$r.log" || rc=$?
      "$HERE/peers.sh" stop "$PEER" >/dev/null
    fi
    # the uploads' dirty pages go to disk now, not while the next server is measured
    sync
    te=$(date +%s)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$s" "$ts" "$((te - ts))" "$rc" "$l0" "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/rounds/timing.tsv"
    echo "   $s: $((te - ts)) s, exit $rc (log: logs/$s.r$r.log)"
    sleep 1
  done
  if [ "$r" = 1 ] && [ "$ROUNDS" -gt 1 ]; then
    d=$(( $(date +%s) - tr0 ))
    echo "== round 1 took $((d / 60)) min $((d % 60)) s: about $(( (d * (ROUNDS - 1)) / 60 + 1 )) min to go"
  fi
done

# ---- 6. extras (optional, once per server, not interleaved)
if [ "${EXTRAS:-0}" = 1 ] && [ -f "$HERE/extras.py" ]; then
  xf=()
  for s in $SERVERS; do
    [ "$s" = ferroftp-nofsync ] && continue
    echo "== extras: $s"
    start_server "$s" || continue
    sleep 1
    # shellcheck disable=SC2086
    "$PYTHON" "$HERE/extras.py" run --name "$s" --host "$FTP_HOST" --port "$FTP_PORT" \
       --user "$FTP_USER" --password "$FTP_PASS" --tls --server-pid "$("$HERE/peers.sh" pid "$PEER")" \
       --out "$OUT/$s.extras.json" ${EXTRAS_ARGS:---list-reps 3 --xfer-n 1000} >/dev/null 2>"$OUT/logs/$s.extras.log" \
       || echo "   extras exit $?"
    "$HERE/peers.sh" stop "$PEER" >/dev/null
    xf+=("$OUT/$s.extras.json")
  done
  [ ${#xf[@]} -gt 0 ] && "$PYTHON" "$HERE/extras.py" table "${xf[@]}" > "$OUT/extras.md" || true
fi
t1=$(date +%s)
{
  echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "duration: $(( (t1 - t0) / 60 )) min $(( (t1 - t0) % 60 )) s"
} >> "$OUT/run-info.txt"
cat "$OUT/versions.txt" >> "$OUT/run-info.txt" 2>/dev/null || true

# ---- 7. medians, spreads and ratios
"$PYTHON" "$HERE/ratios.py" "$OUT" --ferro ferroftp --table "$OUT/table.md" --summary "$OUT/summary.json" \
  > "$OUT/ratios.md" || echo "WARNING: ratios.py failed"
echo "== done in $(( (t1 - t0) / 60 )) min $(( (t1 - t0) % 60 )) s: $OUT/ratios.md, $OUT/table.md, $OUT/run-info.txt"
echo "   docs: python3 bench/mkdoc.py RUN1 RUN2 [...] > docs/BENCHMARKS.md"
