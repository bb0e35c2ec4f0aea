//! ftp-loadgen: opens N FTP control sessions and logs each in (USER/PASS), with at most
//! `--inflight` logins in progress, then holds them all until a line arrives on stdin, then
//! sends QUIT on each. Used by `ftpbench.py --conc-client` so that the idle-session test
//! measures the server, not a Python client (asyncio costs ~1 ms of CPU per login on a small
//! box, more than most servers).
//!
//! Runs on one thread (tokio current_thread): the client never takes more than one core.
//!
//! Source addresses: with many thousands of connections from one address to one port, every
//! connect() scans the kernel's ephemeral ports for a free 4-tuple, and the scan grows with the
//! connections already open: at 19,000 sessions from 127.0.0.1 the client spent ~24 s of system
//! time in connect() and the ramp fell to ~400 logins/s whatever the server. So sessions are
//! spread over 127.0.0.1 .. 127.0.0.K (K = ceil(n / --per-src), default 4000 per address; all
//! of 127/8 is loopback on Linux), bound with IP_BIND_ADDRESS_NO_PORT so that the port is still
//! chosen at connect(). Up to 4000 sessions everything comes from 127.0.0.1 as before.
//!
//! stdout, one JSON object per line:
//!   {"event":"ready","n":N,"ok":K,"seconds":S,"errors":{...}}   all logins done (K succeeded)
//!   {"event":"done","alive":A}                                   after the release line: A of
//!                                                                the K sessions still answered QUIT
//!
//! usage: ftp-loadgen logins --host 127.0.0.1 --port 2121 --user U --pass P --n 1000
//!                           [--inflight 64] [--timeout 30] [--per-src 4000]
//!
//! `ftp-loadgen hashcost --argon2-m 128 --argon2-t 1` times one argon2id hash (ferroftp's users
//! file: the argon2 crate, p = 1) and PBKDF2-HMAC-SHA256 (unFTP's json authenticator: ring) on
//! this machine, and prints the PBKDF2 iteration count that costs the same, so that the login test
//! can give unFTP a password hash of the same cost as ferroftp's:
//!   {"argon2_m_kib":128,"argon2_t":1,"argon2_us":..,"pbkdf2_us_per_iter":..,"pbkdf2_iter_equal":..}
use std::collections::BTreeMap;
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

struct Args {
    host: String,
    port: u16,
    user: String,
    pass: String,
    n: usize,
    inflight: usize,
    timeout: Duration,
    per_src: usize,
}

