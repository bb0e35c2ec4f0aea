"""Login, navigation, directories, listings, rename/delete, SIZE, STAT, FEAT, errors.

Expects in ROOT (made by the Rust test): a.txt = b"hello\nworld\n", "b c.txt" = b"", "dir one/".
"""

import ftplib
import os

from ftpcheck import check, connect, eq, expect_error, read, run


def main(host, port, user, password, root):
    ftp = connect(host, port, user, password)

    # Navigation.
    eq(ftp.pwd(), "/", "initial PWD")
    eq(ftp.sendcmd("XPWD"), '257 "/" is the current directory', "XPWD")
    eq(ftp.mkd("new dir"), "/new dir", "MKD reply path")
    check(os.path.isdir(os.path.join(root, "new dir")), "MKD did not create the directory")
    ftp.cwd("new dir")
    eq(ftp.pwd(), "/new dir", "PWD after CWD")
    eq(ftp.mkd("sub \u00e9t\u00e9"), "/new dir/sub \u00e9t\u00e9", "MKD of a relative UTF-8 name")
    check(os.path.isdir(os.path.join(root, "new dir", "sub \u00e9t\u00e9")), "UTF-8 dir not on disk")
    ftp.cwd("sub \u00e9t\u00e9")
    eq(ftp.pwd(), "/new dir/sub \u00e9t\u00e9", "PWD in the UTF-8 dir")
    resp = ftp.sendcmd("CDUP")
    check(resp[:3] in ("200", "250"), f"CDUP {resp!r}")
    eq(ftp.pwd(), "/new dir", "PWD after CDUP")
    ftp.sendcmd("XCUP")
    eq(ftp.pwd(), "/", "PWD after XCUP")
    try:
        ftp.cwd("..")
    except ftplib.error_perm:
        pass
    eq(ftp.pwd(), "/", "CDUP above the root stays at the root")
    expect_error(ftplib.error_perm, "550", ftp.cwd, "no such dir")
    expect_error(ftplib.error_perm, "550", ftp.cwd, "a.txt")
    eq(ftp.pwd(), "/", "failed CWD does not move")

    # RMD: only empty directories.
    expect_error(ftplib.error_perm, "550", ftp.rmd, "new dir")
    ftp.rmd("new dir/sub \u00e9t\u00e9")
    check(not os.path.exists(os.path.join(root, "new dir", "sub \u00e9t\u00e9")), "RMD left the dir")
    check(os.path.isdir(os.path.join(root, "new dir")), "RMD removed the parent")
    ftp.sendcmd("XMKD x-made")
    ftp.sendcmd("XRMD x-made")
    check(not os.path.exists(os.path.join(root, "x-made")), "XMKD/XRMD")

    # Listings.
    names = sorted(ftp.nlst())
    eq(names, ["a.txt", "b c.txt", "dir one", "new dir"], "NLST")
    lines = []
    ftp.dir(lines.append)
    eq(len(lines), 4, f"LIST line count {lines}")
    by_name = {}
    for line in lines:
        for n in names:
            if line.endswith(" " + n):
                by_name[n] = line
    eq(sorted(by_name), names, f"LIST names {lines}")
    check(by_name["dir one"].startswith("d"), f"directory line {by_name['dir one']!r}")
    check(by_name["a.txt"].startswith("-"), f"file line {by_name['a.txt']!r}")
    check(" 12 " in by_name["a.txt"], f"a.txt size in LIST {by_name['a.txt']!r}")
    one = []
    ftp.dir("a.txt", one.append)
    eq(len(one), 1, f"LIST of one file {one}")
    check(one[0].endswith(" a.txt"), f"LIST a.txt {one}")
    eq(ftp.nlst("dir one"), [], "NLST of an empty directory")

    # SIZE: exact in binary; in ASCII the size as sent (LF -> CRLF).
    ftp.voidcmd("TYPE I")
    eq(ftp.size("a.txt"), 12, "SIZE in TYPE I")
    eq(ftp.size("b c.txt"), 0, "SIZE of an empty file")
    ftp.voidcmd("TYPE A")
    eq(ftp.size("a.txt"), 14, "SIZE in TYPE A")
    ftp.voidcmd("TYPE I")
    expect_error(ftplib.error_perm, "550", ftp.size, "dir one")
    expect_error(ftplib.error_perm, "550", ftp.size, "missing")

    # Rename and delete.
    resp = ftp.rename("a.txt", "renamed \u00e9.txt")
    check(resp.startswith("250"), f"RNTO {resp!r}")
    check(not os.path.exists(os.path.join(root, "a.txt")), "rename left the source")
    eq(read(root, "renamed \u00e9.txt"), b"hello\nworld\n", "renamed content")
    ftp.rename("dir one", "dir two")
    check(os.path.isdir(os.path.join(root, "dir two")), "directory rename")
    expect_error(ftplib.error_perm, "550", ftp.rename, "missing", "x")
    expect_error(ftplib.error_perm, "503", ftp.sendcmd, "RNTO nowhere")
    resp = ftp.delete("b c.txt")
    check(resp.startswith("250"), f"DELE {resp!r}")
    check(not os.path.exists(os.path.join(root, "b c.txt")), "DELE left the file")
    expect_error(ftplib.error_perm, "550", ftp.delete, "b c.txt")
    expect_error(ftplib.error_perm, "550", ftp.delete, "dir two")

    # Errors, STAT, FEAT, HELP, SYST, NOOP.
    expect_error(ftplib.error_perm, "500", ftp.sendcmd, "FOOBAR")
    expect_error(ftplib.error_perm, "500", ftp.sendcmd, "XYZZY with args")
    stat = ftp.sendcmd("STAT")
    stat_lines = stat.split("\n")
    check(stat_lines[0].startswith("211-"), f"STAT first line {stat_lines[0]!r}")
    check(stat_lines[-1].startswith("211 "), f"STAT last line {stat_lines[-1]!r}")
    check(len(stat_lines) >= 3, f"STAT is multi-line: {stat!r}")
    check(user in stat, f"STAT names the user: {stat!r}")
    feat = ftp.sendcmd("FEAT")
    feat_lines = feat.split("\n")
    check(feat_lines[0].startswith("211-") and feat_lines[-1].startswith("211 "), f"FEAT {feat!r}")
    features = {line.strip().split(" ")[0].upper() for line in feat_lines[1:-1]}
    for want in ("EPRT", "EPSV", "MDTM", "MFMT", "MLST", "PASV", "REST", "SIZE", "UTF8"):
        check(want in features, f"FEAT lacks {want}: {feat!r}")
    check(all(line.startswith(" ") for line in feat_lines[1:-1]), f"FEAT lines start with a space: {feat!r}")
    mlst = next(line for line in feat_lines if line.strip().upper().startswith("MLST"))
    for fact in ("type", "size", "modify"):
        check(fact in mlst.lower(), f"MLST facts lack {fact}: {mlst!r}")
    check("REST STREAM" in feat, f"FEAT REST STREAM: {feat!r}")
    check(ftp.sendcmd("HELP").startswith("214"), "HELP")
    check(ftp.sendcmd("SYST").startswith("215"), "SYST")
    eq(ftp.voidcmd("NOOP")[:3], "200", "NOOP")
    eq(ftp.sendcmd("OPTS UTF8 ON")[:3], "200", "OPTS UTF8 ON")
    eq(ftp.quit()[:3], "221", "QUIT")


run(main)
