#!/usr/bin/env bash
# Start/stop peer FTP servers on loopback with generated configs.
#
#   peers.sh setup                 create state dir, self-signed cert, test user, home + fixtures
#   peers.sh start <peer>          start one peer (vsftpd|pureftpd|proftpd|pyftpdlib|unftp)
#   peers.sh stop  <peer>|all      stop peer(s) we started (by the PID we recorded, never by name)
#   peers.sh pid   <peer>          print main PID of a running peer
#   peers.sh teardown              stop all, remove test user + PAM file (state dir is kept)
#   peers.sh list                  list supported peers
#
# Peer "custom" runs any server (e.g. ferroftp): set CUSTOM_CMD to a shell command line; it is
# run with `exec` (so its PID is the server's) with these variables exported:
#   FTP_HOST FTP_PORT PASV_MIN PASV_MAX FTP_USER FTP_PASS HOMEDIR CERT KEY BENCH_STATE
#
# Environment (all optional):
#   BENCH_STATE   state dir (configs, certs, pids, logs, home). Default: $TMPDIR/ftpbench.<uid>
#   FTP_HOST      bind address (default 127.0.0.1; only loopback is accepted)
#   FTP_PORT      control port (default 2121)
#   PASV_MIN/PASV_MAX passive range (default 40000/40999)
#   FTP_USER / FTP_PASS   test account (default ftpbench / ftpbench-pw)
#   PEERS_DIR     where install_peers.sh unpacked vsftpd/pure-ftpd (default <this dir>/.peers)
#   VSFTPD_BIN PUREFTPD_BIN PROFTPD_BIN UNFTP_BIN PYTHON   override binaries
#   BIG_MB        size of the big fixture file in MiB (default 1024)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_STATE="${BENCH_STATE:-${TMPDIR:-/tmp}/ftpbench.$(id -u)}"
FTP_HOST="${FTP_HOST:-127.0.0.1}"
FTP_PORT="${FTP_PORT:-2121}"
PASV_MIN="${PASV_MIN:-40000}"
PASV_MAX="${PASV_MAX:-40999}"
FTP_USER="${FTP_USER:-ftpbench}"
FTP_PASS="${FTP_PASS:-ftpbench-pw}"
PEERS_DIR="${PEERS_DIR:-$HERE/.peers}"
PYTHON="${PYTHON:-python3}"
BIG_MB="${BIG_MB:-1024}"
VSFTPD_BIN="${VSFTPD_BIN:-$(command -v vsftpd || echo "$PEERS_DIR/vsftpd/usr/sbin/vsftpd")}"
PUREFTPD_BIN="${PUREFTPD_BIN:-$(command -v pure-ftpd || echo "$PEERS_DIR/pure-ftpd/usr/sbin/pure-ftpd")}"
PROFTPD_BIN="${PROFTPD_BIN:-$(command -v proftpd || echo proftpd)}"
UNFTP_BIN="${UNFTP_BIN:-$(command -v unftp || echo "${CARGO_HOME:-$HOME/.cargo}/bin/unftp")}"
PROFTPD_MODDIR="${PROFTPD_MODDIR:-/usr/lib/proftpd}"
PEERS="vsftpd pureftpd proftpd pyftpdlib unftp custom"

case "$FTP_HOST" in 127.*|::1|localhost) ;; *) echo "refusing non-loopback FTP_HOST=$FTP_HOST" >&2; exit 2;; esac

CERT="$BENCH_STATE/tls/cert.pem"; KEY="$BENCH_STATE/tls/key.pem"; COMBINED="$BENCH_STATE/tls/combined.pem"
HOMEDIR="$BENCH_STATE/home"
die() { echo "peers.sh: $*" >&2; exit 1; }

