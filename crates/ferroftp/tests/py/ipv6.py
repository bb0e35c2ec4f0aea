"""The same client over IPv6: ftplib uses EPSV (passive) and EPRT (active) there.

Expects in ROOT: v6.bin (pseudo-random). Leaves v6-up.bin and v6-active.bin (== v6.bin).
"""

import io
import socket

from ftpcheck import check, connect, eq, read, retr, run, same_bytes


def main(host, port, user, password, root):
    ftp = connect(host, port, user, password)
    eq(ftp.af, socket.AF_INET6, "address family")
    data = read(root, "v6.bin")
    check("v6.bin" in ftp.nlst(), "NLST over EPSV")
    lines = []
    ftp.dir(lines.append)
    check(any(line.endswith(" v6.bin") for line in lines), f"LIST over EPSV {lines}")
    same_bytes(retr(ftp, "RETR v6.bin"), data, "RETR over EPSV")
    ftp.storbinary("STOR v6-up.bin", io.BytesIO(data))
    same_bytes(read(root, "v6-up.bin"), data, "STOR over EPSV")
    ftp.set_pasv(False)
    same_bytes(retr(ftp, "RETR v6.bin"), data, "RETR over EPRT")
    ftp.storbinary("STOR v6-active.bin", io.BytesIO(data))
    same_bytes(read(root, "v6-active.bin"), data, "STOR over EPRT")
    eq(ftp.voidcmd("NOOP")[:3], "200", "NOOP")
    ftp.quit()


run(main)
