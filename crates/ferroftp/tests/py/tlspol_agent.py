"""A scriptable FTP/FTPS client, driven line by line by tls_policy.rs.

The test writes one request a line on stdin: fields separated by TAB, the operation first,
then positional arguments and `key=value` options. The agent answers each with exactly one
line on stdout: a TOML inline table (`{code = 230, text = "..."}`), which the test parses.
Bytes travel as hex. Any exception is answered as `{error = "..."}` and the agent keeps going,
so the test decides what a failure means. The agent never judges the server itself.

Operations (ID names a control connection, CTX an SSL context):
  ctx CTX [min=1.0|1.1|1.2|1.3] [max=...] [ciphers=...] [cert=PEM] [key=PEM]
  connect ID PORT [tls=CTX]          TCP (implicit TLS with tls=) and read the greeting
  auth ID CTX [line=AUTH TLS]        send AUTH, and on 234 run the TLS handshake
  starttls ID CTX                    TLS handshake now, without sending anything first
  send ID hex=BYTES                  raw bytes on the control connection
  cmd ID LINE                        send a command line, read the reply
  reply ID                           read one reply
  info ID                            TLS version, server fingerprint, session reuse
  xfer ID VERB [path=P] [data=plain|tls] [session=own|fresh|OTHER_ID] [hex=BYTES]
       [close=notify|abrupt] [pasv=PASV|EPSV]
                                     one transfer over a passive data connection
  wait_closed ID SECS                how long until the server closes the connection
  close ID                           drop the connection (no QUIT)
"""

import hashlib
import json
import os
import socket
import ssl
import sys
import time
import traceback
import warnings

warnings.simplefilter("ignore")  # TLS 1.0/1.1 settings are deprecated, and meant here

TIMEOUT = 15
HOST = "127.0.0.1"

contexts = {}
conns = {}


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (bytes, bytearray)):
        return json.dumps(bytes(v).hex())
    # JSON string escapes are valid TOML basic-string escapes when nothing is \u-escaped
    # beyond control characters (ensure_ascii=False).
    s = str(v).encode("utf-8", "replace").decode("utf-8")
    return json.dumps(s, ensure_ascii=False)


def answer(d):
    items = ", ".join(f"{k} = {toml_value(v)}" for k, v in d.items() if v is not None)
    sys.stdout.write("{" + items + "}\n")
    sys.stdout.flush()


VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def fingerprint(sock):
    der = sock.getpeercert(binary_form=True)
    if der is None:
        return None
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


