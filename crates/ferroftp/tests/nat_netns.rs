//! A server behind a real NAT: network namespaces for a client, a gateway and the server, the
//! gateway DNATing a "public" address to the server's private one with nftables. With
//! `passive.address` set to the public address, real clients list over PASV and EPSV and move a
//! file intact; without it, PASV announces the private address, a client that follows it fails,
//! and `ferroftp doctor --connect` names the PASV step and the address.
//!
//! Needs root, `ip netns` and `nft`; skipped with the reason printed otherwise. Nothing is
//! changed outside the namespaces the test creates (IP forwarding and the NAT rules live in the
//! gateway's namespace), and they are deleted on drop, panics included.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{
    Options, TestServer, bin, code_and_text, lines_with, pseudo_random, run, run_with_input,
};

/// The client's side of the gateway: the address clients know the server by.
const PUBLIC: &str = "10.231.1.1";
const CLIENT: &str = "10.231.1.2";
/// The server's own address, unreachable from the client's network.
const PRIVATE: &str = "10.231.2.2";
const GATEWAY_INSIDE: &str = "10.231.2.1";
const CONTROL_PORT: u16 = 2121;
const PASSIVE: &str = "30000-30009";

/// Why this test cannot run here, if it cannot.
fn unsupported() -> Option<String> {
    let (_, uid, _) = run(Command::new("id").arg("-u"));
    if uid.trim() != "0" {
        return Some("not running as root".into());
    }
    for (program, arg) in [("ip", "-V"), ("nft", "--version"), ("curl", "--version")] {
        match Command::new(program).arg(arg).output() {
            Ok(out) if out.status.success() => {}
            _ => return Some(format!("{program} is not installed")),
        }
    }
    None
}

/// Three namespaces: client — gateway (NAT) — server. Deleted on drop.
struct Topology {
    client: String,
    gateway: String,
    server: String,
}

/// Run `ip ARGS`, panicking with its output on failure.
fn ip(args: &[&str]) {
    let (ok, out, err) = run(Command::new("ip").args(args));
    assert!(ok, "ip {}: {out}{err}", args.join(" "));
}

/// Run `ip netns exec NS PROGRAM ARGS`: (success, stdout, stderr).
fn exec_in(ns: &str, program: &str, args: &[&str]) -> (bool, String, String) {
    run(Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args))
}

