//! Test harness: runs the real `ferroftp` binary on an ephemeral loopback port with a temporary
//! root, and a small raw control-connection client for checking exact replies.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; killed on drop. Its log (stderr) is in `log_path`.
pub struct TestServer {
    child: Child,
    /// The first listener's address.
    pub addr: SocketAddr,
    /// Every listener's address, in the order printed (config order, then flags).
    pub addrs: Vec<SocketAddr>,
    /// What the server printed on stdout before it listened.
    pub banner: String,
    pub user: String,
    pub password: String,
    pub root: PathBuf,
    pub dir: tempfile::TempDir,
    pub log_path: PathBuf,
}

/// How to start a server.
#[derive(Default)]
pub struct Options {
    /// Extra TOML appended to the generated config file.
    pub config: String,
    /// Extra command-line arguments after `serve`.
    pub args: Vec<String>,
    /// Listen address (default 127.0.0.1:0); `Some("")` passes no --listen, so the config's
    /// `[[listener]]` tables apply.
    pub listen: Option<String>,
    /// How many "listening on" lines to wait for (default 1).
    pub listeners: usize,
    /// Users as (name, password, extra TOML lines such as `home = "x"` or `permissions = [...]`);
    /// when empty the server generates its default user.
    pub users: Vec<(String, String, String)>,
    /// Environment variables for the server, set after the harness's own (`RUST_LOG=debug`).
    pub env: Vec<(String, String)>,
}

/// What one start-up line on the server's stdout says.
pub enum Startup {
    /// The generated user's password.
    Password(String),
    /// A listener's address.
    Listening(SocketAddr),
    /// Anything else.
    Other,
}

/// Read a start-up line: plain text (`... password: X`, `listening on ADDR (...)`) or, with
/// `--log-format json`, a JSON object (`"event": "generated_user"` / `"listening"`).
pub fn startup_line(line: &str) -> Startup {
    if line.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {e}: {line}"));
        return match v["event"].as_str() {
            Some("generated_user") => Startup::Password(v["password"].as_str().unwrap().into()),
            Some("listening") => {
                Startup::Listening(v["address"].as_str().unwrap().parse().unwrap())
            }
            _ => Startup::Other,
        };
    }
    if let Some(rest) = line.split("password: ").nth(1) {
        return Startup::Password(rest.trim().to_string());
    }
    if let Some(rest) = line.split("listening on ").nth(1) {
        let a = rest.split_whitespace().next().unwrap();
        return Startup::Listening(a.parse().unwrap());
    }
    Startup::Other
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferroftp")
}

impl TestServer {
    pub fn start() -> Self {
        Self::with(Options::default())
    }

