//! The session state machine, end to end: one real ferroftp server per fuzzing process
//! (in-process, plain FTP on 127.0.0.1, a temporary root), driven over TCP by command
//! sequences decoded from the fuzz input. Data connections are opened and served at once, so
//! transfers run to the end without waiting for timeouts.
//!
//! Checked for every input:
//! - every reply is well formed: CRLF lines, `DDD-`/`DDD ` with a code 100-599 on the first and
//!   last line, no middle line that starts like a code, no bare CR or LF;
//! - every command gets its reply (the connection only closes after 221, 421 or the 500 for an
//!   over-long line), and a 1xx is always followed by a final reply;
//! - PASV announces 127.0.0.1; PORT/EPRT to another address or to a port below 1024 is refused;
//! - nothing outside the user's home is read (no reply or data carries the marker that only
//!   files outside the home hold), created, removed or changed (a sentinel directory next to
//!   the root stays empty; files outside the home keep their content, mode and time);
//! - no upload temp file (`.ferroftp-upload.*`) is left once the session has ended;
//! - the server still accepts connections afterwards; a panic in any server task aborts.
//!
//! Input format (see `decode`): byte 0 picks the login, then each command takes a verb byte,
//! a flags byte and argument bytes. `FERROFTP_FUZZ_DEBUG=1` prints the conversation and the
//! server's log; `FERROFTP_FUZZ_SERVER_LOG=1` only the server's log (timing closer to a run).
#![no_main]

use std::collections::VecDeque;
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ferroftp::auth::{HashParams, Permissions, User, UserDb, hash_password};
use ferroftp::config::{Config, ListenerConfig, ListenerMode};
use ferroftp_proto::line;
use ferroftp_proto::{Command, addr, command};
use libfuzzer_sys::fuzz_target;

mod coverage;

mod common;
use common::known_issue;

/// Longest wait for any reply; a server that takes longer is hung (every wait it may do on
/// its own, like the data-connection timeout, is shorter).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a data connection to deliver or take its bytes.
const DATA_TIMEOUT: Duration = Duration::from_secs(8);
/// Only files outside the user's home contain this; commands never do (see `sanitize`).
const MARKER: &str = "OUTSIDE-7Q";
const PASSWORD: &str = "pw";
/// The server's line limit here (smaller than the default 4096, to reach it more often).
const MAX_LINE: usize = 1024;
/// The bytes every upload sends: text with CRLF, a bare CR, a NUL and a non-UTF-8 byte.
const UPLOAD: &[u8] = b"line one\r\nline two\n\rthree\x00\xff\r\n";

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// Debug output with the time since the input started.
fn trace(h: &Harness, what: std::fmt::Arguments) {
    if h.debug {
        static START: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
        let mut st = START.lock().unwrap_or_else(|p| p.into_inner());
        let t0 = *st.get_or_insert_with(Instant::now);
        eprintln!("[{:>8.3} ms] {what}", t0.elapsed().as_secs_f64() * 1000.0);
    }
}

struct Harness {
    base: PathBuf,
    root: PathBuf,
    home: PathBuf,
    server: SocketAddr,
    /// Where PORT/EPRT point: the data connections of active mode come here.
    active: TcpListener,
    /// Files outside the home and what they must stay.
    guarded: Vec<(PathBuf, Snapshot)>,
    debug: bool,
}

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    mode: u32,
    mtime: (i64, i64),
    content: Option<Vec<u8>>,
}

fn snapshot(p: &Path) -> Snapshot {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Snapshot {
        mode: m.mode(),
        mtime: (m.mtime(), m.mtime_nsec()),
        content: m.is_file().then(|| fs::read(p).expect("read guarded file")),
    }
}

fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| {
        let debug = std::env::var_os("FERROFTP_FUZZ_DEBUG").is_some();
        // tmpfs when there is one: resetting the home on a disk file system costs ~10 ms.
        let shm = Path::new("/dev/shm");
        let parent = std::env::var_os("FERROFTP_FUZZ_TMP")
            .map(PathBuf::from)
            .or_else(|| shm.is_dir().then(|| shm.to_path_buf()))
            .unwrap_or_else(std::env::temp_dir);
        remove_stale_dirs(&parent);
        let base = parent.join(format!("ferroftp-fuzz-session-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let root = base.join("root");
        let home = root.join("home");
        fs::create_dir_all(&home).expect("create the fuzz root");
        fs::create_dir(root.join("pub")).expect("create the anonymous home");
        fs::create_dir(base.join("sentinel")).expect("create the sentinel");
        fs::create_dir(base.join("outside")).expect("create outside");
        let secret = base.join("outside").join(format!("{MARKER}-secret.txt"));
        fs::write(&secret, format!("{MARKER} secret outside the root\n")).expect("write");
        let beside = root.join(format!("{MARKER}-root.txt"));
        fs::write(&beside, format!("{MARKER} in the root, outside the home\n")).expect("write");
        let guarded = [
            base.clone(),
            root.clone(),
            base.join("sentinel"),
            base.join("outside"),
            secret,
            beside,
        ]
        .into_iter()
        .map(|p| {
            let s = snapshot(&p);
            (p, s)
        })
        .collect();

        let active = TcpListener::bind("127.0.0.1:0").expect("bind the active-mode listener");
        active.set_nonblocking(true).expect("nonblocking");

        let cheap = HashParams {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        };
        let hash = || hash_password(PASSWORD, cheap).expect("hash");
        let mut fuzz = User::new("fuzz");
        fuzz.home = Some(PathBuf::from("home"));
        let mut ro = User::new("ro");
        ro.home = Some(PathBuf::from("home"));
        ro.permissions = Permissions::READ_ONLY;
        let users = UserDb::empty()
            .with_user(fuzz, hash())
            .with_user(ro, hash());

        let mut config = Config::default();
        config.root = root.clone();
        config.listeners = vec![ListenerConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            ListenerMode::Plain,
        )];
        config.anonymous.enabled = true;
        // Anonymous may not share a user's home (the server refuses to start): its own, read-only.
        config.anonymous.home = PathBuf::from("pub");
        config.limits.max_line_length = MAX_LINE;
        config.limits.idle_timeout_secs = 30;
        config.limits.login_timeout_secs = 30;
        config.limits.data_timeout_secs = 2;
        config.limits.max_sessions_per_ip = 1000;
        // Every input starts from the same state: no failed-login delays or bans carried
        // over from earlier inputs (which log in wrongly on purpose).
        config.bans.enabled = false;

        if debug || std::env::var_os("FERROFTP_FUZZ_SERVER_LOG").is_some() {
            // The server's own log (RUST_LOG overrides the level).
            let mut log = config.log.clone();
            log.level = "debug".into();
            ferroftp::observe::init(&log);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("ferroftp-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let server = ferroftp::Server::bind(config, users, None)
                        .await
                        .expect("bind the server");
                    tx.send(server.local_addrs()[0]).expect("send address");
                    server
                        .run(std::future::pending(), Duration::from_secs(1))
                        .await;
                });
            })
            .expect("server thread");
        let server = rx.recv().expect("server address");
        if debug {
            eprintln!("session: server on {server}, root {}", root.display());
        }
        Harness {
            base,
            root,
            home,
            server,
            active,
            guarded,
            debug,
        }
    })
}

/// Remove the temp directories of fuzzing processes that are gone.
fn remove_stale_dirs(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("ferroftp-fuzz-session-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// A fresh home for every input, so that each run starts from the same state (and a crash
/// reproduces): files, directories, odd names, special files and symlinks that lead out.
fn reset_home(h: &Harness) {
    let home = &h.home;
    if home.exists() {
        make_removable(home);
        fs::remove_dir_all(home).expect("remove the old home");
    }
    fs::create_dir(home).expect("create home");
    let w = |p: &str, c: &[u8]| fs::write(home.join(p), c).expect("write home file");
    let d = |p: &str| fs::create_dir(home.join(p)).expect("create home dir");
    w("file.txt", b"hello\nworld\r\nno newline at the end");
    w("bin.dat", &[0, 1, 2, 0xff, b'\r', b'\n', b'\n']);
    w("sp ace.txt", b"spaces\n");
    w("-dash", b"dash\n");
    w("\u{fc}n\u{ef}c\u{f6}d\u{e9}.txt", b"utf8\n");
    w("%2e%2e", b"percent\n");
    d("dir");
    w("dir/inner.txt", b"inner\n");
    d("dir/sub");
    d("empty");
    w("ro.txt", b"read only\n");
    fs::set_permissions(home.join("ro.txt"), fs::Permissions::from_mode(0o444)).expect("chmod");
    let s = |target: &Path, link: &str| {
        std::os::unix::fs::symlink(target, home.join(link)).expect("symlink")
    };
    s(Path::new("../../outside"), "link_out");
    s(
        &h.base.join("outside").join(format!("{MARKER}-secret.txt")),
        "link_abs",
    );
    s(Path::new(".."), "link_root");
    s(Path::new("dir"), "link_in");
    s(Path::new("link_loop"), "link_loop");
    s(Path::new("nowhere"), "link_dangling");
    s(Path::new("/"), "link_slash");
    let fifo = std::ffi::CString::new(home.join("fifo").into_os_string().into_encoded_bytes())
        .expect("path");
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo: {}", io::Error::last_os_error());
}

/// A test may `SITE CHMOD 000` a directory; give every directory its permissions back.
fn make_removable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_removable(&e.path());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Input decoding
// ---------------------------------------------------------------------------------------------

struct Cursor<'a> {
    data: &'a [u8],
}

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }
    fn byte_or(&mut self, d: u8) -> u8 {
        self.byte().unwrap_or(d)
    }
    fn pick<'s>(&mut self, list: &[&'s str]) -> &'s str {
        list[usize::from(self.byte_or(0)) % list.len()]
    }
    /// A length-prefixed slice of raw bytes (at most 63).
    fn raw(&mut self) -> Vec<u8> {
        let n = usize::from(self.byte_or(0) & 63).min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a.to_vec()
    }
}