setup() {
  mkdir -p "$BENCH_STATE"/{tls,run,log,etc} "$HOMEDIR"
  chmod 755 "$BENCH_STATE" "$BENCH_STATE/run"
  if [ ! -f "$CERT" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
      -keyout "$KEY" -out "$CERT" >/dev/null 2>&1
    cat "$CERT" "$KEY" > "$COMBINED"
  fi
  chmod 600 "$KEY" "$COMBINED"
  # test account: a real unix user (vsftpd/pure-ftpd/proftpd authenticate via the system)
  if ! id "$FTP_USER" >/dev/null 2>&1; then
    useradd -M -d "$HOMEDIR" -s /bin/bash "$FTP_USER"
  else
    # [ferroftp bench] Pure-FTPd serves the account's unix home: two harnesses with different
    # BENCH_STATE and the same FTP_USER would move each other's Pure-FTPd to the other's fixtures
    local old; old="$(getent passwd "$FTP_USER" | cut -d: -f6)"
    if [ "$old" != "$HOMEDIR" ] && [ -d "$old" ]; then
      echo "peers.sh: WARNING: $FTP_USER's home moves from $old to $HOMEDIR; a harness using $old" \
           "(another BENCH_STATE) must not run at the same time: give each its own FTP_USER" >&2
    fi
    usermod -d "$HOMEDIR" "$FTP_USER"
  fi
  # PASS_HASH: crypt method for the unix account (chpasswd -c). Default MD5 so that the
  # login benchmark measures the server, not the KDF (yescrypt ~25-50 ms/login here).
  echo "$FTP_USER:$FTP_PASS" | chpasswd -c "${PASS_HASH:-MD5}"
  # minimal PAM service for vsftpd (Debian's /etc/pam.d/vsftpd is not installed: we dpkg -x'd it)
  if [ ! -f /etc/pam.d/ftpbench ]; then
    printf 'auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_permit.so\n' > /etc/pam.d/ftpbench
  fi
  # fixtures (created once; shared by all peers so the 1 GiB file stays in page cache)
  mkdir -p "$HOMEDIR/dir10k" "$HOMEDIR/up"
  if [ ! -f "$HOMEDIR/big.bin" ] || [ "$(stat -c %s "$HOMEDIR/big.bin")" != $((BIG_MB*1024*1024)) ]; then
    head -c $((BIG_MB*1024*1024)) /dev/urandom > "$HOMEDIR/big.bin"
  fi
  printf 'x' > "$HOMEDIR/one.bin"
  # [ferroftp bench] fixtures of extras.py: a 4 MiB file for the N-at-once download test and a
  # directory of 100,000 entries for the big-listing test
  if [ ! -f "$HOMEDIR/x4m.bin" ] || [ "$(stat -c %s "$HOMEDIR/x4m.bin")" != 4194304 ]; then
    head -c 4194304 /dev/urandom > "$HOMEDIR/x4m.bin"
  fi
  mkdir -p "$HOMEDIR/dir100k"
  if [ "$(ls -f "$HOMEDIR/dir100k" | wc -l)" != 100002 ]; then
    ( cd "$HOMEDIR/dir100k" && seq -f 'entry_%06g.dat' 0 99999 | xargs touch )
  fi
  if [ "$(ls "$HOMEDIR/dir10k" | wc -l)" != 10000 ]; then
    ( cd "$HOMEDIR/dir10k" && seq -f 'entry_%05g.dat' 0 9999 | xargs touch )
  fi
  chown "$FTP_USER" "$HOMEDIR" "$HOMEDIR/up"
  chmod 755 "$HOMEDIR"
  cat "$HOMEDIR/big.bin" > /dev/null   # warm page cache
  echo "$BENCH_STATE"
}

write_vsftpd() {
  mkdir -p "$BENCH_STATE/run/vsftpd-empty"; chmod 755 "$BENCH_STATE/run/vsftpd-empty"
  cat > "$BENCH_STATE/etc/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=$FTP_HOST
listen_port=$FTP_PORT
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
local_root=$HOMEDIR
pam_service_name=ftpbench
check_shell=NO
secure_chroot_dir=$BENCH_STATE/run/vsftpd-empty
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
pasv_enable=YES
pasv_min_port=$PASV_MIN
pasv_max_port=$PASV_MAX
pasv_address=$FTP_HOST
max_clients=20000
max_per_ip=0
xferlog_enable=NO
dual_log_enable=NO
vsftpd_log_file=$BENCH_STATE/log/vsftpd.log
use_localtime=NO
use_sendfile=YES
ssl_enable=YES
allow_anon_ssl=NO
force_local_logins_ssl=NO
force_local_data_ssl=NO
ssl_tlsv1=YES
ssl_sslv2=NO
ssl_sslv3=NO
ssl_ciphers=HIGH
require_ssl_reuse=YES
rsa_cert_file=$CERT
rsa_private_key_file=$KEY
EOF
}

write_proftpd() {
  cat > "$BENCH_STATE/etc/proftpd.conf" <<EOF
ServerName "proftpd-bench"
ServerType standalone
DefaultServer on
DefaultAddress $FTP_HOST
SocketBindTight on
Port $FTP_PORT
PassivePorts $PASV_MIN $PASV_MAX
User nobody
Group nogroup
Umask 022
MaxInstances 20000
UseIPv6 off
UseReverseDNS off
WtmpLog off
RequireValidShell off
AuthPAM off
AuthOrder mod_auth_unix.c
DefaultRoot $HOMEDIR
PidFile $BENCH_STATE/run/proftpd.pid
ScoreboardFile $BENCH_STATE/run/proftpd.scoreboard
SystemLog $BENCH_STATE/log/proftpd.log
TransferLog NONE
AllowOverwrite on
UseSendfile on
<IfModule mod_delay.c>
  DelayEngine off
</IfModule>
<IfModule mod_dso.c>
  ModulePath $PROFTPD_MODDIR
  LoadModule mod_tls.c
</IfModule>
<IfModule mod_tls.c>
  TLSEngine on
  TLSLog $BENCH_STATE/log/proftpd-tls.log
  TLSProtocol TLSv1.2 TLSv1.3
  TLSRequired off
  TLSRSACertificateFile $CERT
  TLSRSACertificateKeyFile $KEY
  TLSVerifyClient off
  TLSRenegotiate none
</IfModule>
<Directory />
  AllowOverwrite on
</Directory>
EOF
}

write_pyftpdlib() {
  cat > "$BENCH_STATE/etc/pyftpdlib_server.py" <<'EOF'
import os, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
from pyftpdlib.servers import FTPServer
host, port, pmin, pmax, user, pw, home, cert, key = sys.argv[1:10]
auth = DummyAuthorizer()
auth.add_user(user, pw, home, perm="elradfmwMT")
class H(TLS_FTPHandler):
    pass
H.authorizer = auth
H.certfile = cert
H.keyfile = key
H.tls_control_required = False
H.tls_data_required = False
H.passive_ports = range(int(pmin), int(pmax) + 1)
H.banner = "pyftpdlib bench"
srv = FTPServer((host, int(port)), H)
srv.max_cons = 0
srv.max_cons_per_ip = 0
srv.serve_forever()
EOF
}

write_unftp() {
  # [ferroftp bench] UNFTP_PBKDF2_ITER=N: the account's password as PBKDF2-HMAC-SHA256 with N
  # iterations (what unFTP's json authenticator supports besides plaintext), so that its logins can
  # pay the same hash cost as the other servers' (bench/run.sh picks N with ftp-loadgen hashcost)
  if [ -n "${UNFTP_PBKDF2_ITER:-}" ]; then
    "$PYTHON" - "$FTP_USER" "$FTP_PASS" "$UNFTP_PBKDF2_ITER" > "$BENCH_STATE/etc/unftp_users.json" <<'PY'
import base64, hashlib, json, os, sys
user, pw, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
salt = os.urandom(16)
key = hashlib.pbkdf2_hmac("sha256", pw.encode(), salt, n, 32)
print(json.dumps([{"username": user, "pbkdf2_salt": base64.b64encode(salt).decode(),
                   "pbkdf2_key": base64.b64encode(key).decode(), "pbkdf2_iter": n}]))
PY
  else
    cat > "$BENCH_STATE/etc/unftp_users.json" <<EOF
[ {"username": "$FTP_USER", "password": "$FTP_PASS"} ]
EOF
  fi
}

pidfile() { echo "$BENCH_STATE/run/$1.pid"; }

start() {
  local peer="$1"; [ -d "$BENCH_STATE/tls" ] || die "run setup first"
  local pf; pf="$(pidfile "$peer")"
  if [ -f "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null; then die "$peer already running (pid $(cat "$pf"))"; fi
  if (exec 3<>"/dev/tcp/$FTP_HOST/$FTP_PORT") 2>/dev/null; then
    die "$FTP_HOST:$FTP_PORT is already in use; refusing to start $peer"
  fi
  ulimit -n "$(ulimit -Hn)" || true
  # clean leftovers of earlier runs (some peers run as root and could leave root-owned files)
  rm -rf "${HOMEDIR:?}/up"; mkdir -p "$HOMEDIR/up"; chown "$FTP_USER" "$HOMEDIR/up"
  local log="$BENCH_STATE/log/$peer.out"
  # [ferroftp bench] several custom servers (ferroftp, ferroftp-before, ...) each get their own log
  [ "$peer" = custom ] && log="$BENCH_STATE/log/${CUSTOM_NAME:-custom}.out"
  case "$peer" in
    vsftpd)
      [ -x "$VSFTPD_BIN" ] || die "vsftpd not found ($VSFTPD_BIN)"
      write_vsftpd
      "$VSFTPD_BIN" "$BENCH_STATE/etc/vsftpd.conf" >"$log" 2>&1 0>&1 & echo $! > "$pf" ;;
    pureftpd)
      [ -x "$PUREFTPD_BIN" ] || die "pure-ftpd not found ($PUREFTPD_BIN)"
      # -l unix: system users; -E: no anonymous; -H: no DNS; -c/-C: max clients / per IP;
      # -Y 1: TLS optional (explicit AUTH TLS); -2: cert+key file; -p passive range; -P passive IP
      # [ferroftp bench] -L 200000:5: pure-ftpd cuts listings at 10,000 entries by default (-L
      # max files:max depth), which would make its 100k-listing figures a 10k listing
      "$PUREFTPD_BIN" -S "$FTP_HOST,$FTP_PORT" -l unix -E -H -A -c ${PUREFTPD_MAXCLIENTS:-10000} -C ${PUREFTPD_MAXCLIENTS:-10000} -u 1 \
        -L ${PUREFTPD_LIMITRECURSION:-200000:5} \
        -p "$PASV_MIN:$PASV_MAX" -P "$FTP_HOST" -Y 1 -2 "$COMBINED" \
        >"$log" 2>&1 & echo $! > "$pf" ;;
    proftpd)
      command -v "$PROFTPD_BIN" >/dev/null || die "proftpd not found"
      write_proftpd
      "$PROFTPD_BIN" -n -q -c "$BENCH_STATE/etc/proftpd.conf" >"$log" 2>&1 & echo $! > "$pf" ;;
    pyftpdlib)
      write_pyftpdlib
      "$PYTHON" "$BENCH_STATE/etc/pyftpdlib_server.py" "$FTP_HOST" "$FTP_PORT" \
        "$PASV_MIN" "$PASV_MAX" "$FTP_USER" "$FTP_PASS" "$HOMEDIR" "$CERT" "$KEY" >"$log" 2>&1 &
      echo $! > "$pf" ;;
    unftp)
      [ -x "$UNFTP_BIN" ] || die "unftp not found ($UNFTP_BIN)"
      write_unftp
      "$UNFTP_BIN" --bind-address="$FTP_HOST:$FTP_PORT" \
        --passive-ports="$PASV_MIN-$PASV_MAX" --root-dir="$HOMEDIR" \
        --auth-type=json --auth-json-path="$BENCH_STATE/etc/unftp_users.json" \
        --ftps-certs-file="$CERT" --ftps-key-file="$KEY" \
        --bind-address-http="$FTP_HOST:${UNFTP_HTTP_PORT:-8081}" --log-level=warn ${UNFTP_EXTRA:-} >"$log" 2>&1 &
      echo $! > "$pf" ;;
    custom)
      [ -n "${CUSTOM_CMD:-}" ] || die "set CUSTOM_CMD"
      export FTP_HOST FTP_PORT PASV_MIN PASV_MAX FTP_USER FTP_PASS HOMEDIR CERT KEY BENCH_STATE
      bash -c "exec $CUSTOM_CMD" >"$log" 2>&1 & echo $! > "$pf" ;;
    *) die "unknown peer $peer (known: $PEERS custom)";;
  esac
  # wait for the control port
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/$FTP_HOST/$FTP_PORT") 2>/dev/null; then
      echo "$peer started pid $(cat "$pf") on $FTP_HOST:$FTP_PORT"; return 0
    fi
    kill -0 "$(cat "$pf")" 2>/dev/null || { cat "$log" >&2; rm -f "$pf"; die "$peer exited"; }
    sleep 0.1
  done
  cat "$log" >&2; die "$peer did not open $FTP_PORT"
}

