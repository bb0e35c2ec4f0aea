//! The server under test: the real binary with a generated config, a temporary root and users.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Ctrl, read_all, run, run_with_input};

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

/// The ferroftp binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferroftp")
}

impl TestServer {
    /// A server with the default options (a generated user, one plain listener).
    pub fn start() -> Self {
        Self::with(Options::default())
    }

    /// A server started with `opts`.
    pub fn with(opts: Options) -> Self {
        Self::with_wrapper(opts, &[], |_, _| {})
    }

    /// The first listener's port.
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

    /// The server's log so far.
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

    /// Send SIGHUP and wait for the `n`-th reload's outcome in the log (counted from the
    /// start): its "configuration reloaded" or "reload refused" line.
    pub fn reload(&self, n: usize) -> String {
        self.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            let done: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("configuration reloaded") || l.contains("reload refused"))
                .collect();
            if let Some(line) = done.get(n - 1) {
                return (*line).to_string();
            }
            assert!(Instant::now() < deadline, "no reload logged:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// [`TestServer::reload`], asserting the reload was done (not refused).
    pub fn reloaded(&self, n: usize) {
        let line = self.reload(n);
        assert!(
            line.contains("configuration reloaded"),
            "reload {n}: {line}\n{}",
            self.log()
        );
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
                add_user_with(&users_path, name, pw, extra);
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

/// [`add_user`], then `extra` (TOML lines such as `home = "x"`) into the new user's table
/// (the last one in the file).
pub fn add_user_with(users: &Path, name: &str, password: &str, extra: &str) {
    add_user(users, name, password, None);
    if !extra.is_empty() {
        let mut text = std::fs::read_to_string(users).unwrap();
        text.push_str(extra);
        text.push('\n');
        std::fs::write(users, text).unwrap();
    }
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

/// Options with `config` (TOML) added to the generated config file.
pub fn opts(config: &str) -> Options {
    Options {
        config: config.into(),
        ..Default::default()
    }
}

/// How many server log lines contain `needle`.
pub fn log_count(server: &TestServer, needle: &str) -> usize {
    server.log().lines().filter(|l| l.contains(needle)).count()
}