/// Every verb the server knows (with the RFC 775 aliases), some it refuses, and `""` for a
/// line with no verb at all.
const VERBS: &[&str] = &[
    "USER", "PASS", "CWD", "CDUP", "PWD", "MKD", "RMD", "DELE", "RNFR", "RNTO", "TYPE", "MODE",
    "STRU", "PASV", "EPSV", "PORT", "EPRT", "LIST", "NLST", "MLSD", "MLST", "RETR", "STOR", "STOU",
    "APPE", "REST", "ABOR", "SIZE", "MDTM", "MFMT", "FEAT", "OPTS", "SYST", "STAT", "HELP", "NOOP",
    "ALLO", "SITE", "REIN", "AUTH", "PBSZ", "PROT", "CCC", "QUIT", "ACCT", "XCWD", "XCUP", "XPWD",
    "XMKD", "XRMD", "SMNT", "LANG", "FOO", "",
];

/// Path arguments: names in the fresh home, and hostile ones.
const PATHS: &[&str] = &[
    "file.txt",
    "bin.dat",
    "dir",
    "dir/inner.txt",
    "dir/sub",
    "empty",
    "ro.txt",
    "sp ace.txt",
    "-dash",
    "./-dash",
    "\u{fc}n\u{ef}c\u{f6}d\u{e9}.txt",
    "%2e%2e",
    "fifo",
    "new",
    "new.txt",
    "dir/new.txt",
    "newdir",
    ".",
    "..",
    "/",
    "//",
    "./",
    "dir/",
    "file.txt/",
    "/dir/../file.txt",
    "../../etc/passwd",
    "/../../../",
    "../*",
    "../../*",
    "../../outside/*",
    "%2e%2e/%2e%2e",
    "..%2f..%2f",
    "..\\..\\",
    "dir/../../..",
    "link_out",
    "link_out/",
    "link_out/*",
    "link_out/x",
    "link_root/x",
    "link_abs",
    "link_root",
    "link_root/",
    "link_root/*",
    "link_root/home/file.txt",
    "link_in",
    "link_in/inner.txt",
    "link_loop",
    "link_loop/x",
    "link_dangling",
    "link_slash",
    "link_slash/etc",
    "*",
    "*.txt",
    "?ile.txt",
    "[a-f]*",
    "[!a]*",
    "[",
    "dir/*",
    "*/*",
    "-la",
    "-la dir",
    "-a -l link_root",
    ".ferroftp-upload.0.part",
    "dir/.ferroftp-upload.x.part",
    "a\0b",
    "\0",
    "x\ry",
    " file.txt",
    "file.txt ",
    "~",
    "~root",
    "$HOME",
    "*\\",
];

/// What a data connection does once the server opens the transfer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DataRole {
    None,
    Download,
    Upload,
}

struct Step {
    bytes: Vec<u8>,
    verb: &'static str,
    /// Sent without waiting for the replies to the steps before it.
    pipelined: bool,
    /// A PORT/EPRT that the server must refuse (another address or a privileged port).
    must_refuse: bool,
    /// A bare ABOR or STAT, which the server runs even while a transfer is under way.
    overtakes: Option<&'static str>,
}

impl Step {
    fn role(&self) -> DataRole {
        match self.verb {
            "STOR" | "APPE" | "STOU" => DataRole::Upload,
            "RETR" | "LIST" | "NLST" | "MLSD" => DataRole::Download,
            _ => DataRole::None,
        }
    }
    fn overtakes(&self) -> bool {
        self.overtakes.is_some()
    }
}

fn decode(data: &[u8], active_port: u16) -> (u8, Vec<Step>) {
    let mut c = Cursor { data };
    let login = c.byte_or(0);
    let mut steps = Vec::new();
    while !c.data.is_empty() && steps.len() < 64 {
        let verb = VERBS[usize::from(c.byte_or(0)) % VERBS.len()];
        let flags = c.byte_or(0);
        let arg = argument(&mut c, verb, flags & 7, active_port);
        let mut bytes = Vec::new();
        if flags & 0x80 != 0 {
            // Telnet "interrupt process" and "data mark", as clients send before ABOR.
            bytes.extend_from_slice(b"\xff\xf4\xff\xf2");
        }
        if flags & 0x40 != 0 {
            bytes.extend(verb.bytes().map(|b| b.to_ascii_lowercase()));
        } else {
            bytes.extend_from_slice(verb.as_bytes());
        }
        if let Some(arg) = arg {
            if !verb.is_empty() {
                bytes.push(b' ');
            }
            bytes.extend(arg.into_iter().map(|b| if b == b'\n' { b'_' } else { b }));
        }
        bytes.extend_from_slice(match (flags >> 4) & 3 {
            0 | 3 => b"\r\n".as_slice(),
            1 => b"\n",
            _ => b"\r\r\n",
        });
        let mut step = Step {
            bytes,
            verb,
            pipelined: flags & 8 != 0,
            must_refuse: false,
            overtakes: None,
        };
        sanitize(&mut step, active_port);
        step.overtakes = match server_lines(&step.bytes).as_slice() {
            [l] => match l.to_ascii_uppercase().trim_ascii_end() {
                b"ABOR" => Some("ABOR"),
                b"STAT" => Some("STAT"),
                _ => None,
            },
            _ => None,
        };
        steps.push(step);
    }
    (login, steps)
}

