#!/usr/bin/env python3
"""Write the seed corpora in fuzz/corpus/ (committed; rerun after changing the input formats).

control_line: byte 0 = line-length limit (255 = 4096), then raw client bytes.
path_resolver: flags, repeat, cwd length (u16 LE), cwd, argument.
session_tcp: login byte, then per command: verb index, flags, argument bytes (see session_tcp.rs).
session: settings byte, then operations: commands, effect answers, transfer ends, timers (see session.rs).
"""
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = open(os.path.join(HERE, "fuzz_targets", "session_tcp.rs"), encoding="utf-8").read()


def rust_list(name):
    body = re.search(r"const %s: &\[&str\] = &\[(.*?)\];" % name, SRC, re.S).group(1)
    # As written in the Rust source (escapes not decoded): look names up in that form.
    return re.findall(r'"((?:[^"\\]|\\.)*)"', body)


VERBS = rust_list("VERBS")
PATHS = rust_list("PATHS")


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- control_line ----
lines = {
    "login": b"USER anonymous\r\nPASS a@b.c\r\nSYST\r\nFEAT\r\nPWD\r\n",
    "navigate": b"CWD /dir\r\nCDUP\r\nXCWD ..\r\nXPWD\r\nXCUP\r\n",
    "files": b"MKD new dir\r\nRMD x\r\nDELE a.txt\r\nRNFR a\r\nRNTO b\r\nSIZE f\r\nMDTM f\r\n",
    "types": b"TYPE A\r\nTYPE A N\r\nTYPE I\r\nTYPE L 8\r\nTYPE L 7\r\nTYPE E\r\nMODE S\r\nMODE B\r\nSTRU F\r\nSTRU R\r\n",
    "passive": b"PASV\r\nEPSV\r\nEPSV ALL\r\nEPSV 1\r\nEPSV 2\r\nEPSV 3\r\n",
    "port": b"PORT 127,0,0,1,200,10\r\nPORT 1,2,3,4,5\r\nPORT 256,1,1,1,1,1\r\n",
    "eprt": b"EPRT |1|132.235.1.2|6275|\r\nEPRT |2|1080::8:800:200C:417A|5282|\r\nEPRT !1!10.0.0.1!21!\r\nEPRT |3|1.2.3.4|21|\r\nEPRT |2|::ffff:127.0.0.1|2000|\r\n",
    "lists": b"LIST\r\nLIST -la\r\nLIST -a -l dir name\r\nNLST ./-x\r\nMLSD\r\nMLST file\r\nSTAT\r\nSTAT -l dir\r\n",
    "transfers": b"REST 100\r\nRETR f\r\nSTOR f\r\nAPPE f\r\nSTOU\r\nSTOU hint\r\nREST 99999999999999999999\r\nABOR\r\n",
    "mfmt": b"MFMT 20200102030405 a b.txt\r\nMFMT 19691231235959.5 f\r\nMFMT 99991231235959.999999999 f\r\nMFMT 2020 a\r\n",
    "mfmt_pre_epoch": b"MFMT 19000101000000.000000001 f\r\n",
    "opts": b"OPTS UTF8 ON\r\nOPTS UTF8 OFF\r\nOPTS MLST size;Type;bogus;\r\nOPTS MLST\r\nOPTS\r\n",
    "site": b"SITE CHMOD 755 a b\r\nSITE CHMOD 9 a\r\nSITE HELP\r\nSITE\r\nSITE EXEC ls\r\n",
    "security": b"AUTH TLS\r\nAUTH SSL\r\nPBSZ 0\r\nPROT P\r\nPROT C\r\nPROT S\r\nCCC\r\nAUTH\r\n",
    "misc": b"HELP\r\nHELP retr\r\nNOOP\r\nALLO 100\r\nACCT x\r\nREIN\r\nQUIT\r\n",
    "unknown": b"FOO bar\r\nSMNT x\r\nLANG en\r\nABCDEFGHI\r\n123\r\n \r\n\r\n",
    "telnet": b"\xff\xf4\xff\xf2ABOR\r\nNO\xff\xffOP\r\n\xff\xfb\x01USER a\r\n",
    "bare_lf": b"USER a\nPASS b\nNOOP",
    "utf8": "STOR h\u00e9llo w\u00f6rld.txt\r\nRETR \u65e5\u672c\r\n".encode() + b"STOR \xff\xfe\r\n",
    "spaces": b"RETR  my file .txt \r\nLIST \r\nPASS \r\nuser bob\r\n",
    "hostile_paths": b"RETR ../../etc/passwd\r\nCWD %2e%2e/%2e%2e\r\nDELE a\x00b\r\nSTOR x\ry\r\n",
    "reply_like": b"227 Entering Passive Mode (127,0,0,1,4,1)\r\n",
    "reply_multi": b"211-Features:\r\n UTF8\r\n211 End\r\n",
    "pasv_text": b"(10,0,0,1,255,255)",
    "port_text": b"192,168,1,2,4,0",
    "eprt_text": b"|2|::1|21|",
    "timeval": b"20261120083000",
}
for name, data in lines.items():
    write("control_line", name, b"\xff" + data)
