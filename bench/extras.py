#!/usr/bin/env python3
"""extras -- the tests ftpbench.py lacks (Python 3.11 stdlib only).

Subcommands
  run     run the extra tests against one server:
            extras.py run --name X --host 127.0.0.1 --port 2121 --user U --password P \
                --server-pid PID [--tls] [--tests list100k,xfer] --out X.extras.json
  table   markdown tables from *.extras.json files

Tests
  list100k  LIST, NLST and MLSD of a directory of 100,000 entries (--bigdir, default dir100k), plain and
            (with --tls) TLS.  Time per complete listing (PASV to 226, like ftpbench's 10k test), and the
            server's memory: VmRSS summed over the server PID and its descendants, sampled every 10 ms by a
            separate process (so the client's GIL cannot delay it).  "before" is the median of the samples
            taken in the 100 ms before the listing starts (session logged in, in the directory), "peak" the
            highest sample while the listing runs; growth = peak - before.
  xfer      N sessions transferring at once (--xfer-n, default 1000; fewer if RLIMIT_NOFILE does not allow
            2 fds per session): all N log in first (at most --inflight logins in progress), then at one
            barrier every session sends PASV, connects, sends RETR of --xfer-file (default x4m.bin, 4 MiB)
            and reads it to EOF.  Aggregate MB/s = all bytes / (last EOF - barrier).  Per-session MB/s =
            size / (EOF - that session's RETR), reported as min / median / max and Jain's fairness index
            J = (sum x)^2 / (n * sum x^2) (1 = perfectly fair, 1/n = one session gets everything).
            Client and server CPU-seconds are recorded, because client and server share the cores.

Throughputs are in MB/s = 10^6 B/s.  Everything is meant for loopback.
"""
import argparse, asyncio, ftplib, json, multiprocessing as mp, os, re, resource, socket, ssl, statistics
import sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ftpbench  # noqa: E402  (FTP/FTPS classes, tree(), tree_cpu_ticks(), close_data(), tls_ctx())


def log(*a):
    print("[extras]", *a, file=sys.stderr, flush=True)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ----------------------------------------------------------------------------- RSS sampler

def _tree_rss_kib(pids):
    tot = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        tot += int(line.split()[1])
                        break
        except OSError:
            pass
    return tot


def _sampler(root, interval, stop, q):
    """Sample the server tree's summed VmRSS every `interval` s until `stop` is set.
    The process list is re-read every 100 ms (forking servers may fork during a listing)."""
    out = []
    pids = ftpbench.tree(root)
    last_tree = time.monotonic()
    nxt = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if now - last_tree > 0.1:
            pids = ftpbench.tree(root)
            last_tree = now
        out.append((time.perf_counter(), _tree_rss_kib(pids)))
        nxt += interval
        d = nxt - time.monotonic()
        if d > 0:
            time.sleep(d)
        else:
            nxt = time.monotonic()
    q.put(out)


class RssSampler:
    def __init__(self, pid, interval=0.01):
        self.pid, self.interval = pid, interval

    def __enter__(self):
        ctx = mp.get_context("fork")
        self.stop, self.q = ctx.Event(), ctx.Queue()
        self.p = ctx.Process(target=_sampler, args=(self.pid, self.interval, self.stop, self.q), daemon=True)
        self.p.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.samples = self.q.get(timeout=30)
        self.p.join(10)
        return False


# ----------------------------------------------------------------------------- list100k

def connect(a, tls):
    if tls:
        f = ftpbench.FTPS(context=ftpbench.tls_ctx(), timeout=a.timeout)
        f.connect(a.host, a.port)
        f.auth()
        f.login(a.user, a.password)
        f.prot_p()
    else:
        f = ftpbench.FTP(timeout=a.timeout)
        f.connect(a.host, a.port)
        f.login(a.user, a.password)
    return f