/// The argument of one command, from the generator `kind` (0-7).
fn argument(c: &mut Cursor, verb: &str, kind: u8, active_port: u16) -> Option<Vec<u8>> {
    let special = |c: &mut Cursor| -> Option<Vec<u8>> {
        let s: String = match verb {
            "USER" => c
                .pick(&["fuzz", "anonymous", "ftp", "ro", "FUZZ", "nobody", ""])
                .into(),
            "PASS" => c.pick(&[PASSWORD, "wrong", "", "a@b.c"]).into(),
            "TYPE" => c
                .pick(&["A", "I", "L 8", "A N", "E", "L 7", "X", "a", "i", "A T"])
                .into(),
            "MODE" => c.pick(&["S", "B", "C", "Z", "s"]).into(),
            "STRU" => c.pick(&["F", "R", "P", "f"]).into(),
            "EPSV" => c.pick(&["1", "2", "ALL", "3", "all", ""]).into(),
            "PORT" | "EPRT" => {
                let [p1, p2] = active_port.to_be_bytes();
                let choice = c.byte_or(0) % 10;
                let v4 = |ip: &str, p: u16| {
                    let [a, b] = p.to_be_bytes();
                    format!("{},{a},{b}", ip.replace('.', ","))
                };
                match (verb, choice) {
                    ("PORT", 0..=4) => format!("127,0,0,1,{p1},{p2}"),
                    ("PORT", 5) => v4("127.0.0.1", 21),
                    ("PORT", 6) => v4("127.0.0.2", active_port),
                    ("PORT", 7) => v4("0.0.0.0", active_port),
                    ("PORT", 8) => format!("127,0,0,1,{p1},{p2},9"),
                    ("PORT", _) => "127,0,0,1,256,1".into(),
                    (_, 0..=2) => format!("|1|127.0.0.1|{active_port}|"),
                    (_, 3) => format!("|2|::ffff:127.0.0.1|{active_port}|"),
                    (_, 4) => format!("|2|::1|{active_port}|"),
                    (_, 5) => "|1|127.0.0.1|22|".into(),
                    (_, 6) => format!("|1|127.0.0.2|{active_port}|"),
                    (_, 7) => format!("!1!127.0.0.1!{active_port}!"),
                    (_, 8) => format!("|3|127.0.0.1|{active_port}|"),
                    _ => "|1|127.0.0.1|0|".into(),
                }
            }
            "REST" => c
                .pick(&[
                    "0",
                    "1",
                    "5",
                    "100",
                    "18446744073709551615",
                    "99999999999999999999",
                    "-1",
                ])
                .into(),
            "MFMT" => format!(
                "{} {}",
                c.pick(&[
                    "20200102030405",
                    "19691231235959.5",
                    "00000101000000",
                    "99991231235959.999999999",
                    "19700101000000",
                    "20201301000000",
                    "2020",
                ]),
                c.pick(PATHS)
            ),
            "SITE" => match c.byte_or(0) % 4 {
                0 => format!(
                    "CHMOD {} {}",
                    c.pick(&["777", "0", "644", "7777", "4755", "9", "12345"]),
                    c.pick(PATHS)
                ),
                1 => "HELP".into(),
                2 => "EXEC ls".into(),
                _ => "chmod 600".into(),
            },
            "OPTS" => c
                .pick(&[
                    "UTF8 ON",
                    "UTF8 OFF",
                    "MLST type;size;modify;perm;unix.mode;",
                    "MLST ",
                    "MLST unix.mode;",
                    "FOO",
                    "UTF-8",
                ])
                .into(),
            "AUTH" => c.pick(&["TLS", "SSL", "TLS-C", "TLS-P", "X"]).into(),
            "PBSZ" => c.pick(&["0", "1", "x"]).into(),
            "PROT" => c.pick(&["P", "C", "S", "E", "X"]).into(),
            "HELP" => c.pick(command::VERBS).into(),
            "ALLO" => c.pick(&["100", "100 R 10"]).into(),
            _ => c.pick(PATHS).into(),
        };
        Some(s.into_bytes())
    };
    match kind {
        0 => None,
        1 | 5 => special(c),
        2 | 7 => Some(c.raw()),
        3 => {
            // Long or deep: a name or a raw chunk repeated up to 600 times.
            let unit: Vec<u8> = if c.byte_or(0) & 1 == 0 {
                c.pick(&[
                    "a/", "../", "x", "./", "dir/", "link_in/", "%2e%2e/", "\u{e9}",
                ])
                .as_bytes()
                .to_vec()
            } else {
                c.raw()
            };
            let n = usize::from(c.byte_or(1)) * 2 + 1;
            Some(unit.repeat(n))
        }
        4 => {
            let mut v = c.pick(PATHS).as_bytes().to_vec();
            v.extend(c.raw());
            Some(v)
        }
        _ => Some(c.pick(PATHS).as_bytes().to_vec()),
    }
}

