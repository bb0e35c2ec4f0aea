//! Resource exhaustion against the real binary: connection floods, slowloris clients and stalled
//! TLS handshakes, hoarded passive ports, idle and non-reading sessions, a directory of 100,000
//! files, very deep and very long paths, thousands of REST/ABOR cycles and brute-force logins.
//!
//! Every attack runs while a well-behaved client (login, PASV, LIST, RETR of a small file, from
//! another loopback address) is served side by side. The server's memory (VmRSS), open file
//! descriptors and listening sockets are read from /proc before, during and after each attack:
//! they must stay bounded while it lasts and come back to the baseline when it ends. Bounds are
//! generous; nothing here asserts how fast the server is, only what it does and what it holds.
//!
//! Run with `-- --nocapture` to see the measurements (`[exhaustion]` lines).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{
    Ctrl, Options, TestServer, connect_from, first_line, free_port_range, read_all, reset, wait_for,
};

// ---------------------------------------------------------------------------------------------
// The server, its user and the well-behaved client
// ---------------------------------------------------------------------------------------------

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";
/// What the well-behaved client downloads each time.
const SMALL: &[u8] = b"a small file that the well-behaved client downloads\n";

/// 127.0.0.`last`: each loopback address acts as a different client.
fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A server with one user (cheap argon2 parameters) and `small.txt` in its root.
fn start(config: &str, args: &[&str], listeners: usize) -> TestServer {
    let server = TestServer::with(Options {
        config: config.into(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        listeners,
        users: vec![(USER.into(), PASSWORD.into(), String::new())],
        ..Options::default()
    });
    std::fs::write(server.root.join("small.txt"), SMALL).unwrap();
    server
}

/// Where and as whom the well-behaved client logs in (cheap to clone into threads).
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    user: String,
    password: String,
}

impl Target {
    fn of(server: &TestServer) -> Self {
        Self {
            addr: server.addr,
            user: server.user.clone(),
            password: server.password.clone(),
        }
    }
}

/// A control connection from one source address; its data connections come from the same one
/// (the server refuses passive connections from another address than the control's).
struct Client {
    ctrl: Ctrl,
    from: Ipv4Addr,
}

impl Client {
    /// Connect from `from` and read the 220 greeting.
    fn connect(to: SocketAddr, from: Ipv4Addr) -> Self {
        let stream =
            connect_from(from, to).unwrap_or_else(|e| panic!("connect from {from} to {to}: {e}"));
        Self::over(stream, from)
    }

    /// Read the 220 greeting on a connection made from `from`.
    fn over(stream: TcpStream, from: Ipv4Addr) -> Self {
        let mut ctrl = Ctrl::over(stream);
        let (code, text) = ctrl.reply();
        assert_eq!(code, 220, "greeting for a client at {from}: {code} {text}");
        Self { ctrl, from }
    }

    fn login(t: &Target, from: Ipv4Addr) -> Self {
        let mut c = Self::connect(t.addr, from);
        c.ctrl.login(&t.user, &t.password);
        c
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.ctrl.cmd(line)
    }

    fn cmd_ok(&mut self, line: &str, code: u16) -> String {
        self.ctrl.cmd_ok(line, code)
    }

    fn reply(&mut self) -> (u16, String) {
        self.ctrl.reply()
    }

    /// PASV, then connect to the announced port from this client's address.
    fn pasv(&mut self) -> TcpStream {
        let text = self.cmd_ok("PASV", 227);
        let addr = ferroftp_proto::addr::parse_pasv_reply(&text).expect("227 address");
        connect_from(self.from, SocketAddr::V4(addr))
            .unwrap_or_else(|e| panic!("data connection to {addr}: {e}"))
    }

    /// A download or listing over passive mode: the bytes received.
    fn fetch(&mut self, line: &str) -> Vec<u8> {
        let data = self.pasv();
        let (code, text) = self.cmd(line);
        assert!(code == 150 || code == 125, "{line} -> {code} {text}");
        let bytes = read_all(data);
        let (code, text) = self.reply();
        assert_eq!(code, 226, "{line}: after the data, {code} {text}");
        bytes
    }

    /// An upload over passive mode.
    fn stor(&mut self, path: &str, bytes: &[u8]) {
        let mut data = self.pasv();
        let (code, text) = self.cmd(&format!("STOR {path}"));
        assert!(code == 150 || code == 125, "STOR {path} -> {code} {text}");
        data.write_all(bytes).unwrap();
        drop(data);
        let (code, text) = self.reply();
        assert_eq!(code, 226, "STOR {path}: {code} {text}");
    }
}

/// The well-behaved client: login, PASV + LIST, PASV + RETR of the small file, QUIT.
fn well_behaved(t: &Target, from: Ipv4Addr) {
    let mut c = Client::login(t, from);
    c.cmd_ok("TYPE I", 200);
    let listing = String::from_utf8(c.fetch("LIST")).unwrap();
    assert!(
        listing.contains("small.txt"),
        "LIST lacks small.txt: {listing}"
    );
    assert_eq!(c.fetch("RETR small.txt"), SMALL, "RETR small.txt");
    c.cmd_ok("QUIT", 221);
}

/// The well-behaved client run over and over in a thread while an attack goes on.
struct SideBySide {
    runs: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl SideBySide {
    fn start(t: &Target, from: Ipv4Addr) -> Self {
        let runs = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, r, s) = (t.clone(), Arc::clone(&runs), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                well_behaved(&t, from);
                r.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self {
            runs,
            stop,
            handle: Some(handle),
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    /// Wait until `n` more complete runs have succeeded (the attack is still in force).
    fn wait_runs(&mut self, n: usize) {
        let want = self.runs() + n;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.runs() < want {
            if self.handle.as_ref().is_some_and(JoinHandle::is_finished) {
                self.join();
                panic!("the well-behaved client stopped");
            }
            assert!(
                Instant::now() < deadline,
                "the well-behaved client made no progress during the attack"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn join(&mut self) {
        if let Some(h) = self.handle.take() {
            if let Err(panic) = h.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// Stop after the current run; the number of successful runs.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.join();
        self.runs()
    }
}

impl Drop for SideBySide {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Read lines until the server closes the connection (or 10 s pass): all lines received.
fn lines_until_closed(s: &TcpStream) -> Vec<String> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let mut reader = s;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Read until the connection ends (EOF or reset): the number of bytes.
fn drain(mut s: TcpStream) -> u64 {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return total,
            Err(e) => panic!("reading an aborted data connection: {e}"),
        }
    }
}

fn log_lines(server: &TestServer, needles: &[&str]) -> usize {
    server
        .log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// A directory of 500 files with long names, for replies of tens of KiB (its STAT) that fill a
/// non-reading client's buffers after a few replies. With small replies (HELP), the receiver's
/// kernel keeps compacting its queue and reopening the window a little, and a server's writes
/// went on trickling out for anywhere between 5 s and over 2 minutes before they stalled.
fn big_directory(server: &TestServer) -> &'static str {
    let big = server.root.join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..500 {
        std::fs::write(
            big.join(format!("a-file-with-a-long-name-for-a-big-listing-{i:04}")),
            "",
        )
        .unwrap();
    }
    "big"
}

// ---------------------------------------------------------------------------------------------
// What the server holds, from /proc
// ---------------------------------------------------------------------------------------------

/// Descriptors a logged-in session holds while idle: its control connection, its home
/// directory, and a passive port if it has one open.
const FDS_PER_SESSION: usize = 3;

/// The server's resources at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    rss_kib: u64,
    fds: usize,
    /// TCP sockets in LISTEN state that the server holds (control listeners + passive ports).
    listening: usize,
    threads: usize,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {:.1} MiB, {} fds, {} listening, {} threads",
            self.rss_kib as f64 / 1024.0,
            self.fds,
            self.listening,
            self.threads
        )
    }
}

/// A number from /proc/PID/status ("VmRSS", "Threads"); 0 once the process is gone.
fn status_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// What each of the server's descriptors points to (`socket:[123]`, a path, ...).
fn fd_links(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        Some(std::fs::read_link(e.path()).ok()?.display().to_string())
    })
    .collect()
}

/// The local ports of the server's listening TCP sockets.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: HashSet<String> = fd_links(pid)
        .iter()
        .filter_map(|l| Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned()))
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:tm retrnsmt uid timeout inode
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                if let Some(port) = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                {
                    ports.push(port);
                }
            }
        }
    }
    ports.sort_unstable();
    ports
}

