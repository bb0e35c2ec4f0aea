#!/usr/bin/env python3
"""ratios -- same-run ratios of ferroftp against the best peer, with their spread and ties.

    ratios.py OUTDIR [--ferro ferroftp] [--table OUTDIR/table.md] [--summary OUTDIR/summary.json] > ratios.md

Reads OUTDIR/rounds/<server>.r<k>.json: one `ftpbench.py run --reps 1` per server and round, the
servers interleaved within each round by bench/run.sh.  (A directory of the older layout, one
OUTDIR/<server>.json per server, is read as a single round.)

For every figure and server: the median over the rounds and its spread (min-max over the rounds).
Every ratio is oriented so that > 1 means the first server wins:
  higher-is-better figures (MB/s, files/s, logins/s):        ferroftp / other
  lower-is-better figures  (seconds, ms, KiB, CPU-s per GB):  other / ferroftp
The ratio published is the median of the per-round ratios (ferroftp's round k against the other
server's round k: the same minutes of the same machine), and its spread their min-max.
A ratio is a **tie** when that spread contains 1, that is when the other server won at least one
of the rounds that ferroftp otherwise won (or the reverse): its difference from 1 lies inside the
rep-to-rep spread.  Otherwise it is a win (> 1) or a loss (< 1).  With 5 rounds a win means
ferroftp was ahead in all 5 paired rounds.  Below 5 paired rounds there is no verdict (n/a): two
equal servers would "win" both of 2 rounds 1 time in 4.

Comparisons: ferroftp against the best peer (the peer with the best median) for every figure but server CPU per GB;
ferroftp-nofsync (uploads.fsync = "never") against the best peer for the figures it ran;
ferroftp's server CPU per GB against Pure-FTPd's; logins/s against unFTP's; ferroftp against
ferroftp-before (before/after) when that server ran.  Peers are the servers whose name does not
start with "ferroftp".
"""
import argparse, glob, json, os, re, statistics, sys

HIGHER, LOWER = "higher", "lower"
# Below 5 paired rounds a verdict means little: two equal servers "win" all of 2 rounds 1 time in 4
# (all of 5: 1 time in 32), so fewer rounds give a ratio and its range but no verdict.
MIN_PAIRS = 5
FERRO_VARIANTS = ("ferroftp-nofsync", "ferroftp-before")


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def g(r, *ks):
    for k in ks:
        if r is None:
            return None
        r = r.get(k) if isinstance(r, dict) else None
    return r


def fmt(x, nd=0):
    if x is None:
        return "n/a"
    if abs(x) >= 100 and nd > 0:
        nd = 0 if abs(x) >= 1000 else min(nd, 1)
    return f"{x:,.{nd}f}"


