//! The production recipe end to end, as README's "Running on ports 21 and 990" gives it: a real
//! unprivileged system user made for the test, the directories of the shipped
//! contrib/systemd/ferroftp.tmpfiles (under a temporary prefix) with their owners and modes,
//! `passwd` and `import-users` run as root, the server run as that user, then: logins, a
//! SIGHUP reload after `passwd` added a user, a login with a migrated bcrypt hash (upgraded
//! in place, the file keeping its owner, group and mode), the admin API adding, changing and
//! deleting a user (and naming the error when the users file cannot be written), the shipped
//! contrib/logrotate config run by the real logrotate, and `doctor` as the service's user.
//!
//! Needs root (to create the user and switch to it); CI runs as root. Without root it fails
//! when CI=true and is skipped otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, is_root, repo, run, run_with_input};
use serde_json::Value;

const TOKEN: &str = "production-test-token-0123456789";
/// A bcrypt hash of "carol-pw" (as in tests/migration.rs).
const CAROL_BCRYPT: &str = "$2b$05$CarolSaltCarolSaltCareNveiyKdSda/yYKeG7KONPgtKNQ5fBfu";

/// The system user, the server running as it and the temporary tree; all removed on drop,
/// also when an assertion fails.
struct Setup {
    user: String,
    uid: u32,
    gid: u32,
    dir: tempfile::TempDir,
    server: Option<Child>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("userdel").arg(&self.user).status();
        let _ = Command::new("groupdel")
            .arg(&self.user)
            .stderr(Stdio::null())
            .status();
    }
}

impl Setup {
    /// `path` (absolute, as in the contrib files) under the test's prefix.
    fn at(&self, path: &str) -> PathBuf {
        self.dir.path().join(path.trim_start_matches('/'))
    }

    /// A command run as the service's user, its groups included, as systemd's User= would.
    fn as_service(&self, program: &str) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.user))
            .arg(format!("--regid={}", self.user))
            .arg("--init-groups")
            .arg(program);
        cmd
    }

    fn owner_and_mode(&self, path: &Path) -> (u32, u32, u32) {
        let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        (m.uid(), m.gid(), m.mode() & 0o7777)
    }
}

fn id(flag: &str, user: &str) -> u32 {
    let (ok, out, err) = run(Command::new("id").arg(flag).arg(user));
    assert!(ok, "id {flag} {user}: {err}");
    out.trim().parse().unwrap()
}

/// Create the user and lay out the contrib tmpfiles directories under a temporary prefix.
fn setup() -> Setup {
    let user = format!("fftest{}", std::process::id() % 1_000_000);
    let (ok, _, err) = run(Command::new("useradd").args([
        "--system",
        "--no-create-home",
        "--user-group",
        "--shell",
        "/usr/sbin/nologin",
        &user,
    ]));
    assert!(ok, "useradd failed: {err}");
    let dir = tempfile::tempdir().unwrap();
    // The service's user must be able to reach the tree, as it reaches / on a real host.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = Setup {
        uid: id("-u", &user),
        gid: id("-g", &user),
        user,
        dir,
        server: None,
    };
    let tmpfiles =
        std::fs::read_to_string(repo().join("contrib/systemd/ferroftp.tmpfiles")).unwrap();
    let mut made = 0;
    for line in tmpfiles.lines().filter(|l| l.starts_with("d ")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let path = s.at(f[1]);
        std::fs::create_dir_all(&path).unwrap();
        let who = |name: &str, service: u32| if name == "ferroftp" { service } else { 0 };
        std::os::unix::fs::chown(&path, Some(who(f[3], s.uid)), Some(who(f[4], s.gid))).unwrap();
        let mode = u32::from_str_radix(f[2], 8).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        made += 1;
    }
    assert!(made >= 4, "the tmpfiles entries:\n{tmpfiles}");
    s
}