fn parse() -> Args {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 2121,
        user: String::new(),
        pass: String::new(),
        n: 100,
        inflight: 64,
        timeout: Duration::from_secs(30),
        per_src: 4000,
    };
    let v: Vec<String> = std::env::args().collect();
    if v.get(1).map(String::as_str) != Some("logins") {
        eprintln!("usage: ftp-loadgen logins --host H --port P --user U --pass P --n N [--inflight 64] [--timeout 30]");
        std::process::exit(2);
    }
    let mut i = 2;
    while i + 1 < v.len() {
        let val = v[i + 1].clone();
        match v[i].as_str() {
            "--host" => a.host = val,
            "--port" => a.port = val.parse().expect("--port"),
            "--user" => a.user = val,
            "--pass" => a.pass = val,
            "--n" => a.n = val.parse().expect("--n"),
            "--inflight" => a.inflight = val.parse().expect("--inflight"),
            "--timeout" => a.timeout = Duration::from_secs_f64(val.parse().expect("--timeout")),
            "--per-src" => a.per_src = val.parse::<usize>().expect("--per-src").max(1),
            o => {
                eprintln!("unknown option {o}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

/// One reply (multi-line aware): its code and its last line.
async fn reply<R: AsyncBufReadExt + Unpin>(r: &mut R, line: &mut String) -> std::io::Result<(u16, String)> {
    let mut first: Option<String> = None;
    loop {
        line.clear();
        if r.read_line(line).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
        }
        let l = line.trim_end();
        if first.is_none() {
            first = Some(l.chars().take(3).collect());
        }
        let f = first.as_deref().unwrap_or("");
        if l.len() >= 4 && &l[..3] == f && l.as_bytes()[3] == b' ' {
            return Ok((f.parse().unwrap_or(0), l.chars().take(60).collect()));
        }
    }
}

async fn connect(a: &Args, i: usize) -> std::io::Result<TcpStream> {
    let dst: std::net::IpAddr = a.host.parse().map_err(|_| std::io::Error::other("--host must be an IP"))?;
    let k = a.n.div_ceil(a.per_src);
    match dst {
        std::net::IpAddr::V4(v4) if k > 1 && v4.is_loopback() => {
            let src = std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % k) as u8);
            let sock = tokio::net::TcpSocket::new_v4()?;
            let one: libc::c_int = 1;
            // SAFETY: setsockopt on a socket fd we own, with a pointer to a c_int and its size.
            let rc = unsafe {
                use std::os::fd::AsRawFd;
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            sock.bind((src, 0).into())?;
            sock.connect((dst, a.port).into()).await
        }
        _ => TcpStream::connect((dst, a.port)).await,
    }
}

async fn login(a: &Args, i: usize) -> Result<BufReader<TcpStream>, String> {
    let s = connect(a, i).await.map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    let mut s = BufReader::with_capacity(512, s);
    let mut line = String::with_capacity(128);
    let (c, l) = reply(&mut s, &mut line).await.map_err(|e| format!("banner: {e}"))?;
    if c != 220 {
        return Err(format!("banner {l}"));
    }
    s.get_mut().write_all(format!("USER {}\r\n", a.user).as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let (mut c, mut l) = reply(&mut s, &mut line).await.map_err(|e| format!("USER: {e}"))?;
    if c == 331 {
        s.get_mut().write_all(format!("PASS {}\r\n", a.pass).as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        (c, l) = reply(&mut s, &mut line).await.map_err(|e| format!("PASS: {e}"))?;
    }
    if c != 230 {
        return Err(format!("login {l}"));
    }
    Ok(s)
}

/// Microseconds that `f` takes, once.
fn time_once(f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e6
}

/// The medians of `reps` timings of each of `fs`, taken in turn (a, b, c, a, b, c, ...) so that a
/// busy machine slows them all alike.
fn medians_us(reps: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut t: Vec<Vec<f64>> = vec![Vec::with_capacity(reps); fs.len()];
    for _ in 0..reps {
        for (i, f) in fs.iter_mut().enumerate() {
            t[i].push(time_once(*f));
        }
    }
    t.into_iter()
        .map(|mut v| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        })
        .collect()
}

/// `hashcost`: argon2id (ferroftp) and PBKDF2-HMAC-SHA256 (unFTP) on this machine, one core.
fn hashcost() {
    let v: Vec<String> = std::env::args().collect();
    let (mut m, mut t, mut iter) = (128u32, 1u32, 0u32);
    let mut i = 2;
    while i + 1 < v.len() {
        let val = &v[i + 1];
        match v[i].as_str() {
            "--argon2-m" => m = val.parse().expect("--argon2-m"),
            "--argon2-t" => t = val.parse().expect("--argon2-t"),
            "--pbkdf2-iter" => iter = val.parse().expect("--pbkdf2-iter"),
            o => {
                eprintln!("unknown option {o}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(m, t, 1, Some(32)).expect("argon2 parameters");
    let a2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let (pw, salt) = (b"ftpbench-pw".as_slice(), [7u8; 16]);
    let mut o1 = [0u8; 32];
    let mut o2 = [0u8; 32];
    let mut o3 = [0u8; 32];
    let mut argon = || a2.hash_password_into(pw, &salt, &mut o1).expect("argon2");
    argon();
    let pb = |n: u32, out: &mut [u8; 32]| {
        let n = std::num::NonZeroU32::new(n).expect("n > 0");
        ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, n, &salt, pw, out)
    };
    // per iteration from the difference of two short runs (the fixed cost of a derive cancels
    // out; short runs, interleaved with the argon2 hash, are slowed alike on a busy machine)
    let (lo, hi) = (100u32, 1100u32);
    let t3 = medians_us(301, &mut [&mut argon, &mut || pb(lo, &mut o2), &mut || pb(hi, &mut o3)]);
    let per_iter = (t3[2] - t3[1]) / f64::from(hi - lo);
    let equal = ((t3[0] / per_iter).round() as u32).max(1);
    let check = if iter > 0 { iter } else { equal };
    // both costs as they are paid: one argon2 hash and one derive of `check` iterations, interleaved
    let mut argon = || a2.hash_password_into(pw, &salt, &mut o1).expect("argon2");
    let m2 = medians_us(301, &mut [&mut argon, &mut || pb(check, &mut o2)]);
    let (argon2_us, pbkdf2_us) = (m2[0], m2[1]);
    println!(
        concat!(
            "{{\"argon2_m_kib\":{},\"argon2_t\":{},\"argon2_us\":{:.1},\"pbkdf2_us_per_iter\":{:.4},",
            "\"pbkdf2_iter_equal\":{},\"pbkdf2_iter\":{},\"pbkdf2_us\":{:.1}}}"
        ),
        m, t, argon2_us, per_iter, equal, check, pbkdf2_us
    );
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("hashcost") {
        hashcost();
        return;
    }
    let a = Rc::new(parse());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let sem = Rc::new(Semaphore::new(a.inflight));
        let (rel_tx, rel_rx) = watch::channel(false);
        let (res_tx, mut res_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
        let t0 = Instant::now();
        let mut handles = Vec::with_capacity(a.n);
        for i in 0..a.n {
            let (a, sem, res_tx, mut rel_rx) = (a.clone(), sem.clone(), res_tx.clone(), rel_rx.clone());
            handles.push(tokio::task::spawn_local(async move {
                let permit = sem.acquire().await.unwrap();
                let r = tokio::time::timeout(a.timeout, login(&a, i)).await;
                drop(permit);
                let mut s = match r {
                    Ok(Ok(s)) => {
                        let _ = res_tx.send(Ok(()));
                        s
                    }
                    Ok(Err(e)) => {
                        let _ = res_tx.send(Err(e));
                        return false;
                    }
                    Err(_) => {
                        let _ = res_tx.send(Err("timeout".into()));
                        return false;
                    }
                };
                // hold the session; notice if the server closes it meanwhile
                let mut buf = [0u8; 256];
                let alive = tokio::select! {
                    _ = rel_rx.wait_for(|v| *v) => true,
                    _ = s.read(&mut buf) => false,
                };
                if !alive {
                    return false;
                }
                if s.get_mut().write_all(b"QUIT\r\n").await.is_err() {
                    return false;
                }
                let mut line = String::new();
                matches!(tokio::time::timeout(Duration::from_secs(10), reply(&mut s, &mut line)).await, Ok(Ok(_)))
            }));
        }
        drop(res_tx);
        let mut ok = 0usize;
        let mut errors: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..a.n {
            match res_rx.recv().await {
                Some(Ok(())) => ok += 1,
                Some(Err(e)) => *errors.entry(e).or_default() += 1,
                None => break,
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let errs: Vec<String> = errors
            .iter()
            .map(|(k, v)| format!("\"{}\":{}", k.replace('\\', "\\\\").replace('"', "'"), v))
            .collect();
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{{\"event\":\"ready\",\"n\":{},\"ok\":{},\"seconds\":{:.6},\"errors\":{{{}}}}}", a.n, ok, secs, errs.join(","));
        let _ = out.flush();
        // wait for the release line on stdin (a blocking read on a helper thread)
        let (line_tx, line_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut l = String::new();
            let _ = std::io::stdin().read_line(&mut l);
            let _ = line_tx.send(());
        });
        let _ = line_rx.await;
        let _ = rel_tx.send(true);
        let mut alive = 0usize;
        for h in handles {
            if h.await.unwrap_or(false) {
                alive += 1;
            }
        }
        let _ = writeln!(out, "{{\"event\":\"done\",\"alive\":{alive}}}");
        let _ = out.flush();
    });
}