write("control_line", "limit_small", b"\x0aNOOP    \r\nNOOP     \r\n")
write("control_line", "limit_exact", b"\x06NOOP\r\n")
write("control_line", "too_long", b"\x08" + b"A" * 40)
write("control_line", "cr_at_limit", b"\x0aNOOP     \r")

# ---- path_resolver ----
def pr(arg, cwd=b"", flags=0, repeat=0):
    return bytes([flags, repeat]) + struct.pack("<H", len(cwd)) + cwd + arg


paths = {
    "plain": pr(b"file.txt"),
    "nested": pr(b"b/c", b"/a"),
    "absolute": pr(b"/x/y/z", b"/a/b"),
    "dotdot": pr(b"../../etc/passwd", b"/a"),
    "dotdot_root": pr(b"/../../.."),
    "dots": pr(b"./a/./b/."),
    "slashes": pr(b"a//b///c/", b"//x//"),
    "percent": pr(b"%2e%2e/%2e%2e/x"),
    "backslash": pr(b"..\\..\\x"),
    "nul": pr(b"a\x00b"),
    "empty": pr(b"", b"/a/b"),
    "spaces": pr(b" a /  b "),
    "utf8": pr("\u00e9t\u00e9/\u65e5\u672c".encode()),
    "invalid_utf8": pr(b"\xff\xfe/x"),
    "deep": pr(b"a/", flags=1, repeat=64),
    "deeper": pr(b"a/", flags=3, repeat=33),
    "long": pr(b"x" * 64, flags=1, repeat=64),
    "long_climb": pr(b"../", flags=3, repeat=64),
    "long_abs": pr(b"ab/", flags=5, repeat=60),
    "mixed_climb": pr(b"a/b/../", flags=3, repeat=40),
    "dot_names": pr(b"...//..../.a/..b"),
    "cwd_dotdot": pr(b"x", b"../../.."),
    "trailing": pr(b"dir/", b"/a"),
}
for name, data in paths.items():
    write("path_resolver", name, data)

# ---- session_tcp ----
KIND_NONE, KIND_SPECIAL, KIND_RAW, KIND_LONG, KIND_PATH_RAW, KIND_PATH = 0, 1, 2, 3, 4, 6
PIPE, LF, CRCRLF, LOWER, TELNET = 8, 0x10, 0x20, 0x40, 0x80


def v(name):
    return VERBS.index(name)


def p(name):
    return PATHS.index(name)


def cmd(verb, kind=KIND_NONE, *arg, flags=0):
    return bytes([v(verb), kind | flags]) + bytes(arg)


def path_cmd(verb, path, flags=0):
    return cmd(verb, KIND_PATH, p(path), flags=flags)


def raw_cmd(verb, data, flags=0):
    return bytes([v(verb), KIND_RAW | flags, len(data)]) + data


def special(verb, *choice, flags=0):
    return cmd(verb, KIND_SPECIAL, *choice, flags=flags)