/// `ferroftp passwd` as root, password on stdin, a cheap hash for speed.
fn passwd(s: &Setup, name: &str, password: &str, home: Option<&str>) -> String {
    let mut cmd = Command::new(bin());
    cmd.args(["passwd", "--users"])
        .arg(s.at("/var/lib/ferroftp/users.toml"))
        .arg(name)
        .args(["--argon2-memory", "1024", "--argon2-iterations", "1"]);
    if let Some(h) = home {
        cmd.args(["--home", h]);
    }
    let out = run_with_input(&mut cmd, format!("{password}\n").as_bytes());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "passwd {name}: {err}");
    err
}

fn log(s: &Setup) -> String {
    std::fs::read_to_string(s.at("/server.log")).unwrap_or_default()
}

/// Wait until the server's log holds `needle` at least `count` times.
fn wait_for_log(s: &Setup, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while log(s).matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "the log never showed {needle:?} {count} times:\n{}",
            log(s)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reloads(s: &Setup) -> usize {
    log(s).matches("configuration reloaded").count()
}

/// curl over FTP; (success, stdout, stderr).
fn ftp(
    port: u16,
    user: &str,
    password: &str,
    path: &str,
    upload: Option<&Path>,
) -> (bool, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "20",
        "-u",
        &format!("{user}:{password}"),
    ]);
    if let Some(file) = upload {
        cmd.arg("-T").arg(file);
    }
    run(cmd.arg(format!("ftp://127.0.0.1:{port}/{path}")))
}

/// One admin API request: (status, JSON body).
fn api(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "30",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ])
    .arg("-H")
    .arg(format!("Authorization: Bearer {TOKEN}"));
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let (ok, out, err) = run(cmd.arg(format!("http://127.0.0.1:{port}/api/v1{path}")));
    assert!(ok, "curl {method} {path}: {err}");
    let (body, status) = out.rsplit_once('\n').unwrap();
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status.trim().parse().unwrap(), json)
}

/// The FAIL lines of doctor's checklist.
fn fails(out: &str) -> Vec<&str> {
    common::lines_with(out, "FAIL", "")
}

