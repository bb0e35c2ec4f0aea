//! Observability against a real server: the Prometheus metrics scraped during and after real
//! FTP and FTPS activity, the xferlog(5) transfer log field by field, and the fail2ban filter
//! shipped in contrib/ run over the server's own log lines, text and JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Options, TestServer, ftps_login, read_all};
use suppaftp::Status;

// ---- scraping ----

/// One HTTP exchange with the metrics listener: (status, head, body).
fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_string(), body.to_string())
}

/// `GET /metrics`, as `name{labels}` -> value (after checking the exposition's shape).
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (status, head, body) = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, body.len());
    let mut typed = std::collections::HashSet::new();
    let mut helped = std::collections::HashSet::new();
    let mut samples = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            typed.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_string());
        } else {
            let (key, value) = line.rsplit_once(' ').unwrap();
            let name = key.split('{').next().unwrap();
            assert!(
                typed.contains(name) && helped.contains(name),
                "{name}: no HELP/TYPE"
            );
            samples.insert(key.to_string(), value.parse::<f64>().unwrap());
        }
    }
    samples
}

/// The value of one series (0 when absent).
fn value(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// Scrape until every `(series, value)` holds (gauges follow sessions that end a moment after
/// their client saw the last reply); panics with the last scrape otherwise.
fn expect(addr: SocketAddr, want: &[(&str, f64)]) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(addr);
        let wrong: Vec<String> = want
            .iter()
            .filter(|(k, v)| value(&m, k) != *v)
            .map(|(k, v)| format!("{k}: want {v}, got {}", value(&m, k)))
            .collect();
        if wrong.is_empty() {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never matched:\n{}\n\nscrape:\n{m:#?}",
            wrong.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metrics_addr(server: &TestServer) -> SocketAddr {
    server
        .banner
        .lines()
        .find_map(|l| l.strip_prefix("ferroftp: metrics on http://"))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address in {}", server.banner))
        .parse()
        .unwrap()
}

// ---- FTPS with suppaftp (rustls) ----

// ---- the xferlog ----

/// One xferlog(5) line, split into its fields.
#[derive(Debug)]
struct Xfer {
    time: String,
    secs: u64,
    host: String,
    bytes: u64,
    file: String,
    ty: String,
    action: String,
    direction: String,
    access: String,
    user: String,
    service: String,
    auth_method: String,
    auth_user: String,
    status: String,
}

fn xferlog(path: &Path) -> Vec<Xfer> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 18, "5 words of date and 13 fields: {line:?}");
            Xfer {
                time: f[..5].join(" "),
                secs: f[5].parse().unwrap(),
                host: f[6].into(),
                bytes: f[7].parse().unwrap(),
                file: f[8].into(),
                ty: f[9].into(),
                action: f[10].into(),
                direction: f[11].into(),
                access: f[12].into(),
                user: f[13].into(),
                service: f[14].into(),
                auth_method: f[15].into(),
                auth_user: f[16].into(),
                status: f[17].into(),
            }
        })
        .collect()
}

/// Wait until the transfer log has `n` lines (its writer is a background thread).
fn xferlog_lines(path: &Path, n: usize) -> Vec<Xfer> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = xferlog(path);
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "the transfer log has {} lines, not {n}: {lines:#?}",
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The current-time field: `DDD MMM dd hh:mm:ss YYYY`, local time, now.
fn assert_recent_local_time(time: &str) {
    let t = chrono::NaiveDateTime::parse_from_str(time, "%a %b %d %H:%M:%S %Y")
        .unwrap_or_else(|e| panic!("{time:?}: {e}"));
    let now = chrono::Local::now().naive_local();
    let skew = (now - t).num_seconds().abs();
    assert!(skew < 120, "{time:?} is {skew} s away from local now");
    assert_eq!(time.len(), 24, "{time:?}: day not zero-padded?");
}

// ---- the test ----

const BIG: u64 = 50 << 20;

