#!/usr/bin/env bash
# Run the whole benchmark: machine limits + every listed server, sequentially, one at a time.
#
# Usage: run_all.sh OUTDIR [peer ...]
#   peers default to: vsftpd pureftpd proftpd pyftpdlib unftp
#   "custom" benchmarks CUSTOM_CMD (see peers.sh), named CUSTOM_NAME (default "custom").
# Env: BENCH_STATE (default: fresh mktemp -d), FTPBENCH_ARGS (extra args for `ftpbench.py run`,
#      e.g. "--reps 1 --conc 100,1000"), SKIP_LIMITS=1, PYTHON, plus everything peers.sh reads.
#      [ferroftp bench] EXTRAS_ARGS: extra args for `extras.py run` (list100k + xfer), run after
#      ftpbench.py while the server is still up; EXTRAS=0 skips them.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:?usage: run_all.sh OUTDIR [peer ...]}"; shift
PEER_LIST="${*:-vsftpd pureftpd proftpd pyftpdlib unftp}"
PYTHON="${PYTHON:-python3}"
PEERS_DIR="${PEERS_DIR:-$HERE/.peers}"
export BENCH_STATE="${BENCH_STATE:-$(mktemp -d "${TMPDIR:-/tmp}/ftpbench.XXXXXX")}"
export FTP_HOST="${FTP_HOST:-127.0.0.1}" FTP_PORT="${FTP_PORT:-2121}"
export FTP_USER="${FTP_USER:-ftpbench}" FTP_PASS="${FTP_PASS:-ftpbench-pw}"
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"

"$HERE/peers.sh" setup >/dev/null || exit 1
BIG="$BENCH_STATE/home/big.bin"

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

if [ "${SKIP_LIMITS:-0}" != 1 ]; then
  echo "== machine limits"
  "$PYTHON" "$HERE/ftpbench.py" limits --file "$BIG" --out "$OUT/limits.json" >/dev/null
fi

for p in $PEER_LIST; do
  name="$p"; [ "$p" = custom ] && name="${CUSTOM_NAME:-custom}"
  echo "== $name"
  if ! "$HERE/peers.sh" start "$p"; then
    echo "{\"name\": \"$name\", \"error\": \"failed to start\"}" > "$OUT/$name.json"; continue
  fi
  sleep 1
  # shellcheck disable=SC2086
  "$PYTHON" "$HERE/ftpbench.py" run --name "$name" --host "$FTP_HOST" --port "$FTP_PORT" \
     --user "$FTP_USER" --password "$FTP_PASS" --tls --server-pid "$("$HERE/peers.sh" pid "$p")" \
     --local-big "$BIG" --out "$OUT/$name.json" ${FTPBENCH_ARGS:-} >/dev/null 2>"$OUT/$name.log"
  echo "   exit $? (log: $OUT/$name.log)"
  if [ "${EXTRAS:-1}" != 0 ] && [ -f "$HERE/extras.py" ]; then
    # shellcheck disable=SC2086
    "$PYTHON" "$HERE/extras.py" run --name "$name" --host "$FTP_HOST" --port "$FTP_PORT" \
       --user "$FTP_USER" --password "$FTP_PASS" --tls --server-pid "$("$HERE/peers.sh" pid "$p")" \
       --out "$OUT/$name.extras.json" ${EXTRAS_ARGS:-} >/dev/null 2>"$OUT/$name.extras.log"
    echo "   extras exit $? (log: $OUT/$name.extras.log)"
  fi
  "$HERE/peers.sh" stop "$p"
  sleep 2
done

files=()
[ -f "$OUT/limits.json" ] && files+=("$OUT/limits.json")
for p in $PEER_LIST; do name="$p"; [ "$p" = custom ] && name="${CUSTOM_NAME:-custom}"; files+=("$OUT/$name.json"); done
"$PYTHON" "$HERE/ftpbench.py" table "${files[@]}" > "$OUT/table.md"
if [ "${EXTRAS:-1}" != 0 ] && [ -f "$HERE/extras.py" ]; then
  xf=()
  for p in $PEER_LIST; do name="$p"; [ "$p" = custom ] && name="${CUSTOM_NAME:-custom}"
    [ -f "$OUT/$name.extras.json" ] && xf+=("$OUT/$name.extras.json"); done
  [ ${#xf[@]} -gt 0 ] && { echo; "$PYTHON" "$HERE/extras.py" table "${xf[@]}"; } >> "$OUT/table.md"
fi
echo "== done: $OUT/table.md"