class Conn:
    def __init__(self, port, ctx=None):
        self.ctx = ctx
        self.buf = b""
        sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        if ctx is not None:
            sock = ctx.wrap_socket(sock)
        self.sock = sock

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("the server closed the control connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode("utf-8", "replace").rstrip("\r")

    def reply(self):
        first = self.line()
        code = int(first[:3])
        text = [first[4:]]
        if first[3:4] == "-":
            while True:
                line = self.line()
                text.append(line)
                if line.startswith(f"{code} "):
                    break
        return {"code": code, "text": "\n".join(text)}

    def cmd(self, line):
        self.send(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def starttls(self, ctx):
        leftover = self.buf
        self.buf = b""
        self.sock = ctx.wrap_socket(self.sock)
        self.ctx = ctx
        out = tls_info(self.sock)
        if leftover:
            out["leftover"] = leftover.decode("utf-8", "replace")
        return out


def tls_info(sock):
    if not isinstance(sock, ssl.SSLSocket):
        return {"version": "none"}
    return {
        "version": sock.version(),
        "fingerprint": fingerprint(sock),
        "reused": sock.session_reused,
    }


def make_ctx(opts):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if "ciphers" in opts:
        ctx.set_ciphers(opts["ciphers"])
    if "min" in opts:
        ctx.minimum_version = VERSIONS[opts["min"]]
    if "max" in opts:
        ctx.maximum_version = VERSIONS[opts["max"]]
    if "cert" in opts:
        ctx.load_cert_chain(opts["cert"], opts["key"])
    return ctx


def parse_pasv(text):
    inner = text[text.index("(") + 1 : text.index(")")]
    p = [int(x) for x in inner.split(",")]
    return ".".join(map(str, p[:4])), p[4] * 256 + p[5]


def abrupt_close(ds):
    """End the TCP connection under a TLS socket without a close_notify."""
    raw = socket.socket(fileno=os.dup(ds.fileno()))
    try:
        raw.shutdown(socket.SHUT_RDWR)
    finally:
        raw.close()
        ds.close()  # SSLSocket.close() sends nothing; only unwrap() would


def xfer(c, verb, opts):
    res = {}
    pasv = opts.get("pasv", "PASV")
    r = c.cmd(pasv)
    if r["code"] not in (227, 229):
        return {"pasv_code": r["code"], "pasv_text": r["text"]}
    if pasv == "PASV":
        host, port = parse_pasv(r["text"])
    else:
        host, port = HOST, int(r["text"].split("|")[3])
    ds = socket.create_connection((host, port), timeout=TIMEOUT)
    path = opts.get("path")
    c.send(((f"{verb} {path}" if path else verb) + "\r\n").encode("utf-8"))
    r = c.reply()
    res["prelim_code"], res["prelim_text"] = r["code"], r["text"]
    if r["code"] >= 200:
        ds.close()
        return res
    upload = verb in ("STOR", "APPE", "STOU")
    if opts.get("data", "tls") == "tls":
        session = opts.get("session", "own")
        sess = None
        if session == "own":
            sess = c.sock.session
        elif session != "fresh":
            sess = conns[session].sock.session
        try:
            ds = c.ctx.wrap_socket(ds, session=sess)
            res.update({f"data_{k}": v for k, v in tls_info(ds).items()})
        except (OSError, ssl.SSLError) as e:
            res["data_error"] = f"handshake: {e}"
            ds.close()
            ds = None
    got = b""
    if ds is not None:
        try:
            if upload:
                ds.sendall(bytes.fromhex(opts.get("hex", "")))
            else:
                while True:
                    chunk = ds.recv(65536)
                    if not chunk:
                        break
                    got += chunk
        except (OSError, ssl.SSLError) as e:
            res["data_error"] = f"transfer: {e}"
        try:
            if isinstance(ds, ssl.SSLSocket):
                if opts.get("close", "notify") == "abrupt":
                    abrupt_close(ds)
                else:
                    ds.unwrap().close()
            else:
                ds.close()
        except (OSError, ssl.SSLError, ValueError) as e:
            res["close_error"] = str(e)
            ds.close()
    res["data"] = got
    r = c.reply()
    res["code"], res["text"] = r["code"], r["text"]
    return res


def wait_closed(c, secs):
    start = time.monotonic()
    c.sock.settimeout(secs)
    try:
        while True:
            chunk = c.sock.recv(4096)
            if not chunk:
                break
    except ConnectionResetError:
        pass
    except (socket.timeout, TimeoutError):
        return {"closed": False, "secs": time.monotonic() - start}
    except ssl.SSLError as e:
        return {"closed": True, "secs": time.monotonic() - start, "how": str(e)}
    return {"closed": True, "secs": time.monotonic() - start}


def handle(fields):
    op = fields[0]
    pos = [f for f in fields[1:] if "=" not in f or op == "cmd"]
    opts = dict(f.split("=", 1) for f in fields[1:] if "=" in f and op != "cmd")
    if op == "ctx":
        contexts[pos[0]] = make_ctx(opts)
        return {"ok": True}
    if op == "connect":
        ctx = contexts[opts["tls"]] if "tls" in opts else None
        try:
            c = Conn(int(pos[1]), ctx)
        except (OSError, ssl.SSLError) as e:
            return {"error": str(e)}
        conns[pos[0]] = c
        out = c.reply()
        if ctx is not None:
            out.update(tls_info(c.sock))
        return out
    c = conns[pos[0]]
    if op == "auth":
        r = c.cmd(opts.get("line", "AUTH TLS"))
        if r["code"] == 234:
            try:
                r.update(c.starttls(contexts[pos[1]]))
            except (OSError, ssl.SSLError) as e:
                r["error"] = str(e)
        return r
    if op == "starttls":
        return c.starttls(contexts[pos[1]])
    if op == "send":
        c.send(bytes.fromhex(opts["hex"]))
        return {"ok": True}
    if op == "cmd":
        return c.cmd(fields[2])
    if op == "reply":
        return c.reply()
    if op == "info":
        return tls_info(c.sock)
    if op == "xfer":
        return xfer(c, pos[1], opts)
    if op == "wait_closed":
        return wait_closed(c, float(pos[1]))
    if op == "close":
        c.sock.close()
        del conns[pos[0]]
        return {"ok": True}
    raise ValueError(f"unknown operation {op!r}")


def main():
    for raw in sys.stdin:
        fields = raw.rstrip("\n").split("\t")
        try:
            answer(handle(fields))
        except Exception as e:  # reported to the test, which decides
            answer({"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()})


if __name__ == "__main__":
    main()