def raw_listing(f, cmd):
    """Run a listing command, count bytes and lines without keeping them (the client must not be
    the bottleneck: no per-line Python callback)."""
    f.voidcmd("TYPE A")
    conn = f.transfercmd(cmd)
    nbytes = nlines = 0
    while True:
        b = conn.recv(1 << 16)
        if not b:
            break
        nbytes += len(b)
        nlines += b.count(b"\n")
    ftpbench.close_data(conn)
    f.voidresp()
    return nbytes, nlines


def list100k(a, tls):
    tag = "tls" if tls else "plain"
    out = {}
    for cmd in ("LIST", "NLST", "MLSD"):
        runs, err = [], None
        try:
            f = connect(a, tls)
            f.cwd(a.bigdir)
            for _ in range(a.list_reps):
                with RssSampler(a.server_pid, 0.01) as s:
                    time.sleep(0.12)
                    t0 = time.perf_counter()
                    nbytes, nlines = raw_listing(f, cmd)
                    t1 = time.perf_counter()
                    time.sleep(0.03)
                before = [r for (t, r) in s.samples if t0 - 0.1 <= t < t0] or [s.samples[0][1]]
                during = [r for (t, r) in s.samples if t0 <= t <= t1 + 0.005] or [before[-1]]
                b = statistics.median(before)
                pk = max(during)
                runs.append({"seconds": t1 - t0, "bytes": nbytes, "lines": nlines, "rss_before_kib": b,
                             "rss_peak_kib": pk, "rss_growth_kib": pk - b, "samples": len(during)})
                log(f"{cmd} 100k {tag}: {t1 - t0:.3f} s, {nlines} lines, {nbytes} B, RSS {b} -> peak {pk} KiB "
                    f"({len(during)} samples)")
            try:
                f.quit()
            except ftplib.all_errors:
                f.close()
        except Exception as e:  # noqa
            err = f"{type(e).__name__}: {str(e)[:160]}"
            log(f"{cmd} 100k {tag} FAILED: {err}")
        r = {"runs": runs}
        if runs:
            r.update(median_s=med([x["seconds"] for x in runs]), lines=runs[-1]["lines"], bytes=runs[-1]["bytes"],
                     rss_before_kib=med([x["rss_before_kib"] for x in runs]),
                     rss_peak_kib=max(x["rss_peak_kib"] for x in runs),
                     rss_growth_kib=max(x["rss_growth_kib"] for x in runs))
        if err:
            r["error"] = err
        out[f"{cmd.lower()}_{tag}"] = r
    return out


# ----------------------------------------------------------------------------- xfer (N at once)

class Sink(asyncio.BufferedProtocol):
    """Counts received bytes into one shared buffer; records first-byte and EOF times."""
    shared = bytearray(1 << 18)

    def __init__(self):
        self.n = 0
        self.t_first = None
        self.done = asyncio.get_running_loop().create_future()

    def get_buffer(self, hint):
        return Sink.shared

    def buffer_updated(self, n):
        if self.t_first is None:
            self.t_first = time.perf_counter()
        self.n += n

    def eof_received(self):
        return False  # close the transport

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(time.perf_counter())


async def read_reply(r):
    """Read one (possibly multi-line) FTP reply; return (code, last line)."""
    first = None
    while True:
        line = await r.readline()
        if not line:
            raise ConnectionError("control connection closed")
        s = line.decode("latin-1").rstrip("\r\n")
        if first is None:
            first = s[:3]
        if len(s) >= 4 and s[:3] == first and s[3] == " ":
            return int(first), s