PASV = cmd("PASV")
EPSV = cmd("EPSV")
PORT = special("PORT", 0)
EPRT = special("EPRT", 0)
session = {
    "noop": [cmd("NOOP"), cmd("PWD"), cmd("SYST"), cmd("FEAT")],
    "retr_pasv": [PASV, path_cmd("RETR", "file.txt")],
    "retr_epsv_binary": [special("TYPE", 1), EPSV, path_cmd("RETR", "bin.dat")],
    "retr_active": [PORT, path_cmd("RETR", "file.txt")],
    "retr_eprt": [EPRT, path_cmd("RETR", "dir/inner.txt")],
    "retr_rest": [special("REST", 2), PASV, path_cmd("RETR", "file.txt")],
    "retr_rest_past_end": [special("REST", 3), PASV, path_cmd("RETR", "file.txt")],
    "stor_pasv": [PASV, path_cmd("STOR", "new.txt"), PASV, path_cmd("RETR", "new.txt")],
    "stor_over": [PASV, path_cmd("STOR", "file.txt"), path_cmd("SIZE", "file.txt")],
    "stor_ascii_active": [special("TYPE", 0), PORT, path_cmd("STOR", "dir/new.txt")],
    "appe": [PASV, path_cmd("APPE", "file.txt"), path_cmd("SIZE", "file.txt")],
    "rest_stor": [special("REST", 2), PASV, path_cmd("STOR", "file.txt")],
    "stou": [PASV, cmd("STOU"), EPSV, special("STOU", p("file.txt"))],
    "stor_no_data": [path_cmd("STOR", "new.txt"), cmd("STOU"), path_cmd("APPE", "new")],
    "list_all": [PASV, cmd("LIST"), EPSV, path_cmd("NLST", "dir"), PASV, cmd("MLSD"), path_cmd("MLST", "file.txt")],
    "list_glob": [PASV, path_cmd("LIST", "*.txt"), PASV, path_cmd("NLST", "[a-f]*"), PASV, path_cmd("LIST", "-la dir")],
    "list_escape": [PASV, path_cmd("LIST", "link_root"), PASV, path_cmd("LIST", "../*"), PASV, path_cmd("NLST", "link_out/*")],
    "stat_paths": [cmd("STAT"), path_cmd("STAT", "dir"), path_cmd("STAT", "link_root/*"), path_cmd("STAT", "file.txt")],
    "abor_during_stor": [PASV, path_cmd("STOR", "new.txt"), cmd("ABOR")],
    "stat_during_stor": [PASV, path_cmd("STOR", "new.txt"), cmd("STAT")],
    "abor_idle": [cmd("ABOR"), PASV, cmd("ABOR")],
    "mkd_rmd": [path_cmd("MKD", "newdir"), path_cmd("CWD", "newdir"), cmd("PWD"), cmd("CDUP"), path_cmd("RMD", "newdir"), path_cmd("RMD", "dir")],
    "rename": [path_cmd("RNFR", "file.txt"), path_cmd("RNTO", "new.txt"), path_cmd("RNTO", "new"), path_cmd("RNFR", "dir"), path_cmd("RNTO", "link_out")],
    "rename_escape": [path_cmd("RNFR", "file.txt"), path_cmd("RNTO", "link_out/x"), path_cmd("RNFR", "link_root"), path_cmd("RNTO", "new")],
    "dele": [path_cmd("DELE", "file.txt"), path_cmd("DELE", "dir"), path_cmd("DELE", "link_out"), path_cmd("DELE", "link_abs")],
    "cwd_escape": [path_cmd("CWD", "../../etc/passwd"), path_cmd("CWD", "link_out"), path_cmd("CWD", "link_root"), path_cmd("CWD", "%2e%2e/%2e%2e"), cmd("PWD")],
    "retr_escape": [PASV, path_cmd("RETR", "link_abs"), PASV, path_cmd("RETR", "link_root/home/file.txt"), PASV, path_cmd("RETR", "fifo")],
    "size_mdtm": [path_cmd("SIZE", "file.txt"), special("TYPE", 0), path_cmd("SIZE", "file.txt"), path_cmd("MDTM", "file.txt"), path_cmd("SIZE", "link_abs"), path_cmd("MDTM", "dir")],
    "mfmt": [special("MFMT", 0, p("file.txt")), special("MFMT", 1, p("file.txt")), path_cmd("MDTM", "file.txt"), special("MFMT", 3, p("link_abs"))],
    "chmod": [special("SITE", 0, 0, p("file.txt")), special("SITE", 0, 1, p("link_out")), special("SITE", 0, 3, p("link_root")), special("SITE", 1)],
    "opts": [special("OPTS", 2), PASV, cmd("MLSD"), special("OPTS", 1), special("OPTS", 5), path_cmd("MLST", "link_abs")],
    "auth_plain": [special("AUTH", 0), special("PBSZ", 0), special("PROT", 0), cmd("CCC")],
    "epsv_all": [special("EPSV", 2), PASV, PORT, EPSV],
    "port_refused": [special("PORT", 5), special("PORT", 6), special("PORT", 7), special("EPRT", 4), special("EPRT", 5), special("EPRT", 6)],
    "eprt_variants": [special("EPRT", 3), special("EPRT", 7), special("EPRT", 8), special("EPRT", 9), special("PORT", 8), special("PORT", 9)],
    "relogin": [special("USER", 1), special("PASS", 1), cmd("PWD"), special("USER", 0), special("PASS", 1), special("PASS", 0)],
    "rein": [cmd("REIN"), cmd("PWD"), special("USER", 3), special("PASS", 0), path_cmd("STOR", "new")],
    "readonly_writes": [path_cmd("MKD", "new"), PASV, path_cmd("STOR", "new"), path_cmd("DELE", "file.txt")],
    "pipelined": [cmd("NOOP", flags=PIPE), PASV, path_cmd("RETR", "file.txt", flags=PIPE), cmd("PWD", flags=PIPE), cmd("SYST", flags=PIPE)],
    "telnet_lower_lf": [cmd("NOOP", flags=TELNET), cmd("PWD", flags=LOWER), cmd("SYST", flags=LF), cmd("FEAT", flags=CRCRLF)],
    "long_line": [cmd("CWD", KIND_LONG, 0, 0, 200), cmd("NOOP")],
    "deep_mkd": [cmd("MKD", KIND_LONG, 0, 0, 40), cmd("CWD", KIND_LONG, 0, 4, 30), cmd("PWD")],
    "long_name": [cmd("MKD", KIND_LONG, 0, 2, 150), cmd("STOR", KIND_LONG, 0, 2, 140)],
    "raw_lines": [raw_cmd("", b"\xff\xfbNOOP"), raw_cmd("", b"  "), raw_cmd("", b""), raw_cmd("FOO", b"bar"), raw_cmd("SMNT", b"x")],
    "nul_cr": [path_cmd("CWD", r"a\0b"), path_cmd("MKD", r"x\ry"), path_cmd("DELE", r"\0")],
    "internal_names": [path_cmd("DELE", ".ferroftp-upload.0.part"), PASV, path_cmd("STOR", "dir/.ferroftp-upload.x.part"), path_cmd("RNTO", ".ferroftp-upload.0.part")],
    "help": [special("HELP", 3), cmd("HELP"), special("HELP", 40), cmd("ALLO")],
    "quit_early": [cmd("QUIT"), cmd("NOOP")],
    "failed_logins": [special("USER", 3), special("PASS", 1), special("USER", 3), special("PASS", 1), special("USER", 3), special("PASS", 1)],
}
for name, steps in session.items():
    login = 0x02 if name in ("readonly_writes",) else 0x00
    write("session_tcp", name, bytes([login]) + b"".join(steps))
