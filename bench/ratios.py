#!/usr/bin/env python3
"""ratios -- ferroftp against the best peer, against the machine, and against the targets.

    ratios.py OUTDIR [--ferro ferroftp] [--buffer-kib 1024] > OUTDIR/ratios.md

Reads OUTDIR/limits.json, OUTDIR/<server>.json (ftpbench.py run) and OUTDIR/<server>.extras.json
(extras.py run).  Every ratio is oriented so that > 1 means ferroftp wins:
  higher-is-better metrics (MB/s, files/s, logins/s):   ferroftp / best peer
  lower-is-better metrics  (seconds, ms, KiB, CPU-s):   best peer / ferroftp
"""
import argparse, glob, json, os, sys

HIGHER, LOWER = "higher", "lower"


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


def ratio(f, b, better):
    if f is None or b is None or f <= 0 or b <= 0:
        return None  # a zero (or negative: noise) memory/CPU figure has no meaningful ratio
    if better == HIGHER:
        return f / b if b > 0 else None
    return b / f if f > 0 else None


def cpu_per_gb(r, key):
    runs = [x for x in (g(r, key, "runs") or []) if "MBps" in x]
    if not runs:
        return None
    x = sorted(runs, key=lambda x: x["MBps"])[len(runs) // 2]
    sv = x.get("server_tree_cpu_s")
    return sv / (x["bytes"] / 1e9) if sv else None  # 0 = not accounted (forking server)


def client_cpu_per_gb(r, key):
    runs = [x for x in (g(r, key, "runs") or []) if "MBps" in x]
    if not runs:
        return None
    x = sorted(runs, key=lambda x: x["MBps"])[len(runs) // 2]
    return x["client_cpu_s"] / (x["bytes"] / 1e9)


def level(r, n):
    for lv in g(r, "concurrency", "levels") or []:
        if lv.get("n") == n and "skipped" not in lv:
            return lv
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--ferro", default="ferroftp", help="name of ferroftp's results (CUSTOM_NAME)")
    ap.add_argument("--buffer-kib", type=float, default=1024,
                    help="the most RSS growth during a 100k listing that counts as 'a buffer' (KiB)")
    a = ap.parse_args()
    D = a.outdir
    lim = g(load(os.path.join(D, "limits.json")), "limits") or {}
    res, ext = {}, {}
    for fn in sorted(glob.glob(os.path.join(D, "*.json"))):
        b = os.path.basename(fn)
        if b == "limits.json":
            continue
        j = load(fn)
        if not j or "name" not in j:
            continue
        (ext if b.endswith(".extras.json") else res)[j["name"]] = j
    F = a.ferro
    if F not in res:
        sys.exit(f"ratios.py: no results for {F} in {D}")
    peers = [n for n in res if n != F]
    fr, fx = res[F], ext.get(F, {})

    rows = []  # (section, metric, unit, better, ferro value, {peer: value})

    def add(section, metric, unit, better, getter, src="res"):
        S = res if src == "res" else ext
        fv = getter(S.get(F) or {})
        pv = {p: getter(S.get(p) or {}) for p in peers}
        rows.append((section, metric, unit, better, fv, {p: v for p, v in pv.items() if v is not None}))

    for k, lab in (("retr_plain", "RETR plain"), ("stor_plain", "STOR plain"), ("retr_tls", "RETR TLS"),
                   ("stor_tls", "STOR TLS")):
        add("bulk", lab, "MB/s", HIGHER, lambda r, k=k: g(r, k, "median_MBps"))
    for k, lab in (("retr_plain", "RETR plain"), ("stor_plain", "STOR plain"), ("retr_tls", "RETR TLS"),
                   ("stor_tls", "STOR TLS")):
        add("bulk CPU", f"server CPU {lab}", "CPU-s/GB", LOWER, lambda r, k=k: cpu_per_gb(r, k))
    for k, lab in (("small_plain", "plain"), ("small_tls", "TLS")):
        add("small files", f"up {lab}", "files/s", HIGHER, lambda r, k=k: g(r, k, "up_files_per_s"))
        add("small files", f"down {lab}", "files/s", HIGHER, lambda r, k=k: g(r, k, "down_files_per_s"))
    for k, lab in (("list_plain", "LIST plain"), ("mlsd_plain", "MLSD plain"), ("nlst_plain", "NLST plain"),
                   ("list_tls", "LIST TLS"), ("mlsd_tls", "MLSD TLS")):
        add("listing 10k", lab, "s", LOWER, lambda r, k=k: g(r, k, "median_s"))
    for k, lab in (("ttfb_plain", "plain"), ("ttfb_tls", "TLS")):
        add("TTFB", f"median {lab}", "ms", LOWER, lambda r, k=k: g(r, k, "median_ms"))
        add("TTFB", f"p99 {lab}", "ms", LOWER, lambda r, k=k: g(r, k, "p99_ms"))
    ns = sorted({lv["n"] for r in res.values() for lv in (g(r, "concurrency", "levels") or []) if "skipped" not in lv})

    def full(lv):
        return lv if lv and lv.get("ok") == lv.get("n") else None  # only levels fully reached compare

    for n in ns:
        add("idle sessions", f"logins/s to {n:,}", "logins/s", HIGHER,
            lambda r, n=n: g(full(level(r, n)), "logins_per_s"))
    # memory per session below 1000 sessions is within the allocator's noise: not compared
    for n in [n for n in ns if n >= 1000]:
        add("idle sessions", f"PSS per session at {n:,}", "KiB", LOWER,
            lambda r, n=n: g(full(level(r, n)), "pss_kib_per_session"))
    for n in [n for n in ns if n >= 1000]:
        add("idle sessions", f"RSS per session at {n:,}", "KiB", LOWER,
            lambda r, n=n: g(full(level(r, n)), "rss_kib_per_session"))
    for k, lab in (("list_plain", "LIST plain"), ("nlst_plain", "NLST plain"), ("mlsd_plain", "MLSD plain"),
                   ("list_tls", "LIST TLS"), ("nlst_tls", "NLST TLS"), ("mlsd_tls", "MLSD TLS")):
        add("listing 100k", f"{lab} time", "s", LOWER, lambda r, k=k: g(r, k, "median_s"), "ext")
    for k, lab in (("list_plain", "LIST plain"), ("nlst_plain", "NLST plain"), ("mlsd_plain", "MLSD plain"),
                   ("list_tls", "LIST TLS"), ("nlst_tls", "NLST TLS"), ("mlsd_tls", "MLSD TLS")):
        add("listing 100k", f"{lab} RSS growth", "KiB", LOWER, lambda r, k=k: g(r, k, "rss_growth_kib"), "ext")
    xn = g(fx, "xfer", "n") or 1000
    add("N at once", f"{xn:,} x RETR: aggregate", "MB/s", HIGHER, lambda r: g(r, "xfer", "aggregate_MBps"), "ext")
    add("N at once", f"{xn:,} x RETR: slowest session", "MB/s", HIGHER,
        lambda r: g(r, "xfer", "per_session_MBps", "min"), "ext")
    add("N at once", f"{xn:,} x RETR: Jain's index", "", HIGHER, lambda r: g(r, "xfer", "jain"), "ext")
    add("N at once", f"{xn:,} x RETR: server CPU", "CPU-s/GB", LOWER,
        lambda r: g(r, "xfer", "server_cpu_s_per_GB") or None, "ext")

    def best(pv, better):
        if not pv:
            return None, None
        p = (max if better == HIGHER else min)(pv, key=pv.get)
        return p, pv[p]

    L = [f"## ferroftp against the best peer\n",
         f"Source: `{D}`. Ratio > 1 means ferroftp wins (ferroftp / best for rates, best / ferroftp for times, "
         f"memory and CPU). Peers: {', '.join(peers) or 'none'}. For idle sessions only levels that a server "
         f"fully reached are compared; server CPU of forking servers is only counted when it was accounted.\n",
         "| area | metric | unit | ferroftp | best peer | ferroftp vs best |", "|---|---|---|---|---|---|"]
    for sec, met, unit, better, fv, pv in rows:
        if fv is None and not pv:
            continue
        p, bv = best(pv, better)
        r = ratio(fv, bv, better)
        nd = 2 if unit in ("ms", "CPU-s/GB", "") else (3 if unit == "s" else 0)
        rs = "n/a" if r is None else (f"**{r:.2f}**" if r >= 1 else f"{r:.2f}")
        L.append(f"| {sec} | {met} | {unit} | {fmt(fv, nd)} | {fmt(bv, nd)} ({p or '-'}) | {rs} |")

    # ---- machine
    ipf = lim.get("iperf3_loopback_MBps")
    aes = lim.get("openssl_aes-256-gcm_16k_MBps")
    cs = str(fr.get("tls_cipher") or "").upper()
    neg_alg = ("aes-128-gcm" if "AES_128_GCM" in cs or "AES128-GCM" in cs else
               "aes-256-gcm" if "AES_256_GCM" in cs or "AES256-GCM" in cs else
               "chacha20-poly1305" if "CHACHA20" in cs else None)
    neg_rate = lim.get(f"openssl_{neg_alg}_16k_MBps") if neg_alg else None
    L += ["", "## ferroftp against the machine\n",
          "| metric | ferroftp | machine limit | ratio |", "|---|---|---|---|"]

    def mrow(lab, v, limv, limlab):
        r = None if v is None or not limv else v / limv
        L.append(f"| {lab} | {fmt(v)} MB/s | {limlab} {fmt(limv)} MB/s | {'n/a' if r is None else f'{r:.2f}'} |")
    mrow("RETR plain / loopback TCP", g(fr, "retr_plain", "median_MBps"), ipf, "iperf3 1 stream")
    mrow("STOR plain / loopback TCP", g(fr, "stor_plain", "median_MBps"), ipf, "iperf3 1 stream")
    mrow("RETR TLS / AES-256-GCM one core", g(fr, "retr_tls", "median_MBps"), aes, "openssl speed 16 KiB")
    mrow("STOR TLS / AES-256-GCM one core", g(fr, "stor_tls", "median_MBps"), aes, "openssl speed 16 KiB")
    if neg_alg and neg_alg != "aes-256-gcm":
        mrow(f"RETR TLS / {neg_alg.upper()} one core (the cipher ferroftp negotiated)",
             g(fr, "retr_tls", "median_MBps"), neg_rate, "openssl speed 16 KiB")
        mrow(f"STOR TLS / {neg_alg.upper()} one core (the cipher ferroftp negotiated)",
             g(fr, "stor_tls", "median_MBps"), neg_rate, "openssl speed 16 KiB")
    mrow(f"{xn:,} sessions at once (aggregate) / loopback TCP", g(fx, "xfer", "aggregate_MBps"), ipf,
         "iperf3 1 stream")
    L += ["", "| bulk test | server CPU-s per GB | client (curl) CPU-s per GB | server + client cores busy at that rate |",
          "|---|---|---|---|"]
    for k, lab in (("retr_plain", "RETR plain"), ("stor_plain", "STOR plain"), ("retr_tls", "RETR TLS"),
                   ("stor_tls", "STOR TLS")):
        s, c, mb = cpu_per_gb(fr, k), client_cpu_per_gb(fr, k), g(fr, k, "median_MBps")
        cores = None if s is None or c is None or not mb else (s + c) * mb / 1000
        L.append(f"| {lab} | {fmt(s, 2)} | {fmt(c, 2)} | {fmt(cores, 2)} |")
    xc, xs = g(fx, "xfer", "client_cpu_s"), g(fx, "xfer", "server_tree_cpu_s")
    if xc is not None:
        L.append(f"| {xn:,} at once (Python asyncio client) | {fmt(g(fx, 'xfer', 'server_cpu_s_per_GB'), 2)} | "
                 f"{fmt(g(fx, 'xfer', 'client_cpu_s_per_GB'), 2)} (Python) | "
                 f"{fmt(None if xs is None else (xs + xc) / max(1e-9, g(fx, 'xfer', 'wall_s') or 0), 2)} |")

    # ---- targets
    T = []

    def target(name, ok, value, goal, by):
        st = "n/a (no data)" if ok is None else ("**met**" if ok else "**missed**")
        T.append(f"| {name} | {value} | {goal} | {st} | {by} |")

    def pct(r):
        return "n/a" if r is None else f"{(r - 1) * 100:+.0f}%"

    def vs_all(key_get, better, src=None):
        S = src if src is not None else res
        fv = key_get(S.get(F) or {})
        pv = {p: key_get(S.get(p) or {}) for p in peers}
        pv = {p: v for p, v in pv.items() if v is not None}
        p, bv = best(pv, better)
        return fv, p, bv, ratio(fv, bv, better)

    v = g(fr, "retr_plain", "median_MBps")
    r = None if v is None or not ipf else v / ipf
    target("RETR plain >= 0.9 x iperf3 loopback", None if r is None else r >= 0.9, f"{fmt(v)} MB/s = {fmt(r, 2)} x",
           f">= {fmt(0.9 * ipf if ipf else None)} MB/s", "n/a" if r is None else f"{r / 0.9:.2f} x the target")
    for k, lab, clear in (("retr_plain", "RETR plain ahead of every peer", 1.0),
                          ("stor_plain", "STOR plain ahead of every peer", 1.0),
                          ("retr_tls", "RETR TLS clearly ahead of every peer (>= 1.3 x best)", 1.3),
                          ("stor_tls", "STOR TLS clearly ahead of every peer (>= 1.3 x best)", 1.3)):
        fv, p, bv, r = vs_all(lambda x, k=k: g(x, k, "median_MBps"), HIGHER)
        target(lab, None if r is None else (r > 1 if clear == 1.0 else r >= clear), f"{fmt(fv)} MB/s", f"> {p} {fmt(bv)} MB/s" +
               (" x 1.3" if clear > 1 else ""), f"{fmt(r, 2)} x best peer ({pct(r)})")
    for k, lab in (("retr_tls", "RETR TLS"), ("stor_tls", "STOR TLS")):
        v = g(fr, k, "median_MBps")
        r = None if v is None or not aes else v / (0.5 * aes)
        target(f"aim: {lab} >= half of one core's AES-256-GCM", None if r is None else r >= 1, f"{fmt(v)} MB/s",
               f">= {fmt(0.5 * aes if aes else None)} MB/s", "n/a" if r is None else f"{r:.2f} x the aim")
    for k, peer, lab in (("small_plain", "pureftpd", "small files plain ahead of Pure-FTPd"),
                         ("small_tls", "vsftpd", "small files TLS ahead of vsftpd")):
        for d in ("up", "down"):
            fv, pv = g(fr, k, f"{d}_files_per_s"), g(res.get(peer), k, f"{d}_files_per_s")
            r = ratio(fv, pv, HIGHER)
            target(f"{lab} ({d})", None if r is None else r > 1, f"{fmt(fv)} files/s", f"> {fmt(pv)} files/s",
                   f"{fmt(r, 2)} x ({pct(r)})")
    for k, lab in (("ttfb_plain", "plain"), ("ttfb_tls", "TLS")):
        fv, pv = g(fr, k, "median_ms"), g(res.get("unftp"), k, "median_ms")
        r = ratio(fv, pv, LOWER)
        target(f"TTFB median {lab} <= unFTP's", None if r is None else fv <= pv, f"{fmt(fv, 2)} ms",
               f"<= {fmt(pv, 2)} ms", f"{fmt(r, 2)} x ({pct(r)})")
    for n in ns:
        fl, ul = full(level(fr, n)), full(level(res.get("unftp"), n))
        if not fl and not ul:
            continue
        fv, pv = g(fl, "logins_per_s"), g(ul, "logins_per_s")
        r = ratio(fv, pv, HIGHER)
        target(f"logins/s ahead of unFTP (to {n:,} sessions)", None if r is None else r > 1, f"{fmt(fv)}/s",
               f"> {fmt(pv)}/s", f"{fmt(r, 2)} x ({pct(r)})")
    flv = [lv for lv in (g(fr, "concurrency", "levels") or []) if full(lv) and lv["n"] >= 1000]
    if flv:
        top = max(flv, key=lambda lv: lv["n"])
        pss = top.get("pss_kib_per_session")
        target(f"memory <= 16 KiB per idle session (PSS at {top['n']:,})", None if pss is None else pss <= 16,
               f"{fmt(pss, 1)} KiB", "<= 16 KiB (aim 4)", "n/a" if pss is None else
               (f"{16 / pss:.1f} x under the limit" if pss > 0 else "no growth measured") +
               ("" if pss is None or pss > 4 else "; aim met") )
        worst = max(flv, key=lambda lv: lv.get("pss_kib_per_session") or 0)
        if worst is not top:
            T.append(f"| (highest PSS per session among levels >= 1,000: {fmt(worst.get('pss_kib_per_session'), 1)} "
                     f"KiB at {worst['n']:,}) | | | | |")
    else:
        target("memory <= 16 KiB per idle session", None, "n/a", "<= 16 KiB", "n/a")
    for k, lab in (("list_plain", "LIST plain"), ("mlsd_plain", "MLSD plain"), ("list_tls", "LIST TLS"),
                   ("mlsd_tls", "MLSD TLS")):
        fv, pv = g(fr, k, "median_s"), g(res.get("pureftpd"), k, "median_s")
        r = ratio(fv, pv, LOWER)
        target(f"listing 10k {lab} <= Pure-FTPd's", None if r is None else fv <= pv, f"{fmt(fv, 3)} s",
               f"<= {fmt(pv, 3)} s", f"{fmt(r, 2)} x ({pct(r)})")
    for k, lab in (("list_plain", "LIST plain"), ("nlst_plain", "NLST plain"), ("mlsd_plain", "MLSD plain"),
                   ("list_tls", "LIST TLS"), ("nlst_tls", "NLST TLS"), ("mlsd_tls", "MLSD TLS")):
        gk, sz = g(fx, k, "rss_growth_kib"), g(fx, k, "bytes")
        if gk is None and sz is None:
            continue
        target(f"100k {lab}: RSS growth <= a buffer ({a.buffer_kib:,.0f} KiB)", None if gk is None else
               gk <= a.buffer_kib, f"+{fmt(gk)} KiB (listing {fmt(sz / 1024 if sz else None)} KiB)",
               f"<= {a.buffer_kib:,.0f} KiB", "n/a" if gk is None else f"{gk / a.buffer_kib:.2f} x the limit")
    L += ["", "## Targets\n", "| target | ferroftp | goal | status | margin |", "|---|---|---|---|---|"] + T
    met = sum(1 for t in T if "**met**" in t)
    missed = sum(1 for t in T if "**missed**" in t)
    L += ["", f"{met} met, {missed} missed, {len(T) - met - missed} without data."]
    print("\n".join(L))


if __name__ == "__main__":
    main()
