//! Packaging: the systemd unit (and its sysusers.d / tmpfiles.d files) in contrib/systemd,
//! checked with systemd's own tools where they are installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, run};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn contrib(name: &str) -> PathBuf {
    repo().join("contrib/systemd").join(name)
}

fn unit_text() -> String {
    std::fs::read_to_string(contrib("ferroftp.service")).unwrap()
}

/// Whether `program` runs at all (`--version`); prints why a test is skipped otherwise.
fn have(program: &str, test: &str) -> bool {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => true,
        _ => {
            eprintln!("SKIP {test}: {program} is not installed");
            false
        }
    }
}

/// The values of `key=` lines in the unit, in order.
fn values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// A copy of the unit whose ExecStart runs the binary under test (systemd-analyze verify
/// checks that the program exists).
fn unit_for_test(dir: &Path) -> PathBuf {
    let text = unit_text().replace("/usr/local/bin/ferroftp", bin());
    assert!(text.contains(&format!("ExecStart={} serve", bin())));
    let path = dir.join("ferroftp.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_unit_outlives_the_shutdown_grace_and_keeps_only_the_bind_capability() {
    let unit = unit_text();
    let grace = ferroftp::config::Config::default()
        .limits
        .shutdown_grace_secs;
    let stop: u64 = values(&unit, "TimeoutStopSec")[0].parse().unwrap();
    assert!(
        stop > grace,
        "TimeoutStopSec={stop} must exceed limits.shutdown_grace_secs ({grace})"
    );
    assert_eq!(values(&unit, "KillSignal"), ["SIGTERM"]);
    assert_eq!(values(&unit, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(
        values(&unit, "ExecStart"),
        ["/usr/local/bin/ferroftp serve --config /etc/ferroftp/ferroftp.toml"]
    );
    assert_eq!(
        values(&unit, "AmbientCapabilities"),
        ["CAP_NET_BIND_SERVICE"]
    );
    assert_eq!(
        values(&unit, "CapabilityBoundingSet"),
        ["CAP_NET_BIND_SERVICE"]
    );
    assert_eq!(values(&unit, "User"), ["ferroftp"]);
    assert_eq!(values(&unit, "ProtectSystem"), ["strict"]);
    assert_eq!(values(&unit, "ReadWritePaths"), ["/srv/ftp"]);
    assert_eq!(values(&unit, "LogsDirectory"), ["ferroftp"]);
    for key in [
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ] {
        assert_eq!(values(&unit, key), ["yes"], "{key}");
    }
    // ReadWritePaths must follow the config's `root`: the unit says so.
    assert!(unit.contains("If the FTP root is not /srv/ftp"));
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let test = "systemd_analyze_verifies_the_unit";
    if !have("systemd-analyze", test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    // --man=no: the Documentation= pages are only there once installed (`ferroftp man`).
    let (ok, out, err) = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit));
    assert!(ok, "systemd-analyze verify failed:\n{out}{err}");
    // Nothing to say about a good unit (warnings go to stderr).
    assert!(
        err.trim().is_empty(),
        "systemd-analyze verify warned:\n{err}"
    );

    // The check can fail: a misspelt directive is reported.
    let broken = dir.path().join("broken.service");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&unit)
            .unwrap()
            .replace("ProtectHome=", "ProtectHomes="),
    )
    .unwrap();
    let (_, out, err) = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&broken));
    assert!(
        format!("{out}{err}").contains("ProtectHomes"),
        "a bad key went unnoticed:\n{out}{err}"
    );
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok() {
    let test = "systemd_analyze_security_rates_the_unit_ok";
    if !have("systemd-analyze", test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    // --offline (systemd 252+) rates a unit file without a running systemd.
    let (_, out, err) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--man=no", "--no-pager"])
        .arg(&unit));
    let Some(line) = out.lines().find(|l| l.contains("Overall exposure level")) else {
        eprintln!("SKIP {test}: this systemd-analyze cannot rate a unit file offline:\n{err}");
        return;
    };
    let score: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {line:?}"));
    println!("systemd-analyze security: {}", line.trim());
    // 0 is fully locked down, 10 is unprotected; below 2 systemd calls it "OK". The server
    // needs the network and one capability, so it cannot reach 0.
    assert!(score < 2.0, "the unit's exposure grew to {score}:\n{out}");
}

#[test]
fn sysusers_and_tmpfiles_create_the_user_and_directories() {
    let test = "sysusers_and_tmpfiles_create_the_user_and_directories";
    if !have("systemd-sysusers", test) || !have("systemd-tmpfiles", test) {
        return;
    }
    // Into an empty root, not this machine's.
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    for f in ["passwd", "group", "shadow", "gshadow"] {
        std::fs::write(etc.join(f), "").unwrap();
    }
    let (ok, out, err) = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(contrib("ferroftp.sysusers")));
    assert!(ok, "systemd-sysusers failed:\n{out}{err}");
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap();
    let entry = passwd
        .lines()
        .find(|l| l.starts_with("ferroftp:"))
        .unwrap_or_else(|| panic!("no ferroftp user:\n{passwd}"));
    let fields: Vec<&str> = entry.split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid > 0 && uid < 1000, "a system user: {entry}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{entry}");

    let (ok, out, err) = run(Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(contrib("ferroftp.tmpfiles")));
    assert!(ok, "systemd-tmpfiles failed:\n{out}{err}");
    use std::os::unix::fs::MetadataExt;
    let meta = |p: &str| std::fs::metadata(root.path().join(p)).unwrap();
    assert_eq!(meta("srv/ftp").uid(), uid, "the server writes uploads");
    assert_eq!(meta("var/log/ferroftp").uid(), uid);
    assert_eq!(meta("etc/ferroftp").uid(), 0, "root owns the configuration");
    assert_eq!(meta("etc/ferroftp").mode() & 0o777, 0o750);
}
