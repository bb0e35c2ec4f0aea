"""A TLS client that stops reading: used by tests/exhaustion.rs.

    python3 exh_tls_nonreader.py HOST PORT USER PASS SOURCE_IP SECONDS [COMMAND]

Connects from SOURCE_IP, upgrades with AUTH TLS (certificate not checked: the test server's is
self-signed), logs in, prints "logged in", then sends COMMAND (HELP by default) 50 times
without ever reading a reply, for SECONDS, holding the connection open. The server must give up on it at its idle
timeout, not when this process goes away.
"""

import socket
import ssl
import sys
import threading
import time


def main():
    host, port, user, password, source, seconds = sys.argv[1:7]
    command = (sys.argv[7] if len(sys.argv) > 7 else "HELP").encode() + b"\r\n"
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive window: the server's writes block after a few hundred replies.
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(20)
    raw.bind((source, 0))
    raw.connect((host, int(port)))
    plain = raw.makefile("rb")
    line = plain.readline()
    assert line.startswith(b"220"), line
    raw.sendall(b"AUTH TLS\r\n")
    line = plain.readline()
    assert line.startswith(b"234"), line
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(raw, server_hostname=host)
    replies = tls.makefile("rb")
    tls.sendall(f"USER {user}\r\n".encode())
    line = replies.readline()
    assert line.startswith(b"331"), line
    tls.sendall(f"PASS {password}\r\n".encode())
    line = replies.readline()
    assert line.startswith(b"230"), line
    print("logged in", flush=True)
    tls.settimeout(None)

    def flood():
        # Once, not in a loop: the replies are far more than the buffers hold, and a client that
        # keeps sending keeps telling the server's kernel of every byte of window its own
        # kernel frees by compacting its queue, so that the server's writes trickle on.
        try:
            tls.sendall(command * 50)
        except OSError as e:
            print(f"writer stopped: {e}", flush=True)

    threading.Thread(target=flood, daemon=True).start()
    time.sleep(float(seconds))
    print("done", flush=True)


if __name__ == "__main__":
    main()
