#!/usr/bin/env python3
"""mkdoc -- docs/BENCHMARKS.md from two or more runs of bench/run.sh.

    python3 bench/mkdoc.py bench/out/<run1> bench/out/<run2> [...] [--notes NOTES.md] > docs/BENCHMARKS.md

Each run directory holds summary.json (written by ratios.py at the end of run.sh; recomputed
from the run's rounds when missing) and run-info.txt.  The document publishes only same-run
ratios: per figure, the ratio of ferroftp against the best peer in each run, the min-max of the
per-round ratios, and the verdict (win, tie or loss, see ratios.py); then the figure's verdict over
all the runs: a win or a loss only when every run with a verdict says so (two runs or more), else a tie.  It also gives, per run, the
machine, the load, the versions and the parameters, and the method.  No absolute figure is
published here: they are in each run's table.md.  --notes adds a hand-written section.
"""
import argparse, json, os, re, sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ratios  # noqa: E402


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def summary(d):
    j = ratios.load(os.path.join(d, "summary.json"))
    return j if j else ratios.summarize(d, "ferroftp")


def versions(d):
    kv = {}
    for line in read(os.path.join(d, "run-info.txt")).splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            kv.setdefault(k.strip(), v.strip())
    return kv


def cell(c, other=False):
    if not c:
        return "—"
    v = {"win": "**win**", "loss": "loss", "tie": "tie", "n/a": "n/a"}[c["verdict"]]
    rng = "" if c.get("paired_min") is None else f" ({c['paired_min']:.2f}–{c['paired_max']:.2f})"
    return f"{c['ratio']:.2f}{rng} {v}" + (f" vs {c['other']}" if other else "")