def cpu_per_gb(r, key):
    """Server CPU-s per GB of the bulk test `key` (the median-speed run; 0 = not accounted)."""
    runs = [x for x in (g(r, key, "runs") or []) if "MBps" in x]
    if not runs:
        return None
    x = sorted(runs, key=lambda x: x["MBps"])[len(runs) // 2]
    sv = x.get("server_tree_cpu_s")
    return sv / (x["bytes"] / 1e9) if sv else None


def level(r, n):
    for lv in g(r, "concurrency", "levels") or []:
        if lv.get("n") == n and "skipped" not in lv and lv.get("ok") == lv.get("n"):
            return lv  # only levels fully reached compare
    return None


BULK = (("retr_plain", "RETR plain"), ("stor_plain", "STOR plain (new file)"),
        ("stor_over_plain", "STOR plain replacing a file"), ("retr_tls", "RETR TLS"),
        ("stor_tls", "STOR TLS (new file)"), ("stor_over_tls", "STOR TLS replacing a file"))


def figures(levels):
    """(id, area, label, unit, better, getter) for every figure."""
    F = []
    for k, lab in BULK:
        F.append((k, "bulk", lab, "MB/s", HIGHER, lambda r, k=k: g(r, k, "median_MBps")))
    for k, lab in BULK:
        F.append((f"cpu_{k}", "server CPU", f"{lab}", "CPU-s/GB", LOWER, lambda r, k=k: cpu_per_gb(r, k)))
    for k, lab in (("small_plain", "plain"), ("small_tls", "TLS")):
        for d in ("up", "down"):
            F.append((f"{k}_{d}", "small files", f"4 KiB {d}, {lab}", "files/s", HIGHER,
                      lambda r, k=k, d=d: g(r, k, f"{d}_files_per_s")))
    for mode in ("plain", "tls"):
        for cmd in ("nlst", "list", "mlsd"):
            F.append((f"{cmd}_{mode}", "listing 10k", f"{cmd.upper()} {'TLS' if mode == 'tls' else mode}", "s",
                      LOWER, lambda r, k=f"{cmd}_{mode}": g(r, k, "median_s")))
    for k, lab in (("ttfb_plain", "plain"), ("ttfb_tls", "TLS")):
        F.append((k, "TTFB", f"median, {lab}", "ms", LOWER, lambda r, k=k: g(r, k, "median_ms")))
    for n in levels:
        F.append((f"logins_{n}", "logins", f"logins/s to {n:,} sessions", "logins/s", HIGHER,
                  lambda r, n=n: g(level(r, n), "logins_per_s")))
    for n in levels:
        F.append((f"login_cpu_{n}", "logins", f"server CPU per login, to {n:,}", "ms", LOWER,
                  lambda r, n=n: g(level(r, n), "server_cpu_ms_per_login")))
    for n in [n for n in levels if n >= 1000]:  # below 1000 sessions it is the allocator's noise
        F.append((f"pss_{n}", "idle sessions", f"PSS per idle session at {n:,}", "KiB", LOWER,
                  lambda r, n=n: g(level(r, n), "pss_kib_per_session")))
    return F


def read_rounds(d):
    """{server: {round: result}} from d/rounds/*.r<k>.json, or d/<server>.json as round 1."""
    out = {}
    files = glob.glob(os.path.join(d, "rounds", "*.json"))
    for fn in files:
        m = re.match(r"(.+)\.r(\d+)\.json$", os.path.basename(fn))
        j = load(fn)
        if m and j and "name" in j:
            out.setdefault(j["name"], {})[int(m.group(2))] = j
    if not files:
        for fn in glob.glob(os.path.join(d, "*.json")):
            j = load(fn)
            if j and "name" in j and not fn.endswith(".extras.json"):
                out.setdefault(j["name"], {})[1] = j
    return out


def stats(vals):
    xs = [v for v in vals.values() if v is not None]
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs),
            "rounds": {str(k): v for k, v in sorted(vals.items()) if v is not None}}


def oriented(a, b, better):
    if a is None or b is None or a <= 0 or b <= 0:
        return None  # a zero (or negative: noise) memory/CPU figure has no meaningful ratio
    return a / b if better == HIGHER else b / a


def compare(fig, S, who, other):
    """The ratio of server `who` against server `other` on figure fig, from the stats table S."""
    fid, better = fig[0], fig[4]
    a, b = g(S, who, fid), g(S, other, fid)
    if not a or not b:
        return None
    paired = [oriented(a["rounds"][k], b["rounds"][k], better) for k in a["rounds"] if k in b["rounds"]]
    paired = [x for x in paired if x is not None]
    # the median of the paired per-round ratios (the design is paired: round k of both servers ran
    # within the same minutes); without pairs, the ratio of the two medians
    r = statistics.median(paired) if paired else oriented(a["median"], b["median"], better)
    if r is None:
        return None
    lo, hi = (min(paired), max(paired)) if paired else (None, None)
    if len(paired) < MIN_PAIRS:
        verdict = "n/a"
    elif lo <= 1 <= hi:
        verdict = "tie"
    else:
        verdict = "win" if r > 1 else "loss"
    return {"who": who, "other": other, "ratio": r, "paired_min": lo, "paired_max": hi, "pairs": len(paired),
            "verdict": verdict}


