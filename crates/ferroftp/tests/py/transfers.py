"""Binary and ASCII transfers, REST, APPE, passive and active.

Expects in ROOT: src.bin (pseudo-random, 1.5 MB), lf.txt = b"alpha\nbeta\n\ngamma\n".
Leaves for the Rust test: copy.bin, part.bin, active.bin (all == src.bin), text.txt (LF ends),
app.bin (src.bin twice).
"""

import io

from ftpcheck import check, connect, eq, read, retr, run, same_bytes


def transfers(ftp, root, tag):
    src = read(root, "src.bin")
    same_bytes(retr(ftp, "RETR src.bin"), src, f"{tag}: retrbinary src.bin")
    resp = ftp.storbinary(f"STOR {tag}.bin", io.BytesIO(src))
    check(resp.startswith("226"), f"{tag}: STOR reply {resp!r}")
    same_bytes(read(root, f"{tag}.bin"), src, f"{tag}: stored {tag}.bin on disk")
    # REST + RETR.
    same_bytes(retr(ftp, "RETR src.bin", rest=1_000_000), src[1_000_000:], f"{tag}: REST 1000000 + RETR")
    same_bytes(retr(ftp, "RETR src.bin", rest=len(src)), b"", f"{tag}: REST at EOF")
    # Listing over the same kind of data connection.
    check(f"{tag}.bin" in ftp.nlst(), f"{tag}: NLST")
    return src


def main(host, port, user, password, root):
    ftp = connect(host, port, user, password)
    src = transfers(ftp, root, "copy")

    # REST + STOR writes in place from the offset.
    n = 700_001
    ftp.storbinary("STOR part.bin", io.BytesIO(src[:n]))
    eq(len(read(root, "part.bin")), n, "first part on disk")
    ftp.storbinary("STOR part.bin", io.BytesIO(src[n:]), rest=n)
    same_bytes(read(root, "part.bin"), src, "REST + STOR result")

    # APPE.
    ftp.storbinary("APPE app.bin", io.BytesIO(src))
    ftp.storbinary("APPE app.bin", io.BytesIO(src))
    same_bytes(read(root, "app.bin"), src + src, "APPE twice")

    # ASCII: storlines sends CRLF, the server stores LF.
    ftp.storlines("STOR text.txt", io.BytesIO(b"one\ntwo\n\nthree\n"))
    eq(read(root, "text.txt"), b"one\ntwo\n\nthree\n", "storlines result on disk")
    lines = []
    ftp.retrlines("RETR lf.txt", lines.append)
    eq(lines, ["alpha", "beta", "", "gamma"], "retrlines")
    # The raw bytes on the wire in TYPE A are CRLF.
    ftp.voidcmd("TYPE A")
    with ftp.transfercmd("RETR lf.txt") as conn:
        raw = b""
        while True:
            chunk = conn.recv(8192)
            if not chunk:
                break
            raw += chunk
    ftp.voidresp()
    eq(raw, b"alpha\r\nbeta\r\n\r\ngamma\r\n", "TYPE A wire bytes")
    # And a CRLF-on-the-wire upload in TYPE A is stored with LF even across small writes.
    ftp.voidcmd("TYPE A")
    with ftp.transfercmd("STOR split.txt") as conn:
        for piece in (b"a\r", b"\nb\r", b"\n", b"c\r\n"):
            conn.sendall(piece)
    ftp.voidresp()
    eq(read(root, "split.txt"), b"a\nb\nc\n", "TYPE A upload with CRLF split across writes")
    # TYPE I of the same file is byte-exact.
    eq(retr(ftp, "RETR lf.txt"), b"alpha\nbeta\n\ngamma\n", "TYPE I of lf.txt")

    # Active mode (PORT): ftplib listens and the server connects back.
    ftp.set_pasv(False)
    transfers(ftp, root, "active")
    lines = []
    ftp.retrlines("LIST", lines.append)
    check(any(line.endswith(" src.bin") for line in lines), f"active LIST {lines}")
    ftp.storlines("STOR active.txt", io.BytesIO(b"x\ny\n"))
    eq(read(root, "active.txt"), b"x\ny\n", "active storlines")
    ftp.set_pasv(True)
    eq(ftp.voidcmd("NOOP")[:3], "200", "NOOP at the end")
    ftp.quit()


run(main)
