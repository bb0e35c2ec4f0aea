"""Stock ftplib FTP_TLS against the data-connection binding, for tls_policy.rs.

    python3 tlspol_ftplib.py PORT USER PASS ROOT MODE

MODE:
  stock-refused  stock FTP_TLS (a full handshake on every data connection): RETR and STOR get
                 522, no data arrives and no file is written.
  stock-ok       stock FTP_TLS works (the listener has require_session_reuse = false).
  reusing-ok     an FTP_TLS whose data connections resume the control session works.

Prints OK at the end; exits non-zero with a message on the first failed check.
"""

import ftplib
import io
import os
import ssl
import sys

port, user, password, root, mode = sys.argv[1:6]
port = int(port)


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """Data connections resume the control connection's TLS session (as RFC 4217 §10 asks)."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
        return conn, size


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def client(cls):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ftp = cls(context=ctx, timeout=15)
    ftp.connect("127.0.0.1", port)
    ftp.auth()
    ftp.login(user, password)
    ftp.prot_p()
    return ftp


payload = bytes(range(256)) * 64
with open(os.path.join(root, "src.bin"), "wb") as f:
    f.write(payload)

if mode == "stock-refused":
    ftp = client(ftplib.FTP_TLS)
    got = []
    try:
        ftp.retrbinary("RETR src.bin", got.append)
        fail("RETR over a data connection with a full handshake succeeded")
    except ftplib.error_perm as e:
        if not str(e).startswith("522"):
            fail(f"RETR: expected 522, got {e}")
        print(f"RETR refused: {e}")
    except (OSError, ssl.SSLError) as e:
        fail(f"RETR: data connection error instead of a clean 522: {e!r}")
    if b"".join(got):
        fail(f"RETR delivered {len(b''.join(got))} bytes over a refused data connection")
    try:
        ftp.storbinary("STOR stock.bin", io.BytesIO(payload))
        fail("STOR over a data connection with a full handshake succeeded")
    except ftplib.error_perm as e:
        if not str(e).startswith("522"):
            fail(f"STOR: expected 522, got {e}")
        print(f"STOR refused: {e}")
    except (OSError, ssl.SSLError) as e:
        # ftplib may fail while sending into the closed connection; read the reply ourselves.
        try:
            resp = ftp.getresp()
            fail(f"STOR: got {resp} after a data connection error {e!r}")
        except ftplib.error_perm as e2:
            if not str(e2).startswith("522"):
                fail(f"STOR: expected 522, got {e2}")
            print(f"STOR refused: {e2} (client saw {type(e).__name__})")
    if os.path.exists(os.path.join(root, "stock.bin")):
        fail("STOR over a refused data connection wrote stock.bin")
    ftp.voidcmd("NOOP")
    ftp.quit()
elif mode in ("stock-ok", "reusing-ok"):
    cls = ftplib.FTP_TLS if mode == "stock-ok" else ReusingFTP_TLS
    ftp = client(cls)
    got = []
    ftp.retrbinary("RETR src.bin", got.append)
    if b"".join(got) != payload:
        fail(f"RETR: {len(b''.join(got))} bytes, want {len(payload)}")
    ftp.storbinary("STOR up.bin", io.BytesIO(payload))
    with open(os.path.join(root, "up.bin"), "rb") as f:
        if f.read() != payload:
            fail("STOR: the stored file differs")
    names = ftp.nlst()
    if "up.bin" not in names:
        fail(f"NLST: {names}")
    ftp.quit()
else:
    fail(f"unknown mode {mode}")
print("OK")
