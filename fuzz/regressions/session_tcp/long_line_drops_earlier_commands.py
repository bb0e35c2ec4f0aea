#!/usr/bin/env python3
"""Commands that arrive together with an over-long line are never answered (fuzz target
`session`).

Usage: long_line_drops_earlier_commands.py HOST PORT USER PASSWORD [MAX_LINE_LENGTH]

One write: "NOOP\\r\\nPWD\\r\\n" followed by a line longer than limits.max_line_length (default
4096). The two complete commands come first and must be answered in order (200, 257) before
the server answers the long line (500) and closes. ferroftp queues NOOP and PWD, meets the long
line in the same read, sends the 500 and closes without running them; the same bytes split
over two reads get all three replies. Exit status 1 when the replies are missing.
"""
import socket
import sys

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
limit = int(sys.argv[5]) if len(sys.argv) > 5 else 4096

s = socket.create_connection((host, port), timeout=5)
f = s.makefile("rb")


def reply():
    line = f.readline().decode(errors="replace")
    return line.rstrip("\r\n")


print(reply())
s.sendall(f"USER {user}\r\nPASS {password}\r\n".encode())
print(reply())
print(reply())
s.sendall(b"NOOP\r\nPWD\r\nCWD " + b"a" * limit + b"\r\n")
got = []
while True:
    line = reply()
    if not line:
        break
    got.append(line)
    print(line)
codes = [g[:3] for g in got]
if codes[:2] != ["200", "257"]:
    print(f"BUG: NOOP and PWD were not answered before the 500; got {codes}")
    sys.exit(1)
print("ok")
