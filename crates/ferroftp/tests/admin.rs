//! The admin HTTP API against a real server, driven by curl: the token (missing, wrong,
//! right), status, sessions with a running transfer's progress, kicking a session in the
//! middle of a download and of an upload, bans listed and lifted, users added, disabled and
//! enabled (with real FTP logins), reload (good and refused), the start-up checks of the
//! `[admin]` keys, and the OpenAPI document against the routes served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Options, TestServer, bin, run, wait_for};
use serde_json::Value;

const TOKEN: &str = "test-admin-token-0123456789abcdef";

/// A token file (mode 0600) in its own directory, which the caller keeps alive.
fn token_file(token: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, path)
}

/// A server with the admin API on a free loopback port; `extra` is more TOML (top-level keys
/// are not possible here: it follows the `[admin]` table).
fn admin_server(users: bool, extra: &str) -> (TestServer, SocketAddr, tempfile::TempDir) {
    let (dir, token) = token_file(TOKEN);
    let opts = Options {
        config: format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n{extra}",
            token.to_str().unwrap()
        ),
        users: if users {
            vec![("alice".into(), "alice-pw".into(), String::new())]
        } else {
            Vec::new()
        },
        ..Options::default()
    };
    let server = TestServer::with(opts);
    let addr = admin_addr(&server);
    (server, addr, dir)
}

fn admin_addr(server: &TestServer) -> SocketAddr {
    server
        .banner
        .lines()
        .find_map(|l| l.strip_prefix("ferroftp: admin API on http://"))
        .and_then(|rest| rest.strip_suffix("/api/v1/"))
        .unwrap_or_else(|| panic!("no admin address in {}", server.banner))
        .parse()
        .unwrap()
}

/// One request with curl: (status, headers, JSON body).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "-D", "-", "-X", method]);
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    cmd.arg(format!("http://{addr}/api/v1{path}"));
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "curl {method} {path} failed: {err}");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let json = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {body:?}"))
    };
    (status, head.to_ascii_lowercase(), json)
}

/// A request with the right token that must answer `want`; the body.
fn ok(addr: SocketAddr, method: &str, path: &str, body: Option<&str>, want: u16) -> Value {
    let (status, _, json) = call(addr, method, path, Some(TOKEN), body);
    assert_eq!(status, want, "{method} {path} -> {status} {json}");
    json
}

/// An error answer: the status and the JSON shape `{"error", "reason"}`; the reason.
fn error(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    want: u16,
) -> String {
    let (status, head, json) = call(addr, method, path, token, body);
    assert_eq!(status, want, "{method} {path} -> {status} {json}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(json["error"].is_string(), "{json}");
    json["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason: {json}"))
        .to_string()
}

fn sessions(addr: SocketAddr) -> Vec<Value> {
    ok(addr, "GET", "/sessions", None, 200)
        .as_array()
        .unwrap()
        .clone()
}

/// The session whose peer is `peer` (the FTP client's own address).
fn session_of(addr: SocketAddr, peer: SocketAddr) -> Option<Value> {
    sessions(addr)
        .into_iter()
        .find(|s| s["peer"] == peer.to_string())
}