def overall(cs):
    """A win or a loss when every run with a verdict (5 or more rounds) says so, and there are two such
    runs or more; a tie when they disagree or one says tie; n/a with fewer than two runs with a verdict."""
    vs = [c["verdict"] for c in cs if c and c["verdict"] != "n/a"]
    if len(vs) < 2:
        return "n/a (fewer than 2 runs with a verdict)"
    if all(v == "win" for v in vs):
        return "**win**"
    if all(v == "loss" for v in vs):
        return "loss"
    return "tie"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories (bench/out/<run>), two or more")
    ap.add_argument("--notes", help="markdown to insert after the summary")
    a = ap.parse_args()
    S = [summary(d) for d in a.runs]
    K = [s["info"] for s in S]
    if len(S) < 2:
        print("mkdoc.py: WARNING: one run only; the document asks for two or more", file=sys.stderr)
    smoke = [str(i + 1) for i, k in enumerate(K) if k.get("smoke") == "1"]
    n = len(S)
    hdr = [f"run {i + 1}" for i in range(n)]
    L = ["# ferroftp benchmarks", ""]
    if smoke:
        L += [f"> **Smoke run(s): {', '.join(smoke)}** — small parameters and 2 rounds: they show that the pipeline "
              "works, and give no verdict. Publish two full runs: `sudo bench/run.sh` twice, then "
              "`python3 bench/mkdoc.py bench/out/<run1> bench/out/<run2> > docs/BENCHMARKS.md`.", ""]
    L += ["Every figure below is a **same-run ratio**: ferroftp and the server it is compared with were measured "
          f"in the same run, their tests interleaved round by round. {n} run(s), each described under "
          "[The runs](#the-runs). How the tests work: [bench/README.md](../bench/README.md).", "",
          "How to read a cell: `ratio (per-round min–max) verdict`. A ratio > 1 means ferroftp wins (ferroftp / "
          "other for rates, other / ferroftp for times, memory and CPU); it is the median of the ratios of the "
          "paired rounds (round k of one server against round k of the other, measured within the same minutes), "
          "and the range is the smallest and largest of them. A ratio is a **tie** when that range contains "
          "1: the rep-to-rep spread is larger than the difference. With fewer than 5 paired rounds there is no verdict "
          "(n/a): two equal servers would win both of 2 rounds 1 time in 4. The last column is a win or a loss only when "
          "every run with a verdict says so, and there are at least two such runs.", ""]
    if a.notes:
        L += [read(a.notes).rstrip(), ""]

    figs = [f["figure"] for f in S[0]["figures"]]
    byfig = [{f["figure"]: f for f in s["figures"]} for s in S]
    meta = {f["figure"]: f for s in S for f in s["figures"]}

    def section(title, text, key, filt=lambda f: True, other=True):
        rows = []
        for fid in dict.fromkeys(figs + [f for b in byfig for f in b]):
            cs = [b.get(fid, {}).get(key) for b in byfig]
            if not any(cs) or not filt(meta[fid]):
                continue
            m = meta[fid]
            rows.append(f"| {m['area']} | {m['label']} | " + " | ".join(cell(c, other) for c in cs) +
                        f" | {overall(cs)} |")
        if not rows:
            return
        L.extend([title, "", text, "",
                  "| area | figure | " + " | ".join(hdr) + " | over the runs |",
                  "|---|---|" + "---|" * n + "---|"] + rows + [""])

    section("## ferroftp against the best peer",
            "The best peer is, per figure and run, the peer with the best median in that run.", "vs_best")
    section("## Uploads with fsync off: ferroftp-nofsync against the best peer",
            "ferroftp's default (`uploads.fsync = \"replacements\"`) fsyncs an upload that replaces a file before "
            "the 226; no peer does. ferroftp-nofsync is the same binary with `fsync = \"never\"`, run as its own "
            "server in the same rounds: both settings are published against the peers.", "nofsync_vs_best")
    section("## Server CPU per GB: ferroftp against Pure-FTPd",
            "CPU-seconds (utime + stime of the server's process tree, from /proc) per GB moved.", "vs_pureftpd",
            lambda f: f["area"] == "server CPU", other=False)
    costs = "; ".join(f"run {i + 1}: ferroftp {k.get('ferroftp login cost', '?')}, unFTP "
                      f"{k.get('unftp login cost', '?')} (timed: "
                      f"{k.get('hash cost here (ftp-loadgen hashcost, one core, median)', '?')})"
                      for i, k in enumerate(K))
    section("## Logins and idle sessions: ferroftp against unFTP",
            "At an equal password cost: unFTP's user has a PBKDF2-HMAC-SHA256 hash whose iteration count costs, "
            "on the machine of the run, what ferroftp's argon2id hash costs (both timed by `ftp-loadgen hashcost` "
            f"with the crates the two servers use). {costs}.", "vs_unftp",
            lambda f: f["area"] in ("logins", "idle sessions"), other=False)
    section("## Before and after: ferroftp against ferroftp-before",
            "ferroftp-before is a second ferroftp binary run as its own server in the same rounds "
            "(`FERROFTP_BEFORE_BIN`). Ratio > 1: the new binary wins. "
            + "; ".join(f"run {i + 1}: before = {k.get('ferroftp-before', 'not run')}" for i, k in enumerate(K)) + ".",
            "vs_before", other=False)

    L += ["## The runs", "", "| | " + " | ".join(hdr) + " |", "|---|" + "---|" * n]

    def row(lab, f):
        L.append(f"| {lab} | " + " | ".join(f(s, k) for s, k in zip(S, K)) + " |")
    fargs = lambda k: "`" + re.sub(r" --conc-client \S+", " --conc-client ftp-loadgen", k.get("FTPBENCH_ARGS", "?")) + "`"
    row("date", lambda s, k: k.get("date", "?")[:16])
    row("command", lambda s, k: f"`{k.get('command', '?')}`")
    row("rounds (repetitions of every test)", lambda s, k: str(s.get("rounds", "?")))
    row("servers", lambda s, k: ", ".join(s.get("servers", [])))
    row("ftpbench parameters", lambda s, k: fargs(k))
    row("big file", lambda s, k: f"{k.get('BIG_MB', '?')} MiB")
    row("duration", lambda s, k: k.get("duration", "?"))
    row("load average at start / end", lambda s, k: f"{k.get('loadavg at start', '?')} / {k.get('loadavg at end', '?')}")
    row("machine", lambda s, k: f"{k.get('cpus', '?')} CPUs ({k.get('model name', '?')}), {k.get('mem', '?')} RAM, "
                                f"kernel {k.get('kernel', '?')}")
    row("ferroftp", lambda s, k: k.get("ferroftp", "?"))
    row("ferroftp-before", lambda s, k: k.get("ferroftp-before", "not run"))
    row("ferroftp configs", lambda s, k: k.get("ferroftp configs", "?"))
    row("login cost", lambda s, k: f"ferroftp: {k.get('ferroftp login cost', '?')}; unFTP: {k.get('unftp login cost', '?')}; "
                                   f"C peers: {k.get('C peers login cost', '?')}")
    row("peers", lambda s, k: f"{k.get('vsftpd', '?')}; {k.get('pure-ftpd', '?')}; {k.get('unftp', '?')}; "
                              f"{k.get('proftpd', '?')}; pyftpdlib {k.get('pyftpdlib', '?')}")
    row("clients and tools", lambda s, k: f"{k.get('curl', '?').split(' (')[0]}; {k.get('python', '?')}; "
                                          f"{k.get('openssl', '?')}; {k.get('rustc', '?')}")
    row("results", lambda s, k: f"`{os.path.relpath(s['dir'], os.path.dirname(HERE)) if s['dir'].startswith(os.path.dirname(HERE)) else s['dir']}`")
    L += ["", "## Method", "",
          "- **One run, interleaved.** `bench/run.sh` runs R rounds (default 5). In each round every server in turn "
          "is started, runs one repetition of every test, and is stopped (vsftpd, Pure-FTPd, unFTP, ferroftp, "
          "ferroftp-nofsync, ferroftp-before: A, B, C, A, B, C …), so a slow drift of the shared machine hits every "
          "server alike. The dirty pages of the uploads are written (`sync`) between two servers.",
          "- **Medians and spread.** A server's figure is the median of its R rounds; its spread is the min–max. The "
          "published ratio is the median of the R paired per-round ratios, its spread their min–max, and a ratio "
          "whose spread contains 1 is a tie: with 5 rounds a win means ferroftp was ahead in all 5 pairs.",
          "- **Same fixtures, loopback.** All servers serve the same home (a random file of the run's size, 10,000 "
          "empty files, a 1-byte file) on 127.0.0.1; clients are curl (bulk), Python ftplib (small files, listings, "
          "time to first byte) and bench/loadgen (logins and idle sessions, one thread). Client and server share "
          "the two cores.",
          "- **Uploads.** Each STOR repetition creates a new file; the \"replacing a file\" figure is a second STOR "
          "to the same name right after. ferroftp runs with its defaults, so that second STOR is fsynced before "
          "the 226; ferroftp-nofsync does not fsync, like the peers.",
          "- **Login cost.** See the logins section: equal hash cost for ferroftp and unFTP; the C peers check an "
          "MD5-crypt hash through crypt(3).",
          "- **What is not here.** Absolute MB/s, files/s and milliseconds: they depend on the machine and its load, "
          "and are in each run's `table.md` (median and min–max per server) and `rounds/*.json`.", ""]
    print("\n".join(L))


if __name__ == "__main__":
    main()
