"""ABOR during a long download, as ftplib sends it (urgent data), then the session goes on.

Creates ROOT/huge.bin (64 MiB, sparse) and ROOT/small.bin itself.
"""

import os

from ftpcheck import CheckFailed, check, connect, eq, retr, run


def abort_download(ftp, tag):
    conn = ftp.transfercmd("RETR huge.bin")
    got = 0
    while got < 256 * 1024:
        chunk = conn.recv(65536)
        check(chunk, f"{tag}: data connection closed early after {got} bytes")
        got += len(chunk)
    # ftplib sends "ABOR\r\n" with MSG_OOB, so its last byte is TCP urgent data.
    ftp.sock.settimeout(5)
    try:
        resp = ftp.abort()
    except TimeoutError:
        raise CheckFailed(f"{tag}: no reply within 5 s to ABOR sent as urgent data (MSG_OOB)") from None
    ftp.sock.settimeout(20)
    check(resp[:3] in ("426", "225", "226"), f"{tag}: ABOR reply {resp!r}")
    # RFC 959: an ABOR that interrupts a transfer gets 426 for the transfer and then 226 for
    # the ABOR itself; ftplib.abort() only reads the first, so read the second.
    if resp.startswith("426"):
        second = ftp.getresp()
        check(second[:3] in ("225", "226"), f"{tag}: reply after 426 {second!r}")
    conn.close()
    eq(ftp.voidcmd("NOOP")[:3], "200", f"{tag}: NOOP after ABOR")


def main(host, port, user, password, root):
    with open(os.path.join(root, "huge.bin"), "wb") as f:
        f.truncate(64 * 1024 * 1024)
    small = bytes(range(256)) * 100
    with open(os.path.join(root, "small.bin"), "wb") as f:
        f.write(small)
    ftp = connect(host, port, user, password)
    ftp.voidcmd("TYPE I")
    abort_download(ftp, "passive")
    eq(retr(ftp, "RETR small.bin"), small, "transfer after ABOR")
    ftp.set_pasv(False)
    abort_download(ftp, "active")
    eq(retr(ftp, "RETR small.bin"), small, "active transfer after ABOR")
    ftp.set_pasv(True)
    # ABOR with no transfer is fine too.
    resp = ftp.abort()
    check(resp[:3] in ("225", "226"), f"idle ABOR {resp!r}")
    eq(ftp.pwd(), "/", "PWD at the end")
    ftp.quit()


run(main)