# kill pid and its descendants (process-per-session servers fork children)
kill_tree() {
  local p="$1" c
  for c in $(pgrep -P "$p" || true); do kill_tree "$c"; done
  kill "$p" 2>/dev/null || true
}

stop() {
  local peer="$1" pf
  if [ "$peer" = all ]; then for p in $PEERS; do stop "$p"; done; return; fi
  pf="$(pidfile "$peer")"; [ -f "$pf" ] || return 0
  local p; p="$(cat "$pf")"
  if kill -0 "$p" 2>/dev/null; then
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill_tree "$p"
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null || true
  fi
  # wait for the port to be free (children may still be exiting)
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/$FTP_HOST/$FTP_PORT") 2>/dev/null || break; sleep 0.1
  done
  rm -f "$pf"; echo "$peer stopped"
}

teardown() {
  stop all
  id "$FTP_USER" >/dev/null 2>&1 && userdel "$FTP_USER" || true
  rm -f /etc/pam.d/ftpbench
}

cmd="${1:-}"; shift || true
case "$cmd" in
  setup) setup;;
  start) start "${1:?peer}";;
  stop) stop "${1:?peer|all}";;
  pid) cat "$(pidfile "${1:?peer}")";;
  teardown) teardown;;
  list) echo "$PEERS";;
  env) echo "BENCH_STATE=$BENCH_STATE FTP_HOST=$FTP_HOST FTP_PORT=$FTP_PORT FTP_USER=$FTP_USER FTP_PASS=$FTP_PASS HOMEDIR=$HOMEDIR";;
  *) sed -n '2,22p' "$0"; exit 2;;
esac