def best_peer(fig, S, peers):
    vals = {p: g(S, p, fig[0], "median") for p in peers}
    vals = {p: v for p, v in vals.items() if v is not None and v > 0}
    if not vals:
        return None
    return (max if fig[4] == HIGHER else min)(vals, key=vals.get)


def spread(st, nd):
    if not st:
        return "n/a"
    return f"{fmt(st['median'], nd)} ({fmt(st['min'], nd)}–{fmt(st['max'], nd)})"


def nd_of(unit):
    return 2 if unit in ("ms", "CPU-s/GB", "") else (3 if unit == "s" else (1 if unit == "KiB" else 0))


def vcell(c):
    if not c:
        return "n/a", "n/a", ""
    v = {"win": "**win**", "loss": "loss", "tie": "tie", "n/a": "n/a"}[c["verdict"]]
    rng = "n/a" if c["paired_min"] is None else f"{c['paired_min']:.2f}–{c['paired_max']:.2f}"
    return f"{c['ratio']:.2f}", rng, v


def summarize(d, ferro):
    R = read_rounds(d)
    if ferro not in R:
        sys.exit(f"ratios.py: no results for {ferro} in {d}")
    levels = sorted({lv["n"] for rs in R.values() for r in rs.values()
                     for lv in (g(r, "concurrency", "levels") or []) if "skipped" not in lv})
    F = figures(levels)
    S = {s: {} for s in R}
    for s, rs in R.items():
        for fig in F:
            st = stats({k: fig[5](r) for k, r in rs.items()})
            if st:
                S[s][fig[0]] = st
    peers = sorted(s for s in R if not s.startswith("ferroftp"))
    comps = []
    for fig in F:
        # server CPU per GB is compared with Pure-FTPd only (the figure the issue names): vsftpd's is not
        # always folded into its parent before it is read (0.02-1.2 CPU-s/GB between rounds of one test)
        bp = None if fig[1] == "server CPU" else best_peer(fig, S, peers)
        row = {"figure": fig[0], "area": fig[1], "label": fig[2], "unit": fig[3], "better": fig[4],
               "best_peer": bp, "vs_best": compare(fig, S, ferro, bp) if bp else None}
        if "ferroftp-nofsync" in S and bp:
            row["nofsync_vs_best"] = compare(fig, S, "ferroftp-nofsync", bp)
        if "ferroftp-before" in S:
            row["vs_before"] = compare(fig, S, ferro, "ferroftp-before")
        if "pureftpd" in S:
            row["vs_pureftpd"] = compare(fig, S, ferro, "pureftpd")
        if "unftp" in S:
            row["vs_unftp"] = compare(fig, S, ferro, "unftp")
        comps.append(row)
    info = {}
    for line in (open(os.path.join(d, "run-info.txt")).read().splitlines()
                 if os.path.exists(os.path.join(d, "run-info.txt")) else []):
        if ":" in line:
            k, v = line.split(":", 1)
            info.setdefault(k.strip(), v.strip())
    rounds = sorted({k for rs in R.values() for k in rs})
    return {"dir": os.path.abspath(d), "ferro": ferro, "servers": sorted(R), "peers": peers, "rounds": len(rounds),
            "info": info, "stats": S, "figures": comps}


def table_md(sm):
    """Every server's median and min-max over the rounds, per figure (the raw material of the ratios)."""
    S, servers = sm["stats"], sm["servers"]
    L = [f"## All figures: median over {sm['rounds']} rounds (min–max)\n",
         "| area | figure | unit | " + " | ".join(servers) + " |", "|---|---|---|" + "---|" * len(servers)]
    for c in sm["figures"]:
        if not any(c["figure"] in S[s] for s in servers):
            continue
        nd = nd_of(c["unit"])
        L.append(f"| {c['area']} | {c['label']} | {c['unit']} | " +
                 " | ".join(spread(S[s].get(c["figure"]), nd) for s in servers) + " |")
    return "\n".join(L)