/// Keep the conversation safe and the checks meaningful, judging each line as the server will
/// see it: no command may carry the marker (so seeing it proves a read outside the home), and
/// PORT/EPRT only ever lead to this harness's listener or to a loopback address that the
/// server must refuse (so even a server that failed to refuse would not connect anywhere).
fn sanitize(step: &mut Step, active_port: u16) {
    for l in &server_lines(&step.bytes) {
        if l.to_ascii_uppercase()
            .windows(MARKER.len())
            .any(|w| w == MARKER.as_bytes())
        {
            step.bytes = b"NOOP\r\n".to_vec();
            step.verb = "NOOP";
            return;
        }
        let target = match command::parse(l) {
            Ok(Command::Port(a)) => SocketAddr::V4(a),
            Ok(Command::Eprt(a)) => a,
            _ => continue,
        };
        let ip = target.ip().to_canonical();
        let own = ip == IpAddr::V4(Ipv4Addr::LOCALHOST);
        let loopbackish = ip.is_loopback() || ip.is_unspecified();
        if own && target.port() == active_port {
            continue;
        }
        if !loopbackish || (own && target.port() >= 1024) {
            // Somewhere else entirely, or some other local service: point it at the harness.
            let [p1, p2] = active_port.to_be_bytes();
            step.bytes = format!("PORT 127,0,0,1,{p1},{p2}\r\n").into_bytes();
            step.verb = "PORT";
            return;
        }
        // Another loopback address, or port < 1024: the server must say no, and nothing is
        // sent after it until it has.
        step.must_refuse = true;
        step.pipelined = false;
    }
}

/// The lines the server takes from `bytes`, Telnet sequences removed.
fn server_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut buf = bytes.to_vec();
    let mut lines = Vec::new();
    while let Ok(Some(l)) = line::take_line(&mut buf, usize::MAX) {
        lines.push(l);
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// The conversation
// ---------------------------------------------------------------------------------------------

struct Reply {
    code: u16,
    text: String,
}

enum Data {
    None,
    Passive(Option<TcpStream>),
    Active,
}

struct Client<'h> {
    h: &'h Harness,
    ctrl: TcpStream,
    buf: Vec<u8>,
    /// Steps sent whose final reply has not come yet.
    outstanding: VecDeque<(DataRole, bool, String)>,
    data: Data,
    /// A transfer that has started (1xx seen) and whose data connection is not served yet.
    parked: Option<(Option<TcpStream>, DataRole)>,
    /// The connection closed as the protocol allows (after 221, 421 or 500 for a long line).
    closing: bool,
    closed: bool,
    /// A line over the server's limit has been sent (the server answers 500 and closes).
    sent_overlong: bool,
    /// How the control connection ended, for the failure message.
    end: String,
    log: Vec<String>,
}

impl<'h> Client<'h> {
    fn connect(h: &'h Harness) -> Self {
        let ctrl = TcpStream::connect_timeout(&h.server, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("the server no longer accepts connections: {e}"));
        ctrl.set_read_timeout(Some(REPLY_TIMEOUT)).expect("timeout");
        ctrl.set_nodelay(true).expect("nodelay");
        let mut c = Client {
            h,
            ctrl,
            buf: Vec::new(),
            outstanding: VecDeque::new(),
            data: Data::None,
            parked: None,
            closing: false,
            closed: false,
            sent_overlong: false,
            end: String::new(),
            log: Vec::new(),
        };
        let greeting = c.read_reply().expect("no greeting");
        assert_eq!(greeting.code, 220, "greeting: {}", greeting.text);
        c
    }

    fn fail(&self, what: &str) -> ! {
        panic!("{what}\nconversation:\n{}", self.log.join("\n"));
    }

