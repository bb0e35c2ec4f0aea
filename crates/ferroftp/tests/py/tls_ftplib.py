"""FTPS with Python's ftplib (OpenSSL underneath), for tls_clients.rs.

Run as `python3 tls_ftplib.py SCENARIO HOST PORT USER PASS ROOT CAFILE`; exits non-zero with a
message on the first failed check and prints OK at the end. The server's certificate is verified
against CAFILE (host name included: HOST must be in the certificate). Scenarios:

  transfers    explicit FTPS (AUTH TLS, PROT P): STOR/RETR/NLST/MLSD, passive and active, with
               TLS 1.2 and TLS 1.3 forced in turn. Expects ROOT/src.bin. Leaves
               {pasv,port}-{tls12,tls13}.bin (== src.bin).
  many         50 uploads then 50 downloads of 4 KiB files in one session with TLS 1.3, then 20
               and 20 with TLS 1.2; every data connection must resume the control session. Leaves
               many13/f00.bin .. f49.bin and many12/f00.bin .. f19.bin (see `small`).
  implicit     implicit FTPS (TLS from the first byte; PORT is the implicit listener): transfers
               without any PBSZ/PROT (protected by default), passive and active. Expects
               ROOT/src.bin. Leaves imp-pasv.bin, imp-port.bin (== src.bin).
  interrupted  TLS uploads cut off without close_notify (TCP FIN, then TCP RST) over an existing
               ROOT/keep.bin: each gets 426, keep.bin is untouched and the session goes on.
  stranger     a stranger (another TLS client on the same IP) wins the race for the passive port
               of a session's transfer, is refused, and then tries to resume whatever TLS session
               that refused connection gave it on the session's next transfers (a STOR over
               ROOT/target.txt, a RETR of ROOT/secret.txt). It must be refused again: the binding
               of data connections to their control session has to hold for every attempt. Each
               case is tried with TLS 1.3 and 1.2, the first race on a RETR and on a STOR.
  abort        ABOR during a long TLS download (ROOT/huge.bin, 64 MiB, made here) with TLS 1.2
               and 1.3: 426 then 226, and the session goes on: RETR and STOR of ROOT/src.bin
               (expected) after it arrive whole. Leaves abort-tls12.bin, abort-tls13.bin.
"""

import ftplib
import hashlib
import io
import os
import socket
import ssl
import struct
import sys
import time
import traceback

from ftpcheck import check, eq, retr, same_bytes


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session.

    The stock ntransfercmd wraps the data socket without `session=`, so every data connection
    makes a full handshake, which servers that bind data connections to their control session
    (RFC 4217 section 10; vsftpd's require_ssl_reuse, ferroftp's require_session_reuse) refuse.
    This is the well-known fix. Every data connection's TLS version and whether it resumed are
    recorded in `data_conns`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.data_conns = []

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
            self.data_conns.append((conn.version(), conn.session_reused))
        return conn, size