/// The password hash of `name` in the users file.
fn hash_of(users: &Path, name: &str) -> String {
    let table: toml::Table = std::fs::read_to_string(users).unwrap().parse().unwrap();
    table["user"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"].as_str() == Some(name))
        .map(|u| u["password"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[test]
fn the_production_recipe_works_as_an_unprivileged_service_user() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "tests/production.rs needs root (it creates a system user and runs the server as it); CI must run it as root"
        );
        eprintln!("skipped: tests/production.rs needs root");
        return;
    }
    let mut s = setup();
    let users = s.at("/var/lib/ferroftp/users.toml");
    let config = s.at("/etc/ferroftp/ferroftp.toml");
    let token = s.at("/etc/ferroftp/admin.token");
    let xferlog = s.at("/var/log/ferroftp/xferlog");

    // The configuration: README's keys, on loopback ports for the test. root:ferroftp 0640.
    std::fs::write(
        &config,
        format!(
            "root = {:?}\nusers_file = {:?}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\
             [log]\nxferlog = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n",
            s.at("/srv/ftp"),
            users,
            xferlog,
            token
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(&config, Some(0), Some(s.gid)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    // The admin token: the service's own, 0600 (README: chown ferroftp).
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::os::unix::fs::chown(&token, Some(s.uid), Some(s.gid)).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();

    // passwd as root makes the file like its directory: the service's, 0600.
    let said = passwd(&s, "alice", "alice-pw", Some("alice"));
    assert!(said.contains("first login"), "{said}");
    assert_eq!(s.owner_and_mode(&users), (s.uid, s.gid, 0o600));
    // An administrator's chmod stays through every later write.
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o640)).unwrap();
    let want = (s.uid, s.gid, 0o640);

    // import-users as root: a ProFTPD account with a bcrypt hash, home under the root.
    let proftpd = s.at("/ftpd.passwd");
    std::fs::write(
        &proftpd,
        format!("carol:{CAROL_BCRYPT}:2001:2001::/home/carol:/bin/false\n"),
    )
    .unwrap();
    // With the server's configuration (-c), so that each home is checked against its root.
    let (ok, out, err) = run(Command::new(bin())
        .args(["import-users", "-c"])
        .arg(&config)
        .arg("--users")
        .arg(&users)
        .arg("--proftpd")
        .arg(&proftpd)
        .arg("--home-root")
        .arg(s.at("/srv/ftp")));
    assert!(ok, "import-users: {out}{err}");
    assert_eq!(s.owner_and_mode(&users), want, "after import-users");

    // doctor as the service's user: nothing FAILs.
    let (ok, out, err) = run(s.as_service(bin()).arg("doctor").arg("-c").arg(&config));
    assert!(
        ok && fails(&out).is_empty(),
        "doctor as the service:\n{out}{err}"
    );
    assert!(
        out.contains("does not exist yet: the server creates it"),
        "{out}"
    );

    // The server as the service's user.
    let log_file = std::fs::File::create(s.at("/server.log")).unwrap();
    let mut child = s
        .as_service(bin())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    s.server = Some(child);
    let (mut ftp_port, mut api_port) = (0u16, 0u16);
    let mut lines = BufReader::new(stdout).lines();
    while ftp_port == 0 {
        let Some(Ok(line)) = lines.next() else {
            panic!("the server ended before listening:\n{}", log(&s));
        };
        let port = |rest: &str| -> u16 {
            rest.split(['/', ' '])
                .next()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        if let Some(rest) = line.strip_prefix("ferroftp: admin API on http://") {
            api_port = port(rest);
        }
        if let Some(rest) = line.strip_prefix("ferroftp: listening on ") {
            ftp_port = port(rest);
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert_ne!(api_port, 0);

    // alice logs in; her home is made at the first login, by and for the service.
    let upload = s.at("/upload.txt");
    std::fs::write(&upload, "first\n").unwrap();
    let (ok, _, err) = ftp(ftp_port, "alice", "alice-pw", "", Some(&upload));
    assert!(ok, "alice's upload: {err}\n{}", log(&s));
    let home = s.at("/srv/ftp/alice");
    assert_eq!(s.owner_and_mode(&home), (s.uid, s.gid, 0o750));
    assert!(home.join("upload.txt").is_file());

    // passwd adds bob while the server runs; SIGHUP puts him in force.
    let before = reloads(&s);
    passwd(&s, "bob", "bob-pw", None);
    assert_eq!(s.owner_and_mode(&users), want, "after passwd");
    assert!(run(Command::new("kill").args(["-HUP", &pid.to_string()])).0);
    wait_for_log(&s, "configuration reloaded", before + 1);
    let (ok, _, err) = ftp(ftp_port, "bob", "bob-pw", "", None);
    assert!(ok, "bob after the reload: {err}\n{}", log(&s));

    // carol's bcrypt hash is upgraded at her login, by the service, in place.
    let (ok, _, err) = ftp(ftp_port, "carol", "carol-pw", "", None);
    assert!(ok, "carol: {err}\n{}", log(&s));
    wait_for_log(&s, "password hash upgraded", 1);
    assert!(hash_of(&users, "carol").starts_with("$argon2id$"));
    assert_eq!(s.owner_and_mode(&users), want, "after the upgrade");
    assert!(
        !log(&s).contains("cannot upgrade the password hash"),
        "{}",
        log(&s)
    );

    // The admin API adds, changes and deletes a user; the file keeps its owner and mode.
    let (status, user) = api(
        api_port,
        "POST",
        "/users",
        Some(r#"{"name":"dave","password":"dave-pw","home":"dave"}"#),
    );
    assert_eq!(status, 201, "{user}\n{}", log(&s));
    assert!(ftp(ftp_port, "dave", "dave-pw", "", None).0);
    let (status, user) = api(
        api_port,
        "PATCH",
        "/users/dave",
        Some(r#"{"permissions":["list","read"]}"#),
    );
    assert_eq!(
        (status, &user["permissions"]),
        (200, &serde_json::json!(["list", "read"]))
    );
    assert!(
        !ftp(ftp_port, "dave", "dave-pw", "", Some(&upload)).0,
        "dave is read-only"
    );
    let (status, _) = api(api_port, "DELETE", "/users/dave", None);
    assert_eq!(status, 200);
    assert!(!ftp(ftp_port, "dave", "dave-pw", "", None).0);
    assert_eq!(s.owner_and_mode(&users), want, "after the admin API");

    // A state directory the service cannot write: the API names the file and the reason, and
    // doctor (as the service) FAILs naming the directory.
    let state = s.at("/var/lib/ferroftp");
    std::os::unix::fs::chown(&state, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (status, error) = api(
        api_port,
        "POST",
        "/users",
        Some(r#"{"name":"erin","password":"erin-pw"}"#),
    );
    assert_eq!(status, 500, "{error}");
    assert_eq!(error["error"], "users_file_not_writable", "{error}");
    let reason = error["reason"].as_str().unwrap();
    assert!(
        reason.contains(users.to_str().unwrap()) && reason.contains("os error 13"),
        "{reason}"
    );
    assert!(!hash_of(&users, "alice").is_empty() && hash_of(&users, "erin").is_empty());
    let (ok, out, _) = run(s.as_service(bin()).arg("doctor").arg("-c").arg(&config));
    assert!(!ok, "{out}");
    assert!(
        fails(&out)
            .iter()
            .any(|l| l.contains(state.to_str().unwrap())),
        "{out}"
    );
    std::os::unix::fs::chown(&state, Some(s.uid), Some(s.gid)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o750)).unwrap();

    // logrotate with the shipped config, its paths and the reload adapted to the test.
    let shipped = std::fs::read_to_string(repo().join("contrib/logrotate/ferroftp")).unwrap();
    let adapted = shipped
        .replace(
            "/var/log/ferroftp",
            s.at("/var/log/ferroftp").to_str().unwrap(),
        )
        .replace("ferroftp ferroftp", &format!("{0} {0}", s.user))
        .replace(
            "systemctl kill --signal=HUP ferroftp.service",
            &format!("kill -HUP {pid}"),
        );
    assert!(
        adapted.contains(&format!("kill -HUP {pid}")) && adapted.contains(&s.user),
        "{adapted}"
    );
    let conf = s.at("/logrotate.conf");
    std::fs::write(&conf, adapted).unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let lines_before = std::fs::read_to_string(&xferlog).unwrap();
    assert!(lines_before.contains(" alice "), "{lines_before}");
    let before = reloads(&s);
    let (ok, out, err) = run(Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(s.at("/logrotate.state"))
        .arg(&conf));
    assert!(ok, "logrotate failed:\n{out}{err}");
    wait_for_log(&s, "configuration reloaded", before + 1);
    let rotated = s.at("/var/log/ferroftp/xferlog.1");
    assert_eq!(std::fs::read_to_string(&rotated).unwrap(), lines_before);
    assert_eq!(
        s.owner_and_mode(&xferlog),
        (s.uid, s.gid, 0o640),
        "the new transfer log"
    );
    std::fs::write(&upload, "second\n").unwrap();
    assert!(
        ftp(
            ftp_port,
            "bob",
            "bob-pw",
            "after-rotation.txt",
            Some(&upload)
        )
        .0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&xferlog)
        .unwrap()
        .contains("after-rotation.txt")
    {
        assert!(
            Instant::now() < deadline,
            "the transfer after rotation is not in the new file; rotated file:\n{}\nlog:\n{}",
            std::fs::read_to_string(&rotated).unwrap(),
            log(&s)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("after-rotation")
    );

    // In the end, doctor as the service's user again: nothing FAILs.
    let (ok, out, err) = run(s.as_service(bin()).arg("doctor").arg("-c").arg(&config));
    assert!(
        ok && fails(&out).is_empty(),
        "doctor as the service:\n{out}{err}"
    );
    assert!(!log(&s).contains("ERROR"), "{}", log(&s));
}