fn usage(pid: u32) -> Usage {
    let links = fd_links(pid);
    Usage {
        rss_kib: status_field(pid, "VmRSS"),
        fds: links.len(),
        listening: listening_ports(pid).len(),
        threads: status_field(pid, "Threads") as usize,
    }
}

/// Usage once the descriptors have stopped changing.
fn settled(pid: u32) -> Usage {
    let mut last = usage(pid);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = usage(pid);
        if now.fds == last.fds && now.listening == last.listening {
            return now;
        }
        last = now;
    }
    last
}

/// The baseline: after one well-behaved session (so lazily made things exist), settled.
fn baseline(t: &Target, pid: u32) -> Usage {
    well_behaved(t, ip(9));
    settled(pid)
}

/// Wait until the server holds no more descriptors and listening sockets than at `base`.
fn back_to_baseline(pid: u32, base: Usage, what: &str) -> Usage {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let u = usage(pid);
        if u.fds <= base.fds && u.listening <= base.listening {
            return u;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the server still holds {u} (baseline {base}); descriptors: {:?}",
            fd_links(pid)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Samples the server's usage every few milliseconds and keeps the peaks.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Usage>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut peak = usage(pid);
            loop {
                let u = usage(pid);
                peak.rss_kib = peak.rss_kib.max(u.rss_kib);
                peak.fds = peak.fds.max(u.fds);
                peak.listening = peak.listening.max(u.listening);
                peak.threads = peak.threads.max(u.threads);
                if s.load(Ordering::SeqCst) {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self { stop, handle }
    }

    fn peak(self) -> Usage {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// Print the measurements; the first row is the baseline. Memory must stay bounded throughout:
/// the allocator keeps some of what it freed (argon2 alone takes 1-19 MiB a login), so the
/// bound is generous, far below what holding on to a flood's connections or a listing would
/// take.
fn report(test: &str, rows: &[(&str, Usage)]) {
    for (phase, u) in rows {
        println!("[exhaustion] {test}: {phase:<34} {u}");
    }
    let base = rows[0].1;
    for (phase, u) in &rows[1..] {
        assert!(
            u.rss_kib <= base.rss_kib + 128 * 1024,
            "{test}, {phase}: {u} against {base} at the start"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Connection flood
// ---------------------------------------------------------------------------------------------

/// Hundreds of connections from one address: past `max_sessions_per_ip` each gets a 421 as its
/// first line and is closed at once (no login timeout to wait out), costing the server nothing
/// it keeps; another address is served throughout; `max_sessions` caps the total; when the flood
/// ends the descriptors are back at the baseline and the flooding address is served again.
#[test]
fn a_connection_flood_is_refused_at_once_while_others_are_served() {
    const TEST: &str = "connection flood";
    let server = start(
        "[limits]\nmax_sessions_per_ip = 4\nmax_sessions = 12\nlogin_timeout_secs = 60\n",
        &[],
        1,
    );
    let t = Target::of(&server);
    let pid = server.pid();
    let base = baseline(&t, pid);

    // The flood's first four connections are sessions; they keep their places.
    let held: Vec<Client> = (0..4).map(|_| Client::connect(t.addr, ip(1))).collect();
    // 300 more from the same address, all held open by the client: each gets exactly one line,
    // the 421, and is closed by the server.
    let mut refused = Vec::new();
    for i in 0..300 {
        let s = connect_from(ip(1), t.addr).unwrap();
        let lines = lines_until_closed(&s);
        assert!(
            lines.len() == 1
                && lines[0].starts_with("421 Too many connections from your address (at most 4)"),
            "flood connection #{i} got {lines:?}"
        );
        refused.push(s);
    }
    let during_held = usage(pid);
    // Served meanwhile, from another address.
    well_behaved(&t, ip(2));
    assert!(
        during_held.fds <= base.fds + 4 + 4,
        "300 refused connections held open by the client cost the server descriptors: \
         {during_held} (baseline {base})"
    );

    // A churning flood (connect, read, close; every other one with RST) from two addresses,
    // while the well-behaved client runs three times.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = |from: Ipv4Addr| {
        let stop = Arc::clone(&stop);
        let addr = t.addr;
        std::thread::spawn(move || {
            let (mut greeted, mut refused) = (0usize, 0usize);
            let mut i = 0;
            while i < 200 || !stop.load(Ordering::SeqCst) {
                let s = connect_from(from, addr).unwrap();
                let line = first_line(&s);
                if line.starts_with("220") {
                    greeted += 1;
                } else if line.starts_with("421 Too many connections") {
                    refused += 1;
                } else {
                    panic!("flood connection from {from} got {line:?}");
                }
                if i % 2 == 0 {
                    reset(s);
                }
                i += 1;
            }
            (greeted, refused)
        })
    };
    let sampler = Sampler::start(pid);
    let flood_a = churn(ip(1));
    let flood_b = churn(ip(6));
    for _ in 0..3 {
        well_behaved(&t, ip(2));
    }
    stop.store(true, Ordering::SeqCst);
    let (a_greeted, a_refused) = flood_a.join().unwrap();
    let (b_greeted, b_refused) = flood_b.join().unwrap();
    let churn_peak = sampler.peak();
    println!(
        "[exhaustion] {TEST}: churn from 127.0.0.1: {a_greeted} greeted, {a_refused} refused; \
         from 127.0.0.6: {b_greeted} greeted, {b_refused} refused"
    );
    assert_eq!(
        a_greeted, 0,
        "127.0.0.1 already has its 4 sessions: none more may be greeted"
    );
    assert!(a_refused >= 200);
    assert!(
        churn_peak.fds <= base.fds + 4 + 4 + 2 * 5 + 12,
        "descriptors during the churning flood: {churn_peak} (baseline {base})"
    );

    // The total: with 127.0.0.1's four, four from .3 and four from .4 make 12 = max_sessions;
    // anyone else is refused, whatever the address.
    wait_for(
        "the churn's sessions to end",
        Duration::from_secs(10),
        || usage(pid).fds <= base.fds + 4,
    );
    let group3: Vec<Client> = (0..4).map(|_| Client::connect(t.addr, ip(3))).collect();
    let group4: Vec<Client> = (0..4).map(|_| Client::connect(t.addr, ip(4))).collect();
    for from in [5, 2] {
        let s = connect_from(ip(from), t.addr).unwrap();
        let lines = lines_until_closed(&s);
        assert_eq!(
            lines,
            ["421 Too many connections (the server allows 12); try later"],
            "a 13th session (from 127.0.0.{from})"
        );
    }
    let full = usage(pid);
    assert!(
        full.fds <= base.fds + 12 + 2,
        "at max_sessions: {full} (baseline {base})"
    );
    // Places freed are places given: with .4's four gone, the well-behaved client is served.
    drop(group4);
    wait_for("4 free places", Duration::from_secs(10), || {
        usage(pid).fds <= base.fds + 8
    });
    well_behaved(&t, ip(2));

    // The flood ends: everything is given back, and the flooding address is served again.
    drop(held);
    drop(group3);
    drop(refused);
    let after = back_to_baseline(pid, base, "after the flood");
    well_behaved(&t, ip(1));
    report(
        TEST,
        &[
            ("before", base),
            ("4 sessions + 300 refused held", during_held),
            ("peak while churning", churn_peak),
            ("at max_sessions (12)", full),
            ("after", after),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Slowloris and stalled TLS handshakes
// ---------------------------------------------------------------------------------------------

/// How one slow client ended.
struct Cut {
    what: &'static str,
    /// Everything the server sent.
    received: String,
    /// From connecting to the server closing the connection.
    after: Duration,
    closed: bool,
    /// Still open on the client side: the server must have let go of its end by itself.
    _stream: TcpStream,
}

/// A client that writes `prelude`, then `chunk` bytes of `drip` (cycled) every `every`, and
/// reads whatever comes, until the server closes the connection (or 20 s).
fn slow_client(
    what: &'static str,
    to: SocketAddr,
    from: Ipv4Addr,
    prelude: &'static [u8],
    drip: &'static [u8],
    chunk: usize,
    every: Duration,
) -> JoinHandle<Cut> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut s = connect_from(from, to).unwrap();
        s.set_read_timeout(Some(every)).unwrap();
        let _ = s.write_all(prelude);
        let mut received = Vec::new();
        let mut buf = [0u8; 1024];
        let mut at = 0;
        let mut closed = false;
        while started.elapsed() < Duration::from_secs(20) {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if chunk > 0 {
                        let piece: Vec<u8> =
                            (0..chunk).map(|i| drip[(at + i) % drip.len()]).collect();
                        at += chunk;
                        let _ = s.write_all(&piece);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        Cut {
            what,
            received: String::from_utf8_lossy(&received).into_owned(),
            after: started.elapsed(),
            closed,
            _stream: s,
        }
    })
}

/// Clients that send one byte a second and never a whole line, or whole lines but never log
/// in, are closed at the login timeout with a 421; TLS clients on the implicit listener that
/// start a handshake and never finish it (silent, or dribbling a ClientHello), and a client
/// that sends AUTH TLS and then nothing, are dropped at `tls.handshake_timeout_secs`. The
/// well-behaved client is served meanwhile, and the server lets go of every connection itself
/// (the attackers still hold theirs open).
#[test]
fn slowloris_clients_and_stalled_tls_handshakes_are_cut_off() {
    const TEST: &str = "slowloris";
    let server = start(
        "[limits]\nlogin_timeout_secs = 2\nidle_timeout_secs = 30\nmax_sessions_per_ip = 16\n\
         [tls]\nhandshake_timeout_secs = 2\n",
        &["--implicit-listen", "127.0.0.1:0"],
        2,
    );
    let t = Target::of(&server);
    let implicit = server.addrs[1];
    let pid = server.pid();
    let base = baseline(&t, pid);

    // A TLS record header announcing a 512-byte handshake message, then its bytes, slowly.
    const HELLO_HEAD: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
    let sec = Duration::from_secs(1);
    let mut attackers = Vec::new();
    for _ in 0..4 {
        attackers.push(slow_client(
            "one byte a second, never a line",
            t.addr,
            ip(1),
            b"",
            b"USER alice PASS secret ",
            1,
            sec,
        ));
    }
    for _ in 0..2 {
        attackers.push(slow_client(
            "NOOP lines, never a login",
            t.addr,
            ip(1),
            b"",
            b"NOOP\r\n",
            6,
            Duration::from_millis(400),
        ));
    }
    let tls_silent = slow_client("implicit TLS, silent", implicit, ip(1), b"", b"", 0, sec);
    let tls_drip = slow_client(
        "implicit TLS, ClientHello dribbled",
        implicit,
        ip(1),
        HELLO_HEAD,
        &[0x42],
        1,
        sec,
    );
    let auth_stall = slow_client(
        "AUTH TLS, then no handshake",
        t.addr,
        ip(1),
        b"AUTH TLS\r\n",
        b"",
        0,
        sec,
    );

    // Served meanwhile (the login has to fit in the 2 s login timeout, and it does).
    std::thread::sleep(Duration::from_millis(200));
    let during = usage(pid);
    for _ in 0..3 {
        well_behaved(&t, ip(2));
    }
    let still_attacking = attackers
        .iter()
        .chain([&tls_silent, &tls_drip, &auth_stall])
        .filter(|h| !h.is_finished())
        .count();

    let mut cuts: Vec<Cut> = attackers.into_iter().map(|h| h.join().unwrap()).collect();
    let tls_cuts = [
        tls_silent.join().unwrap(),
        tls_drip.join().unwrap(),
        auth_stall.join().unwrap(),
    ];
    for cut in cuts.iter().chain(&tls_cuts) {
        println!(
            "[exhaustion] {TEST}: {:<36} closed by the server after {:.2} s",
            cut.what,
            cut.after.as_secs_f64()
        );
        assert!(
            cut.closed,
            "{}: still open after {:?}; got {:?}",
            cut.what, cut.after, cut.received
        );
        assert!(
            cut.after >= Duration::from_millis(1500) && cut.after < Duration::from_secs(10),
            "{}: closed after {:?} (timeout 2 s)",
            cut.what,
            cut.after
        );
    }
    for cut in &cuts {
        let lines: Vec<&str> = cut.received.lines().collect();
        assert!(
            lines.first().is_some_and(|l| l.starts_with("220"))
                && lines.last()
                    == Some(&"421 Timeout: not logged in within 2 s; closing control connection"),
            "{}: {lines:?}",
            cut.what
        );
    }
    for cut in &tls_cuts[..2] {
        assert!(
            !cut.received.contains("220"),
            "{}: plaintext on the implicit TLS listener: {:?}",
            cut.what,
            cut.received
        );
    }
    let lines: Vec<&str> = tls_cuts[2].received.lines().collect();
    assert!(
        lines.len() == 2 && lines[0].starts_with("220") && lines[1].starts_with("234"),
        "AUTH TLS staller: {lines:?}"
    );
    // The server let go of all of them while their clients still hold the connections open.
    let after = back_to_baseline(pid, base, "after the slow clients were cut off");
    cuts.clear();
    drop(tls_cuts);
    assert!(
        log_lines(&server, &["session closed", "login timeout"]) >= 6,
        "login timeouts in the log"
    );
    assert!(
        log_lines(
            &server,
            &[
                "TLS handshake failed on the implicit FTPS listener",
                "not completed within 2 s"
            ]
        ) >= 2,
        "implicit handshake timeouts in the log"
    );
    assert!(
        log_lines(
            &server,
            &[
                "TLS handshake on the control connection failed",
                "not completed within 2 s"
            ]
        ) >= 1,
        "AUTH TLS handshake timeout in the log"
    );
    well_behaved(&t, ip(1));
    println!(
        "[exhaustion] {TEST}: {still_attacking} of 9 slow clients were still connected when the \
         well-behaved client had finished 3 sessions"
    );
    report(
        TEST,
        &[
            ("before", base),
            ("9 slow clients connected", during),
            ("after (clients still hold theirs)", after),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// 3. PASV without connecting
// ---------------------------------------------------------------------------------------------

/// One session sends PASV 1000 times and never connects: it holds at most one passive port at
/// any moment (descriptors and listening sockets stay flat), and that one is released at the
/// data timeout. With a five-port range, sessions that take every port and then vanish give
/// them back at once; ports taken by sessions that stay (idle, or with a LIST waiting for its
/// connection) come back at the data timeout; then five clients can again hold one each.
#[test]
fn pasv_without_connecting_holds_at_most_one_port() {
    const TEST: &str = "PASV hoarding";
    let low = free_port_range(5);
    let high = low + 4;
    let server = start(
        &format!(
            "[limits]\ndata_timeout_secs = 6\nmax_sessions_per_ip = 16\n\
             [passive]\nports = \"{low}-{high}\"\n"
        ),
        &[],
        1,
    );
    let t = Target::of(&server);
    let pid = server.pid();
    let base = baseline(&t, pid);
    assert_eq!(base.listening, 1, "only the control listener: {base}");

    // 1000 PASV in one session (pipelined 50 at a time), the well-behaved client alongside.
    let mut side = SideBySide::start(&t, ip(2));
    let mut hoarder = Client::login(&t, ip(1));
    let sampler = Sampler::start(pid);
    let mut samples = Vec::new();
    for batch in 0..20 {
        hoarder.ctrl.send_raw("PASV\r\n".repeat(50).as_bytes());
        for i in 0..50 {
            let (code, text) = hoarder.reply();
            assert_eq!(code, 227, "PASV #{}: {text}", batch * 50 + i);
            let port = ferroftp_proto::addr::parse_pasv_reply(&text)
                .unwrap()
                .port();
            assert!(
                (low..=high).contains(&port),
                "port {port} outside the range"
            );
        }
        let u = usage(pid);
        assert!(
            u.listening <= 3,
            "after {} PASV: {u} (control + hoarder + the well-behaved client at most)",
            (batch + 1) * 50
        );
        samples.push(u);
        if batch == 10 {
            side.wait_runs(1);
        }
    }
    side.wait_runs(1);
    let hoard_peak = sampler.peak();
    let runs = side.finish();
    let (min_fds, max_fds) = samples.iter().fold((usize::MAX, 0), |(lo, hi), u| {
        (lo.min(u.fds), hi.max(u.fds))
    });
    assert!(
        // The hoarder's control connection, home directory and port, and the well-behaved
        // client's sessions (control, home, passive port, data, file: five each, two
        // overlapping as one ends and the next starts).
        hoard_peak.listening <= 3 && hoard_peak.fds <= base.fds + FDS_PER_SESSION + 2 * 5,
        "1000 PASV: peak {hoard_peak} (baseline {base})"
    );
    // The hoarder's last port is released at the data timeout; its session stays.
    wait_for(
        "the hoarder's last port to expire",
        Duration::from_secs(20),
        || usage(pid).listening == 1,
    );
    hoarder.cmd_ok("NOOP", 200);
    assert!(
        hoarder.cmd_ok("STAT", 211).contains("No data connection"),
        "the expired port is still announced"
    );

    // Five sessions take all five ports.
    let mut takers: Vec<Client> = (0..5).map(|_| Client::login(&t, ip(3))).collect();
    for c in &mut takers {
        c.cmd_ok("PASV", 227);
    }
    let all_taken = usage(pid);
    assert_eq!(
        all_taken.listening, 6,
        "five passive ports held: {all_taken}"
    );
    // A sixth is told so (the range is exhausted), and nothing breaks.
    let mut sixth = Client::login(&t, ip(2));
    let (code, text) = sixth.cmd("PASV");
    assert_eq!(code, 425, "PASV with the whole range held: {text}");
    sixth.cmd_ok("QUIT", 221);
    // takers[1] asks for a listing and never connects; takers[2..] vanish (one with RST).
    takers[1].ctrl.send_raw(b"LIST\r\n");
    assert_eq!(takers[1].reply().0, 150);
    let vanished: Vec<Client> = takers.drain(2..).collect();
    for (i, c) in vanished.into_iter().enumerate() {
        if i == 0 {
            reset(c.ctrl.stream);
        } else {
            drop(c);
        }
    }
    // Their ports come back when they go, not at the data timeout: the oldest offer (takers[0],
    // idle) is still waiting when they are free.
    wait_for(
        "the vanished sessions' ports",
        Duration::from_secs(10),
        || usage(pid).listening == 3,
    );
    let stat = takers[0].cmd_ok("STAT", 211);
    assert!(
        stat.contains("Passive mode: waiting on port"),
        "the oldest offer expired before the vanished ones were released: {stat}"
    );
    well_behaved(&t, ip(2));
    // The LIST that never got its connection fails at the data timeout, and its port is free.
    let (code, text) = takers[1].reply();
    assert_eq!(code, 425, "LIST without a data connection: {text}");
    wait_for("the idle offer to expire", Duration::from_secs(10), || {
        usage(pid).listening == 1
    });
    for c in &mut takers {
        c.cmd_ok("NOOP", 200);
    }
    drop(takers);
    drop(hoarder);
    // All five ports can be held at once again.
    let mut five: Vec<Client> = (0..5).map(|_| Client::login(&t, ip(4))).collect();
    for c in &mut five {
        c.cmd_ok("PASV", 227);
    }
    drop(five);
    let after = back_to_baseline(pid, base, "after the PASV hoarding");
    well_behaved(&t, ip(2));
    println!(
        "[exhaustion] {TEST}: 1000 PASV: fds between {min_fds} and {max_fds} (sampled every 50); \
         {runs} well-behaved sessions alongside"
    );
    report(
        TEST,
        &[
            ("before", base),
            ("peak during 1000 PASV", hoard_peak),
            ("5 ports held by 5 sessions", all_taken),
            ("after", after),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Idle and non-reading sessions
// ---------------------------------------------------------------------------------------------

/// Logged-in sessions that go quiet (one with a passive port open, one in a subdirectory) are
/// closed at the idle timeout with a 421, and a client that pipelines commands but never reads
/// the replies is dropped once a write has waited that long; everything they held is freed
/// while their clients still keep the connections open.
#[test]
fn idle_and_non_reading_sessions_are_closed_and_freed() {
    const TEST: &str = "idle sessions";
    let server = start(
        "[limits]\nidle_timeout_secs = 2\nlogin_timeout_secs = 30\nmax_sessions_per_ip = 16\n",
        &[],
        1,
    );
    std::fs::create_dir(server.root.join("sub")).unwrap();
    let big = big_directory(&server);
    let t = Target::of(&server);
    let pid = server.pid();
    let base = baseline(&t, pid);

    let mut idle: Vec<(Client, Instant)> = Vec::new();
    for i in 0..8 {
        let mut c = Client::login(&t, ip(1));
        match i {
            0 => {
                c.cmd_ok("PASV", 227);
            }
            1 => {
                c.cmd_ok("CWD sub", 250);
            }
            _ => {}
        }
        idle.push((c, Instant::now()));
    }
    // The non-reader: logs in, then pipelines STAT of a big directory (a multi-line reply of
    // tens of KiB) without reading. Its small receive buffer makes the server's writes block
    // after a few replies.
    let deaf = {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.bind(&SocketAddr::from((ip(3), 0)).into()).unwrap();
        sock.connect(&t.addr.into()).unwrap();
        let mut c = Client::over(sock.into(), ip(3));
        c.ctrl.login(&t.user, &t.password);
        c
    };
    let deaf_writer = {
        let mut s = deaf.ctrl.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let burst = format!("STAT {big}\r\n").repeat(100);
            for _ in 0..60 {
                if s.write_all(burst.as_bytes()).is_err() {
                    return;
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let during = usage(pid);
    assert!(
        during.listening == 2,
        "the idle session's passive port: {during}"
    );
    // Served meanwhile.
    for _ in 0..3 {
        well_behaved(&t, ip(2));
    }
    for (i, (c, since)) in idle.iter_mut().enumerate() {
        let (code, text) = c.reply();
        let after = since.elapsed();
        assert_eq!(
            (code, text.as_str()),
            (
                421,
                "Timeout: no command for 2 s; closing control connection"
            ),
            "idle session {i}"
        );
        assert!(c.ctrl.is_closed(), "idle session {i} not closed after 421");
        assert!(
            after >= Duration::from_millis(1500) && after < Duration::from_secs(10),
            "idle session {i} closed after {after:?}"
        );
    }
    // Freed while the deaf client still holds its connection open and unread.
    server.wait_for_log("reason=\"control connection write failed\"", 30);
    let after = back_to_baseline(pid, base, "after the idle timeouts");
    assert_eq!(
        log_lines(
            &server,
            &[
                "127.0.0.3",
                "session closed",
                "control connection write failed"
            ]
        ),
        1,
        "the non-reading session's close is logged"
    );
    let deaf_replies = log_lines(&server, &["127.0.0.3", "reply code=21"]);
    println!(
        "[exhaustion] {TEST}: the non-reading session was closed after {deaf_replies} replies"
    );
    deaf_writer.join().unwrap();
    drop(deaf);
    drop(idle);
    well_behaved(&t, ip(1));
    report(
        TEST,
        &[
            ("before", base),
            ("8 idle + 1 non-reading session", during),
            ("after (clients still connected)", after),
        ],
    );
}

/// A silent client that has not logged in is closed by whichever of the idle and login
/// timeouts comes first; the 421 must name the timeout that fired. With idle_timeout_secs = 2
/// and login_timeout_secs = 30 the connection is closed after 2 s, so the reply must not say
/// "30 s".
#[test]
fn the_timeout_reply_names_the_timeout_that_fired() {
    let server = start(
        "[limits]\nidle_timeout_secs = 2\nlogin_timeout_secs = 30\n",
        &[],
        1,
    );
    let t = Target::of(&server);
    let side = SideBySide::start(&t, ip(2));
    let started = Instant::now();
    let mut c = Client::connect(t.addr, ip(1));
    let (code, text) = c.reply();
    let after = started.elapsed();
    assert_eq!(code, 421, "{text}");
    assert!(c.ctrl.is_closed());
    assert!(side.finish() >= 1);
    assert!(
        after < Duration::from_secs(10),
        "closed after {after:?}: the idle timeout applies before login"
    );
    assert!(
        text.contains(" 2 s"),
        "closed after {:.1} s (idle_timeout_secs = 2), but the reply says {text:?}",
        after.as_secs_f64()
    );
}

/// A TLS client that sends commands but never reads the replies must be dropped at the idle
/// timeout, like a plain one: the session's write gives up after idle_timeout_secs, and closing
/// the session must not then wait for the client to read the TLS close_notify.
#[test]
fn a_tls_client_that_stops_reading_is_dropped_at_the_idle_timeout() {
    const TEST: &str = "TLS non-reader";
    let server = start("[limits]\nidle_timeout_secs = 2\n", &[], 1);
    let t = Target::of(&server);
    let pid = server.pid();
    let big = big_directory(&server);
    let base = baseline(&t, pid);
    let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/py/exh_tls_nonreader.py"]
        .iter()
        .collect();
    let mut child = Command::new("python3")
        .arg(&script)
        .args([
            "127.0.0.1",
            &t.addr.port().to_string(),
            &t.user,
            &t.password,
            "127.0.0.5",
            "150",
            &format!("STAT {big}"),
        ])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    if line.trim() != "logged in" {
        let _ = child.kill();
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        panic!("{} did not log in: {line:?} {err}", script.display());
    }
    let logged_in = Instant::now();
    let side = SideBySide::start(&t, ip(2));
    std::thread::sleep(Duration::from_millis(500));
    let during = usage(pid);
    // The writes block once the socket buffers are full (a few replies); then the write gives
    // up after the idle timeout (2 s) and the close after 2 s more. A busy machine may slow
    // this down, so wait until just before the client itself goes away (150 s): the gap
    // between the last reply and the close is what is checked below.
    let deadline = logged_in + Duration::from_secs(140);
    let mut closed = None;
    while Instant::now() < deadline {
        if log_lines(&server, &["127.0.0.5", "session closed"]) == 1 {
            closed = Some(logged_in.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The well-behaved sessions alongside hold descriptors of their own most of the time:
    // stop them before checking that the closed session's are back, the client still there.
    let runs = side.finish();
    let freed = closed.and_then(|after| {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let u = usage(pid);
            if u.fds <= base.fds {
                return Some((after, u));
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let held = usage(pid);
    let open_at_kill = log_lines(&server, &["127.0.0.5", "session closed"]) == 0;
    let killed_after = logged_in.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    report(TEST, &[("before", base), ("non-reader connected", during)]);
    println!("[exhaustion] {TEST}: {runs} well-behaved sessions alongside");
    let Some((after, freed_usage)) = freed else {
        // Once the client is gone, the session ends at last.
        let released = back_to_baseline(pid, base, "after the TLS non-reader went away");
        let log = server.log();
        let stamp = |needle: &str| {
            log.lines()
                .rfind(|l| l.contains("127.0.0.5") && l.contains(needle))
                .and_then(|l| l.split(' ').next())
                .unwrap_or("-")
                .to_owned()
        };
        panic!(
            "a TLS session whose client stopped reading was still open {:.1} s after login \
             (idle_timeout_secs = 2){}, holding {held} (baseline {base}); it ended only when the \
             client was killed: last reply logged at {}, \"session closed ... control connection \
             write failed\" logged at {}; then {released}",
            killed_after.as_secs_f64(),
            if open_at_kill {
                " with no close logged"
            } else {
                ""
            },
            stamp("reply code="),
            stamp("session closed"),
        );
    };
    println!(
        "[exhaustion] {TEST}: session closed {:.1} s after login",
        after.as_secs_f64()
    );
    // From the moment the writes stalled (the last reply) to the close: the idle timeout and
    // the bounded close, not the client's whim.
    let log = server.log();
    let seconds = |needle: &str| -> f64 {
        let line = log
            .lines()
            .rfind(|l| l.contains("127.0.0.5") && l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} line for 127.0.0.5"));
        let time = line.split(' ').next().unwrap_or_default();
        // 2026-11-30T10:06:21.750537Z: seconds within the day are enough here.
        let hms = time
            .split('T')
            .nth(1)
            .unwrap_or_default()
            .trim_end_matches('Z');
        let mut parts = hms.split(':').map(|p| p.parse::<f64>().unwrap_or(0.0));
        let (h, m, sec) = (
            parts.next().unwrap_or(0.0),
            parts.next().unwrap_or(0.0),
            parts.next().unwrap_or(0.0),
        );
        h * 3600.0 + m * 60.0 + sec
    };
    let gap = seconds("session closed") - seconds("reply code=");
    assert!(
        gap < 8.0,
        "closed {gap:.1} s after its last reply (idle_timeout_secs = 2, close bounded at 2 s)"
    );
    report(TEST, &[("after", freed_usage)]);
}

// ---------------------------------------------------------------------------------------------
// 5. A huge directory
// ---------------------------------------------------------------------------------------------

/// The index of a file name `f012345` (optionally with a `big/` prefix) at the end of a line.
fn file_index(line: &str) -> Option<usize> {
    let name = line.rsplit([' ', '/']).next()?;
    name.strip_prefix('f')?.parse().ok()
}

/// LIST, NLST and MLSD of a directory of 100,000 files send every entry, six at once, while the
/// server's memory grows by far less than one whole listing would take per session; STAT of it
/// is cut short with a note.
#[test]
fn huge_directory_listings_stream_in_bounded_memory() {
    const TEST: &str = "huge directory";
    const FILES: usize = 100_000;
    // The user's home is on tmpfs when there is one: 100,000 files are made in a second or two
    // there, against ten or more on a busy disk.
    let shm = std::path::Path::new("/dev/shm");
    let home = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let server = TestServer::with(Options {
        // The home is on tmpfs, outside the root.
        config: "[limits]\nmax_sessions_per_ip = 16\n[auth]\nallow_homes_outside_root = true\n"
            .into(),
        users: vec![(
            USER.into(),
            PASSWORD.into(),
            format!("home = {:?}", home.path().to_str().unwrap()),
        )],
        ..Options::default()
    });
    std::fs::write(home.path().join("small.txt"), SMALL).unwrap();
    let big = home.path().join("big");
    std::fs::create_dir(&big).unwrap();
    let making = Instant::now();
    let template = big.join("f000000");
    std::fs::File::create(&template).unwrap();
    for i in 1..FILES {
        std::fs::hard_link(&template, big.join(format!("f{i:06}"))).unwrap();
    }
    println!(
        "[exhaustion] {TEST}: {FILES} files made in {:.1} s in {}",
        making.elapsed().as_secs_f64(),
        home.path().display()
    );
    let t = Target::of(&server);
    let pid = server.pid();
    // The baseline comes after six sessions at once did what the listers will do, on a small
    // directory (sorted listings, STAT), so that threads and allocator arenas exist already.
    let base = {
        let warm: Vec<_> = (0..6)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    let mut c = Client::login(&t, ip(1));
                    for verb in ["LIST", "NLST", "MLSD"] {
                        c.fetch(verb);
                    }
                    c.cmd_ok("STAT .", 213);
                    c.cmd_ok("QUIT", 221);
                })
            })
            .collect();
        for h in warm {
            h.join().unwrap();
        }
        baseline(&t, pid)
    };

    let sampler = Sampler::start(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let listers: Vec<_> = ["LIST big", "NLST big", "MLSD big"]
        .iter()
        .cycle()
        .take(6)
        .map(|&verb| {
            let (t, stop) = (t.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut c = Client::login(&t, ip(1));
                let mut done = 0;
                loop {
                    let text = String::from_utf8(c.fetch(verb)).unwrap();
                    let mut seen = vec![false; FILES];
                    let mut lines = 0;
                    for line in text.lines() {
                        lines += 1;
                        let i = file_index(line)
                            .unwrap_or_else(|| panic!("{verb}: unexpected line {line:?}"));
                        assert!(!seen[i], "{verb}: f{i:06} listed twice");
                        seen[i] = true;
                    }
                    assert_eq!(lines, FILES, "{verb}: lines");
                    if verb == "NLST big" {
                        assert!(
                            text.starts_with("big/f"),
                            "NLST of a path: {:?}",
                            &text[..20]
                        );
                    }
                    done += 1;
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                }
                c.cmd_ok("QUIT", 221);
                (verb, done)
            })
        })
        .collect();
    // Served meanwhile: the well-behaved client twice.
    let served_from = Instant::now();
    well_behaved(&t, ip(2));
    well_behaved(&t, ip(2));
    let served_in = served_from.elapsed();
    stop.store(true, Ordering::SeqCst);
    let done: Vec<(&str, usize)> = listers.into_iter().map(|h| h.join().unwrap()).collect();
    let peak = sampler.peak();
    let growth_kib = peak.rss_kib.saturating_sub(base.rss_kib);
    println!(
        "[exhaustion] {TEST}: listings of {FILES} entries completed: {done:?}; the well-behaved \
         client's two sessions took {:.2} s meanwhile",
        served_in.as_secs_f64()
    );
    // A LIST line is ~60 bytes and an entry in memory ~100: one whole listing would be 6-16 MB,
    // six at once 40 MB or more.
    assert!(
        growth_kib < 30 * 1024,
        "RSS grew by {:.1} MiB during six concurrent listings of {FILES} entries \
         (peak {peak}, baseline {base})",
        growth_kib as f64 / 1024.0
    );

    // STAT of the directory travels on the control connection: capped, and it says so.
    let mut c = Client::login(&t, ip(1));
    let stat_sampler = Sampler::start(pid);
    let text = c.cmd_ok("STAT big", 213);
    let stat_peak = stat_sampler.peak();
    let entries = text.lines().filter(|l| file_index(l).is_some()).count();
    assert_eq!(entries, 10_000, "STAT big: entries shown");
    assert!(
        text.contains("only the first 10000 entries are shown"),
        "STAT big says it is cut short: {}",
        text.lines().rev().take(2).collect::<Vec<_>>().join(" | ")
    );
    c.cmd_ok("NOOP", 200);
    c.cmd_ok("QUIT", 221);
    let after = back_to_baseline(pid, base, "after the listings");
    let took: Vec<String> = server
        .log()
        .lines()
        .filter(|l| l.contains("path=/big") && l.contains("duration_ms="))
        .filter_map(|l| {
            let verb = l.split("verb=").nth(1)?.split(' ').next()?;
            let ms = l.split("duration_ms=").nth(1)?.split(' ').next()?;
            Some(format!("{verb} {ms} ms"))
        })
        .collect();
    println!("[exhaustion] {TEST}: listing durations (server log): {took:?}");
    report(
        TEST,
        &[
            ("before", base),
            ("peak, 6 listings at once", peak),
            ("peak during STAT big", stat_peak),
            ("after", after),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Very deep and very long paths
// ---------------------------------------------------------------------------------------------

/// MKD/CWD 200 levels deep, a 4040-byte path built of 100-byte names, and paths past the limits
/// (more than 256 levels, more than 4096 bytes, a 300-byte name) all get clear replies (257,
/// 250, 550, 553), files work at the bottom, and a line longer than `max_line_length` gets 500
/// and the connection is closed. Nothing crashes, and the well-behaved client is served
/// alongside.
#[test]
fn deep_and_long_paths_get_clear_replies() {
    const TEST: &str = "deep paths";
    let server = start("[limits]\nmax_line_length = 8192\n", &[], 1);
    let t = Target::of(&server);
    let pid = server.pid();
    let base = baseline(&t, pid);
    let mut side = SideBySide::start(&t, ip(2));

    let mut c = Client::login(&t, ip(1));
    let mut path = String::new();
    for i in 0..200 {
        let name = format!("level_{i:03}");
        path.push('/');
        path.push_str(&name);
        let text = c.cmd_ok(&format!("MKD {name}"), 257);
        assert!(
            text.starts_with(&format!("\"{path}\"")),
            "MKD reply: {text}"
        );
        c.cmd_ok(&format!("CWD {name}"), 250);
    }
    let pwd = c.cmd_ok("PWD", 257);
    assert!(pwd.starts_with(&format!("\"{path}\"")), "PWD at depth 200");
    let level_path = path.clone();
    c.cmd_ok("TYPE I", 200);
    c.stor("deep.txt", SMALL);
    assert_eq!(c.fetch("RETR deep.txt"), SMALL);
    assert!(
        String::from_utf8(c.fetch("LIST"))
            .unwrap()
            .contains("deep.txt")
    );
    // Deeper, with 200-byte names, until the path passes 4096 bytes: then 553.
    let long_name = "n".repeat(200);
    let mut extra = 0;
    loop {
        let (code, text) = c.cmd(&format!("MKD {long_name}"));
        if code == 553 {
            assert!(
                path.len() + 1 + long_name.len() > 4096,
                "553 for a {}-byte path: {text}",
                path.len() + 201
            );
            assert_eq!(c.cmd("CWD ../x").0, 550, "a missing sibling");
            assert_eq!(c.cmd(&format!("CWD {long_name}")).0, 553);
            break;
        }
        assert_eq!(code, 257, "MKD at {} bytes: {text}", path.len());
        c.cmd_ok(&format!("CWD {long_name}"), 250);
        path.push('/');
        path.push_str(&long_name);
        extra += 1;
        assert!(extra < 20, "no limit on the path length");
    }
    // Back to the top in one CWD of ~3900 bytes of "../".
    let text = c.cmd_ok(&format!("CWD {}", "../".repeat(1300)), 250);
    assert!(text.contains("changed to /"), "{text}");
    assert_eq!(c.cmd_ok("PWD", 257), "\"/\" is the current directory");
    // A 4040-byte path of forty 100-byte names is fine; the 41st name passes 4096 bytes.
    let hundred = "h".repeat(100);
    let mut long = String::new();
    for _ in 0..40 {
        long.push('/');
        long.push_str(&hundred);
        c.cmd_ok(&format!("MKD {long}"), 257);
    }
    assert_eq!(long.len(), 4040);
    c.cmd_ok(&format!("CWD {long}"), 250);
    assert!(c.cmd_ok("PWD", 257).starts_with(&format!("\"{long}\"")));
    let (code, text) = c.cmd(&format!("MKD {long}/{hundred}"));
    assert_eq!(code, 553, "a 4141-byte path: {text}");
    // A missing 4000-byte path: 550.
    let missing = format!("/{}", vec!["m".repeat(99); 40].join("/"));
    assert_eq!(missing.len(), 4000);
    let (code, text) = c.cmd(&format!("CWD {missing}"));
    assert_eq!(code, 550, "CWD of a missing 4000-byte path: {text}");
    let (code, text) = c.cmd(&format!("MKD {missing}"));
    assert_eq!(code, 550, "MKD under a missing 4000-byte path: {text}");
    // Too deep (257 levels), too long (5000 bytes), a name longer than the OS allows.
    let (code, text) = c.cmd(&format!("MKD /{}", ["d"; 257].join("/")));
    assert_eq!(code, 553, "257 levels: {text}");
    let (code, text) = c.cmd(&format!("CWD /{}", ["d"; 300].join("/")));
    assert_eq!(code, 553, "300 levels: {text}");
    let (code, text) = c.cmd(&format!("MKD /{}", "q".repeat(5000)));
    assert_eq!(code, 553, "a 5000-byte path: {text}");
    let (code, text) = c.cmd(&format!("MKD /{}", "w".repeat(300)));
    assert_eq!(code, 553, "a 300-byte name: {text}");
    // The deepest directory can be removed by its full path.
    c.cmd_ok(&format!("DELE {level_path}/deep.txt"), 250);
    c.cmd_ok(&format!("RMD {path}"), 250);
    c.cmd_ok("NOOP", 200);
    let during = usage(pid);
    side.wait_runs(1);

    // A line longer than max_line_length (8192): 500 and closed.
    c.ctrl
        .send_raw(format!("MKD /{}\r\n", "z".repeat(9000)).as_bytes());
    let (code, text) = c.reply();
    assert_eq!(code, 500, "a 9000-byte line: {text}");
    assert!(c.ctrl.is_closed(), "the connection is closed after 500");
    let runs = side.finish();
    let after = back_to_baseline(pid, base, "after the deep paths");
    well_behaved(&t, ip(1));
    println!("[exhaustion] {TEST}: {runs} well-behaved sessions alongside");
    report(
        TEST,
        &[
            ("before", base),
            ("at the end of the session", during),
            ("after", after),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// 7. REST/ABOR churn
// ---------------------------------------------------------------------------------------------

/// The replies that end an aborted transfer: 426 then 226, or 226 twice if it had completed.
fn expect_abort_replies(c: &mut Client, what: &str) {
    let (first, text) = c.reply();
    let (second, text2) = c.reply();
    assert!(
        (first == 426 || first == 226) && second == 226,
        "{what}: ABOR got {first} {text} / {second} {text2}"
    );
}

/// 3000 REST/ABOR pairs and 200 PASV + RETR + ABOR cycles (connected or not, reading some data
/// or none, with and without REST) in one session: every reply is right, the session stays
/// responsive (a full download afterwards), and no descriptor or port is left behind.
#[test]
fn thousands_of_rest_and_abor_cycles_leave_nothing_behind() {
    const TEST: &str = "REST/ABOR churn";
    const BIG: u64 = 16 * 1024 * 1024;
    let server = start("", &[], 1);
    let f = std::fs::File::create(server.root.join("big.bin")).unwrap();
    f.set_len(BIG).unwrap();
    drop(f);
    let t = Target::of(&server);
    let pid = server.pid();
    let base = baseline(&t, pid);
    let mut side = SideBySide::start(&t, ip(2));
    let sampler = Sampler::start(pid);

    let mut c = Client::login(&t, ip(1));
    c.cmd_ok("TYPE I", 200);
    for batch in 0..30 {
        let mut lines = String::new();
        for i in 0..100 {
            lines.push_str(&format!("REST {}\r\nABOR\r\n", batch * 100 + i));
        }
        c.ctrl.send_raw(lines.as_bytes());
        for i in 0..100 {
            let (code, text) = c.reply();
            assert_eq!(code, 350, "REST #{}: {text}", batch * 100 + i);
            let (code, text) = c.reply();
            assert_eq!(code, 225, "ABOR #{}: {text}", batch * 100 + i);
        }
    }
    c.cmd_ok("NOOP", 200);
    let after_rest = usage(pid);
    side.wait_runs(1);

    let mut samples = Vec::new();
    for i in 0..200 {
        let what = format!("cycle {i}");
        match i % 4 {
            // Connect, read 64 KiB, ABOR.
            0 => {
                let mut data = c.pasv();
                c.cmd_ok("RETR big.bin", 150);
                let mut buf = vec![0u8; 64 * 1024];
                data.read_exact(&mut buf).unwrap();
                c.ctrl.send_raw(b"ABOR\r\n");
                expect_abort_replies(&mut c, &what);
            }
            // REST, connect, ABOR without reading a byte.
            1 => {
                let data = c.pasv();
                c.cmd_ok(&format!("REST {}", i * 1000), 350);
                c.cmd_ok("RETR big.bin", 150);
                c.ctrl.send_raw(b"ABOR\r\n");
                expect_abort_replies(&mut c, &what);
                drop(data);
            }
            // Never connect: ABOR while the server waits for the data connection.
            2 => {
                c.cmd_ok("PASV", 227);
                c.cmd_ok("RETR big.bin", 150);
                c.ctrl.send_raw(b"ABOR\r\n");
                expect_abort_replies(&mut c, &what);
            }
            // Connect, ABOR, then drain what was sent and see the server close it.
            _ => {
                let data = c.pasv();
                c.cmd_ok("RETR big.bin", 150);
                c.ctrl.send_raw(b"ABOR\r\n");
                expect_abort_replies(&mut c, &what);
                // Aborted before the server took the connection from the backlog, the kernel
                // resets it; after, the server closes it: either way it ends.
                let got = drain(data);
                assert!(got <= BIG, "{what}: {got} bytes");
            }
        }
        if i % 20 == 19 {
            samples.push(usage(pid));
        }
        if i == 100 {
            side.wait_runs(1);
        }
    }
    // Still responsive: a status, and a whole download.
    c.cmd_ok("NOOP", 200);
    let stat = c.cmd_ok("STAT", 211);
    assert!(stat.contains("No data connection"), "{stat}");
    let whole = c.fetch("RETR big.bin");
    assert_eq!(whole.len() as u64, BIG);
    assert!(whole.iter().all(|&b| b == 0));
    side.wait_runs(1);
    let peak = sampler.peak();
    let runs = side.finish();
    let settled_with_session = settled(pid);
    assert!(
        settled_with_session.fds <= base.fds + 2 && settled_with_session.listening == 1,
        "after 3000 REST/ABOR and 200 aborted transfers the session holds {settled_with_session} \
         (baseline {base} + its control connection and home directory): {:?}",
        fd_links(pid)
    );
    let (lo, hi) = samples.iter().fold((usize::MAX, 0), |(lo, hi), u| {
        (lo.min(u.fds), hi.max(u.fds))
    });
    assert!(
        peak.fds <= base.fds + 5 + 2 * 5 && peak.listening <= 3,
        "peak during the churn: {peak} (baseline {base})"
    );
    c.cmd_ok("QUIT", 221);
    let after = back_to_baseline(pid, base, "after the REST/ABOR churn");
    println!(
        "[exhaustion] {TEST}: fds every 20 aborted transfers between {lo} and {hi}; \
         {runs} well-behaved sessions alongside"
    );
    report(
        TEST,
        &[
            ("before", base),
            ("after 3000 REST/ABOR", after_rest),
            ("peak", peak),
            ("after", after),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Brute force
// ---------------------------------------------------------------------------------------------

/// USER `user`, then a timed PASS `password`: (time, code, text).
fn timed_login(c: &mut Client, user: &str, password: &str) -> (Duration, u16, String) {
    c.cmd_ok(&format!("USER {user}"), 331);
    let started = Instant::now();
    let (code, text) = c.cmd(&format!("PASS {password}"));
    (started.elapsed(), code, text)
}

/// The N in "try again in N s".
fn retry_secs(line: &str) -> u64 {
    line.split("try again in ")
        .nth(1)
        .and_then(|r| r.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no 'try again in N s' in {line:?}"))
}

/// Fail logins from `from` until the ban: the failure times, and the 421's text.
fn fail_until_banned(t: &Target, from: Ipv4Addr, user: &str) -> (Vec<Duration>, String) {
    let mut c = Client::connect(t.addr, from);
    let mut times = Vec::new();
    for i in 0..10 {
        let (took, code, text) = timed_login(&mut c, user, &format!("wrong-{i}"));
        if code == 421 {
            assert!(c.ctrl.is_closed(), "the banned session is closed");
            return (times, text);
        }
        assert_eq!(
            (code, text.as_str()),
            (530, "Login incorrect"),
            "failure {i}"
        );
        times.push(took);
    }
    panic!("no ban after 10 failures: {times:?}");
}

/// A connection from a banned address: its only line, which must be a 421.
fn refused_while_banned(t: &Target, from: Ipv4Addr) -> String {
    let s = connect_from(from, t.addr).unwrap();
    let lines = lines_until_closed(&s);
    assert!(
        lines.len() == 1 && lines[0].starts_with("421 Too many failed logins from your address"),
        "a connection from a banned address got {lines:?}"
    );
    lines[0].clone()
}

/// Failed logins are answered more and more slowly; after bans.max_failures the address is
/// banned: 421 on the failing session, then a 421 as the first and only line of each new
/// connection (no session is even opened), while other addresses are served; the ban expires
/// after ban_secs and the next one lasts escalation times longer; an allow-listed address is
/// never slowed or banned, even for a user name that is being slowed elsewhere.
#[test]
fn brute_force_is_slowed_then_banned_with_escalation() {
    const TEST: &str = "brute force";
    let server = start(
        "[limits]\nmax_login_failures = 10\n\
         [bans]\nmax_failures = 4\nwindow_secs = 60\nban_secs = 2\nescalation = 2\n\
         max_ban_secs = 60\ndelay_ms = 100\nmax_delay_ms = 1000\n",
        &["--ban-allow", "127.0.0.3/32"],
        1,
    );
    let t = Target::of(&server);
    let pid = server.pid();
    let base = baseline(&t, pid);
    let attacker = ip(4);

    // Round 1: three slower and slower failures, then the ban.
    let (times, text) = fail_until_banned(&t, attacker, USER);
    let banned_at = Instant::now();
    assert_eq!(times.len(), 3, "failures before the ban: {times:?}");
    assert_eq!(
        text,
        "Too many failed logins from your address; banned for 2 s"
    );
    let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
    println!("[exhaustion] {TEST}: failure reply times before the first ban: {ms:?} ms");
    assert!(
        times[1] >= Duration::from_millis(100) && times[2] >= Duration::from_millis(200),
        "failures are held back 100 ms more each time: {ms:?}"
    );
    assert!(times[2] > times[0], "reply times grow: {ms:?}");

    // Banned: new connections get one line, a 421, and no session is opened for them.
    let opened_before = log_lines(&server, &["session opened", "peer=127.0.0.4:"]);
    let sampler = Sampler::start(pid);
    let mut side = SideBySide::start(&t, ip(2));
    let first = refused_while_banned(&t, attacker);
    let left = retry_secs(&first);
    assert!((1..=2).contains(&left), "{first}");
    let mut burst = Vec::new();
    while burst.len() < 50 && banned_at.elapsed() < Duration::from_millis(1200) {
        let s = connect_from(attacker, t.addr).unwrap();
        assert!(first_line(&s).starts_with("421 Too many failed logins"));
        burst.push(s);
    }
    side.wait_runs(1);
    let during_ban = sampler.peak();
    assert_eq!(
        log_lines(&server, &["session opened", "peer=127.0.0.4:"]),
        opened_before,
        "a session was opened for a banned address"
    );
    assert!(log_lines(&server, &["connection from a banned address refused"]) >= 1);
    assert!(
        during_ban.fds <= base.fds + 2 * 5 + 4,
        "refused connections held by the client cost the server: {during_ban} (baseline {base})"
    );
    drop(burst);
    // The ban ends after 2 s (not before), and the address is served again.
    wait_for("the first ban to expire", Duration::from_secs(10), || {
        first_line(&connect_from(attacker, t.addr).unwrap()).starts_with("220")
    });
    let first_ban = banned_at.elapsed();
    assert!(first_ban >= Duration::from_millis(1500), "{first_ban:?}");
    well_behaved(&t, attacker);

    // Round 2, with another user name: the ban lasts twice as long.
    let (times2, text) = fail_until_banned(&t, attacker, "mallory");
    let banned_at = Instant::now();
    assert_eq!(times2.len(), 3);
    assert_eq!(
        text, "Too many failed logins from your address; banned for 4 s",
        "the second ban escalates"
    );
    let line = refused_while_banned(&t, attacker);
    assert!((3..=4).contains(&retry_secs(&line)), "{line}");
    std::thread::sleep(Duration::from_millis(2500));
    let line = refused_while_banned(&t, attacker);
    assert!(
        (1..=2).contains(&retry_secs(&line)),
        "still banned after 2.5 s: {line}"
    );
    wait_for("the second ban to expire", Duration::from_secs(10), || {
        first_line(&connect_from(attacker, t.addr).unwrap()).starts_with("220")
    });
    let second_ban = banned_at.elapsed();
    assert!(second_ban >= Duration::from_millis(3500), "{second_ban:?}");

    // The allow-listed address: 12 failures for the user name that the attacker made slow,
    // over two sessions; never banned, never held back. A non-listed address failing for the
    // same name right after is held back by the name's count (>= 300 ms).
    let mut allowed_times = Vec::new();
    let mut c = Client::connect(t.addr, ip(3));
    for i in 0..12 {
        let (took, code, text) = timed_login(&mut c, USER, "nope");
        allowed_times.push(took);
        match (i, code) {
            (9, 421) => {
                assert_eq!(text, "Too many failed logins; closing control connection");
                assert!(c.ctrl.is_closed());
                c = Client::connect(t.addr, ip(3));
            }
            (_, 530) => {}
            _ => panic!("allow-listed failure {i}: {code} {text}"),
        }
    }
    let mut other = Client::connect(t.addr, ip(5));
    let (slowed, code, _) = timed_login(&mut other, USER, "nope");
    assert_eq!(code, 530);
    let slowest_allowed = *allowed_times.iter().max().unwrap();
    println!(
        "[exhaustion] {TEST}: allow-listed failures took at most {} ms; a non-listed failure for \
         the same name {} ms; bans lasted {:.1} s and {:.1} s",
        slowest_allowed.as_millis(),
        slowed.as_millis(),
        first_ban.as_secs_f64(),
        second_ban.as_secs_f64()
    );
    assert!(
        slowed >= Duration::from_millis(300),
        "a failure for a slowed name from another address: {slowed:?}"
    );
    assert!(
        slowest_allowed < slowed,
        "the allow-listed address was held back: {allowed_times:?} vs {slowed:?}"
    );
    assert_eq!(
        log_lines(&server, &["address banned", "127.0.0.3"]),
        0,
        "the allow-listed address was banned"
    );
    well_behaved(&t, ip(3));
    drop(c);
    drop(other);
    let runs = side.finish();
    let after = back_to_baseline(pid, base, "after the brute force");
    println!("[exhaustion] {TEST}: {runs} well-behaved sessions alongside");
    report(
        TEST,
        &[
            ("before", base),
            ("peak while banned (50 refused held)", during_ban),
            ("after", after),
        ],
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A wrong password for an existing user and any password for a user that does not exist get
/// the same replies and take the same time: both verify an argon2 hash of the same cost, so the
/// timing does not tell which user names exist. (The users here are hashed with cheap
/// parameters, 1024 KiB and 1 iteration, as an operator may choose; the unknown-user path must
/// cost the same as theirs, not the defaults'.)
#[test]
fn unknown_users_and_wrong_passwords_look_alike() {
    let server = start(
        "[limits]\nmax_login_failures = 100\n",
        &["--ban-allow", "127.0.0.1/32"],
        1,
    );
    let t = Target::of(&server);
    let mut side = SideBySide::start(&t, ip(2));
    let mut c = Client::connect(t.addr, ip(1));
    let ghost = "ghost-user";
    // The replies, word for word (USER's names the user it was given).
    let known_331 = c.cmd_ok(&format!("USER {USER}"), 331);
    let known_530 = c.cmd(&format!("PASS {PASSWORD}x"));
    let ghost_331 = c.cmd_ok(&format!("USER {ghost}"), 331);
    let ghost_530 = c.cmd(&format!("PASS {PASSWORD}x"));
    assert_eq!(
        known_331.replace(USER, "NAME"),
        ghost_331.replace(ghost, "NAME")
    );
    assert_eq!(known_530, ghost_530);
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..15 {
        let (a, code_a, _) = timed_login(&mut c, USER, &format!("wrong-{i}"));
        let (b, code_b, _) = timed_login(&mut c, ghost, &format!("wrong-{i}"));
        assert_eq!((code_a, code_b), (530, 530));
        known.push(a);
        unknown.push(b);
    }
    side.wait_runs(1);
    side.finish();
    let (k, u) = (median(known.clone()), median(unknown.clone()));
    let ms = |v: &[Duration]| v.iter().map(|d| d.as_millis()).collect::<Vec<_>>();
    println!(
        "[exhaustion] login timing: wrong password for {USER}: median {:.1} ms {:?}; unknown \
         user: median {:.1} ms {:?}",
        k.as_secs_f64() * 1000.0,
        ms(&known),
        u.as_secs_f64() * 1000.0,
        ms(&unknown)
    );
    // Same cost within noise: 30% of the slower plus 20 ms (a 1024 KiB argon2 takes a few ms,
    // the default 19456 KiB, 2 iterations tens of ms).
    let (lo, hi) = if k < u { (k, u) } else { (u, k) };
    assert!(
        hi - lo <= hi.mul_f64(0.3) + Duration::from_millis(20),
        "a failed login for an unknown user takes {:.1} ms, for an existing user {:.1} ms: the \
         timing tells which user names exist",
        u.as_secs_f64() * 1000.0,
        k.as_secs_f64() * 1000.0
    );
}
