//! Packaging: the systemd unit (and its sysusers.d / tmpfiles.d files) in contrib/systemd,
//! checked with systemd's own tools where they are installed, and the man pages from
//! `ferroftp man`, rendered with man where it is installed; the Dockerfile and the image's
//! configuration agree (the image itself is not built: no Docker in CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, repo, run};

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
    // The users file lives in the state directory, which the server may write (hash
    // upgrades, the admin API).
    assert_eq!(values(&unit, "StateDirectory"), ["ferroftp"]);
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
    assert_eq!(
        meta("var/lib/ferroftp").uid(),
        uid,
        "the server rewrites the users file"
    );
    assert_eq!(meta("var/lib/ferroftp").mode() & 0o777, 0o750);
    assert_eq!(meta("etc/ferroftp").uid(), 0, "root owns the configuration");
    assert_eq!(meta("etc/ferroftp").mode() & 0o777, 0o750);
}

// ---- man pages (`ferroftp man`) ------------------------------------------------------------

/// The subcommands that get their own page.
const SUBCOMMANDS: [&str; 8] = [
    "serve",
    "passwd",
    "user",
    "check-config",
    "config",
    "cert",
    "doctor",
    "man",
];

#[test]
fn man_writes_a_page_per_subcommand_with_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let (ok, stdout, err) = run(Command::new(bin()).arg("man").arg("--out").arg(&out));
    assert!(ok, "ferroftp man failed:\n{stdout}{err}");
    let read = |name: &str| {
        std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let top = read("ferroftp.1");
    assert!(top.contains(".TH ferroftp 1"), "{top}");
    for sub in SUBCOMMANDS {
        let page = format!("ferroftp-{sub}.1");
        assert!(stdout.contains(&page), "not reported: {page}\n{stdout}");
        let text = read(&page);
        assert!(text.contains(&format!(".TH ferroftp-{sub} 1")), "{text}");
        // The top page lists it (roff escapes hyphens).
        assert!(
            top.contains(&format!("ferroftp\\-{}(1)", sub.replace('-', "\\-"))),
            "ferroftp.1 does not list {sub}:\n{top}"
        );
    }
    for section in ["FILES", "SIGNALS", "ENVIRONMENT", "EXIT STATUS"] {
        assert!(top.contains(&format!(".SH \"{section}\"")), "{top}");
    }
    assert!(top.contains("SIGHUP"), "{top}");
    let serve = read("ferroftp-serve.1");
    for flag in [
        "config",
        "listen",
        "implicit\\-listen",
        "passive\\-ports",
        "passive\\-address",
        "users",
        "tls\\-cert",
        "metrics\\-listen",
    ] {
        assert!(
            serve.contains(&format!("\\-\\-{flag}")),
            "no --{flag}:\n{serve}"
        );
    }
    assert!(serve.contains("key passive.ports"), "{serve}");
}

#[test]
fn serve_help_gives_every_flag_a_description() {
    let (ok, out, err) = run(Command::new(bin()).args(["serve", "--help"]));
    assert!(ok, "{out}{err}");
    // Each option line is "  -x, --flag <VALUE>   help": a line with only the flag has no help.
    for line in out.lines().filter(|l| l.trim_start().starts_with('-')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let described = words
            .iter()
            .skip_while(|w| w.starts_with('-') || w.starts_with('<'))
            .count();
        assert!(described > 0, "no help text: {line:?}\n{out}");
    }
    for needle in [
        "--passive-ports <LOW-HIGH>",
        "Default: 127.0.0.1:2121",
        "key passive.address",
    ] {
        assert!(out.contains(needle), "no {needle:?}:\n{out}");
    }
}