async def xfer_run(a, n):
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(a.inflight)
    barrier = asyncio.Event()
    logged = 0
    all_logged = asyncio.Event()
    errors = {}
    t_barrier = [0.0]

    def err(e):
        k = f"{type(e).__name__}: {str(e)[:90]}"
        errors[k] = errors.get(k, 0) + 1

    async def one(i):
        nonlocal logged
        w = None
        res = None
        try:
            try:
                async with sem:
                    r, w = await asyncio.wait_for(asyncio.open_connection(a.host, a.port), a.timeout)
                    ftpbench.nodelay(w.get_extra_info("socket"))
                    c, s = await asyncio.wait_for(read_reply(r), a.timeout)
                    if c != 220:
                        raise RuntimeError(f"banner {s}")
                    w.write(f"USER {a.user}\r\n".encode())
                    c, s = await asyncio.wait_for(read_reply(r), a.timeout)
                    if c == 331:
                        w.write(f"PASS {a.password}\r\n".encode())
                        c, s = await asyncio.wait_for(read_reply(r), a.timeout)
                    if c != 230:
                        raise RuntimeError(f"login {s}")
                    w.write(b"TYPE I\r\n")
                    c, s = await asyncio.wait_for(read_reply(r), a.timeout)
                    if c != 200:
                        raise RuntimeError(f"TYPE I {s}")
            finally:
                logged += 1
                if logged == n:
                    all_logged.set()
            await barrier.wait()
            w.write(b"PASV\r\n")
            c, s = await asyncio.wait_for(read_reply(r), a.timeout * 4)
            if c != 227:
                raise RuntimeError(f"PASV {s}")
            m = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", s)
            port = int(m.group(5)) * 256 + int(m.group(6))
            tr, sink = await asyncio.wait_for(loop.create_connection(Sink, a.host, port), a.timeout * 4)
            t_retr = time.perf_counter()
            w.write(f"RETR {a.xfer_file}\r\n".encode())
            c, s = await asyncio.wait_for(read_reply(r), a.timeout * 4)
            if c not in (125, 150):
                tr.close()
                raise RuntimeError(f"RETR {s}")
            t_eof = await asyncio.wait_for(sink.done, a.timeout * 20)
            c, s = await asyncio.wait_for(read_reply(r), a.timeout * 4)
            if c != 226:
                raise RuntimeError(f"after RETR {s}")
            if sink.n != a.xfer_size:
                raise RuntimeError(f"short read {sink.n}/{a.xfer_size}")
            res = {"t_retr": t_retr - t_barrier[0], "t_first": (sink.t_first or t_eof) - t_barrier[0],
                   "t_eof": t_eof - t_barrier[0], "bytes": sink.n}
            w.write(b"QUIT\r\n")
        except Exception as e:  # noqa
            err(e)
        finally:
            if w is not None:
                try:
                    w.close()
                except Exception:  # noqa
                    pass
        return res

    n_procs0 = len(ftpbench.tree(a.server_pid)) if a.server_pid else 0
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await all_logged.wait()
    t_login = time.perf_counter() - t0
    await asyncio.sleep(0.5)
    hz = os.sysconf("SC_CLK_TCK")
    s0 = ftpbench.tree_cpu_ticks(a.server_pid) if a.server_pid else None
    c0 = resource.getrusage(resource.RUSAGE_SELF)
    b0, _ = ftpbench.cpu_busy_jiffies()
    t_barrier[0] = time.perf_counter()
    barrier.set()
    res = await asyncio.gather(*tasks)
    t_end = time.perf_counter()
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    b1, _ = ftpbench.cpu_busy_jiffies()
    await asyncio.sleep(0.5)
    if a.server_pid:
        # a forking server's session CPU is counted in the parent once the session is reaped
        t_w = time.time()
        while len(ftpbench.tree(a.server_pid)) > n_procs0 and time.time() - t_w < 10:
            await asyncio.sleep(0.1)
    s1 = ftpbench.tree_cpu_ticks(a.server_pid) if a.server_pid else None
    ok = [x for x in res if x]
    out = {"n": n, "ok": len(ok), "file_bytes": a.xfer_size, "login_phase_s": t_login, "errors": errors,
           "client_cpu_s": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime),
           "machine_busy_cpu_s": (b1 - b0) / hz,
           "server_tree_cpu_s": None if s0 is None else (s1 - s0) / hz}
    if ok:
        last = max(x["t_eof"] for x in ok)
        tot = sum(x["bytes"] for x in ok)
        per = [x["bytes"] / max(1e-9, x["t_eof"] - x["t_retr"]) / 1e6 for x in ok]
        out.update(
            wall_s=last, total_bytes=tot, aggregate_MBps=tot / last / 1e6,
            per_session_MBps={"min": min(per), "median": statistics.median(per), "max": max(per)},
            jain=(sum(per) ** 2) / (len(per) * sum(x * x for x in per)),
            retr_sent_s={"min": min(x["t_retr"] for x in ok), "max": max(x["t_retr"] for x in ok)},
            first_byte_s={"min": min(x["t_first"] for x in ok), "median": statistics.median(x["t_first"] for x in ok),
                          "max": max(x["t_first"] for x in ok)},
            eof_s={"min": min(x["t_eof"] for x in ok), "median": statistics.median(x["t_eof"] for x in ok),
                   "max": last},
            server_cpu_s_per_GB=None if out["server_tree_cpu_s"] is None else out["server_tree_cpu_s"] / (tot / 1e9),
            client_cpu_s_per_GB=out["client_cpu_s"] / (tot / 1e9))
    return out


