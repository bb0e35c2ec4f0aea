#!/usr/bin/env python3
"""mkdoc -- docs/BENCHMARKS.md from one run's output directory.

    python3 bench/mkdoc.py bench/out/<run> [--notes NOTES.md] > docs/BENCHMARKS.md

It takes run-info.txt (command, parameters, versions, machine, load), ratios.md and table.md, and
labels a --smoke run as such.  --notes adds a hand-written section (findings) after the summary.
"""
import argparse, os, re, sys


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--notes", help="markdown to insert after the summary")
    a = ap.parse_args()
    info = read(os.path.join(a.outdir, "run-info.txt"))
    kv = {}
    for line in info.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            kv.setdefault(k.strip(), v.strip())
    smoke = kv.get("smoke") == "1"
    ratios = read(os.path.join(a.outdir, "ratios.md"))
    table = read(os.path.join(a.outdir, "table.md"))
    if not ratios or not table:
        sys.exit(f"mkdoc.py: {a.outdir} lacks ratios.md or table.md")
    date = kv.get("date", "?")[:10]
    fargs = re.sub(r" --conc-client \S+", " --conc-client bench/loadgen/.../ftp-loadgen", kv.get("FTPBENCH_ARGS", ""))
    L = ["# ferroftp benchmarks", ""]
    if smoke:
        L += ["> **SMOKE RUN** — small parameters (" + kv.get("BIG_MB", "?") + " MiB file, one repetition, "
              "few files and sessions) on a busy shared machine. It shows that the pipeline works and gives a first "
              "picture; it is **not** the published result. Replace this file with a full run on a quiet machine: "
              "`sudo bench/run.sh` then `python3 bench/mkdoc.py bench/out/<run> > docs/BENCHMARKS.md`.", ""]
    L += [f"Measured {date}. ferroftp against vsftpd, Pure-FTPd, ProFTPD, pyftpdlib and unFTP, one server at a "
          "time, on the same fixtures, everything on loopback. How the tests work, what each figure means and "
          "their caveats: [bench/README.md](../bench/README.md).", "",
          "## The run", "",
          "| | |", "|---|---|",
          f"| command | `sudo {kv.get('command', 'bench/run.sh')}` |",
          f"| ftpbench parameters | `{fargs}` |",
          f"| extras parameters | `{kv.get('EXTRAS_ARGS', '')}` |",
          f"| big file | {kv.get('BIG_MB', '?')} MiB |",
          f"| duration | {kv.get('duration', '?')} |",
          f"| load average (1, 5, 15 min) at start / end | {kv.get('loadavg at start', '?')} / {kv.get('loadavg at end', '?')} |",
          f"| machine | {kv.get('cpus', '?')} CPUs ({kv.get('model name', '?')}), {kv.get('mem', '?')} RAM, kernel {kv.get('kernel', '?')} |",
          f"| limits | RLIMIT_NOFILE {kv.get('RLIMIT_NOFILE', '?')} |",
          f"| ferroftp | {kv.get('ferroftp', '?')}, {kv.get('rustc', '?')} |",
          f"| login cost | ferroftp: {kv.get('ferroftp login cost', '?')}; peers: {kv.get('peers login cost', '?')} |",
          f"| peers | {kv.get('vsftpd', '?').replace('vsftpd: version', 'vsftpd')}; {kv.get('pure-ftpd', '?')}; {kv.get('proftpd', '?')}; "
          f"pyftpdlib: {kv.get('pyftpdlib', '?')}; unFTP: {kv.get('unftp', '?')} |",
          f"| clients and tools | curl: {kv.get('curl', '?').split(' (')[0]}; {kv.get('python', '?')}; "
          f"{kv.get('openssl', '?').split(' (')[0]}; {kv.get('iperf3', '?')} |", ""]
    # the 1-minute load average when each server's run started and ended (a measure of the noise)
    import glob, json
    loads = []
    for fn in sorted(glob.glob(os.path.join(a.outdir, "*.json"))):
        try:
            j = json.load(open(fn))
        except (OSError, ValueError):
            continue
        if "name" in j and "loadavg_start" in j:
            part = "extras" if fn.endswith(".extras.json") else "ftpbench"
            loads.append((j.get("started", ""), j["name"], part, j["loadavg_start"][0], (j.get("loadavg_end") or ["?"])[0]))
    if loads:
        L += ["1-minute load average while each server ran (it counts the benchmark's own client and server too; other jobs share the machine):", "",
              "| server | part | load at start | load at end |", "|---|---|---|---|"]
        L += [f"| {n} | {p} | {s} | {e} |" for _, n, p, s, e in sorted(loads)]
        L += [""]
    if a.notes:
        L += [read(a.notes).rstrip(), ""]
    L += [re.sub(r"Source: `[^`]*`\. ", "", ratios).rstrip(), "",
          "## All numbers", "", re.sub(r"^### ", "### ", table, flags=re.M).rstrip(), ""]
    print("\n".join(L))


if __name__ == "__main__":
    main()