def ratios_md(sm):
    S, F = sm["stats"], sm["ferro"]
    L = [f"## {F} against the best peer (same run, {sm['rounds']} interleaved rounds)\n",
         "Ratio > 1: ferroftp wins (ferroftp / peer for rates, peer / ferroftp for times, memory and CPU). "
         "The ratio is the median of the ratios of the paired rounds (round k of both servers), \"per round\" their min–max; "
         f"a ratio whose per-round range contains 1 is a **tie**; with fewer than {MIN_PAIRS} paired rounds there is no verdict (n/a). Peers: " + (", ".join(sm["peers"]) or "none") + ".\n",
         "| area | figure | unit | ferroftp median (min–max) | best peer: median (min–max) | ratio | per round | verdict |",
         "|---|---|---|---|---|---|---|---|"]
    for c in sm["figures"]:
        v = c.get("vs_best")
        if not v:
            continue
        nd = nd_of(c["unit"])
        r, rng, vd = vcell(v)
        L.append(f"| {c['area']} | {c['label']} | {c['unit']} | {spread(S[F].get(c['figure']), nd)} | "
                 f"{v['other']}: {spread(S[v['other']].get(c['figure']), nd)} | {r} | {rng} | {vd} |")

    def section(title, text, key, filt=lambda c: True):
        rows = [c for c in sm["figures"] if c.get(key) and filt(c)]
        if not rows:
            return
        L.extend(["", title, "", text, "", "| area | figure | unit | medians | ratio | per round | verdict |",
                  "|---|---|---|---|---|---|---|"])
        for c in rows:
            v = c[key]
            nd = nd_of(c["unit"])
            r, rng, vd = vcell(v)
            L.append(f"| {c['area']} | {c['label']} | {c['unit']} | {v['who']} {spread(S[v['who']].get(c['figure']), nd)}"
                     f" / {v['other']} {spread(S[v['other']].get(c['figure']), nd)} | {r} | {rng} | {vd} |")

    section("## ferroftp-nofsync (uploads.fsync = \"never\") against the best peer",
            "The same binary as ferroftp with fsync of replaced files turned off: the peers never fsync, so this is "
            "the like-for-like upload figure; ferroftp's own row above pays for the fsync of a replacement.",
            "nofsync_vs_best")
    section("## ferroftp against Pure-FTPd: server CPU per GB",
            "Server CPU-seconds (utime + stime of the server's process tree) per GB moved.",
            "vs_pureftpd", lambda c: c["area"] == "server CPU")
    info = sm["info"]
    section("## ferroftp against unFTP: logins",
            f"Login cost: ferroftp: {info.get('ferroftp login cost', '?')}; unFTP: {info.get('unftp login cost', '?')}. "
            f"Measured here: {info.get('hash cost here (ftp-loadgen hashcost, one core, median)', '?')}.",
            "vs_unftp", lambda c: c["area"] == "logins" or c["area"] == "idle sessions")
    section("## ferroftp against ferroftp-before",
            f"ferroftp-before: {info.get('ferroftp-before', '?')}. Ratio > 1: the new binary wins.",
            "vs_before")
    counts = {}
    for c in sm["figures"]:
        if c.get("vs_best"):
            counts[c["vs_best"]["verdict"]] = counts.get(c["vs_best"]["verdict"], 0) + 1
    L += ["", "Against the best peer: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("win", "tie", "loss", "n/a")) + "."]
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--ferro", default="ferroftp", help="name of ferroftp's results")
    ap.add_argument("--table", help="also write every server's medians and spreads (markdown) here")
    ap.add_argument("--summary", help="also write the medians, spreads and ratios (JSON, for mkdoc.py) here")
    a = ap.parse_args()
    sm = summarize(a.outdir, a.ferro)
    if a.table:
        with open(a.table, "w") as f:
            f.write(table_md(sm) + "\n")
    if a.summary:
        with open(a.summary, "w") as f:
            json.dump(sm, f, indent=1)
    print(ratios_md(sm))


if __name__ == "__main__":
    main()
