//! Asking the binary: `check-config` in a sandbox, `--help` texts, the example configuration
//! file, mdBook, and a server to query.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::repo;

/// A users file with one user, for configurations that name one (a real argon2id hash of a
/// password nobody knows).
pub(crate) const USERS_FILE: &str = "[[user]]\nname = \"alice\"\npassword = \"$argon2id$v=19$m=19456,t=2,p=1$NQ6h1XVRnqulna+d6I+aAA$bDuZSGAYPUat59yci+Mfyqjxss1ueRTtCdDtVOovgpg\"\nhome = \"alice\"\n";

pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferroftp")
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

/// Makes the files a configuration names under `sandbox` (root, users file, TLS files, token).
pub(crate) fn make_fixtures(config: &toml::Table, sandbox: &Path) {
    let s = sandbox.to_str().unwrap();
    let under = |v: Option<&toml::Value>| -> Option<PathBuf> {
        v.and_then(toml::Value::as_str)
            .filter(|p| p.starts_with(s))
            .map(PathBuf::from)
    };
    let table = |name: &str| config.get(name).and_then(toml::Value::as_table);
    if let Some(root) = under(config.get("root")) {
        std::fs::create_dir_all(root).unwrap();
    }
    if let Some(users) = under(config.get("users_file")) {
        std::fs::create_dir_all(users.parent().unwrap()).unwrap();
        std::fs::write(users, USERS_FILE).unwrap();
    }
    if let Some(home) = table("anonymous").and_then(|t| under(t.get("home"))) {
        std::fs::create_dir_all(home).unwrap();
    }
    if let Some(tls) = table("tls") {
        let pair = sandbox.join(".pair");
        let out = run(Command::new(bin())
            .args([
                "cert",
                "--self-signed",
                "--host",
                "ftp.example.org",
                "--out",
            ])
            .arg(&pair));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (key, file) in [
            ("cert", "cert.pem"),
            ("key", "key.pem"),
            ("client_ca", "cert.pem"),
        ] {
            if let Some(path) = under(tls.get(key)) {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::copy(pair.join(file), &path).unwrap();
            }
        }
    }
    if let Some(token) = table("admin").and_then(|t| under(t.get("token_file"))) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(token.parent().unwrap()).unwrap();
        std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    if let Some(log) = table("log").and_then(|t| under(t.get("xferlog"))) {
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    }
}

/// `check-config -c FILE` on `text` written to a file in `dir`, run from an empty working
/// directory there. Err: what the tool said.
pub(crate) fn run_check_config(dir: &Path, text: &str) -> Result<(), String> {
    let cwd = dir.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let file = dir.join("ferroftp.toml");
    std::fs::write(&file, text).unwrap();
    let out = run(Command::new(bin())
        .arg("check-config")
        .arg("-c")
        .arg(&file)
        .current_dir(&cwd));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `check-config` on a configuration from the documentation: absolute paths are moved under a
/// temporary directory, where the files they name are made; relative ones are taken from an
/// empty working directory.
pub(crate) fn check_config(text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("sandbox");
    let text = text.replace("\"/", &format!("\"{}/", sandbox.display()));
    if let Ok(config) = text.parse::<toml::Table>() {
        make_fixtures(&config, &sandbox);
    }
    run_check_config(dir.path(), &text)
}

/// `check-config` on a configuration whose users file is `text` (homes under its root).
pub(crate) fn check_users_file(text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(&users, text).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    run_check_config(
        dir.path(),
        &format!("root = {:?}\nusers_file = {:?}\n", root, users),
    )
}

/// `ferroftp ARGS --help`, remembered.
pub(crate) fn help<'a>(
    cache: &'a mut HashMap<Vec<String>, Result<String, String>>,
    path: &[String],
) -> &'a Result<String, String> {
    cache.entry(path.to_vec()).or_insert_with(|| {
        let out = run(Command::new(bin()).args(path).arg("--help"));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })
}

