//! Firewalls, NAT and load balancers: the PROXY protocol (from a real HAProxy, and by hand
//! for v1/v2 details), announced passive addresses and ports, and the classic active-mode
//! source port. Everything on loopback: 127.0.0.x addresses stand for different hosts.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Ctrl, Options, TestServer};

/// A TCP connection to `to` from the loopback address `src` (standing for another host).
fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let s = common::connect_from(src.parse().unwrap(), to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn ctrl_over(stream: TcpStream) -> Ctrl {
    Ctrl::greeted(stream)
}

fn free_port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` free consecutive ports on `ip`.
fn free_range(ip: &str, n: u16) -> u16 {
    common::free_port_range_on(ip.parse().unwrap(), n)
}

fn user() -> Vec<(String, String, String)> {
    vec![("alice".into(), "alicepw".into(), String::new())]
}

// ---- the PROXY protocol, by hand -----------------------------------------------------------

fn proxied_server(extra: &str) -> TestServer {
    let port = free_port_on("127.0.0.4");
    TestServer::with(Options {
        config: format!(
            "[[listener]]\nbind = \"127.0.0.4:{port}\"\nmode = \"plain\"\nproxy_protocol = true\n\
             [proxy]\ntrusted = [\"127.0.0.3/32\"]\n{extra}"
        ),
        listen: Some(String::new()),
        users: user(),
        ..Options::default()
    })
}

#[test]
fn a_v1_header_from_the_trusted_proxy_gives_the_client_address() {
    let mut server = proxied_server("");
    let mut s = connect_from("127.0.0.3", server.addr);
    s.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.4 40000 21\r\n")
        .unwrap();
    let mut c = ctrl_over(s);
    c.login("alice", "alicepw");
    let log = server.wait_for_log("login ok", 5);
    assert!(
        log.lines()
            .any(|l| l.contains("login ok") && l.contains("peer=203.0.113.9:40000")),
        "{log}"
    );
    server.assert_still_serving_from_proxy();
}

#[test]
fn a_v2_header_works_and_a_local_one_is_the_proxy_itself() {
    let server = proxied_server("");
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[
        0x21, 0x11, 0, 12, 198, 51, 100, 7, 127, 0, 0, 4, 0x9c, 0x41, 0, 21,
    ]);
    let mut s = connect_from("127.0.0.3", server.addr);
    s.write_all(&header).unwrap();
    let mut c = ctrl_over(s);
    c.login("alice", "alicepw");
    let log = server.wait_for_log("login ok", 5);
    assert!(log.contains("peer=198.51.100.7:40001"), "{log}");
    // LOCAL (a health check): the connection is the proxy's own.
    let mut s = connect_from("127.0.0.3", server.addr);
    s.write_all(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00")
        .unwrap();
    let mut c = ctrl_over(s);
    c.cmd_ok("NOOP", 200);
}

#[test]
fn no_header_from_the_proxy_is_dropped_and_a_header_from_elsewhere_is_not_believed() {
    let server = proxied_server("");
    // From the trusted proxy without a header: dropped, with a log line.
    let mut s = connect_from("127.0.0.3", server.addr);
    s.write_all(b"USER alice\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));
    server.wait_for_log("without a valid PROXY header", 5);
    // From an untrusted address: taken as a direct client, its "header" is just a bad command.
    let mut s = connect_from("127.0.0.2", server.addr);
    s.write_all(b"PROXY TCP4 10.1.1.1 127.0.0.4 1 21\r\n")
        .unwrap();
    let mut c = ctrl_over(s);
    let (code, _) = c.reply();
    assert_eq!(code, 500);
    c.login("alice", "alicepw");
    let log = server.log();
    assert!(
        !log.contains("10.1.1.1"),
        "a header from an untrusted host was believed:\n{log}"
    );
}

#[test]
fn bans_and_limits_apply_to_the_client_behind_the_proxy() {
    let server = proxied_server("[bans]\nmax_failures = 2\nban_secs = 60\ndelay_ms = 0\n");
    let proxied = |client: &str| {
        let mut s = connect_from("127.0.0.3", server.addr);
        s.write_all(format!("PROXY TCP4 {client} 127.0.0.4 40000 21\r\n").as_bytes())
            .unwrap();
        s
    };
    let mut c = ctrl_over(proxied("203.0.113.66"));
    c.cmd_ok("USER alice", 331);
    c.cmd_ok("PASS wrong", 530);
    c.cmd_ok("USER alice", 331);
    let (code, text) = c.cmd("PASS wrong");
    assert_eq!(code, 421, "{text}");
    // That client is banned...
    let line = common::first_line(&proxied("203.0.113.66"));
    assert!(line.starts_with("421"), "{line}");
    // ...the proxy itself and other clients behind it are not.
    let mut c = ctrl_over(proxied("203.0.113.67"));
    c.login("alice", "alicepw");
}

#[test]
fn passive_data_through_the_proxy_must_carry_the_clients_address() {
    let server = proxied_server("");
    let mut c = {
        let mut s = connect_from("127.0.0.3", server.addr);
        s.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.4 40000 21\r\n")
            .unwrap();
        ctrl_over(s)
    };
    c.login("alice", "alicepw");
    std::fs::write(server.root.join("f.txt"), b"through the proxy").unwrap();
    let data_to = |c: &mut Ctrl| -> SocketAddr {
        let text = c.cmd_ok("PASV", 227);
        SocketAddr::V4(ferroftp_proto::addr::parse_pasv_reply(&text).unwrap())
    };
    // A stranger's data connection through the proxy: refused; the owner's: served.
    let to = data_to(&mut c);
    let mut stranger = connect_from("127.0.0.3", to);
    stranger
        .write_all(b"PROXY TCP4 198.51.100.1 127.0.0.4 5555 50000\r\n")
        .unwrap();
    c.send_raw(b"RETR f.txt\r\n");
    assert_eq!(c.reply().0, 150);
    let mut owner = connect_from("127.0.0.3", to);
    owner
        .write_all(b"PROXY TCP4 203.0.113.9 127.0.0.4 40002 50000\r\n")
        .unwrap();
    let mut got = Vec::new();
    owner.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"through the proxy");
    assert_eq!(c.reply().0, 226);
    let mut buf = Vec::new();
    let _ = stranger.read_to_end(&mut buf);
    assert!(buf.is_empty());
    server.wait_for_log("possible data theft", 5);
}

// ---- a real HAProxy -------------------------------------------------------------------------

/// The process, and the directory its configuration lives in (kept while it runs).
struct Haproxy(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HAProxy on 127.0.0.3 in front of a server on 127.0.0.4: the control port and the passive
/// range, both with `send-proxy-v2`, connecting from 127.0.0.3.
fn haproxy(front: u16, back: u16, pasv: u16, n: u16) -> Option<Haproxy> {
    if Command::new("haproxy").arg("-v").output().is_err() {
        eprintln!("SKIP: haproxy is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend ftp\n  bind 127.0.0.3:{front}\n  default_backend ftp\n\
             backend ftp\n  source 127.0.0.3\n  server s1 127.0.0.4:{back} send-proxy-v2\n\
             frontend ftp-data\n  bind 127.0.0.3:{pasv}-{last}\n  default_backend ftp-data\n\
             backend ftp-data\n  source 127.0.0.3\n  server s1 127.0.0.4 send-proxy-v2\n",
            last = pasv + n - 1
        ),
    )
    .unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.3", front)).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Haproxy(child, dir))
}

#[test]
fn behind_haproxy_with_send_proxy_v2_the_server_sees_the_client_and_transfers_work() {
    let back = free_port_on("127.0.0.4");
    let front = free_port_on("127.0.0.3");
    let pasv = free_range("127.0.0.3", 4);
    let server = TestServer::with(Options {
        config: format!(
            "[[listener]]\nbind = \"127.0.0.4:{back}\"\nmode = \"explicit\"\nproxy_protocol = true\n\
             [proxy]\ntrusted = [\"127.0.0.3/32\"]\n\
             [passive]\nports = \"{pasv}-{last}\"\naddress = \"127.0.0.3\"\n",
            last = pasv + 3
        ),
        listen: Some(String::new()),
        users: user(),
        ..Options::default()
    });
    let Some(_haproxy) = haproxy(front, back, pasv, 4) else {
        return;
    };
    // A real client, from 127.0.0.2, through HAProxy: curl uploads, lists and downloads.
    let up = server.dir.path().join("up.bin");
    let data = common::pseudo_random(300_000, 5);
    std::fs::write(&up, &data).unwrap();
    let url = format!("ftp://127.0.0.3:{front}/");
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--disable-epsv",
                "--max-time",
                "30",
                "--interface",
                "127.0.0.2",
            ])
            .args(["-u", "alice:alicepw"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    curl(&["-T", up.to_str().unwrap(), &url]);
    assert_eq!(std::fs::read(server.root.join("up.bin")).unwrap(), data);
    let listing = String::from_utf8(curl(&["-l", &url])).unwrap();
    assert!(listing.contains("up.bin"), "{listing}");
    assert_eq!(curl(&[&format!("{url}up.bin")]), data);
    // The server saw the client, not HAProxy.
    let log = server.log();
    assert!(log.contains("peer=127.0.0.2:"), "{log}");
    assert!(
        log.contains("PROXY protocol header"),
        "the connections came through HAProxy: {log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("session opened") && l.contains("peer=127.0.0.3")),
        "{log}"
    );
}

// ---- announced passive addresses and ports -------------------------------------------------

#[test]
fn clients_from_listed_networks_get_their_own_address_and_ports_are_mapped() {
    let pasv = free_range("127.0.0.1", 3);
    let server = TestServer::with(Options {
        config: format!(
            "[passive]\nports = \"{pasv}-{last}\"\naddress = \"127.0.0.1\"\nannounce_ports = \"61000-61002\"\n\
             [[passive.announce]]\nfrom = [\"127.0.0.2/32\"]\naddress = \"10.9.9.9\"\n",
            last = pasv + 2
        ),
        users: user(),
        ..Options::default()
    });
    let mut c = ctrl_over(connect_from("127.0.0.2", server.addr));
    c.login("alice", "alicepw");
    let text = c.cmd_ok("PASV", 227);
    let a = ferroftp_proto::addr::parse_pasv_reply(&text).unwrap();
    assert_eq!(a.ip().to_string(), "10.9.9.9");
    assert!((61000..=61002).contains(&a.port()), "{text}");
    let text = c.cmd_ok("EPSV", 229);
    assert!(
        text.contains("|||6100"),
        "EPSV announces the mapped port too: {text}"
    );
    let mut c = ctrl_over(connect_from("127.0.0.1", server.addr));
    c.login("alice", "alicepw");
    let text = c.cmd_ok("PASV", 227);
    let a = ferroftp_proto::addr::parse_pasv_reply(&text).unwrap();
    assert_eq!(a.ip().to_string(), "127.0.0.1");
    // A host name is resolved.
    drop(server);
}

#[test]
fn a_private_address_announced_to_an_internet_client_is_warned_about_once() {
    let server = proxied_server("");
    for _ in 0..2 {
        let mut s = connect_from("127.0.0.3", server.addr);
        s.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.4 40000 21\r\n")
            .unwrap();
        let mut c = ctrl_over(s);
        c.login("alice", "alicepw");
        c.cmd_ok("PASV", 227);
    }
    let log = server.wait_for_log("PASV announced a private or loopback address", 5);
    assert_eq!(
        log.matches("PASV announced a private or loopback address")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn pasv_on_an_ipv6_control_connection_is_told_to_use_epsv() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIP: no ::1");
        return;
    }
    let server = TestServer::with(Options {
        listen: Some("[::1]:0".into()),
        users: user(),
        ..Options::default()
    });
    let mut c = server.connect();
    c.login("alice", "alicepw");
    let text = c.cmd_ok("PASV", 425);
    assert!(text.contains("EPSV"), "{text}");
    c.cmd_ok("EPSV", 229);
}

// ---- active mode from the port below the listener ------------------------------------------

#[test]
fn active_connections_can_come_from_the_port_below_the_listener() {
    let port = free_range("127.0.0.1", 2) + 1;
    let server = TestServer::with(Options {
        config: format!(
            "[[listener]]\nbind = \"127.0.0.1:{port}\"\nmode = \"plain\"\n\
             [active]\nsource_port_below_listener = true\n"
        ),
        listen: Some(String::new()),
        users: user(),
        ..Options::default()
    });
    std::fs::write(server.root.join("f.txt"), b"from port 20's cousin").unwrap();
    let mut c = server.connect();
    c.login("alice", "alicepw");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let lp = listener.local_addr().unwrap().port();
    c.cmd_ok(&format!("PORT 127,0,0,1,{},{}", lp >> 8, lp & 0xff), 200);
    c.send_raw(b"RETR f.txt\r\n");
    assert_eq!(c.reply().0, 150);
    let (mut data, from) = listener.accept().unwrap();
    assert_eq!(from.port(), port - 1, "the data connection's source port");
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"from port 20's cousin");
    assert_eq!(c.reply().0, 226);
}

#[test]
fn a_source_port_that_needs_privileges_is_a_clear_start_up_error() {
    if !nix_is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIP: needs root and setpriv to run the server as nobody");
        return;
    }
    // As nobody, port 1024 is allowed but its source port 1023 is not.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "root = {:?}\n[[listener]]\nbind = \"127.0.0.1:1024\"\nmode = \"plain\"\n[active]\nsource_port_below_listener = true\n",
            root.to_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    if TcpStream::connect("127.0.0.1:1024").is_ok() {
        eprintln!("SKIP: port 1024 is taken");
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(common::bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("source_port_below_listener")
            && err.contains("1023")
            && err.contains("CAP_NET_BIND_SERVICE"),
        "{err}"
    );
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

trait StillServing {
    fn assert_still_serving_from_proxy(&mut self);
}

impl StillServing for TestServer {
    /// The server still serves a client that comes through the proxy.
    fn assert_still_serving_from_proxy(&mut self) {
        assert!(self.is_running(), "server died; log:\n{}", self.log());
        let mut s = connect_from("127.0.0.3", self.addr);
        s.write_all(b"PROXY TCP4 192.0.2.50 127.0.0.4 1234 21\r\n")
            .unwrap();
        let mut c = ctrl_over(s);
        c.login("alice", "alicepw");
        c.cmd_ok("QUIT", 221);
    }
}
