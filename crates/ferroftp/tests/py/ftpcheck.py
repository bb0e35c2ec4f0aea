"""Shared helpers for the ftplib interoperability scripts.

Every script is run as `python3 SCRIPT HOST PORT USER PASS ROOT` by clients_python.rs; it exits
non-zero with a message on the first failed check. ROOT is the server's root directory on disk,
so a script can compare what the server stored with what it sent.
"""

import ftplib
import os
import sys
import traceback


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def eq(got, want, what):
    if got != want:
        if isinstance(got, (bytes, bytearray)) and len(got) > 200:
            got = f"<{len(got)} bytes>"
        if isinstance(want, (bytes, bytearray)) and len(want) > 200:
            want = f"<{len(want)} bytes>"
        raise CheckFailed(f"{what}: got {got!r}, want {want!r}")


def same_bytes(got, want, what):
    if got == want:
        return
    if len(got) != len(want):
        raise CheckFailed(f"{what}: {len(got)} bytes, want {len(want)}")
    first = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
    raise CheckFailed(f"{what}: first differing byte at offset {first}")


def expect_error(exc_type, code, fn, *args):
    """Call fn(*args) and check it raises exc_type with a reply starting with `code` (a string,
    or a tuple of acceptable codes)."""
    codes = (code,) if isinstance(code, str) else code
    try:
        result = fn(*args)
    except exc_type as e:
        check(str(e)[:3] in codes, f"{fn.__name__}{args}: expected {code}, got {e}")
        return str(e)
    raise CheckFailed(f"{fn.__name__}{args}: expected error {code}, got success {result!r}")


def args():
    if len(sys.argv) != 6:
        sys.exit(f"usage: {sys.argv[0]} HOST PORT USER PASS ROOT")
    host, port, user, password, root = sys.argv[1:]
    return host, int(port), user, password, root


def connect(host, port, user, password):
    ftp = ftplib.FTP(timeout=20, encoding="utf-8")
    welcome = ftp.connect(host, port)
    check(welcome.startswith("220"), f"greeting {welcome!r}")
    resp = ftp.login(user, password)
    check(resp.startswith("230"), f"login reply {resp!r}")
    return ftp


def read(root, name):
    with open(os.path.join(root, name), "rb") as f:
        return f.read()


def retr(ftp, cmd, rest=None):
    chunks = []
    resp = ftp.retrbinary(cmd, chunks.append, rest=rest)
    check(resp.startswith("226") or resp.startswith("250"), f"{cmd} completion {resp!r}")
    return b"".join(chunks)


def run(main):
    """Run main(host, port, user, password, root); exit 1 with a message on failure."""
    try:
        main(*args())
    except Exception as e:  # noqa: BLE001 - any failure is a test failure
        traceback.print_exc()
        sys.exit(f"FAILED: {type(e).__name__}: {e}")
    print("OK")
