#!/usr/bin/env python3
"""ftpbench -- FTP/FTPS server benchmark harness (stdlib only; uses curl for bulk transfers).

Subcommands
  run     benchmark one FTP server:  ftpbench.py run --name X --host 127.0.0.1 --port 2121 \
              --user U --password P [--tls] [--server-pid PID] [--out X.json]
  limits  measure machine limits (iperf3 loopback, openssl speed, page-cache read)
  table   merge JSON results into markdown tables: ftpbench.py table a.json b.json ...

Everything is measured from the client side except memory, which needs --server-pid (the
server's main PID on this machine; RSS/PSS are summed over that PID and all descendants).
Throughputs are in MB/s = 10^6 bytes/s.
"""
import argparse, asyncio, ftplib, io, json, os, platform, re, resource, shutil, socket
import ssl, statistics, subprocess, sys, tempfile, time

# ----------------------------------------------------------------------------- helpers

def log(*a):
    print("[ftpbench]", *a, file=sys.stderr, flush=True)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def pct(xs, p):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def meminfo_kib(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_busy_jiffies():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v[:8]) - idle, sum(v[:8])


def proc_table():
    """pid -> ppid for all processes."""
    t = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            t[int(d)] = int(s[s.rfind(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return t


def tree(root):
    t = proc_table()
    kids = {}
    for p, pp in t.items():
        kids.setdefault(pp, []).append(p)
    out, stack = [], [root]
    while stack:
        p = stack.pop()
        if p in t or p == root:
            out.append(p)
        stack.extend(kids.get(p, []))
    return out


def listener_pids(port):
    """PIDs holding a LISTEN socket on `port` (any address), from /proc/net/tcp{,6}."""
    inodes = set()
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[3] == "0A" and int(p[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(p[9])
        except OSError:
            pass
    pids = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{d}/fd"):
                l = os.readlink(f"/proc/{d}/fd/{fd}")
                if l.startswith("socket:[") and l[8:-1] in inodes:
                    pids.add(int(d))
                    break
        except OSError:
            pass
    return pids


def tree_mem(root):
    """(n_procs, rss_kib, pss_kib, threads) summed over root and descendants."""
    n = rss = pss = thr = 0
    for p in tree(root):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("Threads:"):
                        thr += int(line.split()[1])
            n += 1
        except OSError:
            pass
    return n, rss, pss, thr


def tree_cpu_ticks(root):
    tot = 0
    for p in tree(root):
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
            fld = s[s.rfind(")") + 2:].split()
            tot += int(fld[11]) + int(fld[12]) + int(fld[13]) + int(fld[14])  # utime stime cutime cstime
        except (OSError, ValueError, IndexError):
            pass
    return tot


def nodelay(s):
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


class FTP(ftplib.FTP):
    """ftplib.FTP with TCP_NODELAY on control and data sockets (as curl does), so that
    client-side Nagle/delayed-ACK stalls don't pollute latency numbers."""

    def connect(self, *a, **k):
        r = ftplib.FTP.connect(self, *a, **k)
        nodelay(self.sock)
        return r

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        nodelay(conn)
        return conn, size


class FTPS(ftplib.FTP_TLS):
    """FTP_TLS that reuses the control-connection TLS session on data connections
    (required by vsftpd/proftpd defaults, and what curl/lftp/FileZilla do); TCP_NODELAY."""

    def connect(self, *a, **k):
        r = ftplib.FTP_TLS.connect(self, *a, **k)
        nodelay(self.sock)
        return r

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        nodelay(conn)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


def close_data(conn):
    """Close a data connection. For TLS send close_notify without waiting for the peer's
    (a one-way shutdown, as curl does). A blocking unwrap() would wait for the server's
    close_notify, and pure-ftpd only sends it after it has seen EOF, so both sides stall."""
    if isinstance(conn, ssl.SSLSocket):
        try:
            conn.setblocking(False)
            conn.unwrap()
        except (ssl.SSLError, OSError, ValueError):
            pass
    conn.close()


def put(f, name, data):
    conn = f.transfercmd(f"STOR {name}")
    conn.sendall(data)
    close_data(conn)
    f.voidresp()


def get(f, name):
    conn = f.transfercmd(f"RETR {name}")
    n = 0
    while True:
        b = conn.recv(65536)
        if not b:
            break
        n += len(b)
    close_data(conn)
    f.voidresp()
    return n


_TLS_CTX = None


def tls_ctx():
    """One client context for the whole run. [bench fix] It used to be ssl.create_default_context()
    per connection, which loads the system CA bundle each time (~30-50 ms of client CPU on a busy
    2-core box, unused since verification is off): that cost sat inside every TLS TTFB figure."""
    global _TLS_CTX
    if _TLS_CTX is None:
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
        _TLS_CTX = c
    return _TLS_CTX


class Bench:
    def __init__(self, a):
        self.a = a
        self.res = {"name": a.name, "host": a.host, "port": a.port, "tls_tested": a.tls,
                    "params": {"reps": a.reps, "list_reps": a.list_reps, "small_n": a.small_n,
                               "small_secs": a.small_secs, "stor_overwrite": a.stor_overwrite,
                               "ttfb_n": a.ttfb_n, "conc": a.conc, "conc_inflight": a.conc_inflight,
                               "conc_client": "rust (bench/loadgen)" if a.conc_client else "python asyncio"},
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "notes": []}
        self.tmp = tempfile.mkdtemp(prefix="ftpbench-", dir=a.tmpdir)

    # -- connections
    def connect(self, tls):
        a = self.a
        if tls:
            f = FTPS(context=tls_ctx(), timeout=a.timeout)
            f.connect(a.host, a.port)
            f.auth()
            f.login(a.user, a.password)
            f.prot_p()
        else:
            f = FTP(timeout=a.timeout)
            f.connect(a.host, a.port)
            f.login(a.user, a.password)
        f.voidcmd("TYPE I")
        return f

    def url(self, path):
        a = self.a
        from urllib.parse import quote
        h = f"[{a.host}]" if ":" in a.host else a.host
        return f"ftp://{quote(a.user, safe='')}:{quote(a.password, safe='')}@{h}:{a.port}/{path}"

    def curl(self, args, tls):
        cmd = ["curl", "-s", "-S", "--ftp-pasv"] + (["--disable-epsv"] if not self.a.epsv else [])
        if tls:
            cmd += ["--ssl-reqd", "-k"]
        cmd += args
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        b0, _ = cpu_busy_jiffies()
        n0 = len(tree(self.a.server_pid)) if self.a.server_pid else None
        s0 = tree_cpu_ticks(self.a.server_pid) if self.a.server_pid else None
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=self.a.timeout * 20)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        b1, _ = cpu_busy_jiffies()
        if self.a.server_pid:
            # [bench fix] a forking server's session CPU reaches the parent's cutime/cstime only once
            # the session's processes are reaped: wait (up to 3 s) for the process count to drop back.
            t_w = time.time()
            while len(tree(self.a.server_pid)) > n0 and time.time() - t_w < 3:
                time.sleep(0.05)
        s1 = tree_cpu_ticks(self.a.server_pid) if self.a.server_pid else None
        hz = os.sysconf("SC_CLK_TCK")
        cpu = {"client_cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
               "machine_busy_cpu_s": (b1 - b0) / hz,
               "server_tree_cpu_s": None if s0 is None else (s1 - s0) / hz}
        if p.returncode != 0:
            raise RuntimeError(f"curl rc={p.returncode}: {p.stderr.strip()[:300]}")
        return p.stdout.strip(), cpu

    # -- fixtures
    def ensure_fixtures(self, tls_ok):
        a = self.a
        f = self.connect(False)
        home = f.pwd()
        try:
            sz = None
            try:
                sz = f.size(a.big)
            except ftplib.all_errors:
                pass
            self.big_size = sz
            if sz is None:
                log(f"{a.big} missing on server; uploading a local copy")
                self.big_size = os.path.getsize(self.local_big())
                self.curl(["-T", self.local_big(), self.url(a.big)], False)
            try:
                f.size(a.one)
            except ftplib.all_errors:
                f.storbinary(f"STOR {a.one}", io.BytesIO(b"x"))
            try:
                f.cwd(a.listdir)
                f.cwd(home)
            except ftplib.all_errors:
                log(f"creating {a.listdir} with 10000 empty files over FTP (slow)")
                f.mkd(a.listdir)
                for i in range(10000):
                    f.storbinary(f"STOR {a.listdir}/entry_{i:05d}.dat", io.BytesIO(b""))
            try:
                f.cwd(a.updir)
                f.cwd(home)
            except ftplib.all_errors:
                f.mkd(a.updir)
        finally:
            f.close()

    def local_big(self):
        if self.a.local_big:
            return self.a.local_big
        p = os.path.join(self.tmp, "big.bin")
        if not os.path.exists(p):
            log("creating local 1 GiB upload source")
            with open(p, "wb") as o:
                chunk = os.urandom(1 << 20)
                for _ in range(self.a.big_mb):
                    o.write(chunk)
        self.a.local_big = p
        return p

    # -- a/b: bulk RETR / STOR with curl
    def bulk(self, tls):
        a, tag = self.a, ("tls" if tls else "plain")
        # [ferroftp bench] --stor-overwrite plain,tls: after each new-file STOR, a second STOR to the
        # same name (replacing the file just written) is measured as stor_over_<mode>: a server may
        # treat a replacement differently (ferroftp fsyncs it before the 226 by default)
        over = tag in [x for x in a.stor_overwrite.split(",") if x]
        ops = [o for o in ("stor", "retr") if o in a.bulk_ops.split(",")]
        for op in ops:
            runs, over_runs = [], []
            for i in range(a.reps):
                try:
                    # [bench fix] MB/s over the transfer phase: bytes / (time_total - time_pretransfer).
                    # curl 7.88's own speed counts from its start, and this curl sometimes sits ~200 ms
                    # (its happy-eyeballs timer) between the 227 reply and connecting the data
                    # connection, more often with some servers (ferroftp, pure-ftpd) than others: that
                    # stall is a client artifact, recorded as curl_stall_s but not counted.
                    w = " %{time_connect} %{time_pretransfer} %{time_starttransfer} %{time_total}"
                    if op == "retr":
                        out, cpu = self.curl(["-o", "/dev/null", "-w", "%{speed_download} %{size_download}" + w,
                                              self.url(a.big)], tls)
                    else:
                        src = self.local_big()
                        out, cpu = self.curl(["-T", src, "-w", "%{speed_upload} %{size_upload}" + w,
                                              self.url(f"{a.updir}/stor_{tag}.bin")], tls)
                    runs.append(self.bulk_run(op, tag, i, out, cpu))
                    if op == "stor" and over:
                        try:
                            out, cpu = self.curl(["-T", src, "-w", "%{speed_upload} %{size_upload}" + w,
                                                  self.url(f"{a.updir}/stor_{tag}.bin")], tls)
                            over_runs.append(self.bulk_run("stor-overwrite", tag, i, out, cpu))
                        except Exception as e:  # noqa
                            over_runs.append({"error": str(e)})
                            log(f"stor-overwrite {tag} run{i} FAILED: {e}")
                except Exception as e:  # noqa
                    runs.append({"error": str(e)})
                    log(f"{op} {tag} run{i} FAILED: {e}")
                if op == "stor":
                    # [bench fix] every STOR creates a new file, as in the first repetition: a server
                    # may treat replacing a file differently (ferroftp fsyncs replacements by default)
                    self.delete_quiet(f"{a.updir}/stor_{tag}.bin")
            ok = [r["MBps"] for r in runs if "MBps" in r]
            self.res[f"{op}_{tag}"] = {"median_MBps": med(ok), "runs": runs}
            if over_runs:
                ok = [r["MBps"] for r in over_runs if "MBps" in r]
                self.res[f"stor_over_{tag}"] = {"median_MBps": med(ok), "runs": over_runs}

    def bulk_run(self, op, tag, i, out, cpu):
        spd, size, t_conn, t_pre, t_start, t_tot = out.split()
        size, t_pre, t_tot = int(float(size)), float(t_pre), float(t_tot)
        mbps = size / max(1e-9, t_tot - t_pre) / 1e6
        log(f"{op} {tag} run{i}: {mbps:.1f} MB/s (curl's own figure {float(spd)/1e6:.1f}, "
            f"pretransfer {t_pre*1000:.1f} ms) cpu={cpu}")
        return {"MBps": mbps, "curl_MBps": float(spd) / 1e6, "bytes": size,
                "time_pretransfer_s": t_pre, "time_total_s": t_tot,
                "curl_stall_s": t_pre if t_pre > 0.1 else 0.0, **cpu}

    def delete_quiet(self, path):
        try:
            f = self.connect(False)
            f.delete(path)
            f.close()
        except ftplib.all_errors:
            pass

    # -- c: many small files in one session
    def small(self, tls):
        a, tag = self.a, ("tls" if tls else "plain")
        payload = os.urandom(4096)
        d = f"{a.updir}/small_{tag}_{os.getpid()}"
        out = {"n": a.small_n, "size": 4096}
        try:
            f = self.connect(tls)
            home = f.pwd()
            f.mkd(d)
            f.cwd(d)
            # [ferroftp bench] --small-secs S: stop each direction after S seconds (at least 20 files),
            # so that a server doing 20 files/s does not hold the whole run; the rate is files / time
            cap = a.small_secs if a.small_secs > 0 else float("inf")
            t0 = time.perf_counter()
            n = 0
            while n < a.small_n and (n < 20 or time.perf_counter() - t0 < cap):
                put(f, f"f{n:05d}", payload)
                n += 1
            t1 = time.perf_counter()
            got = m = 0
            while m < n and (m < 20 or time.perf_counter() - t1 < cap):
                got += get(f, f"f{m:05d}")
                m += 1
            t2 = time.perf_counter()
            out.update(n=n, n_down=m, up_files_per_s=n / (t1 - t0), down_files_per_s=m / (t2 - t1),
                       down_bytes_ok=(got == m * 4096))
            log(f"small {tag}: up {out['up_files_per_s']:.0f}/s ({n}) down {out['down_files_per_s']:.0f}/s ({m})")
            for i in range(n):  # cleanup (untimed)
                f.delete(f"f{i:05d}")
            f.cwd(home)
            f.rmd(d)
            f.quit()
        except Exception as e:  # noqa
            out["error"] = f"{type(e).__name__}: {e}"
            log(f"small {tag} FAILED: {out['error']}")
        self.res[f"small_{tag}"] = out

    # -- e: LIST / MLSD of a 10k directory
    def listing(self, tls):
        a, tag = self.a, ("tls" if tls else "plain")
        for cmd in ("LIST", "MLSD", "NLST"):
            times, lines, err = [], None, None
            try:
                f = self.connect(tls)
                f.cwd(a.listdir)
                for _ in range(a.list_reps):
                    buf = []
                    t0 = time.perf_counter()
                    f.retrlines(cmd, buf.append)
                    times.append(time.perf_counter() - t0)
                    lines = len(buf)
                f.quit()
            except Exception as e:  # noqa
                err = f"{type(e).__name__}: {str(e)[:120]}"
            self.res[f"{cmd.lower()}_{tag}"] = {"median_s": med(times), "lines": lines, "runs": times,
                                                **({"error": err} if err else {})}
            log(f"{cmd} {tag}: {med(times)} s, {lines} lines {err or ''}")

    # -- f: time to first byte
    def ttfb(self, tls):
        a, tag = self.a, ("tls" if tls else "plain")
        first, full, errs = [], [], 0
        for i in range(a.ttfb_n):
            try:
                t0 = time.perf_counter()
                f = self.connect(tls)
                conn = f.transfercmd(f"RETR {a.one}")
                b = conn.recv(1)
                t1 = time.perf_counter()
                while b:
                    b = conn.recv(65536)
                close_data(conn)
                f.voidresp()
                t2 = time.perf_counter()
                first.append(t1 - t0)
                full.append(t2 - t0)
                try:
                    f.quit()
                except ftplib.all_errors:
                    f.close()
            except Exception as e:  # noqa
                errs += 1
                if errs <= 3:
                    log(f"ttfb {tag} error: {type(e).__name__}: {e}")
        ms = lambda x: None if x is None else x * 1000  # noqa
        self.res[f"ttfb_{tag}"] = {"n": len(first), "errors": errs, "median_ms": ms(med(first)),
                                   "p90_ms": ms(pct(first, 90)), "p99_ms": ms(pct(first, 99)),
                                   "median_ms_to_226": ms(med(full))}
        log(f"ttfb {tag}: median {ms(med(first))} ms, errors {errs}")

    # -- d: idle-session concurrency
    def _sessions_ext(self, n):
        """[bench addition] The same ramp with the Rust client (bench/loadgen, --conc-client): one
        thread, ~20x less CPU per login than asyncio, so logins/s measures the server."""
        a = self.a
        cmd = [a.conc_client, "logins", "--host", a.host, "--port", str(a.port), "--user", a.user,
               "--pass", a.password, "--n", str(n), "--inflight", str(a.conc_inflight), "--timeout", str(a.timeout)]
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        s0 = tree_cpu_ticks(a.server_pid) if a.server_pid else None
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = json.loads(p.stdout.readline() or "{}")
        # [ferroftp bench] the server's CPU for the ramp (a forking server's live sessions are not
        # counted until they are reaped: None for those)
        s1 = tree_cpu_ticks(a.server_pid) if a.server_pid else None
        forked = len(tree(a.server_pid)) > 1 if a.server_pid else True
        if ready.get("event") != "ready":
            p.kill()
            p.wait()
            raise RuntimeError(f"conc client failed: {ready}")
        # client CPU up to the READY line is not separable from the hold; report the total below
        time.sleep(a.settle)
        mem = tree_mem(a.server_pid) if a.server_pid else None
        p.stdin.write("release\n")
        p.stdin.flush()
        done = json.loads(p.stdout.readline() or "{}")
        p.wait(timeout=120)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        ok = done.get("alive", 0)
        return {"n": n, "ok": ok, "held_at_measure": ready["ok"], "seconds": ready["seconds"],
                "logins_per_s": ready["ok"] / ready["seconds"], "errors": ready.get("errors", {}), "mem": mem,
                "client": "rust", "client_cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
                "server_cpu_ms_per_login": (None if s0 is None or not ready.get("ok") or forked
                                            else (s1 - s0) / os.sysconf("SC_CLK_TCK") * 1000 / ready["ok"])}

    async def _sessions(self, n):
        a = self.a
        sem = asyncio.Semaphore(a.conc_inflight)
        release = asyncio.Event()
        done_cnt = 0
        all_in = asyncio.Event()
        errors = {}
        writers = []

        async def read_reply(r, last=None):
            while True:
                line = await r.readline()
                if not line:
                    raise ConnectionError("closed")
                if len(line) >= 4 and line[:3].isdigit() and line[3:4] == b" ":
                    last[0] = line.decode("latin-1").strip()[:70]
                    return int(line[:3])

        async def one():
            nonlocal done_cnt
            ok = False
            try:
                async with sem:
                    r, w = await asyncio.wait_for(asyncio.open_connection(a.host, a.port), a.timeout)
                    nodelay(w.get_extra_info("socket"))
                    writers.append(w)
                    last = [""]
                    c = await asyncio.wait_for(read_reply(r, last), a.timeout)
                    if c != 220:
                        raise RuntimeError(f"banner {last[0]}")
                    w.write(f"USER {a.user}\r\n".encode())
                    c = await asyncio.wait_for(read_reply(r, last), a.timeout)
                    if c == 331:
                        w.write(f"PASS {a.password}\r\n".encode())
                        c = await asyncio.wait_for(read_reply(r, last), a.timeout)
                    if c != 230:
                        raise RuntimeError(f"login {last[0]}")
                    ok = True
            except Exception as e:  # noqa
                k = f"{type(e).__name__}: {str(e)[:80]}"
                errors[k] = errors.get(k, 0) + 1
            done_cnt += 1
            if done_cnt == n:
                all_in.set()
            if ok:
                await release.wait()
                try:
                    w.write(b"QUIT\r\n")
                    await asyncio.wait_for(w.drain(), 5)
                except Exception:  # noqa
                    pass
            return ok

        t0 = time.perf_counter()
        tasks = [asyncio.create_task(one()) for _ in range(n)]
        await all_in.wait()
        t1 = time.perf_counter()
        ok = sum(1 for t in tasks if not t.done())  # the ones still holding a session
        await asyncio.sleep(a.settle)
        mem = tree_mem(a.server_pid) if a.server_pid else None
        # check that the sessions are still alive (server may have dropped them)
        release.set()
        results = await asyncio.gather(*tasks)
        for w in writers:
            try:
                w.close()
            except Exception:  # noqa
                pass
        return {"n": n, "ok": sum(results), "held_at_measure": ok, "seconds": t1 - t0,
                "logins_per_s": sum(results) / (t1 - t0), "errors": errors, "mem": mem}

    def wait_quiesce(self, base_n, limit=60):
        if not self.a.server_pid:
            time.sleep(1)
            return
        t0 = time.time()
        while time.time() - t0 < limit:
            if tree_mem(self.a.server_pid)[0] <= base_n:
                return
            time.sleep(0.5)
        log("warning: server process count did not return to baseline")

    def concurrency(self):
        a = self.a
        lim = raise_nofile()
        out = {"nofile": lim, "levels": []}
        base = tree_mem(a.server_pid) if a.server_pid else None
        out["baseline_mem"] = base
        prev = None
        for n in a.conc:
            if n + 50 > lim:
                out["levels"].append({"n": n, "skipped": f"RLIMIT_NOFILE {lim} too low"})
                continue
            # [bench fix] guards for forking servers (vsftpd: 2 processes and ~450 KiB PSS per session,
            # proftpd: ~1.8 MiB): extrapolate from the previous level; skip a level that would need more
            # than 60% of MemAvailable or more than 80% of kernel.pid_max processes.
            if prev and base and prev.get("mem") and prev.get("ok"):
                pss_per = max(0.0, (prev["mem"][2] - base[2]) / prev["ok"])
                procs_per = max(0.0, (prev["mem"][0] - base[0]) / prev["ok"])
                need_mib = pss_per * n / 1024
                avail_mib = meminfo_kib("MemAvailable") / 1024
                nprocs = sum(1 for d in os.listdir("/proc") if d.isdigit())
                pid_max = int(open("/proc/sys/kernel/pid_max").read())
                if need_mib > 0.6 * avail_mib:
                    out["levels"].append({"n": n, "skipped": f"would need ~{need_mib:,.0f} MiB PSS "
                                          f"(> 60% of MemAvailable {avail_mib:,.0f} MiB)"})
                    log(f"  skipping {n}: {out['levels'][-1]['skipped']}")
                    break
                if nprocs + procs_per * n > 0.8 * pid_max:
                    out["levels"].append({"n": n, "skipped": f"would need ~{procs_per * n:,.0f} processes "
                                          f"(> 80% of pid_max {pid_max}; {nprocs} running)"})
                    log(f"  skipping {n}: {out['levels'][-1]['skipped']}")
                    break
            log(f"concurrency {n} ...")
            if a.conc_client:
                r = self._sessions_ext(n)
            else:
                r = asyncio.run(self._sessions(n))
                r["client"] = "python"
            if base and r["mem"]:
                d_rss = r["mem"][1] - base[1]
                d_pss = r["mem"][2] - base[2]
                r["rss_kib_total"], r["pss_kib_total"] = r["mem"][1], r["mem"][2]
                r["procs"], r["threads"] = r["mem"][0], r["mem"][3]
                r["rss_kib_per_session"] = d_rss / max(1, r["ok"])
                r["pss_kib_per_session"] = d_pss / max(1, r["ok"])
            log(f"  n={n} ok={r['ok']} {r['logins_per_s']:.0f} logins/s "
                f"rss/sess={r.get('rss_kib_per_session')} pss/sess={r.get('pss_kib_per_session')} err={r['errors']}")
            out["levels"].append(r)
            prev = r
            self.wait_quiesce(base[0] if base else 0)
            if r["ok"] < n:
                log(f"  stopping concurrency ramp: only {r['ok']}/{n} sessions")
                break
        self.res["concurrency"] = out

    def tls_info(self):
        try:
            f = FTPS(context=tls_ctx(), timeout=self.a.timeout)
            f.connect(self.a.host, self.a.port)
            f.auth()
            self.res["tls_cipher"] = f.sock.cipher()
            self.res["tls_version"] = f.sock.version()
            f.close()
        except Exception as e:  # noqa
            self.res["tls_cipher"] = f"error: {e}"

    def run(self):
        a = self.a
        try:
            f = ftplib.FTP(timeout=a.timeout)
            self.res["banner"] = f.connect(a.host, a.port)
            f.close()
        except Exception as e:  # noqa
            sys.exit(f"cannot connect: {e}")
        self.res["loadavg_start"] = open("/proc/loadavg").read().split()[:3]
        if a.server_pid:
            owners = listener_pids(a.port)
            if not owners & set(tree(a.server_pid)):
                sys.exit(f"--server-pid {a.server_pid} does not own the listener on port {a.port} "
                         f"(owners: {sorted(owners)}); refusing to measure the wrong server")
        if a.server_pid:
            self.res["server_idle_mem"] = tree_mem(a.server_pid)
        self.ensure_fixtures(a.tls)
        if a.tls:
            self.tls_info()
        modes = [False] + ([True] if a.tls else [])
        t = set(a.tests.split(","))
        for tls in modes:
            if "bulk" in t:
                self.bulk(tls)
            if "small" in t:
                self.small(tls)
            if "list" in t:
                self.listing(tls)
            if "ttfb" in t:
                self.ttfb(tls)
        if "conc" in t:
            self.concurrency()
        self.res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        self.res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.res


# ----------------------------------------------------------------------------- limits

def limits(a):
    out = {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count()}
    # loopback TCP single stream
    port = str(a.iperf_port)
    srv = subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", port, "-1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        p = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", port, "-t", str(a.iperf_secs), "-J"],
                           capture_output=True, text=True, timeout=a.iperf_secs + 30)
        j = json.loads(p.stdout)
        out["iperf3_loopback_MBps"] = j["end"]["sum_received"]["bits_per_second"] / 8 / 1e6
    except Exception as e:  # noqa
        out["iperf3_error"] = str(e)
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait()
    # openssl speed per core
    for alg in ("aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"):
        try:
            p = subprocess.run(["openssl", "speed", "-mr", "-seconds", "3", "-bytes", "16384", "-evp", alg],
                               capture_output=True, text=True, timeout=120)
            m = re.search(r"^\+F:\d+:[^:]+:([0-9.]+)", p.stdout, re.M)
            out[f"openssl_{alg}_16k_MBps"] = float(m.group(1)) / 1e6 if m else None
            if not m:
                out[f"openssl_{alg}_raw"] = p.stdout[-400:] + p.stderr[-400:]
        except Exception as e:  # noqa
            out[f"openssl_{alg}_error"] = str(e)
    out["openssl_version"] = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    # page-cache read of the big file
    if a.file:
        subprocess.run(["cat", a.file], stdout=subprocess.DEVNULL)  # warm
        rates = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(["dd", f"if={a.file}", "of=/dev/null", "bs=1M"], capture_output=True)
            rates.append(os.path.getsize(a.file) / (time.perf_counter() - t0) / 1e6)
        out["pagecache_read_dd_1M_MBps"] = med(rates)
        rates = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(["cat", a.file], stdout=subprocess.DEVNULL)
            rates.append(os.path.getsize(a.file) / (time.perf_counter() - t0) / 1e6)
        out["pagecache_read_cat_MBps"] = med(rates)
    return out


# ----------------------------------------------------------------------------- table

def fmt(x, nd=0):
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    return f"{x:,.{nd}f}"


def cpu_per_gb(r, key):
    """(server CPU-s/GB, client CPU-s/GB) of the median-speed run of a bulk test (None if unknown).
    Server CPU of 0 on a forking server means it was not accounted, and is reported as None."""
    runs = [x for x in ((r.get(key) or {}).get("runs") or []) if "MBps" in x]
    if not runs:
        return None, None
    x = sorted(runs, key=lambda x: x["MBps"])[len(runs) // 2]
    gb = x["bytes"] / 1e9
    sv = x.get("server_tree_cpu_s")
    return (sv / gb if sv else None), x["client_cpu_s"] / gb


def table(files):
    rows = [json.load(open(f)) for f in files]
    res = [r for r in rows if "name" in r and "limits" not in r]
    lim = [r for r in rows if "limits" in r]
    L = []
    if lim:
        l = lim[0]["limits"]
        L.append("### Machine limits\n")
        L.append("| loopback TCP (iperf3, 1 stream) | AES-128-GCM 16K/core | AES-256-GCM 16K/core | "
                 "ChaCha20-Poly1305 16K/core | page-cache read (dd bs=1M) | (cat) |")
        L.append("|---|---|---|---|---|---|")
        L.append("| " + " | ".join(fmt(l.get(k)) + " MB/s" for k in (
            "iperf3_loopback_MBps", "openssl_aes-128-gcm_16k_MBps", "openssl_aes-256-gcm_16k_MBps",
            "openssl_chacha20-poly1305_16k_MBps", "pagecache_read_dd_1M_MBps", "pagecache_read_cat_MBps")) + " |")
        L.append("")

    def g(r, *ks):
        for k in ks:
            if r is None:
                return None
            r = r.get(k) if isinstance(r, dict) else None
        return r

    def err_or(r, key, val, nd=0):
        e = g(r, key, "error")
        v = g(r, key, val)
        if v is None and e:
            return "unsupported" if re.search(r"\b50[02]\b", e) else "FAIL"
        return fmt(v, nd)

    # [bench fix] labels from the run's own parameters (a smoke run uses fewer repetitions / a smaller file)
    P = next((r["params"] for r in res if r.get("params")), {})
    bigb = next((x.get("bytes") for r in res for k in ("retr_plain", "stor_plain")
                 for x in (g(r, k, "runs") or []) if x.get("bytes")), None)
    bigs = (f"{bigb / 2**30:g} GiB" if bigb and bigb >= 2**30 else f"{bigb / 2**20:g} MiB") if bigb else "1 GiB"
    L.append(f"### Bulk transfer ({bigs}, curl, passive, MB/s = 10^6 B/s, median of {P.get('reps', 3)})\n")
    L.append("| server | RETR plain | RETR TLS | STOR plain | STOR TLS | TLS cipher |")
    L.append("|---|---|---|---|---|---|")
    for r in res:
        c = r.get("tls_cipher")
        cs = f"{c[1]} {c[0]}" if isinstance(c, list) else (c or "n/a")
        L.append(f"| {r['name']} | {err_or(r,'retr_plain','median_MBps')} | {err_or(r,'retr_tls','median_MBps')} | "
                 f"{err_or(r,'stor_plain','median_MBps')} | {err_or(r,'stor_tls','median_MBps')} | {cs} |")
    L.append(f"\n### Bulk transfer CPU (CPU-seconds per GB moved, median run; server = server process tree, "
             f"client = curl)\n")
    L.append("| server | RETR plain srv / cli | RETR TLS srv / cli | STOR plain srv / cli | STOR TLS srv / cli |")
    L.append("|---|---|---|---|---|")
    for r in res:
        cells = []
        for k in ("retr_plain", "retr_tls", "stor_plain", "stor_tls"):
            sv, cl = cpu_per_gb(r, k)
            cells.append(f"{fmt(sv, 2)} / {fmt(cl, 2)}")
        L.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    L.append(f"\n### Small files ({P.get('small_n', 2000)} x 4 KiB, one session, python ftplib, files/s)\n")
    L.append("| server | up plain | down plain | up TLS | down TLS |")
    L.append("|---|---|---|---|---|")
    for r in res:
        L.append(f"| {r['name']} | {err_or(r,'small_plain','up_files_per_s')} | {err_or(r,'small_plain','down_files_per_s')} | "
                 f"{err_or(r,'small_tls','up_files_per_s')} | {err_or(r,'small_tls','down_files_per_s')} |")
    L.append(f"\n### Directory listing (10,000 entries, seconds per listing, median of {P.get('list_reps', 5)})\n")
    L.append("| server | LIST plain | MLSD plain | NLST plain | LIST TLS | MLSD TLS |")
    L.append("|---|---|---|---|---|---|")
    for r in res:
        L.append(f"| {r['name']} | {err_or(r,'list_plain','median_s',3)} | {err_or(r,'mlsd_plain','median_s',3)} | "
                 f"{err_or(r,'nlst_plain','median_s',3)} | {err_or(r,'list_tls','median_s',3)} | "
                 f"{err_or(r,'mlsd_tls','median_s',3)} |")
    L.append(f"\n### Time to first byte (connect+login+PASV+RETR 1 byte, python ftplib, ms, {P.get('ttfb_n', 200)} tries)\n")
    L.append("| server | plain median | plain p99 | TLS median | TLS p99 |")
    L.append("|---|---|---|---|---|")
    for r in res:
        L.append(f"| {r['name']} | {fmt(g(r,'ttfb_plain','median_ms'),2)} | {fmt(g(r,'ttfb_plain','p99_ms'),2)} | "
                 f"{fmt(g(r,'ttfb_tls','median_ms'),2)} | {fmt(g(r,'ttfb_tls','p99_ms'),2)} |")
    cc = "Rust client bench/loadgen" if "rust" in str(P.get("conc_client", "")) else "asyncio client"
    L.append(f"\n### Idle sessions ({cc}, {P.get('conc_inflight', 64)} logins in flight, plain login, logins/s to "
             f"reach N; server memory delta per session)\n")
    L.append("| server | N | sessions ok | logins/s | server procs | RSS total MiB | KiB/session (RSS) | KiB/session (PSS) |")
    L.append("|---|---|---|---|---|---|---|---|")
    for r in res:
        for lv in g(r, "concurrency", "levels") or []:
            if "skipped" in lv:
                L.append(f"| {r['name']} | {lv['n']} | skipped: {lv['skipped']} | | | | | |")
                continue
            L.append(f"| {r['name']} | {lv['n']:,} | {lv['ok']:,} | {fmt(lv.get('logins_per_s'))} | "
                     f"{fmt(lv.get('procs'))} | {fmt((lv.get('rss_kib_total') or 0)/1024 if lv.get('rss_kib_total') else None, 1)} | "
                     f"{fmt(lv.get('rss_kib_per_session'))} | {fmt(lv.get('pss_kib_per_session'))} |")
    return "\n".join(L)


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="benchmark one server")
    r.add_argument("--name", required=True)
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=2121)
    r.add_argument("--user", required=True)
    r.add_argument("--password", required=True)
    r.add_argument("--tls", action="store_true", help="also run every test over explicit FTPS (AUTH TLS, PROT P)")
    r.add_argument("--server-pid", type=int, help="main PID of the server (enables memory/CPU accounting)")
    r.add_argument("--tests", default="bulk,small,list,ttfb,conc")
    r.add_argument("--big", default="big.bin", help="server path of the 1 GiB RETR file (uploaded if missing)")
    r.add_argument("--local-big", help="local file to upload for STOR (default: generated in tmp)")
    r.add_argument("--big-mb", type=int, default=1024)
    r.add_argument("--one", default="one.bin", help="server path of the 1-byte file")
    r.add_argument("--listdir", default="dir10k", help="server dir with 10,000 entries")
    r.add_argument("--updir", default="up", help="writable server dir for uploads")
    r.add_argument("--reps", type=int, default=3)
    r.add_argument("--list-reps", type=int, default=5)
    r.add_argument("--small-n", type=int, default=2000)
    r.add_argument("--small-secs", type=float, default=0,
                   help="[ferroftp bench] stop each small-file direction after this many seconds (0: never)")
    r.add_argument("--stor-overwrite", default="",
                   help="[ferroftp bench] modes (plain,tls) in which a second STOR replacing the file is measured")
    r.add_argument("--bulk-ops", default="stor,retr", help="[ferroftp bench] bulk operations to run")
    r.add_argument("--ttfb-n", type=int, default=200)
    r.add_argument("--conc", default="100,1000,5000")
    r.add_argument("--conc-inflight", type=int, default=64, help="max concurrent in-progress logins")
    r.add_argument("--conc-client", help="login client binary (bench/loadgen: ftp-loadgen) instead of asyncio")
    r.add_argument("--settle", type=float, default=2.0, help="seconds to wait at N before sampling memory")
    r.add_argument("--epsv", action="store_true", help="let curl use EPSV (default: PASV only)")
    r.add_argument("--timeout", type=float, default=30)
    r.add_argument("--tmpdir", default=None)
    r.add_argument("--out", help="write JSON here")
    li = sub.add_parser("limits", help="machine limits")
    li.add_argument("--file", help="big file for page-cache read test")
    li.add_argument("--iperf-port", type=int, default=5201)
    li.add_argument("--iperf-secs", type=int, default=5)
    li.add_argument("--out")
    t = sub.add_parser("table", help="markdown tables from JSON files")
    t.add_argument("files", nargs="+")
    a = ap.parse_args()

    if a.cmd == "run":
        if a.host not in ("127.0.0.1", "::1", "localhost") and not a.host.startswith("127."):
            log("WARNING: non-loopback host")
        a.conc = [int(x) for x in a.conc.split(",") if x]
        res = Bench(a).run()
        js = json.dumps(res, indent=1, default=str)
        if a.out:
            open(a.out, "w").write(js)
        print(js)
    elif a.cmd == "limits":
        res = {"limits": limits(a)}
        if a.out:
            open(a.out, "w").write(json.dumps(res, indent=1))
        print(json.dumps(res, indent=1))
    else:
        print(table(a.files))


if __name__ == "__main__":
    main()