/// Everything the metrics count, from real clients: logins of three kinds, plain and TLS
/// transfers both ways, listings, an ABOR, TLS handshakes that fail on the control and the
/// data connection, passive ports, failed logins up to a ban and the refused connection after
/// it. The xferlog is checked on the same run, field by field.
#[test]
fn metrics_and_xferlog_follow_real_activity() {
    let started = Instant::now();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = common::dev_cert(certs.path(), &["localhost", "127.0.0.1"]);
    let logs = tempfile::tempdir().unwrap();
    let xferlog_path = logs.path().join("xferlog");
    let server = TestServer::with(Options {
        config: format!(
            "[log]\nxferlog = {:?}\n[anonymous]\nenabled = true\n[bans]\nmax_failures = 3\ndelay_ms = 0\n[limits]\nmax_login_failures = 10\n",
            xferlog_path.to_str().unwrap()
        ),
        args: vec![
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            "--tls-cert".into(),
            cert.to_str().unwrap().into(),
            "--tls-key".into(),
            key.to_str().unwrap().into(),
        ],
        users: vec![("alice".into(), "alicepw".into(), String::new())],
        ..Options::default()
    });
    let m = metrics_addr(&server);
    let listener = format!("listener=\"{}\",mode=\"explicit\"", server.addr);
    let open = format!("ferroftp_sessions_open{{{listener}}}");
    let total = format!("ferroftp_sessions_total{{{listener}}}");
    let first = expect(m, &[(&open, 0.0), (&total, 0.0)]);
    let start_time = value(&first, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start_time > now - 120.0 && start_time <= now,
        "{start_time}"
    );
    assert_eq!(value(&first, "ferroftp_build_info{version=\"0.1.0\"}"), 1.0);

    // HTTP: only GET (and HEAD) of /metrics.
    let (status, head, _) = http(m, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 405, "{head}");
    assert!(head.contains("Allow: GET, HEAD"), "{head}");
    assert_eq!(http(m, "DELETE /metrics HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(http(m, "GET / HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(http(m, "GET /metrics/x HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(http(m, "GET /favicon.ico HTTP/1.0\r\n\r\n").0, 404);
    let (status, head, body) = http(m, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(status == 200 && body.is_empty(), "{head}");
    assert_eq!(http(m, "garbage\r\n\r\n").0, 400);

    // Plain: alice uploads in binary, downloads in ASCII, lists; a passive port is counted
    // while it is open.
    let content: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut alice = server.connect();
    alice.login("alice", "alicepw");
    expect(
        m,
        &[
            (&open, 1.0),
            (&total, 1.0),
            (
                "ferroftp_logins_total{result=\"ok\",method=\"password\"}",
                1.0,
            ),
        ],
    );
    alice.cmd_ok("TYPE I", 200);
    alice.stor("up load.txt", &content);
    alice.cmd_ok("TYPE A", 200);
    assert_eq!(alice.retr("up load.txt"), content);
    assert!(alice.list("LIST").contains("up load.txt"));
    alice.cmd_ok("PASV", 227);
    expect(m, &[("ferroftp_passive_ports_in_use", 1.0)]);
    alice.cmd_ok("ABOR", 226);
    expect(
        m,
        &[
            ("ferroftp_passive_ports_in_use", 0.0),
            (
                "ferroftp_transfer_bytes_total{direction=\"upload\",tls=\"false\"}",
                1000.0,
            ),
            (
                "ferroftp_transfer_bytes_total{direction=\"download\",tls=\"false\"}",
                1000.0,
            ),
            ("ferroftp_transfers_total{verb=\"STOR\",result=\"ok\"}", 1.0),
            ("ferroftp_transfers_total{verb=\"RETR\",result=\"ok\"}", 1.0),
            ("ferroftp_transfers_total{verb=\"LIST\",result=\"ok\"}", 1.0),
        ],
    );
    let listing = value(
        &scrape(m),
        "ferroftp_transfer_bytes_total{direction=\"listing\",tls=\"false\"}",
    );
    assert!(listing > 0.0, "listing bytes {listing}");

    // An aborted download: ABOR while the data connection is not read.
    let big = server.root.join("big.bin");
    std::fs::File::create(&big).unwrap().set_len(BIG).unwrap();
    alice.cmd_ok("TYPE I", 200);
    let mut data = alice.pasv_connect();
    let (code, text) = alice.cmd("RETR big.bin");
    assert_eq!(code, 150, "{text}");
    let mut head = vec![0u8; 64 * 1024];
    data.read_exact(&mut head).unwrap();
    alice.send_raw(b"ABOR\r\n");
    alice.cmd_ok_reply(426);
    alice.cmd_ok_reply(226);
    drop(data);
    alice.cmd_ok("QUIT", 221);

    // Anonymous downloads the upload, once published in its own home (ROOT/pub).
    std::fs::copy(
        server.root.join("up load.txt"),
        server.root.join("pub/up load.txt"),
    )
    .unwrap();
    let mut anon = server.connect();
    anon.cmd_ok("USER anonymous", 331);
    anon.cmd_ok("PASS guest@example.org", 230);
    anon.cmd_ok("TYPE I", 200);
    assert_eq!(anon.retr("up load.txt"), content);
    anon.cmd_ok("QUIT", 221);

    // FTPS: alice uploads and downloads over protected data connections.
    let secret = common::pseudo_random(5000, 7);
    let mut ftp = ftps_login(server.addr, &cert, "alice", "alicepw");
    ftp.put_file("tls.bin", &mut Cursor::new(secret.clone()))
        .unwrap();
    assert_eq!(ftp.retr_as_buffer("tls.bin").unwrap().into_inner(), secret);
    // A data connection that does not speak TLS: the handshake fails (522).
    let reply = ftp.custom_command("PASV", &[Status::PassiveMode]).unwrap();
    let text = String::from_utf8_lossy(&reply.body).to_string();
    let port = ferroftp_proto::addr::parse_pasv_reply(&text).unwrap();
    ftp.custom_command("RETR tls.bin", &[Status::AboutToSend])
        .unwrap();
    let mut plain = TcpStream::connect(port).unwrap();
    plain
        .write_all(b"this is not a TLS ClientHello\r\n")
        .unwrap();
    let _ = read_all(plain);
    let refused = ftp.custom_command("NOOP", &[Status::CommandOk]);
    assert!(
        refused
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("522")),
        "{refused:?}"
    );
    // The NOOP's own reply is still on its way: just hang up.
    drop(ftp);

    // A control connection whose handshake fails.
    let mut c = server.connect();
    c.cmd_ok("AUTH TLS", 234);
    c.send_raw(b"GET / HTTP/1.0\r\n\r\n");
    assert!(c.is_closed());

    let after = expect(
        m,
        &[
            (&open, 0.0),
            (&total, 4.0),
            (
                "ferroftp_logins_total{result=\"ok\",method=\"password\"}",
                2.0,
            ),
            (
                "ferroftp_logins_total{result=\"ok\",method=\"anonymous\"}",
                1.0,
            ),
            (
                "ferroftp_logins_total{result=\"ok\",method=\"certificate\"}",
                0.0,
            ),
            (
                "ferroftp_logins_total{result=\"failed\",method=\"password\"}",
                0.0,
            ),
            (
                "ferroftp_transfer_bytes_total{direction=\"upload\",tls=\"true\"}",
                5000.0,
            ),
            (
                "ferroftp_transfer_bytes_total{direction=\"download\",tls=\"true\"}",
                5000.0,
            ),
            (
                "ferroftp_transfer_bytes_total{direction=\"upload\",tls=\"false\"}",
                1000.0,
            ),
            ("ferroftp_transfers_total{verb=\"STOR\",result=\"ok\"}", 2.0),
            ("ferroftp_transfers_total{verb=\"RETR\",result=\"ok\"}", 3.0),
            (
                "ferroftp_transfers_total{verb=\"RETR\",result=\"aborted\"}",
                1.0,
            ),
            (
                "ferroftp_transfers_total{verb=\"RETR\",result=\"failed\"}",
                1.0,
            ),
            (
                "ferroftp_tls_handshake_failures_total{connection=\"control\"}",
                1.0,
            ),
            (
                "ferroftp_tls_handshake_failures_total{connection=\"data\"}",
                1.0,
            ),
            ("ferroftp_passive_ports_in_use", 0.0),
            ("ferroftp_bans_active", 0.0),
            ("ferroftp_xferlog_dropped_total", 0.0),
        ],
    );
    // The aborted download's bytes: what went out before the ABOR, and less than the file.
    let down = value(
        &after,
        "ferroftp_transfer_bytes_total{direction=\"download\",tls=\"false\"}",
    );
    assert!(
        down >= (2000 + head.len()) as f64 && down < (2000 + BIG) as f64,
        "{down}"
    );

    // Failed logins up to a ban, then a connection refused for it.
    let mut bad = server.connect();
    for i in 1..=3 {
        bad.cmd_ok("USER alice", 331);
        let (code, text) = bad.cmd("PASS wrong");
        assert_eq!(code, if i < 3 { 530 } else { 421 }, "{text}");
    }
    let mut refused = TcpStream::connect(server.addr).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = String::new();
    refused.read_to_string(&mut greeting).unwrap();
    assert!(greeting.starts_with("421 "), "{greeting}");
    expect(
        m,
        &[
            (
                "ferroftp_logins_total{result=\"failed\",method=\"password\"}",
                3.0,
            ),
            ("ferroftp_bans_total", 1.0),
            ("ferroftp_bans_active", 1.0),
            ("ferroftp_connections_refused_total{reason=\"banned\"}", 1.0),
            ("ferroftp_connections_refused_total{reason=\"limit\"}", 0.0),
            (&total, 5.0),
            (&open, 0.0),
        ],
    );

    // The transfer log: one line per file transfer (not listings, not the refused one).
    let lines = xferlog_lines(&xferlog_path, 6);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let home = std::fs::canonicalize(&server.root).unwrap();
    let file = |name: &str| home.join(name).to_str().unwrap().to_string();
    // (bytes, file, type, direction, access, user, service, status)
    let want = [
        (
            Some(1000),
            file("up_load.txt"),
            "b",
            "i",
            "r",
            "alice",
            "ftp",
            "c",
        ),
        (
            Some(1000),
            file("up_load.txt"),
            "a",
            "o",
            "r",
            "alice",
            "ftp",
            "c",
        ),
        (None, file("big.bin"), "b", "o", "r", "alice", "ftp", "i"),
        (
            Some(1000),
            file("pub/up_load.txt"),
            "b",
            "o",
            "a",
            "anonymous",
            "ftp",
            "c",
        ),
        (
            Some(5000),
            file("tls.bin"),
            "b",
            "i",
            "r",
            "alice",
            "ftps",
            "c",
        ),
        (
            Some(5000),
            file("tls.bin"),
            "b",
            "o",
            "r",
            "alice",
            "ftps",
            "c",
        ),
    ];
    for (got, (bytes, file, ty, dir, access, user, service, status)) in lines.iter().zip(&want) {
        assert_recent_local_time(&got.time);
        assert!(got.secs >= 1 && got.secs < 60, "{got:?}");
        assert_eq!(got.host, "127.0.0.1", "{got:?}");
        match bytes {
            Some(b) => assert_eq!(got.bytes, *b, "{got:?}"),
            None => assert!(got.bytes >= 64 * 1024 && got.bytes < BIG, "{got:?}"),
        }
        let shown = PathBuf::from(&got.file);
        let shown = std::fs::canonicalize(shown.parent().unwrap())
            .unwrap()
            .join(shown.file_name().unwrap());
        assert_eq!(shown.to_str().unwrap(), file, "{got:?}");
        assert_eq!(
            (
                got.ty.as_str(),
                got.action.as_str(),
                got.direction.as_str(),
                got.access.as_str(),
                got.user.as_str(),
                got.service.as_str(),
                got.auth_method.as_str(),
                got.auth_user.as_str(),
                got.status.as_str()
            ),
            (*ty, "_", *dir, *access, *user, *service, "0", "*", *status),
            "{got:?}"
        );
    }
    eprintln!(
        "metrics_and_xferlog_follow_real_activity: {:?}",
        started.elapsed()
    );
}

/// The metrics listener is off unless asked for, and a bad address is refused at start.
#[test]
fn metrics_are_off_by_default_and_a_busy_address_is_refused() {
    let server = TestServer::start();
    assert!(!server.banner.contains("metrics on"), "{}", server.banner);
    // The FTP listener's own address cannot also serve the metrics.
    let (ok, out, err) = common::run(
        std::process::Command::new(common::bin())
            .args(["serve", "--no-tls", "--listen"])
            .arg(server.addr.to_string())
            .arg("--metrics-listen")
            .arg(server.addr.to_string()),
    );
    assert!(!ok, "{out}{err}");
    assert!(err.contains("metrics.listen"), "{err}");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (ok, out, err) = common::run(
        std::process::Command::new(common::bin())
            .args(["serve", "--no-tls", "--listen", "127.0.0.1:0", "--root"])
            .arg(&server.root)
            .arg("--metrics-listen")
            .arg(busy.local_addr().unwrap().to_string()),
    );
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains("cannot listen on") && err.contains("(metrics.listen)"),
        "{err}"
    );
}

// ---- fail2ban ----

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Run the shipped filter over `log` as fail2ban would: the host found in each line.
fn fail2ban(log: &Path) -> Vec<(String, Option<String>)> {
    let out = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/fail2ban_filter.py"))
        .arg(repo_file("contrib/fail2ban/filter.d/ferroftp.conf"))
        .arg(log)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let host = l
                .split("\"host\": ")
                .nth(1)
                .unwrap()
                .trim_end_matches('}')
                .trim_matches('"');
            let n: usize = l
                .split("\"line\": ")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (
                lines[n - 1].to_string(),
                (host != "null").then(|| host.to_string()),
            )
        })
        .collect()
}

/// Whether this machine has IPv6 loopback.
fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// The filter in contrib/fail2ban finds the client's address in every failed-login line the
/// server writes, text and JSON, IPv4 and IPv6, whatever user name the client sent, and in
/// no other line (successful logins included).
#[test]
fn the_fail2ban_filter_matches_failed_logins_in_real_text_and_json_logs() {
    let v6 = ipv6_loopback();
    for format in ["text", "json"] {
        let mut args = vec!["--log-format".to_string(), format.to_string()];
        if v6 {
            args.extend(["--listen".into(), "[::1]:0".into()]);
        }
        let server = TestServer::with(Options {
            config: "[limits]\nmax_login_failures = 10\n[bans]\nmax_failures = 50\ndelay_ms = 0\n"
                .into(),
            args,
            listeners: if v6 { 2 } else { 1 },
            users: vec![("alice".into(), "alicepw".into(), String::new())],
            ..Options::default()
        });
        let mut expected = Vec::new();
        let mut addrs = vec![server.addrs[0]];
        if v6 {
            addrs.push(server.addrs[1]);
        }
        for addr in addrs {
            let ip = addr.ip().to_string();
            let mut c = common::Ctrl::connect(addr);
            for user in [
                "alice",
                "nobody",
                // Names that try to make the line name another address.
                "x ip=203.0.113.66 user=y",
                "x WARN login failed ip=203.0.113.66 user=",
                "x\",\"ip\":\"203.0.113.66\",\"user\":\"y",
            ] {
                c.cmd_ok(&format!("USER {user}"), 331);
                c.cmd_ok("PASS wrong", 530);
                expected.push(ip.clone());
            }
            c.login("alice", "alicepw");
            c.cmd_ok("QUIT", 221);
        }
        let log = server.wait_for_log("login ok", 10);
        let wanted = expected.len();
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.log().matches("login failed").count() < wanted {
            assert!(Instant::now() < deadline, "{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let copy = server.dir.path().join("snapshot.log");
        std::fs::write(&copy, server.log()).unwrap();
        let results = fail2ban(&copy);
        let found: Vec<&str> = results.iter().filter_map(|(_, h)| h.as_deref()).collect();
        assert_eq!(found, expected, "{format}: {results:#?}");
        // Where fail2ban itself is installed, it must agree.
        if let Ok(out) = std::process::Command::new("fail2ban-regex")
            .args(["--out", "ip"])
            .arg(&copy)
            .arg(repo_file("contrib/fail2ban/filter.d/ferroftp.conf"))
            .output()
        {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let real: Vec<&str> = stdout.lines().collect();
            assert_eq!(real, expected, "{format}: fail2ban-regex disagrees");
            eprintln!("{format}: fail2ban-regex agrees ({} matches)", real.len());
        }
        for (line, host) in &results {
            // The event itself, not the debug lines that echo the names sent (which a filter
            // that is not anchored could be fooled by).
            let failed_login = line.contains("}: login failed ip=")
                || line.contains("\"fields\":{\"message\":\"login failed\"");
            assert_eq!(host.is_some(), failed_login, "{format}: {line}");
            if line.contains("login ok") {
                assert!(host.is_none(), "{line}");
            }
        }
        assert!(
            results
                .iter()
                .filter(|(l, _)| l.contains("login ok"))
                .count()
                >= 1,
            "no successful login in the log"
        );
    }
}

// ---- reload ----

/// A loopback address with a port free just now.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Wait until nothing listens on `addr` any more.
fn assert_closes(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "{addr} still answers");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGHUP reopens the transfer log by name (logrotate's `create` mode) and starts, moves or
/// stops the metrics listener as the configuration says.
#[test]
fn sighup_reopens_the_xferlog_and_moves_the_metrics_listener() {
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("xferlog");
    let base = format!("[log]\nxferlog = {:?}\n", path.to_str().unwrap());
    let server = TestServer::with(Options {
        config: base.clone(),
        users: vec![("alice".into(), "alicepw".into(), String::new())],
        ..Options::default()
    });
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    c.stor("one.txt", b"1");
    assert!(xferlog_lines(&path, 1)[0].file.ends_with("/one.txt"));

    // logrotate: move the file away, then SIGHUP; metrics turned on at the same time.
    std::fs::rename(&path, logs.path().join("xferlog.1")).unwrap();
    let first = free_port();
    let config = server.dir.path().join("ferroftp.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{original}[metrics]\nlisten = \"{first}\"\n"),
    )
    .unwrap();
    server.reloaded(1);
    c.stor("two.txt", b"22");
    let lines = xferlog_lines(&path, 1);
    assert!(
        lines.len() == 1 && lines[0].file.ends_with("/two.txt"),
        "{lines:#?}"
    );
    assert_eq!(xferlog(&logs.path().join("xferlog.1")).len(), 1);
    // The session opened before the reload is counted on the new listener's first scrape.
    expect(
        first,
        &[
            ("ferroftp_transfers_total{verb=\"STOR\",result=\"ok\"}", 2.0),
            (
                "ferroftp_logins_total{result=\"ok\",method=\"password\"}",
                1.0,
            ),
        ],
    );

    // Another address: the old one stops answering.
    let second = free_port();
    std::fs::write(
        &config,
        format!("{original}[metrics]\nlisten = \"{second}\"\n"),
    )
    .unwrap();
    server.reloaded(2);
    expect(
        second,
        &[("ferroftp_transfers_total{verb=\"STOR\",result=\"ok\"}", 2.0)],
    );
    assert_closes(first);

    // Off again.
    std::fs::write(&config, &original).unwrap();
    server.reloaded(3);
    assert_closes(second);
    c.cmd_ok("QUIT", 221);
}