class ImplicitFTP_TLS(ReusingFTP_TLS):
    """Implicit FTPS, which ftplib lacks: TLS from the first byte, data protected from the start."""

    def connect(self, host="", port=0, timeout=-999, source_address=None):
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        raw = socket.create_connection((self.host, self.port), self.timeout)
        self.af = raw.family
        self.sock = self.context.wrap_socket(raw, server_hostname=self.host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        # The convention of port 990: data connections are TLS without PBSZ/PROT.
        self._prot_p = True
        return self.welcome


VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


def context(cafile, version=None):
    """A verifying context (CA file, host name check) pinned to `version` if given."""
    ctx = ssl.create_default_context(cafile=cafile)
    check(ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname, "context must verify")
    if version:
        ctx.minimum_version = VERSIONS[version]
        ctx.maximum_version = VERSIONS[version]
    return ctx


def explicit(host, port, user, password, cafile, version=None, passive=True):
    ftp = ReusingFTP_TLS(context=context(cafile, version), timeout=20, encoding="utf-8")
    welcome = ftp.connect(host, port)
    check(welcome.startswith("220"), f"greeting {welcome!r}")
    # login() sends AUTH TLS first (the control connection is plain until then).
    check(not isinstance(ftp.sock, ssl.SSLSocket), "control connection TLS before AUTH")
    resp = ftp.login(user, password)
    check(resp.startswith("230"), f"login reply {resp!r}")
    check(isinstance(ftp.sock, ssl.SSLSocket), "AUTH TLS did not make the control connection TLS")
    if version:
        eq(ftp.sock.version(), version, "control connection TLS version")
    resp = ftp.prot_p()
    check(resp.startswith("200"), f"PROT P reply {resp!r}")
    ftp.set_pasv(passive)
    ftp.voidcmd("TYPE I")
    return ftp


def check_data_conns(ftp, want_count, version, what):
    eq(len(ftp.data_conns), want_count, f"{what}: number of TLS data connections")
    for i, (v, reused) in enumerate(ftp.data_conns):
        if version:
            eq(v, version, f"{what}: data connection {i} TLS version")
        check(reused, f"{what}: data connection {i} ({v}) did not resume the control session")


def mlsd_names(ftp, path=""):
    return {name: facts for name, facts in ftp.mlsd(path, facts=["type", "size"])}


def scenario_transfers(host, port, user, password, root, cafile):
    src = read(root, "src.bin")
    for version in ("TLSv1.2", "TLSv1.3"):
        for passive in (True, False):
            tag = ("pasv" if passive else "port") + "-" + version.replace("v1.", "1").lower()
            ftp = explicit(host, port, user, password, cafile, version, passive)
            name = f"{tag}.bin"
            resp = ftp.storbinary(f"STOR {name}", io.BytesIO(src))
            check(resp.startswith("226"), f"{tag}: STOR reply {resp!r}")
            same_bytes(read(root, name), src, f"{tag}: {name} on disk")
            same_bytes(retr(ftp, f"RETR {name}"), src, f"{tag}: RETR {name}")
            check(name in ftp.nlst(), f"{tag}: NLST lacks {name}")
            facts = mlsd_names(ftp)
            check(name in facts, f"{tag}: MLSD lacks {name}: {facts}")
            eq(facts[name]["size"], str(len(src)), f"{tag}: MLSD size of {name}")
            eq(facts[name]["type"], "file", f"{tag}: MLSD type of {name}")
            check_data_conns(ftp, 4, version, tag)
            # The control connection is still TLS of the same version after all that.
            eq(ftp.sock.version(), version, f"{tag}: control connection TLS version at the end")
            ftp.quit()
            print(f"{tag}: ok")


def small(i):
    """4 KiB of pseudo-random bytes, different for every index."""
    out = b""
    block = str(i).encode()
    while len(out) < 4096:
        block = hashlib.sha256(block).digest()
        out += block
    return out[:4096]


def scenario_many(host, port, user, password, root, cafile):
    for version, folder, n in (("TLSv1.3", "many13", 50), ("TLSv1.2", "many12", 20)):
        ftp = explicit(host, port, user, password, cafile, version, passive=True)
        ftp.mkd(folder)
        ftp.cwd(folder)
        for i in range(n):
            resp = ftp.storbinary(f"STOR f{i:02}.bin", io.BytesIO(small(i)))
            check(resp.startswith("226"), f"{version}: STOR f{i:02}.bin reply {resp!r}")
        for i in range(n):
            same_bytes(retr(ftp, f"RETR f{i:02}.bin"), small(i), f"{version}: RETR f{i:02}.bin")
        eq(sorted(ftp.nlst()), [f"f{i:02}.bin" for i in range(n)], f"{version}: NLST")
        check_data_conns(ftp, 2 * n + 1, version, f"{version} many")
        ftp.quit()
        print(f"{version}: {2 * n + 1} data connections, all resumed")


def scenario_implicit(host, port, user, password, root, cafile):
    src = read(root, "src.bin")
    for passive, name in ((True, "imp-pasv.bin"), (False, "imp-port.bin")):
        ftp = ImplicitFTP_TLS(context=context(cafile), timeout=20, encoding="utf-8")
        welcome = ftp.connect(host, port)
        check(welcome.startswith("220"), f"greeting {welcome!r}")
        check(isinstance(ftp.sock, ssl.SSLSocket), "implicit control connection is not TLS")
        check(ftp.sock.version() in ("TLSv1.2", "TLSv1.3"), f"version {ftp.sock.version()}")
        resp = ftp.login(user, password)
        check(resp.startswith("230"), f"login reply {resp!r}")
        ftp.set_pasv(passive)
        ftp.voidcmd("TYPE I")
        # No PBSZ/PROT: implicit FTPS protects data connections from the start.
        resp = ftp.storbinary(f"STOR {name}", io.BytesIO(src))
        check(resp.startswith("226"), f"implicit STOR reply {resp!r}")
        same_bytes(read(root, name), src, f"implicit {name} on disk")
        same_bytes(retr(ftp, f"RETR {name}"), src, f"implicit RETR {name}")
        check(name in ftp.nlst(), f"implicit NLST lacks {name}")
        check(name in mlsd_names(ftp), f"implicit MLSD lacks {name}")
        check_data_conns(ftp, 4, ftp.sock.version(), f"implicit passive={passive}")
        ftp.quit()
        print(f"implicit passive={passive}: ok")


def cut_off_upload(ftp, name, payload, reset):
    """Start STOR over TLS, send `payload`, then drop the TCP connection without close_notify
    (a FIN, or a RST if `reset`). Returns the server's final reply."""
    conn, _ = ftp.ntransfercmd(f"STOR {name}")
    conn.sendall(payload)
    time.sleep(0.2)
    if reset:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # SSLSocket.close() closes the socket without SSL_shutdown: no close_notify goes out.
    conn.close()
    try:
        resp = ftp.getresp()
    except ftplib.error_temp as e:
        return str(e)
    return resp


def scenario_interrupted(host, port, user, password, root, cafile):
    original = read(root, "keep.bin")
    payload = os.urandom(1024 * 1024)
    ftp = explicit(host, port, user, password, cafile, passive=True)
    for reset in (False, True):
        resp = cut_off_upload(ftp, "keep.bin", payload, reset)
        check(resp.startswith("426"), f"cut-off upload (reset={reset}) got {resp!r}, want 426")
        same_bytes(read(root, "keep.bin"), original, f"keep.bin after a cut-off upload (reset={reset})")
        # The session goes on, over TLS, with the old content.
        same_bytes(retr(ftp, "RETR keep.bin"), original, "RETR keep.bin after the cut-off upload")
        print(f"cut off (reset={reset}): {resp}")
    check_data_conns(ftp, 4, None, "interrupted")
    ftp.quit()


def stranger_race(victim, ctx, cmd, session, payload=None):
    """The stranger connects to the victim's passive port before the victim does, then the
    victim sends `cmd`. Returns (stranger resumed?, bytes it read, its TLS session, victim's
    final reply)."""
    host, port = victim.makepasv()
    raw = socket.create_connection((host, port), 10)
    resp = victim.sendcmd(cmd)
    check(resp.startswith("150"), f"{cmd}: {resp!r}")
    resumed, got, sess, conn = False, b"", None, None
    try:
        conn = ctx.wrap_socket(raw, server_hostname=victim.host, session=session)
        resumed = conn.session_reused
        if payload is not None:
            conn.sendall(payload)
            conn.unwrap()
        else:
            # Reading also collects whatever session tickets the server sends.
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got += chunk
    except (OSError, ssl.SSLError):
        pass
    if conn is not None:
        sess = conn.session
        conn.close()
    else:
        raw.close()
    victim.sock.settimeout(5)
    try:
        reply = victim.getresp()
    except ftplib.Error as e:
        reply = str(e)
    except TimeoutError:
        reply = "(no reply within 5 s)"
    victim.sock.settimeout(20)
    return resumed, got, sess, reply


def scenario_stranger(host, port, user, password, root, cafile):
    secret = read(root, "secret.txt")
    target = read(root, "target.txt")
    failures = []
    for version in ("TLSv1.3", "TLSv1.2"):
        for first in ("RETR secret.txt", "STOR target.txt"):
            case = f"{version}, first race on {first.split()[0]}"
            victim = explicit(host, port, user, password, cafile, version, passive=True)
            # The stranger's own TLS stack: it trusts the server too, but has no session.
            ctx = context(cafile, version)
            resumed, got, stolen, reply = stranger_race(victim, ctx, first, None)
            check(not resumed and got == b"", f"{case}: the first race was not refused")
            check(reply.startswith("522"), f"{case}: the victim's first transfer got {reply!r}")
            # Whatever the refused connection left the stranger with, it must not get it in.
            for cmd, payload in (("STOR target.txt", b"INJECTED BY A STRANGER\n"), ("RETR secret.txt", None)):
                resumed, got, _, reply = stranger_race(victim, ctx, cmd, stolen, payload)
                print(f"{case}: then {cmd}: stranger resumed={resumed} read={len(got)} bytes; victim got {reply[:60]!r}")
                # The TLS layer may well resume (a TLS 1.3 ticket from the refused download);
                # what matters is that the server then refuses the connection: 522 to the
                # victim, not a byte to the stranger.
                if not reply.startswith("522") or got:
                    failures.append(
                        f"{case}: the stranger (TLS resumed={resumed}) got into the victim's "
                        f"next {cmd.split()[0]} with the session from the refused connection "
                        f"(victim told {reply[:40]!r}, stranger read {got[:40]!r})"
                    )
                if read(root, "target.txt") != target:
                    failures.append(f"{case}: target.txt now holds {read(root, 'target.txt')!r}")
                    with open(os.path.join(root, "target.txt"), "wb") as f:
                        f.write(target)
            victim.close()
    check(not failures, "session binding bypassed:\n  " + "\n  ".join(failures))
    eq(read(root, "secret.txt"), secret, "secret.txt")


def read(root, name):
    with open(os.path.join(root, name), "rb") as f:
        return f.read()


def scenario_abort(host, port, user, password, root, cafile):
    with open(os.path.join(root, "huge.bin"), "wb") as f:
        f.truncate(64 * 1024 * 1024)
    src = read(root, "src.bin")
    for version in ("TLSv1.2", "TLSv1.3"):
        tag = version.replace("v1.", "1").lower()
        ftp = explicit(host, port, user, password, cafile, version)
        conn = ftp.transfercmd("RETR huge.bin")
        got = 0
        while got < 1024 * 1024:
            chunk = conn.recv(65536)
            check(chunk, f"{tag}: data connection closed early after {got} bytes")
            got += len(chunk)
        # FTP_TLS.abort sends a plain ABOR line (no urgent data through TLS).
        resp = ftp.abort()
        check(resp.startswith("426"), f"{tag}: ABOR reply {resp!r}")
        second = ftp.getresp()
        check(second.startswith("226"), f"{tag}: reply after 426 {second!r}")
        conn.close()
        eq(ftp.voidcmd("NOOP")[:3], "200", f"{tag}: NOOP after ABOR")
        same_bytes(retr(ftp, "RETR src.bin"), src, f"{tag}: RETR after ABOR")
        name = f"abort-{tag}.bin"
        resp = ftp.storbinary(f"STOR {name}", io.BytesIO(src))
        check(resp.startswith("226"), f"{tag}: STOR reply {resp!r}")
        same_bytes(read(root, name), src, f"{tag}: {name} on disk")
        ftp.quit()
        print(f"{tag}: ok")


SCENARIOS = {
    "abort": scenario_abort,
    "transfers": scenario_transfers,
    "many": scenario_many,
    "implicit": scenario_implicit,
    "interrupted": scenario_interrupted,
    "stranger": scenario_stranger,
}


def main():
    if len(sys.argv) != 8 or sys.argv[1] not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(SCENARIOS)} HOST PORT USER PASS ROOT CAFILE")
    scenario, host, port, user, password, root, cafile = sys.argv[1:]
    try:
        SCENARIOS[scenario](host, int(port), user, password, root, cafile)
    except Exception as e:  # noqa: BLE001 - any failure is a test failure
        traceback.print_exc()
        sys.exit(f"FAILED: {type(e).__name__}: {e}")
    print("OK")


if __name__ == "__main__":
    main()
