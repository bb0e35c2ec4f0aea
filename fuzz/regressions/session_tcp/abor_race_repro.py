#!/usr/bin/env python3
"""ABOR that arrives as a transfer finishes gets no reply (found by fuzz target `session`).

Usage: abor_race_repro.py HOST PORT USER PASSWORD [TRIES]

Each try: PASV, connect the data connection, MLSD, and ABOR as soon as the 150 arrives
(without reading the listing). The server must answer the ABOR: either 426 + 226 (transfer
aborted) or 226 (transfer complete) + 225/226 (reply to ABOR). When the transfer task has
already finished as the ABOR is dispatched, ferroftp cancels nothing, sends only the
transfer's "226 Transfer complete", and never answers the ABOR: the client waits forever,
or pairs every later reply with the wrong command.
"""
import re
import socket
import sys

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
tries = int(sys.argv[5]) if len(sys.argv) > 5 else 200

ctrl = socket.create_connection((host, port), timeout=5)
f = ctrl.makefile("rb")


def reply(timeout=5.0):
    ctrl.settimeout(timeout)
    line = f.readline().decode(errors="replace")
    if not line:
        raise EOFError("control connection closed")
    code = line[:3]
    text = line
    if line[3:4] == "-":
        while True:
            l = f.readline().decode(errors="replace")
            text += l
            if l.startswith(code + " "):
                break
    return int(code), text.strip()


def cmd(c):
    ctrl.sendall(c.encode() + b"\r\n")
    return reply()


reply()
assert cmd("USER " + user)[0] == 331
assert cmd("PASS " + password)[0] == 230
missing = 0
for i in range(tries):
    code, text = cmd("PASV")
    nums = [int(n) for n in re.search(r"\((\d+,\d+,\d+,\d+,\d+,\d+)\)", text).group(1).split(",")]
    data = socket.create_connection((host, nums[4] * 256 + nums[5]), timeout=5)
    ctrl.sendall(b"MLSD\r\n")
    code, text = reply()
    assert code == 150, text
    ctrl.sendall(b"ABOR\r\n")
    finals = [reply()]
    try:
        finals.append(reply(timeout=2.0))
    except socket.timeout:
        missing += 1
        print(f"try {i}: MLSD then ABOR got only {finals}: no reply to ABOR within 2 s")
        data.close()
        break
    data.close()
print(f"{missing} of {i + 1} tries lost the reply to ABOR")
sys.exit(1 if missing else 0)