/// The subcommands a help text lists (without `help`).
pub(crate) fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .map(str::to_owned)
        .collect()
}

/// Whether `flag` (`--users`, `-c`) is one of the options a help text lists.
pub(crate) fn help_has_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(i, _)| {
        let next = help[i + flag.len()..].chars().next();
        let before = help[..i].chars().last();
        !matches!(before, Some(c) if c.is_ascii_alphanumeric() || c == '-')
            && !matches!(next, Some(c) if c.is_ascii_alphanumeric() || c == '-')
    })
}

/// (dotted key, value, set by default) of every key in ferroftp.example.toml, read as
/// config/reference.rs reads it: `key = value` lines, commented out when not set by default.
pub(crate) fn example_keys() -> Vec<(String, String, bool)> {
    let example = std::fs::read_to_string(repo().join("ferroftp.example.toml")).unwrap();
    let mut table: Option<String> = None;
    let mut out = Vec::new();
    for line in example.lines() {
        let trimmed = line.trim();
        let (body, set) = match trimmed.strip_prefix('#') {
            Some(rest) => (rest.strip_prefix(' ').unwrap_or(rest), false),
            None => (trimmed, true),
        };
        let header = body
            .strip_prefix("[[")
            .and_then(|b| b.strip_suffix("]]"))
            .or_else(|| body.strip_prefix('[').and_then(|b| b.strip_suffix(']')));
        if let Some(name) = header.filter(|n| !n.is_empty() && !n.contains(['"', ','])) {
            table = Some(name.trim().to_owned());
            continue;
        }
        let Some((key, value)) = body.split_once(" = ") else {
            continue;
        };
        let key = key.trim();
        let is_key = !key.is_empty()
            && !body.starts_with(' ')
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if is_key {
            let path = table
                .as_ref()
                .map_or(key.to_owned(), |t| format!("{t}.{key}"));
            out.push((path, value.trim().to_owned(), set));
        }
    }
    out
}

/// The long flags an options list of a help text offers (`--users`), `--help` aside.
pub(crate) fn help_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| {
            l.split_whitespace()
                .take(2)
                .map(|w| w.trim_end_matches(',').to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|w| w.starts_with("--") && w != "--help" && w != "--version")
        .collect()
}

/// `mdbook` on PATH, if any.
pub(crate) fn mdbook() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("mdbook"))
        .find(|p| p.is_file())
}

/// A server started by a test, killed when dropped (also when an assertion fails).
pub(crate) struct Server(pub(crate) std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A configuration key named in prose: `[passive] allow_foreign_ip = true`,
/// `[[listener]] tls_policy`, `bans.allow` or `uploads.fsync = "never"`, given the tables of
/// the example. (dotted path, the table as written, `= value` if any)
pub(crate) fn key_in_prose(
    span: &str,
    tables: &BTreeSet<String>,
) -> Option<(String, String, Option<String>)> {
    let (head, value) = match span.split_once(" = ") {
        Some((h, v)) => (h.trim(), Some(v.trim().to_owned())),
        None => (span.trim(), None),
    };
    let is_word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    };
    if let Some(rest) = head.strip_prefix('[') {
        let (header, key) = rest.split_once(' ')?;
        let table = header.trim_start_matches('[').trim_end_matches(']');
        let written = format!("[{rest}").split_once(' ')?.0.to_owned();
        return (tables.contains(table) && is_word(key))
            .then(|| (format!("{table}.{key}"), written, value));
    }
    let (table, key) = head.rsplit_once('.')?;
    let file = [".rs", ".md", ".toml", ".pem", ".json", ".conf", ".service"];
    let ours = tables.contains(table) && is_word(key) && !file.iter().any(|e| head.ends_with(e));
    ours.then(|| {
        let written = if table == "listener" {
            "[[listener]]".to_owned()
        } else {
            format!("[{table}]")
        };
        (head.to_owned(), written, value)
    })
}