    fn send(&mut self, bytes: &[u8], role: DataRole, must_refuse: bool) {
        if self.closed {
            return;
        }
        self.log.push(format!(
            "> {}",
            String::from_utf8_lossy(bytes).escape_debug()
        ));
        trace(
            self.h,
            format_args!("> {}", String::from_utf8_lossy(bytes).escape_debug()),
        );
        if let Err(e) = self.ctrl.write_all(bytes) {
            // The server may close after a 421/500 that is still unread.
            if self.closing
                || matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
            {
                self.closing = true;
                return;
            }
            self.fail(&format!("control write failed: {e}"));
        }
        if line::take_line(&mut bytes.to_vec(), MAX_LINE).is_err() {
            self.sent_overlong = true;
        }
        // One final reply per line the server will see.
        let mut buf = bytes.to_vec();
        while let Ok(Some(l)) = line::take_line(&mut buf, usize::MAX) {
            let _ = l;
            self.outstanding
                .push_back((role, must_refuse, verb_of(bytes)));
        }
    }

    /// The next complete reply, or `None` when the server closed the connection. Replies are
    /// framed by proto's client codec (`Reply::decode`, the one `doctor --connect` and the tests
    /// use); the checks on each line are this target's oracle, stricter than a client must be.
    fn read_reply(&mut self) -> Option<Reply> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            match ferroftp_proto::Reply::decode(&self.buf) {
                Err(e) => self.fail(&format!("not a reply: {e}")),
                Ok(Some((reply, used))) => {
                    let raw: Vec<u8> = self.buf.drain(..used).collect();
                    return Some(Reply {
                        code: reply.code,
                        text: self.check_reply_lines(&raw),
                    });
                }
                Ok(None) => {}
            }
            let mut chunk = [0u8; 4096];
            let now = Instant::now();
            if now >= deadline {
                self.fail(&format!("no complete reply within {REPLY_TIMEOUT:?}"));
            }
            let _ = self.ctrl.set_read_timeout(Some(deadline - now));
            match self.ctrl.read(&mut chunk) {
                Ok(n) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.fail(&format!("no complete reply within {REPLY_TIMEOUT:?}"))
                }
                // End of stream, or a reset: whether that was allowed is the caller's call,
                // but not in the middle of a reply.
                other => {
                    self.end = match other {
                        Ok(_) => "end of stream".into(),
                        Err(e) => format!("{e}"),
                    };
                    if !self.buf.is_empty() {
                        self.fail("the server closed the connection in the middle of a reply");
                    }
                    self.closed = true;
                    return None;
                }
            }
        }
    }

    /// The lines of one reply as `Reply::decode` framed it (`raw`, CRLF-ended), logged and
    /// checked: no bare CR, a code 1xx-5xx and a space or `-` on the first line, no middle
    /// line that starts like a code, no marker of a file outside the home. Its text, a line
    /// each.
    fn check_reply_lines(&mut self, raw: &[u8]) -> String {
        let lines: Vec<&[u8]> = raw
            .split_inclusive(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r\n").unwrap_or(l))
            .collect();
        let last = lines.len().saturating_sub(1);
        let mut text = String::new();
        for (i, l) in lines.into_iter().enumerate() {
            let s = String::from_utf8_lossy(l).into_owned();
            self.log.push(format!("< {}", s.escape_debug()));
            trace(self.h, format_args!("< {}", s.escape_debug()));
            if l.contains(&b'\r') || l.contains(&b'\n') {
                self.fail(&format!("bare CR or LF inside a reply line: {s:?}"));
            }
            check_marker(self, l);
            let code_like = l.len() >= 3 && l[..3].iter().all(u8::is_ascii_digit);
            if i == 0 {
                let ok = l.len() >= 4
                    && (b'1'..=b'5').contains(&l[0])
                    && code_like
                    && (l[3] == b' ' || l[3] == b'-');
                if !ok {
                    self.fail(&format!(
                        "reply line {s:?} does not start with a code 1xx-5xx"
                    ));
                }
            } else if i < last && code_like {
                self.fail(&format!(
                    "middle line {s:?} of a reply starts like a reply code"
                ));
            }
            text.push_str(&s);
            text.push('\n');
        }
        text
    }

    /// Read replies until every step sent has its final reply. With `park`, stop early when
    /// a transfer opens, leaving its data connection unserved, so that the next command (ABOR
    /// or STAT) reaches the server while the transfer runs.
    fn drain(&mut self, park: bool) {
        if !park {
            self.serve_parked();
        }
        while !self.outstanding.is_empty() && !self.closed {
            match self.next_reply(park) {
                Some((false, _)) if park && self.parked.is_some() => return,
                Some(_) => {}
                None => return,
            }
        }
    }

    /// Read until `n` more final replies have come (or the connection closed); returns them.
    fn read_finals(&mut self, n: usize) -> Vec<Reply> {
        let mut finals = Vec::new();
        while finals.len() < n && !self.outstanding.is_empty() && !self.closed {
            match self.next_reply(false) {
                Some((true, r)) => finals.push(r),
                Some((false, _)) => {}
                None => break,
            }
        }
        finals
    }

    /// Read and check one reply; `Some((true, r))` if it was a final reply, `Some((false, r))`
    /// for a 1xx (whose transfer is served, or parked if `park` and none is parked yet), `None`
    /// when the connection closed.
    fn next_reply(&mut self, park: bool) -> Option<(bool, Reply)> {
        let Some(reply) = self.read_reply() else {
            if !self.closing && !(self.sent_overlong && known_issue("long-line-drops-queued")) {
                self.fail(&format!(
                    "the server closed the connection ({}) with {} command(s) unanswered",
                    self.end,
                    self.outstanding.len()
                ));
            }
            return None;
        };
        self.on_reply(&reply);
        if (100..200).contains(&reply.code) {
            let role = self.outstanding.front().map_or(DataRole::None, |o| o.0);
            let sock = self.open_transfer();
            // The server stops reading (back-pressure) with 16 lines queued behind a transfer:
            // an ABOR or STAT behind that many would never be read, so serve it instead.
            if park && self.parked.is_none() && self.outstanding.len() <= 8 {
                self.parked = Some((sock, role));
            } else {
                self.serve(sock, role);
            }
            return Some((false, reply));
        }
        let Some((_, must_refuse, verb)) = self.outstanding.pop_front() else {
            self.fail(&format!("a reply nobody asked for: {}", reply.text));
        };
        if must_refuse && reply.code < 400 {
            self.fail(&format!(
                "{verb} to another address or a privileged port was accepted: {}",
                reply.text
            ));
        }
        if matches!(reply.code, 221 | 421) || reply.code == 500 && reply.text.contains("too long") {
            self.closing = true;
        }
        Some((true, reply))
    }

    /// The transfer ended on its own (no 426) just as the ABOR came: the ABOR still needs its
    /// own reply (RFC 959: 226 or 225). A NOOP sent now tells a lost reply from a late one.
    fn check_abor_answered(&mut self) {
        if self.closed || self.closing {
            return;
        }
        self.send(b"NOOP\r\n", DataRole::None, false);
        let next = self.read_finals(1);
        if next
            .first()
            .is_some_and(|r| r.code == 200 && r.text.contains("NOOP ok"))
        {
            if !known_issue("abor-race") {
                self.fail(
                    "ABOR sent while a transfer was ending got no reply (the NOOP after it was \
                     answered first); known issue `abor-race`, see fuzz/README.md",
                );
            }
            // Tolerated: the NOOP's reply was taken for the ABOR's; forget the NOOP.
            self.outstanding.pop_front();
        }
    }

    fn on_reply(&mut self, r: &Reply) {
        match r.code {
            227 => {
                let Some(a) = addr::parse_pasv_reply(&r.text) else {
                    self.fail(&format!("unparsable 227: {}", r.text));
                };
                if *a.ip() != Ipv4Addr::LOCALHOST {
                    self.fail(&format!("PASV announced {a}, not the control address"));
                }
                self.data = Data::Passive(
                    TcpStream::connect_timeout(&a.into(), Duration::from_secs(2)).ok(),
                );
            }
            229 => {
                let port = r
                    .text
                    .split("(|||")
                    .nth(1)
                    .and_then(|t| t.split('|').next())
                    .and_then(|p| p.parse::<u16>().ok());
                let Some(port) = port else {
                    self.fail(&format!("unparsable 229: {}", r.text));
                };
                let a = SocketAddr::from(([127, 0, 0, 1], port));
                self.data =
                    Data::Passive(TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok());
            }
            200 if r.text.contains("PORT command successful")
                || r.text.contains("EPRT command successful") =>
            {
                self.data = Data::Active;
            }
            _ => {}
        }
    }

    /// The data connection of a transfer that has just been announced.
    fn open_transfer(&mut self) -> Option<TcpStream> {
        match std::mem::replace(&mut self.data, Data::None) {
            Data::None => None,
            Data::Passive(sock) => sock,
            Data::Active => {
                let deadline = Instant::now() + Duration::from_secs(4);
                loop {
                    match self.h.active.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).expect("blocking");
                            return Some(s);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            if Instant::now() > deadline {
                                return None;
                            }
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        Err(_) => return None,
                    }
                }
            }
        }
    }

    fn serve_parked(&mut self) {
        if let Some((sock, role)) = self.parked.take() {
            self.serve(sock, role);
        }
    }

    /// Upload a few bytes or take the download, then close: the server can finish the
    /// transfer and send its final reply.
    fn serve(&mut self, sock: Option<TcpStream>, role: DataRole) {
        let Some(mut s) = sock else { return };
        let _ = s.set_read_timeout(Some(DATA_TIMEOUT));
        let _ = s.set_write_timeout(Some(DATA_TIMEOUT));
        if role == DataRole::Upload {
            let _ = s.write_all(UPLOAD);
        }
        let _ = s.shutdown(Shutdown::Write);
        let mut got = Vec::new();
        let started = Instant::now();
        let mut chunk = [0u8; 16384];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    got.extend_from_slice(&chunk[..n]);
                    if got.len() > (1 << 20) {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.fail(&format!(
                        "data connection neither finished nor closed within {:?}",
                        started.elapsed()
                    ));
                }
                Err(_) => break,
            }
        }
        trace(
            self.h,
            format_args!(
                "  data: {} bytes: {:?}",
                got.len(),
                String::from_utf8_lossy(&got[..got.len().min(300)])
            ),
        );
        check_marker(self, &got);
    }
}