def xfer(a):
    soft = ftpbench.raise_nofile()
    n = a.xfer_n
    if 2 * n + 64 > soft:
        n = max(1, (soft - 64) // 2)
        log(f"RLIMIT_NOFILE {soft}: xfer reduced to {n} sessions")
    log(f"xfer: {n} sessions x {a.xfer_file} ({a.xfer_size} B) at once ...")
    r = asyncio.run(xfer_run(a, n))
    r["nofile"] = soft
    if r.get("ok"):
        p = r["per_session_MBps"]
        log(f"xfer: {r['ok']}/{n} ok, aggregate {r['aggregate_MBps']:.0f} MB/s in {r['wall_s']:.2f} s, per-session "
            f"min/med/max {p['min']:.2f}/{p['median']:.2f}/{p['max']:.2f} MB/s, Jain {r['jain']:.3f}, "
            f"client CPU {r['client_cpu_s']:.1f} s, server CPU {r['server_tree_cpu_s']} s, errors {r['errors']}")
    else:
        log(f"xfer: no session completed; errors {r['errors']}")
    return r


# ----------------------------------------------------------------------------- run / table

def run(a):
    res = {"name": a.name, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "loadavg_start": open("/proc/loadavg").read().split()[:3]}
    if a.server_pid:
        owners = ftpbench.listener_pids(a.port)
        if not owners & set(ftpbench.tree(a.server_pid)):
            sys.exit(f"--server-pid {a.server_pid} does not own the listener on port {a.port}")
    tests = set(a.tests.split(","))
    # the xfer file's size, from the server
    if "xfer" in tests:
        f = connect(a, False)
        f.voidcmd("TYPE I")
        a.xfer_size = f.size(a.xfer_file)
        f.quit()
    if "list100k" in tests:
        res["list100k_dir"] = a.bigdir
        for tls in [False] + ([True] if a.tls else []):
            res.update(list100k(a, tls))
    if "xfer" in tests:
        res["xfer"] = xfer(a)
    res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return res


def fmt(x, nd=0):
    if x is None:
        return "n/a"
    return f"{x:,.{nd}f}"


def cell_list(r, key, what):
    v = r.get(key) or {}
    if "error" in v and v.get("median_s") is None:
        return "unsupported" if re.search(r"\b50[02]\b", v["error"]) else "FAIL"
    if what == "s":
        return fmt(v.get("median_s"), 3)
    if what == "mem":
        b, p = v.get("rss_before_kib"), v.get("rss_peak_kib")
        if b is None:
            return "n/a"
        return f"{b/1024:,.1f} → {p/1024:,.1f} (+{(p-b)/1024:,.1f})"
    return "n/a"


def table(files):
    rows = []
    for fn in files:
        try:
            rows.append(json.load(open(fn)))
        except (OSError, ValueError):
            pass
    L = []
    if any(r.get("list100k_dir") for r in rows):
        tls = any("list_tls" in r for r in rows)
        L.append("### Listing a directory of 100,000 entries (seconds per listing; server VmRSS MiB before → peak "
                 "(growth), sampled every 10 ms)\n")
        cols = ["LIST plain", "NLST plain", "MLSD plain"] + (["LIST TLS", "NLST TLS", "MLSD TLS"] if tls else [])
        keys = ["list_plain", "nlst_plain", "mlsd_plain"] + (["list_tls", "nlst_tls", "mlsd_tls"] if tls else [])
        L.append("| server | " + " | ".join(f"{c} s" for c in cols) + " |")
        L.append("|---|" + "---|" * len(cols))
        for r in rows:
            L.append(f"| {r['name']} | " + " | ".join(cell_list(r, k, "s") for k in keys) + " |")
        L.append("")
        L.append("| server | " + " | ".join(f"{c} RSS MiB" for c in cols[:3]) + " | listing size (LIST) |")
        L.append("|---|---|---|---|---|")
        for r in rows:
            sz = (r.get("list_plain") or {}).get("bytes")
            L.append(f"| {r['name']} | " + " | ".join(cell_list(r, k, "mem") for k in keys[:3]) +
                     f" | {fmt(sz / 1e6, 1) + ' MB' if sz else 'n/a'} |")
        L.append("")
    if any(r.get("xfer") for r in rows):
        x0 = next(r["xfer"] for r in rows if r.get("xfer"))
        L.append(f"### {x0['n']:,} sessions downloading at once ({x0.get('file_bytes', 0) / 2**20:.0f} MiB each, "
                 "plain, asyncio client)\n")
        L.append("| server | sessions ok | aggregate MB/s | per-session MB/s min / median / max | Jain's index | "
                 "wall s | server CPU-s | client CPU-s | other processes' CPU-s | errors |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            x = r.get("xfer")
            if not x:
                continue
            p = x.get("per_session_MBps")
            ps = f"{p['min']:.2f} / {p['median']:.2f} / {p['max']:.2f}" if p else "n/a"
            errs = "; ".join(f"{k} x{v}" for k, v in (x.get("errors") or {}).items())[:120] or "-"
            other = None
            if x.get("machine_busy_cpu_s") is not None and x.get("server_tree_cpu_s") is not None:
                other = max(0.0, x["machine_busy_cpu_s"] - x["server_tree_cpu_s"] - x["client_cpu_s"])
            L.append(f"| {r['name']} | {x['ok']:,}/{x['n']:,} | {fmt(x.get('aggregate_MBps'))} | {ps} | "
                     f"{fmt(x.get('jain'), 3)} | {fmt(x.get('wall_s'), 2)} | {fmt(x.get('server_tree_cpu_s'), 1)} | "
                     f"{fmt(x.get('client_cpu_s'), 1)} | {fmt(other, 1)} | {errs} |")
        L.append("")
        L.append("Per-session MB/s = 4 MiB / (EOF - that session's RETR). Client and server share the machine's "
                 "cores: \"other processes\" is the CPU that neither used while the test ran (busy CPU from "
                 "/proc/stat minus both); a large figure there means the run competed with other work (for a forking server it can also hold "
                 "session CPU that was never folded into the parent).\n")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--name", required=True)
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=2121)
    r.add_argument("--user", required=True)
    r.add_argument("--password", required=True)
    r.add_argument("--tls", action="store_true", help="also run list100k over explicit FTPS")
    r.add_argument("--server-pid", type=int, required=True)
    r.add_argument("--tests", default="list100k,xfer")
    r.add_argument("--bigdir", default="dir100k")
    r.add_argument("--list-reps", type=int, default=3)
    r.add_argument("--xfer-n", type=int, default=1000)
    r.add_argument("--xfer-file", default="x4m.bin")
    r.add_argument("--inflight", type=int, default=64)
    r.add_argument("--timeout", type=float, default=30)
    r.add_argument("--out")
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    a = ap.parse_args()
    if a.cmd == "run":
        res = run(a)
        js = json.dumps(res, indent=1, default=str)
        if a.out:
            open(a.out, "w").write(js)
        print(js)
    else:
        print(table(a.files))


if __name__ == "__main__":
    main()