    pub fn with(opts: Options) -> Self {
        Self::with_wrapper(opts, &[], |_, _| {})
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `ftp://user:pass@127.0.0.1:port/` + path, for curl.
    pub fn url(&self, path: &str) -> String {
        format!(
            "ftp://{}:{}/{}",
            self.addr.ip(),
            self.port(),
            path.trim_start_matches('/')
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A raw control connection, greeted.
    pub fn connect(&self) -> Ctrl {
        Ctrl::connect(self.addr)
    }

    /// A raw control connection, logged in.
    pub fn login(&self) -> Ctrl {
        let mut c = self.connect();
        c.login(&self.user, &self.password);
        c
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal (e.g. "HUP", "TERM") to the server.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Wait until the log contains `needle` (or panic after `secs`).
    pub fn wait_for_log(&self, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "log never showed {needle:?}; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Assert the server still serves a fresh client end to end (login, PASV, LIST).
    pub fn assert_still_serving(&mut self) {
        assert!(self.is_running(), "server died; log:\n{}", self.log());
        let mut c = self.login();
        let data = c.pasv_connect();
        let (code, _) = c.cmd("LIST");
        assert!(code == 150 || code == 125, "LIST got {code}");
        let _ = read_all(data);
        assert_eq!(c.reply().0, 226);
        c.cmd_ok("QUIT", 221);
    }
}

/// Servers run under a wrapper command (tests/faults.rs, nat_netns.rs), and their exit status.
impl TestServer {
    /// Like [`TestServer::with`], but started by `command` (a program and its arguments that
    /// end with the server binary, such as `["setpriv", "--reuid=65534", "--regid=65534",
    /// "--clear-groups", bin()]`; it must `exec` the binary, so that [`TestServer::pid`] is the
    /// server's; empty: the binary itself), followed by `serve ...` as usual. `prepare(dir,
    /// root)` runs on the temporary directory and the root once the config is written, before
    /// the start (e.g. to hand the root to an unprivileged user).
    pub fn with_wrapper(
        opts: Options,
        command: &[String],
        prepare: impl FnOnce(&Path, &Path),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let config_path = dir.path().join("ferroftp.toml");
        let mut config = format!("root = {:?}\n", root.to_str().unwrap());
        let (mut user, mut password) = (String::new(), String::new());
        if !opts.users.is_empty() {
            let users_path = dir.path().join("users.toml");
            for (name, pw, extra) in &opts.users {
                add_user(&users_path, name, pw, None);
                if !extra.is_empty() {
                    let mut text = std::fs::read_to_string(&users_path).unwrap();
                    // Put the extra keys into this user's table (it is the last one added).
                    text.push_str(extra);
                    text.push('\n');
                    std::fs::write(&users_path, text).unwrap();
                }
            }
            config.push_str(&format!(
                "users_file = {:?}\n",
                users_path.to_str().unwrap()
            ));
            user = opts.users[0].0.clone();
            password = opts.users[0].1.clone();
        }
        config.push_str(&opts.config);
        std::fs::write(&config_path, config).unwrap();
        prepare(dir.path(), &root);
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let listen = opts.listen.unwrap_or_else(|| "127.0.0.1:0".into());
        let listen_args: Vec<String> = if listen.is_empty() {
            Vec::new()
        } else {
            vec!["--listen".into(), listen]
        };
        let expected = opts.listeners.max(1);
        let (program, prefix) = match command.split_first() {
            Some((program, rest)) => (program.as_str(), rest),
            None => (bin(), &[][..]),
        };
        let mut child = Command::new(program)
            .args(prefix)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args(&listen_args)
            .args(&opts.args)
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut addrs = Vec::new();
        let mut banner = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while addrs.len() < expected {
            assert!(Instant::now() < deadline, "server did not start");
            let Some(Ok(line)) = lines.next() else {
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("server exited before listening; log:\n{log}");
            };
            banner.push_str(&line);
            banner.push('\n');
            match startup_line(&line) {
                Startup::Password(p) => {
                    user = "ferro".into();
                    password = p;
                }
                Startup::Listening(a) => addrs.push(a),
                Startup::Other => {}
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            addr: addrs[0],
            addrs,
            banner,
            user,
            password,
            root,
            dir,
            log_path,
        }
    }

    /// Wait up to `within` for the process to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- server log ----\n{}", self.log());
        }
    }
}

/// Add a user with `ferroftp passwd`, password on stdin. Cheap argon2 parameters keep tests fast.
pub fn add_user(users: &Path, name: &str, password: &str, home: Option<&Path>) {
    let mut cmd = Command::new(bin());
    cmd.args(["passwd", "--users"]).arg(users).arg(name);
    cmd.args(["--argon2-memory", "1024", "--argon2-iterations", "1"]);
    if let Some(h) = home {
        cmd.arg("--home").arg(h);
    }
    let out = run_with_input(&mut cmd, format!("{password}\n").as_bytes());
    assert!(
        out.status.success(),
        "passwd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A development certificate for `hosts`, made with `ferroftp cert`: (cert.pem, key.pem).
pub fn dev_cert(dir: &Path, hosts: &[&str]) -> (PathBuf, PathBuf) {
    let mut cmd = Command::new(bin());
    cmd.args(["cert", "--self-signed", "--out"]).arg(dir);
    for h in hosts {
        cmd.args(["--host", h]);
    }
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "ferroftp cert failed: {out}{err}");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// A raw control connection that reads whole replies (multi-line aware).
pub struct Ctrl {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Ctrl {
    pub fn connect(addr: SocketAddr) -> Self {
        let mut c = Self::over(TcpStream::connect(addr).unwrap());
        let (code, text) = c.reply();
        assert_eq!(code, 220, "greeting: {text}");
        c
    }

    /// A client on an already connected control stream, its greeting unread.
    pub fn over(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Read one reply: (code, all text lines joined by '\n'; the last line of a multi-line
    /// reply keeps its code, `211 End`). Read with proto's client-side codec, line by line
    /// from `reader`, so that nothing after the reply is taken from it; panics on a closed
    /// connection, on bytes that are not a reply, and on text that is not UTF-8.
    pub fn reply(&mut self) -> (u16, String) {
        match self.next_reply() {
            Ok(Some(reply)) => reply,
            Ok(None) => panic!("the connection closed before a whole reply"),
            Err(e) => panic!("reading a reply: {e}"),
        }
    }

    /// Like [`Ctrl::reply`], but `Ok(None)` when the connection is closed before a whole
    /// reply, and the read error (a timeout, say) as it is.
    pub fn next_reply(&mut self) -> std::io::Result<Option<(u16, String)>> {
        let mut raw = Vec::new();
        loop {
            let start = raw.len();
            if self.reader.read_until(b'\n', &mut raw)? == 0 {
                return Ok(None);
            }
            // Only a line that starts with a code can end a reply: the rest need no decoding
            // (which keeps a long STAT listing linear).
            let line = &raw[start..];
            if start > 0 && !(line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit)) {
                continue;
            }
            match ferroftp_proto::Reply::decode(&raw) {
                Ok(Some((reply, used))) => {
                    assert_eq!(used, raw.len(), "a reply ends at a line end");
                    std::str::from_utf8(&raw).unwrap_or_else(|e| {
                        panic!("reply not UTF-8 ({e}): {:?}", String::from_utf8_lossy(&raw))
                    });
                    return Ok(Some(reply_text(reply)));
                }
                Ok(None) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Whether the server has closed the connection (reads to EOF, with the read timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }

    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send_raw(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Send and assert the code; returns the text.
    pub fn cmd_ok(&mut self, line: &str, code: u16) -> String {
        let (got, text) = self.cmd(line);
        assert_eq!(got, code, "{line} -> {got} {text}");
        text
    }

    pub fn login(&mut self, user: &str, password: &str) {
        self.cmd_ok(&format!("USER {user}"), 331);
        self.cmd_ok(&format!("PASS {password}"), 230);
    }

    /// PASV and connect to the announced address.
    pub fn pasv_connect(&mut self) -> TcpStream {
        let text = self.cmd_ok("PASV", 227);
        let addr = ferroftp_proto::addr::parse_pasv_reply(&text).expect("227 address");
        TcpStream::connect(addr).unwrap()
    }

    /// EPSV and connect to the announced port on the control connection's host.
    pub fn epsv_connect(&mut self) -> TcpStream {
        let text = self.cmd_ok("EPSV", 229);
        let port: u16 = text.split('|').nth(3).unwrap().parse().unwrap();
        let ip = self.stream.peer_addr().unwrap().ip();
        TcpStream::connect((ip, port)).unwrap()
    }

    /// A full RETR over passive mode: returns the bytes.
    pub fn retr(&mut self, path: &str) -> Vec<u8> {
        let data = self.pasv_connect();
        let (code, text) = self.cmd(&format!("RETR {path}"));
        assert!(code == 150 || code == 125, "RETR {path} -> {code} {text}");
        let bytes = read_all(data);
        self.cmd_ok_reply(226);
        bytes
    }

    /// A full STOR over passive mode.
    pub fn stor(&mut self, path: &str, bytes: &[u8]) {
        let mut data = self.pasv_connect();
        let (code, text) = self.cmd(&format!("STOR {path}"));
        assert!(code == 150 || code == 125, "STOR {path} -> {code} {text}");
        data.write_all(bytes).unwrap();
        drop(data);
        self.cmd_ok_reply(226);
    }

    /// A listing command over passive mode: returns the text.
    pub fn list(&mut self, line: &str) -> String {
        let data = self.pasv_connect();
        let (code, text) = self.cmd(line);
        assert!(code == 150 || code == 125, "{line} -> {code} {text}");
        let bytes = read_all(data);
        self.cmd_ok_reply(226);
        String::from_utf8(bytes).unwrap()
    }

    pub fn cmd_ok_reply(&mut self, code: u16) -> String {
        let (got, text) = self.reply();
        assert_eq!(got, code, "expected {code}, got {got} {text}");
        text
    }
}

/// A reply as the tests read it: the first line's text, then each further line whole (the
/// last with its code), trailing blanks trimmed, joined by '\n'.
fn reply_text(reply: ferroftp_proto::Reply) -> (u16, String) {
    let n = reply.lines.len();
    let text = reply
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i > 0 && i + 1 == n {
                format!("{} {l}", reply.code).trim_end().to_string()
            } else {
                l.trim_end().to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    (reply.code, text)
}

pub fn read_all(mut s: TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut v = Vec::new();
    s.read_to_end(&mut v).unwrap();
    v
}

/// Run a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `cmd` with `input` on its stdin (then closed); its exit status and output.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // A command may refuse and exit before it reads its input (passwd checks the home
    // first): the pipe is then closed, which is not the test's failure.
    match child.stdin.take().unwrap().write_all(input) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    child.wait_with_output().unwrap()
}

/// Exit code (-1 when killed by a signal) and stdout followed by stderr.
pub fn code_and_text(out: &std::process::Output) -> (i32, String) {
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The lines of a checklist (`ferroftp doctor`) at `level` (OK, WARN, FAIL) that contain
/// `needle`.
pub fn lines_with<'a>(text: &'a str, level: &str, needle: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.trim_start().starts_with(level) && l.contains(needle))
        .collect()
}

/// Deterministic pseudo-random bytes (no extra crate): xorshift.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The first of `n` consecutive loopback ports that are free now and lie below the kernel's
/// ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`): a port probed free and then
/// released inside that range can be given to any test's outgoing connection before the
/// server binds it, one below it only to an explicit bind. A random block each call, since
/// tests running in parallel (in this binary or another) pick blocks too; a caller whose
/// later bind still fails should pick another block, not unwrap.
pub fn free_block_below_ephemeral(n: u16) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Below the usual service ports; if the ephemeral range starts too low to leave room,
    // any unprivileged block is the best that can be done.
    let (floor, ceiling) = if ephemeral_low > 10_000 + n {
        (10_000, ephemeral_low - n)
    } else {
        (1024, u16::MAX - n)
    };
    for _ in 0..1000 {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let low = floor + (random % u64::from(ceiling - floor)) as u16;
        let held: Vec<_> = (low..low + n)
            .map(|p| std::net::TcpListener::bind(("127.0.0.1", p)))
            .collect();
        if held.iter().all(Result::is_ok) {
            return low;
        }
    }
    panic!("no free block of {n} ports below the ephemeral range");
}

/// A TCP connection to `to` from `from` (an address of 127.0.0.0/8, so that tests can act as
/// many clients on loopback).
pub fn connect_from(from: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::from((from, 0)).into())?;
    sock.connect_timeout(&to.into(), Duration::from_secs(10))?;
    Ok(sock.into())
}