fn verb_of(bytes: &[u8]) -> String {
    let s = line::strip_telnet(bytes);
    let end = s
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).to_ascii_uppercase()
}

fn check_marker(c: &Client, bytes: &[u8]) {
    if bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()) {
        c.fail(&format!(
            "something outside the home was read: {:?}",
            String::from_utf8_lossy(bytes)
        ));
    }
}

fn login(c: &mut Client, how: u8) {
    let (user, pass) = match how % 4 {
        0 | 1 => ("fuzz", PASSWORD),
        2 => ("anonymous", "fuzz@example.org"),
        _ => ("ro", PASSWORD),
    };
    c.send(format!("USER {user}\r\n").as_bytes(), DataRole::None, false);
    c.send(format!("PASS {pass}\r\n").as_bytes(), DataRole::None, false);
    let r = c.read_reply().expect("reply to USER");
    assert_eq!(r.code, 331, "USER {user}: {}", r.text);
    let r = c.read_reply().expect("reply to PASS");
    assert_eq!(r.code, 230, "PASS for {user}: {}", r.text);
    c.outstanding.clear();
}

fn run(data: &[u8]) {
    let h = harness();
    trace(h, format_args!("input of {} bytes", data.len()));
    reset_home(h);
    trace(h, format_args!("home reset"));
    let active_port = h.active.local_addr().expect("addr").port();
    // Stale active connections from an earlier input (a transfer we did not wait for).
    while h.active.accept().is_ok() {}
    let (how, steps) = decode(data, active_port);

    let mut c = Client::connect(h);
    if how & 0x80 == 0 {
        login(&mut c, how);
    }
    for (i, step) in steps.iter().enumerate() {
        if c.closed || c.closing {
            break;
        }
        // ABOR or STAT right after a transfer opened: sent while it runs.
        let overtaking = c.parked.is_some() && step.overtakes();
        if !overtaking {
            if step.pipelined {
                c.serve_parked();
            } else {
                c.drain(false);
            }
            if c.closed || c.closing {
                break;
            }
        }
        c.send(&step.bytes, step.role(), step.must_refuse);
        if overtaking {
            // Its reply (or the transfer's) first, then let the transfer finish.
            let first = c.read_finals(1);
            c.serve_parked();
            if step.overtakes == Some("ABOR") && first.first().is_some_and(|r| r.code != 426) {
                c.check_abor_answered();
            }
        }
        let park = c.parked.is_none() && steps.get(i + 1).is_some_and(Step::overtakes);
        if !step.pipelined || park {
            c.drain(park);
        }
    }
    if !c.closed {
        c.drain(false);
    }
    if !c.closed && !c.closing {
        c.send(b"QUIT\r\n", DataRole::None, false);
        c.drain(false);
    }
    // The server closes the control connection last, when the session has ended.
    if !c.closed {
        let mut sink = [0u8; 4096];
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            match c.ctrl.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) if Instant::now() < deadline => {}
                Ok(_) => c.fail("the server keeps talking after QUIT"),
            }
        }
    }
    drop(c);
    trace(h, format_args!("session over"));

    check_outside(h);
    check_no_temp_files(&h.home);
    // Still serving: a new connection is greeted.
    let _ = Client::connect(h);
    trace(h, format_args!("checks done"));
}