#[test]
fn requests_without_the_right_token_are_refused_and_change_nothing() {
    let (server, addr, _token) = admin_server(true, "");
    let mut ftp = server.login();
    let peer = ftp.stream.local_addr().unwrap();
    let users_file = server.dir.path().join("users.toml");
    let users_before = std::fs::read_to_string(&users_file).unwrap();

    for token in [None, Some("wrong"), Some("")] {
        for (method, path, body) in [
            ("GET", "/status", None),
            ("GET", "/sessions", None),
            ("DELETE", "/sessions/1", None),
            (
                "POST",
                "/users",
                Some(r#"{"name":"mallory","password":"x"}"#),
            ),
            ("POST", "/users/alice/disable", None),
            ("DELETE", "/bans/127.0.0.1", None),
            ("POST", "/reload", None),
            ("GET", "/no/such/route", None),
        ] {
            let (status, head, json) = call(addr, method, path, token, body);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {json}");
            assert!(head.contains("www-authenticate: bearer"), "{head}");
            assert_eq!(json["error"], "unauthorized", "{json}");
            assert!(json["reason"].as_str().unwrap().contains("token"), "{json}");
        }
    }
    // Another scheme is no bearer token either.
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-u",
        "admin:x",
    ])
    .arg(format!("http://{addr}/api/v1/status"));
    assert_eq!(run(&mut cmd).1, "401");

    // Nothing changed: the session lives, the users file is the same, no reload happened.
    ftp.cmd_ok("NOOP", 200);
    assert_eq!(std::fs::read_to_string(&users_file).unwrap(), users_before);
    let status = ok(addr, "GET", "/status", None, 200);
    assert_eq!(status["config_generation"], 0, "{status}");
    assert!(session_of(addr, peer).is_some());
    // Each refusal is logged with the client's address.
    let log = server.wait_for_log("admin API: request refused", 5);
    assert!(
        log.lines()
            .any(|l| l.contains("admin API: request refused") && l.contains("peer=127.0.0.1:")),
        "{log}"
    );
    // The OpenAPI document is public; it is valid JSON.
    let (status, _, doc) = call(addr, "GET", "/openapi.json", None, None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
}