impl Topology {
    /// Build it, or `Err(reason)` when namespaces cannot be made here.
    fn new() -> Result<Self, String> {
        // Unique per process and per test, so that parallel tests never share a name.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let name = |role: &str| format!("ff-{role}-{id}");
        let (ok, out, err) = run(Command::new("ip").args(["netns", "add", &name("gw")]));
        if !ok {
            return Err(format!("ip netns add failed: {out}{err}"));
        }
        // From here on Drop cleans up whatever was made.
        let t = Self {
            gateway: name("gw"),
            client: name("cli"),
            server: name("srv"),
        };
        ip(&["netns", "add", &t.client]);
        ip(&["netns", "add", &t.server]);
        // Veth pairs made inside the namespaces: nothing appears in the host's.
        ip(&[
            "-n", &t.gateway, "link", "add", "to-cli", "type", "veth", "peer", "name", "eth0",
            "netns", &t.client,
        ]);
        ip(&[
            "-n", &t.gateway, "link", "add", "to-srv", "type", "veth", "peer", "name", "eth0",
            "netns", &t.server,
        ]);
        for (ns, dev, addr) in [
            (&t.gateway, "to-cli", format!("{PUBLIC}/24")),
            (&t.gateway, "to-srv", format!("{GATEWAY_INSIDE}/24")),
            (&t.client, "eth0", format!("{CLIENT}/24")),
            (&t.server, "eth0", format!("{PRIVATE}/24")),
        ] {
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // The server answers through the gateway (which undoes the DNAT); the client has no
        // route to the private network at all, as on the internet.
        ip(&[
            "-n",
            &t.server,
            "route",
            "add",
            "default",
            "via",
            GATEWAY_INSIDE,
        ]);
        let (ok, out, err) = exec_in(&t.gateway, "sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        assert!(ok, "ip_forward in the gateway namespace: {out}{err}");
        // The port forwarding a home router or cloud NAT does: control port and passive range.
        let rules = format!(
            "table ip nat {{\n\
               chain prerouting {{\n\
                 type nat hook prerouting priority dstnat; policy accept;\n\
                 ip daddr {PUBLIC} tcp dport {{ {CONTROL_PORT}, {PASSIVE} }} dnat to {PRIVATE}\n\
               }}\n\
             }}\n"
        );
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &t.gateway, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        nft.stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        let out = nft.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(t)
    }

    /// A server in the server namespace on PRIVATE:2121, plain FTP, with `extra` config.
    fn start_server(&self, extra: &str) -> TestServer {
        let command: Vec<String> = vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.server.clone(),
            bin().into(),
        ];
        TestServer::with_wrapper(
            Options {
                config: format!("[passive]\nports = \"{PASSIVE}\"\n{extra}"),
                listen: Some(format!("{PRIVATE}:{CONTROL_PORT}")),
                args: vec!["--no-tls".into()],
                users: vec![("alice".into(), "alicepw".into(), String::new())],
                ..Options::default()
            },
            &command,
            |_, _| {},
        )
    }

    /// curl from the client namespace to the public address, short timeouts, verbose (the
    /// server's replies are in stderr).
    fn curl(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = vec![
            "-sSv",
            "--connect-timeout",
            "3",
            "--max-time",
            "20",
            "-u",
            "alice:alicepw",
        ];
        all.extend_from_slice(args);
        exec_in(&self.client, "curl", &all)
    }

    /// `ferroftp doctor --connect` from the client namespace: (exit code, output).
    fn doctor(&self) -> (i32, String) {
        let out = run_with_input(
            Command::new("ip")
                .args(["netns", "exec", &self.client, bin(), "doctor", "--connect"])
                .arg(format!("{PUBLIC}:{CONTROL_PORT}"))
                .args(["--user", "alice", "--timeout", "3"]),
            b"alicepw\n",
        );
        code_and_text(&out)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace removes its veths, addresses, routes, nft rules and forwarding
        // setting with it.
        for ns in [&self.client, &self.server, &self.gateway] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The topology, or `None` after printing why the test is skipped.
fn topology(test: &str) -> Option<Topology> {
    if let Some(reason) = unsupported() {
        eprintln!("SKIP {test}: {reason}");
        return None;
    }
    match Topology::new() {
        Ok(t) => Some(t),
        Err(reason) => {
            eprintln!("SKIP {test}: {reason}");
            None
        }
    }
}

fn url(path: &str) -> String {
    format!("ftp://{PUBLIC}:{CONTROL_PORT}/{path}")
}

/// The "h1,h2,h3,h4," prefix of a 227 reply for `ip`.
fn pasv_prefix(ip: &str) -> String {
    format!("227 Entering Passive Mode ({},", ip.replace('.', ","))
}

/// The lines of doctor's output at `level` that contain `needle`.
#[test]
fn through_dnat_with_the_public_address_announced_clients_list_and_transfer_intact() {
    let test = "through_dnat_with_the_public_address_announced_clients_list_and_transfer_intact";
    let Some(net) = topology(test) else {
        return;
    };
    let server = net.start_server(&format!("address = \"{PUBLIC}\"\n"));
    let file = server.dir.path().join("upload.bin");
    let data = pseudo_random(1 << 20, 7);
    std::fs::write(&file, &data).unwrap();
    std::fs::write(server.root.join("hello.txt"), b"hello through NAT\n").unwrap();

    // EPSV (curl's first choice): only a port, on the address the client connected to.
    let (ok, out, err) = net.curl(&[&url("")]);
    assert!(ok, "EPSV listing failed:\n{err}");
    assert!(err.contains("229 Entering Extended Passive Mode"), "{err}");
    assert!(out.contains("hello.txt"), "{out}");

    // PASV, following the announced address (curl skips it by default since 7.74).
    let pasv = ["--disable-epsv", "--no-ftp-skip-pasv-ip"];
    let (ok, out, err) = net.curl(&[pasv[0], pasv[1], &url("")]);
    assert!(ok, "PASV listing failed:\n{err}");
    assert!(err.contains(&pasv_prefix(PUBLIC)), "{err}");
    assert!(out.contains("hello.txt"), "{out}");

    // Upload over PASV, download over EPSV: the same bytes.
    let (ok, _, err) = net.curl(&[
        pasv[0],
        pasv[1],
        "-T",
        file.to_str().unwrap(),
        &url("up.bin"),
    ]);
    assert!(ok, "upload failed:\n{err}");
    assert!(std::fs::read(server.root.join("up.bin")).unwrap() == data);
    let back = server.dir.path().join("back.bin");
    let (ok, _, err) = net.curl(&["-o", back.to_str().unwrap(), &url("up.bin")]);
    assert!(ok, "download failed:\n{err}");
    assert!(std::fs::read(&back).unwrap() == data, "download differs");

    // DNAT keeps the client's own address: logs and bans see the real client.
    let log = server.wait_for_log(&format!("peer={CLIENT}:"), 5);
    assert!(!log.contains(&format!("peer={PUBLIC}:")), "{log}");

    // doctor agrees from the client's side.
    let (code, out) = net.doctor();
    assert_eq!(code, 0, "{out}");
    assert!(!lines_with(&out, "OK", "PASV listing").is_empty(), "{out}");
    assert!(!lines_with(&out, "OK", "EPSV listing").is_empty(), "{out}");
}

#[test]
fn without_the_public_address_pasv_announces_the_private_one_and_doctor_names_it() {
    let test = "without_the_public_address_pasv_announces_the_private_one_and_doctor_names_it";
    let Some(net) = topology(test) else {
        return;
    };
    let server = net.start_server("");
    std::fs::write(server.root.join("hello.txt"), b"hello\n").unwrap();

    // A client that follows the 227 address goes to the private network, which it cannot
    // reach.
    let (ok, out, err) = net.curl(&["--disable-epsv", "--no-ftp-skip-pasv-ip", &url("")]);
    assert!(!ok, "PASV to the private address should fail:\n{out}{err}");
    assert!(err.contains(&pasv_prefix(PRIVATE)), "{err}");
    assert!(!out.contains("hello.txt"), "{out}");
    // Why it often goes unnoticed: EPSV, and curl's default of ignoring the PASV address,
    // both use the address the client connected to.
    let (ok, out, err) = net.curl(&[&url("")]);
    assert!(ok && out.contains("hello.txt"), "EPSV:\n{out}{err}");
    let (ok, out, err) = net.curl(&["--disable-epsv", "--ftp-skip-pasv-ip", &url("")]);
    assert!(
        ok && out.contains("hello.txt"),
        "PASV, IP skipped:\n{out}{err}"
    );

    let (code, out) = net.doctor();
    assert_eq!(code, 1, "{out}");
    let fails = lines_with(&out, "FAIL", &format!("PASV answered {PRIVATE}:"));
    assert!(
        fails.iter().any(|l| l.contains("passive.address")),
        "doctor does not blame PASV and passive.address:\n{out}"
    );
    assert!(!lines_with(&out, "OK", "EPSV listing").is_empty(), "{out}");
    assert!(
        !lines_with(&out, "WARN", "EPSV works but PASV does not").is_empty(),
        "{out}"
    );
    assert!(server.log().contains(&format!("peer={CLIENT}:")));
}

/// The test's own promise: no namespace outlives it.
#[test]
fn namespaces_are_deleted_on_drop() {
    let test = "namespaces_are_deleted_on_drop";
    let Some(net) = topology(test) else {
        return;
    };
    let names = [net.client.clone(), net.gateway.clone(), net.server.clone()];
    let listed = |name: &str| {
        let (_, out, _) = run(Command::new("ip").args(["netns", "list"]));
        out.lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    };
    assert!(names.iter().all(|n| listed(n)));
    drop(net);
    for n in &names {
        assert!(!listed(n), "{n} is still there");
        assert!(!Path::new("/run/netns").join(n).exists());
    }
}