/// Nothing outside the home has changed: the sentinel is empty, the guarded files and
/// directories are as they were, and no new entries appeared next to them.
fn check_outside(h: &Harness) {
    let names = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&h.base),
        ["outside", "root", "sentinel"],
        "entries next to the root"
    );
    assert!(
        names(&h.base.join("sentinel")).is_empty(),
        "the sentinel directory is not empty"
    );
    assert_eq!(
        names(&h.base.join("outside")),
        [format!("{MARKER}-secret.txt")]
    );
    assert_eq!(
        names(&h.root),
        [
            format!("{MARKER}-root.txt"),
            "home".to_owned(),
            "pub".to_owned()
        ]
    );
    for (p, before) in &h.guarded {
        let now = snapshot(p);
        // Directories' times move when their entries do; the entry lists are checked above.
        if p.is_dir() {
            assert_eq!(now.mode, before.mode, "{} changed mode", p.display());
        } else {
            assert_eq!(&now, before, "{} changed", p.display());
        }
    }
}

/// The session has ended, so no upload may have left its temporary file behind.
fn check_no_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        assert!(
            !name.starts_with(".ferroftp-upload."),
            "upload temp file left behind: {}",
            e.path().display()
        );
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            check_no_temp_files(&e.path());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    run(data);
});