#[test]
fn status_and_sessions_show_who_is_connected_and_a_transfer_in_progress() {
    let (server, addr, _token) = admin_server(true, "");
    let status = ok(addr, "GET", "/status", None, 200);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["users"], 1);
    assert_eq!(status["sessions"], 0);
    assert_eq!(status["config_generation"], 0);
    assert_eq!(status["listeners"][0]["address"], server.addr.to_string());
    assert_eq!(status["listeners"][0]["mode"], "explicit");
    assert!(status["started_at"].as_str().unwrap().ends_with('Z'));

    // Before login: listed without a user.
    let mut anon = server.connect();
    let anon_peer = anon.stream.local_addr().unwrap();
    let s = session_of(addr, anon_peer).expect("session before login");
    assert_eq!(s["user"], Value::Null);
    assert_eq!(s["tls"], Value::Null);
    assert_eq!(s["transfer"], Value::Null);
    assert_eq!(s["local"], server.addr.to_string());
    anon.cmd_ok("QUIT", 221);
    drop(anon);
    wait_for("the first session to end", Duration::from_secs(10), || {
        session_of(addr, anon_peer).is_none()
    });

    // A download that the client reads slowly (not at all, here).
    let size: u64 = 64 << 20;
    let f = std::fs::File::create(server.root.join("big.bin")).unwrap();
    f.set_len(size).unwrap();
    let mut ftp = server.connect();
    ftp.login("alice", "alice-pw");
    let peer = ftp.stream.local_addr().unwrap();
    let s = session_of(addr, peer).expect("logged-in session");
    assert_eq!(s["user"], "alice");
    assert_eq!(s["mode"], "explicit");
    assert_eq!(s["data_protection"], "clear");
    let id = s["id"].as_u64().unwrap();
    assert_eq!(
        ok(addr, "GET", &format!("/sessions/{id}"), None, 200)["id"],
        id
    );
    ftp.cmd_ok("TYPE I", 200);
    let data = ftp.pasv_connect();
    ftp.cmd_ok("RETR big.bin", 150);
    let mut transfer = Value::Null;
    wait_for("the transfer's progress", Duration::from_secs(10), || {
        transfer = session_of(addr, peer).unwrap()["transfer"].clone();
        transfer["bytes"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(transfer["verb"], "RETR", "{transfer}");
    assert_eq!(transfer["path"], "/big.bin", "{transfer}");
    assert_eq!(transfer["direction"], "download", "{transfer}");
    assert_eq!(transfer["total"], size, "{transfer}");
    assert!(transfer["bytes"].as_u64().unwrap() < size, "{transfer}");
    assert_eq!(ok(addr, "GET", "/status", None, 200)["sessions"], 1);
    assert_eq!(sessions(addr).len(), 1);

    // Kicked in the middle of it: 426 for the transfer, 421, closed; gone from the list.
    let kicked = ok(addr, "DELETE", &format!("/sessions/{id}"), None, 200);
    assert_eq!(kicked["closed"], true, "{kicked}");
    assert_eq!(kicked["session"]["user"], "alice", "{kicked}");
    assert_eq!(ftp.reply().0, 426);
    let (code, text) = ftp.reply();
    assert_eq!(code, 421, "{text}");
    assert!(ftp.is_closed());
    drop(data);
    assert!(session_of(addr, peer).is_none());
    let reason = error(
        addr,
        "GET",
        &format!("/sessions/{id}"),
        Some(TOKEN),
        None,
        404,
    );
    assert!(reason.contains(&id.to_string()), "{reason}");
    error(
        addr,
        "DELETE",
        &format!("/sessions/{id}"),
        Some(TOKEN),
        None,
        404,
    );
    error(addr, "GET", "/sessions/abc", Some(TOKEN), None, 400);
    server.wait_for_log("closed by an administrator", 5);
}

#[test]
fn a_kicked_upload_is_discarded_like_any_interrupted_upload() {
    let (server, addr, _token) = admin_server(true, "");
    let mut ftp = server.connect();
    ftp.login("alice", "alice-pw");
    let peer = ftp.stream.local_addr().unwrap();
    ftp.cmd_ok("TYPE I", 200);
    let mut data = ftp.pasv_connect();
    ftp.cmd_ok("STOR partial.bin", 150);
    data.write_all(&vec![7u8; 256 * 1024]).unwrap();
    let mut id = 0;
    wait_for("the upload's progress", Duration::from_secs(10), || {
        let s = session_of(addr, peer).unwrap();
        id = s["id"].as_u64().unwrap();
        s["transfer"]["bytes"].as_u64().unwrap_or(0) > 0
    });
    let s = session_of(addr, peer).unwrap();
    assert_eq!(s["transfer"]["direction"], "upload", "{s}");
    assert_eq!(s["transfer"]["total"], Value::Null, "{s}");
    ok(addr, "DELETE", &format!("/sessions/{id}"), None, 200);
    assert_eq!(ftp.reply().0, 426);
    assert_eq!(ftp.reply().0, 421);
    assert!(ftp.is_closed());
    drop(data);
    let left: Vec<_> = std::fs::read_dir(&server.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the unfinished upload left {left:?}");
}

#[test]
fn bans_are_listed_and_lifting_one_lets_the_address_back_in() {
    let (server, addr, _token) = admin_server(
        true,
        "[bans]\nmax_failures = 2\nban_secs = 600\ndelay_ms = 0\n",
    );
    assert_eq!(
        ok(addr, "GET", "/bans", None, 200),
        Value::Array(Vec::new())
    );
    let mut c = server.connect();
    c.cmd_ok("USER alice", 331);
    assert_eq!(c.cmd("PASS wrong").0, 530);
    c.cmd_ok("USER alice", 331);
    // The failure that bans the address closes the session.
    let (code, text) = c.cmd("PASS wrong");
    assert!(code == 530 || code == 421, "{code} {text}");
    let bans = ok(addr, "GET", "/bans", None, 200);
    let ban = &bans[0];
    assert_eq!(ban["address"], "127.0.0.1", "{bans}");
    assert!(ban["seconds_left"].as_u64().unwrap() > 500, "{bans}");
    assert_eq!(ban["times_banned"], 1, "{bans}");
    assert_eq!(ok(addr, "GET", "/status", None, 200)["bans_active"], 1);
    // Banned: turned away at connect.
    let mut probe = std::net::TcpStream::connect(server.addr).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = String::new();
    std::io::Read::read_to_string(&mut probe, &mut greeting).unwrap();
    assert!(greeting.starts_with("421 "), "{greeting}");

    let lifted = ok(addr, "DELETE", "/bans/127.0.0.1", None, 200);
    assert_eq!(lifted["kind"], "address");
    assert_eq!(
        ok(addr, "GET", "/bans", None, 200),
        Value::Array(Vec::new())
    );
    let mut again = server.connect();
    again.login("alice", "alice-pw");
    let reason = error(addr, "DELETE", "/bans/127.0.0.1", Some(TOKEN), None, 404);
    assert!(reason.contains("not banned"), "{reason}");
    // A user name's failure count (it slows that name's replies) can be forgotten too.
    assert_eq!(ok(addr, "DELETE", "/bans/alice", None, 200)["kind"], "user");
    error(addr, "DELETE", "/bans/alice", Some(TOKEN), None, 404);
}

#[test]
fn users_are_added_disabled_and_enabled_through_the_api() {
    let (server, addr, _token) = admin_server(true, "");
    let users_file = server.dir.path().join("users.toml");
    let body = r#"{"name":"bob","password":"bob-secret","permissions":["list","read"]}"#;
    let user = ok(addr, "POST", "/users", Some(body), 201);
    assert_eq!(user["name"], "bob");
    assert_eq!(user["permissions"], serde_json::json!(["list", "read"]));
    assert_eq!(user["disabled"], false);
    // On disk: an argon2id hash, never the password; alice is still there.
    let text = std::fs::read_to_string(&users_file).unwrap();
    assert!(text.contains("name = \"alice\""), "{text}");
    assert!(text.contains("$argon2id$"), "{text}");
    assert!(!text.contains("bob-secret"), "{text}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&users_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "users file mode {mode:o}");
    }
    assert!(!server.log().contains("bob-secret"));
    // In force at once: bob logs in, read-only.
    let mut bob = server.connect();
    bob.login("bob", "bob-secret");
    assert_eq!(bob.cmd("MKD x").0, 550);
    let bob_peer = bob.stream.local_addr().unwrap();

    // Bad requests.
    let reason = error(addr, "POST", "/users", Some(TOKEN), Some(body), 409);
    assert!(reason.contains("exists"), "{reason}");
    error(addr, "POST", "/users", Some(TOKEN), Some("{not json"), 400);
    error(
        addr,
        "POST",
        "/users",
        Some(TOKEN),
        Some(r#"{"name":"c"}"#),
        400,
    );
    error(
        addr,
        "POST",
        "/users",
        Some(TOKEN),
        Some(r#"{"name":"c d","password":"x"}"#),
        400,
    );
    error(
        addr,
        "POST",
        "/users",
        Some(TOKEN),
        Some(r#"{"name":"c","password":"x","colour":"red"}"#),
        400,
    );
    error(
        addr,
        "POST",
        "/users/nobody/disable",
        Some(TOKEN),
        None,
        404,
    );
    error(addr, "PUT", "/users", Some(TOKEN), None, 405);

    // Disabled: bob's open (idle) session is logged out at once, and he cannot log in.
    let user = ok(addr, "POST", "/users/bob/disable", None, 200);
    assert_eq!(user["disabled"], true);
    let (code, text) = bob.reply();
    assert_eq!(code, 421, "{text}");
    assert!(bob.is_closed());
    wait_for("bob's session to end", Duration::from_secs(10), || {
        session_of(addr, bob_peer).is_none()
    });
    let mut c = server.connect();
    c.cmd_ok("USER bob", 331);
    assert_eq!(c.cmd("PASS bob-secret").0, 530);
    assert!(
        std::fs::read_to_string(&users_file)
            .unwrap()
            .contains("disabled = true")
    );
    // Enabled again.
    assert_eq!(
        ok(addr, "POST", "/users/bob/enable", None, 200)["disabled"],
        false
    );
    let mut bob = server.connect();
    bob.login("bob", "bob-secret");
    // A hash made elsewhere is taken as it is.
    let hash = text_hash_of(&users_file, "alice");
    ok(
        addr,
        "POST",
        "/users",
        Some(&format!(
            r#"{{"name":"carol","password_hash":"{hash}","home":"carol"}}"#
        )),
        201,
    );
    std::fs::create_dir(server.root.join("carol")).unwrap();
    server.connect().login("carol", "alice-pw");
}

#[test]
fn users_are_listed_shown_changed_and_deleted_through_the_api() {
    let (server, addr, _token) = admin_server(true, "");
    let users_file = server.dir.path().join("users.toml");
    ok(
        addr,
        "POST",
        "/users",
        Some(r#"{"name":"bob","password":"bob-secret"}"#),
        201,
    );
    let list = ok(addr, "GET", "/users", None, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(!list.to_string().contains("argon2"), "{list}");
    assert_eq!(ok(addr, "GET", "/users/bob", None, 200)["name"], "bob");
    error(addr, "GET", "/users/nobody", Some(TOKEN), None, 404);

    // Permissions change applies to bob's open session from its next command.
    let mut bob = server.connect();
    bob.login("bob", "bob-secret");
    bob.cmd_ok("MKD made", 257);
    let user = ok(
        addr,
        "PATCH",
        "/users/bob",
        Some(r#"{"permissions":["list","read"],"tls_policy":"optional"}"#),
        200,
    );
    assert_eq!(user["permissions"], serde_json::json!(["list", "read"]));
    assert_eq!(bob.cmd("MKD other").0, 550);
    // A new password: the old one no longer logs in.
    ok(
        addr,
        "PATCH",
        "/users/bob",
        Some(r#"{"password":"bob-new"}"#),
        200,
    );
    let mut c = server.connect();
    c.cmd_ok("USER bob", 331);
    assert_eq!(c.cmd("PASS bob-secret").0, 530);
    server.connect().login("bob", "bob-new");
    // Bad changes change nothing.
    let before = std::fs::read_to_string(&users_file).unwrap();
    error(addr, "PATCH", "/users/bob", Some(TOKEN), Some("{}"), 400);
    error(
        addr,
        "PATCH",
        "/users/bob",
        Some(TOKEN),
        Some(r#"{"permissions":["fly"]}"#),
        400,
    );
    error(
        addr,
        "PATCH",
        "/users/bob",
        Some(TOKEN),
        Some(r#"{"password":"a","password_hash":"b"}"#),
        400,
    );
    error(
        addr,
        "PATCH",
        "/users/nobody",
        Some(TOKEN),
        Some(r#"{"disabled":true}"#),
        404,
    );
    assert_eq!(std::fs::read_to_string(&users_file).unwrap(), before);

    // Deleted: bob's open session is logged out, he cannot log in, alice stays.
    assert_eq!(
        ok(addr, "DELETE", "/users/bob", None, 200)["deleted"],
        "bob"
    );
    let (code, text) = bob.reply();
    assert_eq!(code, 421, "{text}");
    let mut c = server.connect();
    c.cmd_ok("USER bob", 331);
    assert_eq!(c.cmd("PASS bob-new").0, 530);
    let text = std::fs::read_to_string(&users_file).unwrap();
    assert!(!text.contains("bob") && text.contains("alice"), "{text}");
    error(addr, "DELETE", "/users/bob", Some(TOKEN), None, 404);
    server.connect().login("alice", "alice-pw");
}

#[test]
fn a_new_users_missing_home_inside_the_root_is_created_at_first_login() {
    use std::os::unix::fs::PermissionsExt;
    // Homes outside the root are allowed here, so that the API takes them and the login
    // shows that the server still creates none there (without the opt-in the API answers 400:
    // audit_auth.rs).
    let (server, addr, _token) = admin_server(true, "[auth]\nallow_homes_outside_root = true\n");
    let body = r#"{"name":"dave","password":"dave-pw","home":"homes/dave"}"#;
    ok(addr, "POST", "/users", Some(body), 201);
    let home = server.root.join("homes/dave");
    assert!(!home.exists());
    let mut dave = server.connect();
    dave.login("dave", "dave-pw");
    dave.cmd_ok("MKD inside", 257);
    let mode = std::fs::metadata(&home).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o750, "mode {mode:o}");
    assert!(home.join("inside").is_dir());
    // Outside the root: not created, login refused as before.
    let outside = tempfile::tempdir().unwrap();
    let elsewhere = outside.path().join("erin");
    let body = format!(
        r#"{{"name":"erin","password":"erin-pw","home":{:?}}}"#,
        elsewhere.to_str().unwrap()
    );
    ok(addr, "POST", "/users", Some(&body), 201);
    let mut erin = server.connect();
    erin.cmd_ok("USER erin", 331);
    assert_eq!(erin.cmd("PASS erin-pw").0, 530);
    assert!(!elsewhere.exists());
    // Nor through a symlink that leaves the root.
    std::os::unix::fs::symlink(outside.path(), server.root.join("link")).unwrap();
    ok(
        addr,
        "POST",
        "/users",
        Some(r#"{"name":"finn","password":"finn-pw","home":"link/finn"}"#),
        201,
    );
    let mut finn = server.connect();
    finn.cmd_ok("USER finn", 331);
    assert_eq!(finn.cmd("PASS finn-pw").0, 530);
    assert!(!outside.path().join("finn").exists());
}

/// The password hash of `name` in a users file.
fn text_hash_of(users_file: &Path, name: &str) -> String {
    let table: toml::Table = std::fs::read_to_string(users_file)
        .unwrap()
        .parse()
        .unwrap();
    table["user"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"].as_str() == Some(name))
        .unwrap()["password"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn without_a_users_file_users_cannot_be_changed() {
    let (_server, addr, _token) = admin_server(false, "");
    let body = r#"{"name":"bob","password":"x"}"#;
    let reason = error(addr, "POST", "/users", Some(TOKEN), Some(body), 409);
    assert!(reason.contains("users_file"), "{reason}");
    error(addr, "POST", "/users/ferro/disable", Some(TOKEN), None, 409);
}

#[test]
fn reload_applies_a_change_refuses_a_bad_config_and_rereads_the_token() {
    let (server, addr, token_dir) = admin_server(true, "");
    let config = server.dir.path().join("ferroftp.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("greeting = \"changed by reload\"\n{original}"),
    )
    .unwrap();
    let reloaded = ok(addr, "POST", "/reload", None, 200);
    assert_eq!(reloaded["config_generation"], 1, "{reloaded}");
    assert!(
        reloaded["summary"].as_str().unwrap().contains("users"),
        "{reloaded}"
    );
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 64];
    let n = std::io::Read::read(&mut s, &mut greeting).unwrap();
    assert!(
        String::from_utf8_lossy(&greeting[..n]).contains("changed by reload"),
        "{:?}",
        String::from_utf8_lossy(&greeting[..n])
    );

    // A bad configuration is refused whole, with the reason; the old one stays.
    std::fs::write(
        &config,
        format!("{original}[limits]\nidle_timeout_secs = 0\n"),
    )
    .unwrap();
    let reason = error(addr, "POST", "/reload", Some(TOKEN), None, 422);
    assert!(reason.contains("limits.idle_timeout_secs"), "{reason}");
    assert_eq!(
        ok(addr, "GET", "/status", None, 200)["config_generation"],
        1
    );

    // A new token in the file: a reload (here SIGHUP) puts it in force.
    std::fs::write(&config, &original).unwrap();
    std::fs::write(token_dir.path().join("admin.token"), "the-new-token\n").unwrap();
    server.signal("HUP");
    wait_for("the new token", Duration::from_secs(10), || {
        call(addr, "GET", "/status", Some("the-new-token"), None).0 == 200
    });
    assert_eq!(call(addr, "GET", "/status", Some(TOKEN), None).0, 401);
}

#[test]
fn the_admin_keys_are_checked_at_start_with_the_key_named() {
    let (dir, token) = token_file(TOKEN);
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let serve = |args: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(&root)
            .args(args);
        let (ok, out, err) = run(&mut cmd);
        assert!(!ok, "the server started: {out}");
        err
    };
    let t = token.to_str().unwrap();
    // Not loopback without allow_remote.
    let err = serve(&["--admin-listen", "0.0.0.0:0", "--admin-token-file", t]);
    assert!(
        err.contains("admin.listen") && err.contains("allow_remote"),
        "{err}"
    );
    // No token file.
    let err = serve(&["--admin-listen", "127.0.0.1:0"]);
    assert!(err.contains("admin.token_file"), "{err}");
    let missing = dir.path().join("missing");
    let err = serve(&[
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token-file",
        missing.to_str().unwrap(),
    ]);
    assert!(err.contains("admin.token_file"), "{err}");
    // An empty one.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let err = serve(&[
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token-file",
        empty.to_str().unwrap(),
    ]);
    assert!(
        err.contains("empty") && err.contains("admin.token_file"),
        "{err}"
    );

    // check-config says the same.
    let file = dir.path().join("remote.toml");
    std::fs::write(
        &file,
        format!("[admin]\nlisten = \"192.0.2.1:9022\"\ntoken_file = {t:?}\n"),
    )
    .unwrap();
    let (ok, _, err) = run(Command::new(bin()).arg("check-config").arg(&file));
    assert!(!ok && err.contains("admin.listen"), "{err}");
    std::fs::write(
        &file,
        format!(
            "[admin]\nlisten = \"127.0.0.1:9022\"\ntoken_file = {:?}\n",
            empty.to_str().unwrap()
        ),
    )
    .unwrap();
    let (ok, _, err) = run(Command::new(bin()).arg("check-config").arg(&file));
    assert!(!ok && err.contains("admin.token_file"), "{err}");
    // Off by default.
    let server = TestServer::start();
    assert!(!server.banner.contains("admin API"), "{}", server.banner);
}

#[test]
fn every_operation_in_the_openapi_document_is_served() {
    let (_server, addr, _token) = admin_server(true, "");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/admin-api.openapi.json"),
    )
    .unwrap();
    let doc: Value = serde_json::from_str(&text).expect("the OpenAPI document is JSON");
    let (_, _, served) = call(addr, "GET", "/openapi.json", None, None);
    assert_eq!(
        served, doc,
        "the server serves the document in the repository"
    );
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 9);
    for (path, ops) in paths {
        let path = path
            .strip_prefix("/api/v1")
            .unwrap()
            .replace("{id}", "999999")
            .replace("{key}", "203.0.113.9")
            .replace("{name}", "nobody");
        for (method, op) in ops.as_object().unwrap() {
            assert!(op["responses"].is_object(), "{method} {path}: no responses");
            let method = method.to_ascii_uppercase();
            let (status, _, json) = call(addr, &method, &path, Some(TOKEN), None);
            assert_ne!(status, 405, "{method} {path} is not served: {json}");
            assert!(
                !(status == 404
                    && json["reason"]
                        .as_str()
                        .unwrap_or("")
                        .contains("no such endpoint")),
                "{method} {path} is not served: {json}"
            );
            // Every answer is JSON; errors have the documented shape.
            if status >= 400 {
                assert!(
                    json["error"].is_string() && json["reason"].is_string(),
                    "{json}"
                );
            }
        }
    }
}