#[test]
fn man_renders_the_pages_without_warnings() {
    let test = "man_renders_the_pages_without_warnings";
    // `man -l` reads a page from a file instead of the manual path.
    if Command::new("man").arg("-w").output().is_err() {
        eprintln!("SKIP {test}: man is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(Command::new(bin()).arg("man").arg("--out").arg(dir.path()));
    assert!(ok, "{out}{err}");
    let render = |path: &Path| {
        run(Command::new("man")
            // man-db passes these on to groff: bad escapes and requests are reported on stderr.
            .arg("--warnings=all")
            .arg("-l")
            .arg(path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80"))
    };
    // The check can fail: a broken escape is reported.
    let bad = dir.path().join("bad.1");
    std::fs::write(&bad, ".TH bad 1\n.SH NAME\nbad \\- a \\qbroken page\n").unwrap();
    let (_, _, err) = render(&bad);
    if err.trim().is_empty() {
        eprintln!("SKIP {test}: this man does not report roff warnings");
        return;
    }
    for page in std::iter::once("ferroftp".to_owned())
        .chain(SUBCOMMANDS.iter().map(|s| format!("ferroftp-{s}")))
    {
        let (ok, text, err) = render(&dir.path().join(format!("{page}.1")));
        assert!(ok, "man -l {page} failed:\n{err}");
        assert!(err.trim().is_empty(), "man -l {page} warned:\n{err}");
        assert!(text.contains("NAME"), "{page}:\n{text}");
        assert!(text.contains("OPTIONS"), "{page}:\n{text}");
    }
    // The configuration reference: every table and key of the example, with its default.
    let (ok, text, err) = render(&dir.path().join("ferroftp.toml.5"));
    assert!(ok, "man -l ferroftp.toml.5 failed:\n{err}");
    assert!(
        err.trim().is_empty(),
        "man -l ferroftp.toml.5 warned:\n{err}"
    );
    for needle in [
        "NAME",
        "[passive]",
        "[[listener]]",
        "max_sessions",
        "default: 1000",
        "tls_policy",
    ] {
        assert!(
            text.contains(needle),
            "ferroftp.toml(5) lacks {needle:?}:\n{text}"
        );
    }
}

#[test]
fn man_writes_the_configuration_reference_from_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, err) = run(Command::new(bin()).arg("man").arg("--out").arg(dir.path()));
    assert!(ok, "{stdout}{err}");
    assert!(stdout.contains("ferroftp.toml.5"), "{stdout}");
    let page = std::fs::read_to_string(dir.path().join("ferroftp.toml.5")).unwrap();
    assert!(page.starts_with(".TH ferroftp.toml 5"), "{page}");
    // Into a man1 directory: the section 5 page goes beside it, into man5, where man looks.
    let man1 = dir.path().join("share/man/man1");
    let (ok, stdout, err) = run(Command::new(bin()).arg("man").arg("--out").arg(&man1));
    assert!(ok, "{stdout}{err}");
    assert!(man1.join("ferroftp.1").exists());
    assert!(
        dir.path().join("share/man/man5/ferroftp.toml.5").exists(),
        "{stdout}"
    );
    // Every key the example documents has an entry.
    let example = std::fs::read_to_string(repo().join("ferroftp.example.toml")).unwrap();
    for key in ferroftp::config::reference::keys(&example) {
        let last = key.rsplit('.').next().unwrap().replace('-', "\\-");
        assert!(
            page.contains(&format!("\\fB{last}\\fR")),
            "no entry for {key}"
        );
    }
}

// ---- the container image (no Docker here: the files are checked, not built) ----------------

#[test]
fn the_image_config_matches_the_dockerfile_ports_and_runs_unprivileged() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let config = ferroftp::config::Config::load(&repo().join("contrib/docker/ferroftp.toml"))
        .expect("the image's configuration loads");
    let exposed: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .collect();
    assert_eq!(config.listeners.len(), 1);
    let bind = config.listeners[0].bind;
    assert!(bind.ip().is_unspecified(), "{bind}: reachable from outside");
    assert!(exposed.contains(&format!("{}/tcp", bind.port()).as_str()));
    let range = config.passive.ports.expect("a fixed passive range");
    assert!(
        exposed.contains(&format!("{}-{}/tcp", range.low, range.high).as_str()),
        "EXPOSE {exposed:?} vs passive.ports {range}"
    );
    assert!(config.limits.max_sessions <= range.len());
    assert_eq!(config.root, Path::new("/srv/ftp"));
    // Numeric user (Kubernetes' runAsNonRoot can check it), never root.
    let user = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER line");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER");
    assert_ne!(uid, 0);
    assert!(dockerfile.contains("\nSTOPSIGNAL SIGTERM\n"));
    assert!(dockerfile.contains("VOLUME [\"/srv/ftp\", \"/etc/ferroftp\"]"));
    // No secrets baked in: no users file, key or password in the image's files.
    assert!(config.users_file.is_none() && config.tls.key.is_none());
    for word in ["password", "PASSWORD", "users.toml", "key.pem"] {
        assert!(
            !dockerfile
                .lines()
                .any(|l| !l.starts_with('#') && l.contains(word)),
            "{word} in the Dockerfile"
        );
    }
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target/"), "{ignore}");
}

#[test]
fn the_dockerfile_stub_stands_where_cargo_looks_for_the_binary() {
    // The dependency layer builds stubs; one at another path than the [[bin]]'s fails that
    // build (and the touch after it would leave a stray file).
    let manifest = std::fs::read_to_string(repo().join("crates/ferroftp/Cargo.toml")).unwrap();
    let bin_path = manifest
        .split("[[bin]]")
        .nth(1)
        .and_then(|table| table.lines().find_map(|l| l.trim().strip_prefix("path = ")))
        .expect("a [[bin]] path")
        .trim_matches('"');
    let stub = format!("crates/ferroftp/{bin_path}");
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("echo 'fn main() {{}}' > {stub}")),
        "the Dockerfile's stub binary is not {stub}"
    );
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("RUN touch") && l.contains(&stub)),
        "the Dockerfile does not touch {stub} after copying the sources"
    );
    assert!(!dockerfile.contains("crates/ferroftp/src/main.rs"));
}