write("session_tcp", "anonymous", bytes([0x02]) + b"".join([PASV, cmd("LIST"), path_cmd("MKD", "new"), PASV, path_cmd("STOR", "new.txt")]))
write("session_tcp", "not_logged_in", bytes([0x80]) + b"".join([cmd("PWD"), PASV, cmd("FEAT"), special("USER", 0), special("PASS", 0), cmd("PWD")]))

# ---- session (the core, no I/O) ----
CORE_SRC = open(os.path.join(HERE, "fuzz_targets", "session.rs"), encoding="utf-8").read()


def core_list(name):
    body = re.search(r"const %s: &\[&str\] = &\[(.*?)\];" % name, CORE_SRC, re.S).group(1)
    return re.findall(r'"((?:[^"\\]|\\.)*)"', body)


CORE_VERBS = core_list("VERBS")
CORE_ARGS = core_list("ARGS")


def c(verb, arg=None, *answers):
    """A command (verb index, argument index or 160 for none), then the answers to its effects."""
    a = 160 if arg is None else CORE_ARGS.index(arg)
    return bytes([CORE_VERBS.index(verb), a]) + bytes(answers)


LOGIN = c("USER", "alice") + c("PASS", "pw", 0, 1)
END_OK = bytes([200, 0])
core = {
    "login_list_quit": LOGIN + c("PWD") + c("PASV", None, 3) + c("LIST", None, 2) + END_OK + c("QUIT"),
    "wrong_passwords": c("USER", "alice") + c("PASS", "pw", 2) + c("USER", "alice") + c("PASS", "pw", 2) + c("USER", "alice") + c("PASS", "pw", 2),
    "banned": c("USER", "alice") + c("PASS", "pw", 3),
    "rename": LOGIN + c("RNFR", "file.txt", 0, 2) + c("RNTO", "dir") + c("RNFR", "file.txt", 0, 2) + c("NOOP") + c("RNTO", "dir"),
    "rest_retr": LOGIN + c("REST", "7") + c("NOOP") + c("PASV", None, 3) + c("RETR", "file.txt", 10) + bytes([201, 0]),
    "stor_no_data": LOGIN + c("STOR", "file.txt") + c("APPE", "file.txt") + c("STOU"),
    "transfer_abor_stat": LOGIN + c("EPSV", None, 3) + c("STOR", "file.txt", 2) + c("STAT", None, 5) + c("NOOP", None, 9) + c("ABOR") + bytes([203, 3]),
    "epsv_all": LOGIN + c("EPSV", "ALL") + c("PASV") + c("PORT", "127,0,0,1,200,10") + c("EPRT", "|1|127.0.0.1|51210|") + c("EPSV", None, 4),
    "tls_pbsz_prot": bytes([1]) + c("PROT", "P") + c("AUTH", "TLS", 1, 3) + c("PROT", "P") + c("PBSZ", "0") + c("PROT", "P") + c("PROT", "C") + c("CCC"),
    "tls_required": bytes([5]) + c("USER", "alice") + c("AUTH", "TLS", 1, 3) + c("USER", "alice", 1, 1),
    "data_tls_required": bytes([9]) + c("AUTH", "TLS", 1, 3) + c("USER", "alice", 0) + c("PASS", "pw", 0, 1) + c("PBSZ", "0") + c("PROT", "C") + c("PASV", None, 3) + c("LIST"),
    "anonymous": bytes([16]) + c("USER", "anonymous") + c("PASS", "pw", 1) + c("DELE", "file.txt") + c("CWD", "../../etc/passwd", 2),
    "file_ops": LOGIN + c("CWD", "dir", 2) + c("MKD", "dir/sub", 0) + c("SIZE", "file.txt", 0) + c("TYPE", "I") + c("SIZE", "file.txt", 0) + c("MDTM", "file.txt", 0) + c("MLST", None, 2) + c("SITE", "CHMOD 4755 file.txt") + c("DELE", ".ferroftp-upload.0.part") + c("STAT", "dir", 0),
    "timeouts": c("NOOP") + bytes([240]),
    "reload_gone": LOGIN + bytes([255, 3]),
    "parse_errors": c("FOO") + c("", None) + c("PORT", "x y") + c("REST", "18446744073709551615") + c("USER", None),
    "rein": LOGIN + c("TYPE", "I") + c("EPSV", "ALL") + c("REIN") + c("LIST") + c("USER", "alice"),
}
for name, data in core.items():
    settings = b"" if data[:1] in (b"\x01", b"\x05", b"\x09", b"\x10") else b"\x00"
    write("session", name, settings + data)
