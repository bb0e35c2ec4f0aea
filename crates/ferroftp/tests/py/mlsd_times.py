"""MLSD/MLST facts, MDTM, MFMT.

Expects in ROOT: m.bin (12345 bytes, mtime 1600000000 = 2020-09-13 12:26:40 UTC), "sub dir/".
Leaves m.bin with mtime 2021-01-02 03:04:05 UTC (set with MFMT).
"""

import calendar
import ftplib
import os

from ftpcheck import check, connect, eq, expect_error, run


def main(host, port, user, password, root):
    ftp = connect(host, port, user, password)

    entries = dict(ftp.mlsd())
    entries.pop(".", None)
    entries.pop("..", None)
    eq(sorted(entries), ["m.bin", "sub dir"], "MLSD names")
    m = entries["m.bin"]
    eq(m.get("type"), "file", "m.bin type")
    eq(m.get("size"), "12345", "m.bin size")
    eq(m.get("modify"), "20200913122640", "m.bin modify")
    eq(entries["sub dir"].get("type"), "dir", "sub dir type")
    check("perm" in m, f"perm fact: {m}")
    for e in entries.values():
        for k in e:
            check(k == k.lower(), f"ftplib lower-cases fact names; got {k!r}")

    # Asking for fewer facts (OPTS MLST) is honoured.
    entries = dict(ftp.mlsd(facts=["type", "size"]))
    check("modify" not in entries["m.bin"], f"OPTS MLST type;size still sent modify: {entries['m.bin']}")
    eq(entries["m.bin"].get("size"), "12345", "size after OPTS MLST")
    ftp.sendcmd("OPTS MLST type;size;modify;perm;")

    # MLSD of a subdirectory and of a path that is not a directory.
    eq([n for n, _ in ftp.mlsd("sub dir") if n not in (".", "..")], [], "MLSD of an empty dir")
    expect_error(ftplib.error_perm, ("501", "550"), lambda: list(ftp.mlsd("m.bin")))

    # MLST: one entry on the control connection.
    mlst = ftp.sendcmd("MLST m.bin")
    lines = mlst.split("\n")
    check(lines[0].startswith("250-") and lines[-1].startswith("250"), f"MLST {mlst!r}")
    check(lines[1].startswith(" "), f"MLST fact line starts with a space: {mlst!r}")
    check("size=12345;" in lines[1].lower() and "type=file;" in lines[1].lower(), f"MLST facts {mlst!r}")
    check(lines[1].rstrip().endswith(" /m.bin") or lines[1].rstrip().endswith(" m.bin"), f"MLST name {mlst!r}")
    expect_error(ftplib.error_perm, "550", ftp.sendcmd, "MLST missing")

    # MDTM / MFMT.
    eq(ftp.sendcmd("MDTM m.bin"), "213 20200913122640", "MDTM")
    expect_error(ftplib.error_perm, "550", ftp.sendcmd, "MDTM missing")
    resp = ftp.sendcmd("MFMT 20210102030405 m.bin")
    check(resp.startswith("213"), f"MFMT reply {resp!r}")
    check("20210102030405" in resp, f"MFMT reply has the time: {resp!r}")
    want = calendar.timegm((2021, 1, 2, 3, 4, 5, 0, 0, 0))
    eq(int(os.stat(os.path.join(root, "m.bin")).st_mtime), want, "mtime on disk after MFMT")
    eq(ftp.sendcmd("MDTM m.bin"), "213 20210102030405", "MDTM after MFMT")
    eq(dict(ftp.mlsd())["m.bin"].get("modify"), "20210102030405", "MLSD modify after MFMT")
    expect_error(ftplib.error_perm, ("500", "501"), ftp.sendcmd, "MFMT notatime m.bin")
    expect_error(ftplib.error_perm, "550", ftp.sendcmd, "MFMT 20210102030405 missing")
    ftp.quit()


run(main)
