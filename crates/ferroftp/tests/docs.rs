//! README.md and the manual (docs/src, an mdBook) stay true to the binary:
//!
//! - every ```toml block is a configuration that `ferroftp check-config` accepts (absolute paths
//!   are moved under a temporary directory, where the files they name are made); a block marked
//!   `<!-- check: users-file -->` is a users file, checked as a configuration's `users_file`; one
//!   marked `<!-- check: skip REASON -->` is not checked; a block that is only `{{#include F}}`
//!   is checked as the file F;
//! - every `ferroftp` command line in ```sh/```bash/```console blocks names subcommands whose
//!   `--help` succeeds, and each flag it uses appears in that help;
//! - every key of ferroftp.example.toml has a row, with its default, in the configuration
//!   reference, and every subcommand and flag of the binary is in the command-line reference;
//! - every metric the server serves, and every operation of the admin API's OpenAPI document,
//!   has a row in its page;
//! - README's two commands are the server on its defaults and what CI runs;
//! - relative links lead to files (and headings) that exist;
//! - the book builds with mdBook when it is installed (under CI=true it must be).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A users file with one user, for configurations that name one (a real argon2id hash of a
/// password nobody knows).
const USERS_FILE: &str = "[[user]]\nname = \"alice\"\npassword = \"$argon2id$v=19$m=19456,t=2,p=1$NQ6h1XVRnqulna+d6I+aAA$bDuZSGAYPUat59yci+Mfyqjxss1ueRTtCdDtVOovgpg\"\nhome = \"alice\"\n";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferroftp")
}

/// A Markdown file of the documentation, its path relative to the repository.
struct Doc {
    path: PathBuf,
    text: String,
}

/// README.md, docs/ARCHITECTURE.md and every page under docs/src, in a stable order.
fn docs() -> Vec<Doc> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let root = repo();
    let mut paths = vec![root.join("README.md"), root.join("docs/ARCHITECTURE.md")];
    walk(&root.join("docs/src"), &mut paths);
    paths
        .into_iter()
        .map(|p| Doc {
            text: std::fs::read_to_string(&p).unwrap(),
            path: p.strip_prefix(&root).unwrap().to_path_buf(),
        })
        .collect()
}

/// A fenced code block.
struct Block {
    /// Where it starts, for messages: `docs/src/ftps.md:42`.
    at: String,
    /// The first word of the info string (`toml`, `sh`, ...).
    lang: String,
    /// `users-file`, `skip REASON`, ... from `<!-- check: ... -->` on the line before.
    marker: Option<String>,
    body: String,
}

/// The fenced code blocks of a page (fences may be indented, as in list items).
fn blocks(doc: &Doc) -> Vec<Block> {
    let mut out = Vec::new();
    let lines: Vec<&str> = doc.text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            let indent = lines[i].len() - trimmed.len();
            let marker = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .and_then(|l| l.trim().strip_prefix("<!-- check:"))
                .and_then(|l| l.strip_suffix("-->"))
                .map(|m| m.trim().to_owned());
            let start = i;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && lines[i].trim() != "```" {
                let line = lines[i];
                let strip = line.len() - line.trim_start().len();
                body.push_str(&line[strip.min(indent)..]);
                body.push('\n');
                i += 1;
            }
            out.push(Block {
                at: format!("{}:{}", doc.path.display(), start + 1),
                lang: info.split([' ', ',']).next().unwrap_or("").to_owned(),
                marker,
                body,
            });
        }
        i += 1;
    }
    out
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

/// `{{#include PATH}}` alone in a block: the file's text (PATH relative to the page).
fn included(doc: &Doc, body: &str) -> Option<String> {
    let inner = body
        .trim()
        .strip_prefix("{{#include ")?
        .strip_suffix("}}")?
        .trim();
    let path = repo().join(doc.path.parent().unwrap()).join(inner);
    Some(std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Makes the files a configuration names under `sandbox` (root, users file, TLS files, token).
fn make_fixtures(config: &toml::Table, sandbox: &Path) {
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
fn run_check_config(dir: &Path, text: &str) -> Result<(), String> {
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
fn check_config(text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("sandbox");
    let text = text.replace("\"/", &format!("\"{}/", sandbox.display()));
    if let Ok(config) = text.parse::<toml::Table>() {
        make_fixtures(&config, &sandbox);
    }
    run_check_config(dir.path(), &text)
}

/// `check-config` on a configuration whose users file is `text` (homes under its root).
fn check_users_file(text: &str) -> Result<(), String> {
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

#[test]
fn every_toml_block_is_a_configuration_or_users_file_the_binary_accepts() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for doc in docs() {
        for block in blocks(&doc).into_iter().filter(|b| b.lang == "toml") {
            let body = included(&doc, &block.body).unwrap_or(block.body);
            let result = match block.marker.as_deref() {
                Some("users-file") => check_users_file(&body),
                Some(m) if m.starts_with("skip ") && m.len() > "skip ".len() + 3 => continue,
                Some(m) => Err(format!(
                    "unknown marker `<!-- check: {m} -->` (users-file, or skip with a reason)"
                )),
                None => check_config(&body),
            };
            checked += 1;
            if let Err(e) = result {
                failures.push(format!("{}: {e}", block.at));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "refused blocks:\n{}",
        failures.join("\n")
    );
    // Configuration examples are all over the manual; a parser that finds none is broken.
    assert!(checked >= 15, "only {checked} toml blocks found");
}

/// A shell line as words, without comments; operators (`|`, `&&`, `;`, `>`...) are their own words.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            '#' if !in_word => break,
            c if c.is_whitespace() || "|&;<>".contains(c) => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
                if !c.is_whitespace() {
                    let mut op = c.to_string();
                    while let Some(&n) = chars.peek().filter(|n| "|&<>".contains(**n)) {
                        op.push(n);
                        chars.next();
                    }
                    out.push(op);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// The arguments given to `ferroftp` by one command of a shell line, if it runs ferroftp:
/// directly (any path), through sudo/env/setpriv, `docker run ... ferroftp` (the image) or
/// `cargo run ... -- ARGS`.
fn ferroftp_args(command: &[String]) -> Option<Vec<String>> {
    let mut rest: &[String] = command;
    loop {
        let (first, tail) = rest.split_first()?;
        let is_assignment = first.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if is_assignment {
            rest = tail;
            continue;
        }
        match first.as_str() {
            "sudo" | "env" | "setpriv" | "exec" => {
                rest = tail;
                while rest.first().is_some_and(|w| w.starts_with('-')) {
                    rest = &rest[1..];
                }
            }
            "docker" if tail.first().is_some_and(|w| w == "run") => {
                let image = tail.iter().position(|w| w == "ferroftp")?;
                return Some(tail[image + 1..].to_vec());
            }
            "cargo" if tail.first().is_some_and(|w| w == "run") => {
                let sep = tail.iter().position(|w| w == "--")?;
                return Some(tail[sep + 1..].to_vec());
            }
            program
                if Path::new(program)
                    .file_name()
                    .is_some_and(|n| n == "ferroftp") =>
            {
                return Some(tail.to_vec());
            }
            _ => return None,
        }
    }
}

/// The shell commands of a block: continuation lines joined; in `console` blocks, only the
/// lines after a `$ ` prompt.
fn shell_lines(block: &Block) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in block.body.lines() {
        let line = match (&current, block.lang.as_str()) {
            (Some(_), _) => line,
            (None, "console") => match line.strip_prefix("$ ") {
                Some(l) => l,
                None => continue,
            },
            (None, _) => line,
        };
        let text = current.take().unwrap_or_default() + line.trim_end();
        match text.strip_suffix('\\') {
            Some(head) => current = Some(head.to_owned() + " "),
            None => out.push(text),
        }
    }
    out.extend(current);
    out
}

/// `ferroftp ARGS --help`, remembered.
fn help<'a>(
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
fn subcommands(help: &str) -> Vec<String> {
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
fn help_has_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(i, _)| {
        let next = help[i + flag.len()..].chars().next();
        let before = help[..i].chars().last();
        !matches!(before, Some(c) if c.is_ascii_alphanumeric() || c == '-')
            && !matches!(next, Some(c) if c.is_ascii_alphanumeric() || c == '-')
    })
}

#[test]
fn every_ferroftp_command_line_names_subcommands_and_flags_that_exist() {
    let mut cache = HashMap::new();
    let mut checked = 0;
    let mut failures = Vec::new();
    for doc in docs() {
        for block in blocks(&doc)
            .into_iter()
            .filter(|b| ["sh", "bash", "shell", "console"].contains(&b.lang.as_str()))
        {
            for line in shell_lines(&block) {
                let words = words(&line);
                for command in words.split(|w| ["|", "||", "&&", ";", "&"].contains(&w.as_str())) {
                    let Some(args) = ferroftp_args(command) else {
                        continue;
                    };
                    // Arguments end at a redirection.
                    let args: Vec<String> = args
                        .into_iter()
                        .take_while(|w| !w.starts_with(['>', '<']) && !w.ends_with('>'))
                        .collect();
                    checked += 1;
                    let mut path: Vec<String> = Vec::new();
                    let mut rest = args.as_slice();
                    let text = loop {
                        let text = match help(&mut cache, &path) {
                            Ok(t) => t.clone(),
                            Err(e) => {
                                failures.push(format!(
                                    "{}: `ferroftp {} --help` failed: {e}\n  in: {line}",
                                    block.at,
                                    path.join(" ")
                                ));
                                break None;
                            }
                        };
                        let subs = subcommands(&text);
                        match rest.first() {
                            Some(next) if !subs.is_empty() && !next.starts_with('-') => {
                                if !subs.contains(next) {
                                    failures.push(format!("{}: `ferroftp {} {next}`: no such subcommand (there are {subs:?})\n  in: {line}", block.at, path.join(" ")));
                                    break None;
                                }
                                path.push(next.clone());
                                rest = &rest[1..];
                            }
                            _ => break Some(text),
                        }
                    };
                    let Some(text) = text else { continue };
                    for word in rest.iter().filter(|w| w.starts_with('-') && w.len() > 1) {
                        let flag = word.split('=').next().unwrap_or(word);
                        if !help_has_flag(&text, flag) {
                            failures.push(format!(
                                "{}: `ferroftp {}` has no flag {flag}\n  in: {line}",
                                block.at,
                                path.join(" ")
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 30, "only {checked} ferroftp command lines found");
}

/// (dotted key, value, set by default) of every key in ferroftp.example.toml, read as
/// config/reference.rs reads it: `key = value` lines, commented out when not set by default.
fn example_keys() -> Vec<(String, String, bool)> {
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

#[test]
fn the_configuration_reference_has_every_key_of_the_example_with_its_default() {
    let page = std::fs::read_to_string(repo().join("docs/src/reference/config.md")).unwrap();
    let keys = example_keys();
    assert!(keys.len() >= 50, "{keys:?}");
    let mut failures = Vec::new();
    for (path, value, set) in &keys {
        let row = format!("| `{path}` | ");
        let Some(line) = page.lines().find(|l| l.starts_with(&row)) else {
            failures.push(format!("no row for `{path}`"));
            continue;
        };
        let default = line[row.len()..].split(" | ").next().unwrap_or("");
        let expected = if *set {
            format!("`{value}`")
        } else {
            format!("not set (e.g. `{value}`)")
        };
        if default != expected {
            failures.push(format!(
                "`{path}`: the example says {expected}, the reference {default}"
            ));
        }
    }
    // And no row for a key that is gone.
    for line in page.lines().filter(|l| l.starts_with("| `")) {
        let key = line[3..].split('`').next().unwrap_or("");
        if !keys.iter().any(|(p, _, _)| p == key) {
            failures.push(format!(
                "a row for `{key}`, which the example does not have"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "docs/src/reference/config.md:\n{}",
        failures.join("\n")
    );
}

/// The text of a page's section: from `heading` to the next heading of its level or above.
fn section<'a>(page: &'a str, heading: &str) -> Option<&'a str> {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let start = page.find(&format!("\n{heading}\n"))? + 1;
    let body = &page[start + heading.len()..];
    let end = body
        .match_indices("\n#")
        .find(|(i, _)| {
            let hashes = body[i + 1..].chars().take_while(|&c| c == '#').count();
            hashes <= level && body[i + 1 + hashes..].starts_with(' ')
        })
        .map_or(body.len(), |(i, _)| i);
    Some(&body[..end])
}

/// The long flags an options list of a help text offers (`--users`), `--help` aside.
fn help_flags(help: &str) -> BTreeSet<String> {
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

#[test]
fn the_command_line_reference_has_every_subcommand_and_flag() {
    let page = std::fs::read_to_string(repo().join("docs/src/reference/cli.md")).unwrap();
    let mut cache = HashMap::new();
    let mut failures = Vec::new();
    let mut todo: Vec<Vec<String>> = subcommands(help(&mut cache, &[]).as_ref().unwrap())
        .into_iter()
        .map(|s| vec![s])
        .collect();
    assert!(todo.len() >= 8, "{todo:?}");
    while let Some(path) = todo.pop() {
        let text = help(&mut cache, &path).clone().unwrap();
        let heading = format!("{} ferroftp {}", "#".repeat(path.len() + 1), path.join(" "));
        let Some(body) = section(&page, &heading) else {
            failures.push(format!("no section `{heading}`"));
            continue;
        };
        let subs = subcommands(&text);
        for flag in help_flags(&text) {
            if subs.is_empty()
                && !body.contains(&format!("`{flag}"))
                && !body.contains(&format!(", {flag}"))
            {
                failures.push(format!("`{heading}` does not name {flag}"));
            }
        }
        todo.extend(subs.into_iter().map(|s| [path.clone(), vec![s]].concat()));
    }
    assert!(
        failures.is_empty(),
        "docs/src/reference/cli.md:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_readme_gives_two_commands_the_server_on_its_defaults_and_what_ci_runs() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let quick = readme.find("## Quick start").expect("a Quick start");
    let body = readme[quick..]
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in the Quick start");
    let block = Block {
        at: "README.md".into(),
        lang: "sh".into(),
        marker: None,
        body: body.to_owned(),
    };
    let commands: Vec<String> = shell_lines(&block)
        .iter()
        .map(|l| words(l).join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        commands,
        ["cargo run --release -- serve", "scripts/test.sh"],
        "{}",
        block.body
    );
    // CI runs exactly the second.
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let last = ci
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap();
    assert_eq!(
        last, "exec scripts/test.sh",
        ".ci/run must end by running README's test command"
    );
}

/// The anchors mdBook gives a page's headings (and explicit `id="..."`s).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code {
            continue;
        }
        if let Some(heading) = line.strip_prefix('#') {
            let heading = heading.trim_start_matches('#');
            if heading.starts_with(' ') {
                out.insert(
                    heading
                        .trim()
                        .chars()
                        .filter_map(|c| match c {
                            c if c.is_alphanumeric() || c == '_' || c == '-' => {
                                Some(c.to_ascii_lowercase())
                            }
                            c if c.is_whitespace() => Some('-'),
                            _ => None,
                        })
                        .collect(),
                );
            }
        }
        for (i, _) in line.match_indices("id=\"") {
            out.extend(line[i + 4..].split('"').next().map(str::to_owned));
        }
    }
    out
}

/// A page's text without its code blocks and code spans (no links there).
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            let spans: Vec<&str> = line.split('`').collect();
            out.extend(spans.iter().step_by(2).copied());
            out.push('\n');
        }
    }
    out
}

#[test]
fn relative_links_lead_to_files_and_headings_that_exist() {
    let root = repo();
    let mut failures = Vec::new();
    let mut checked = 0;
    for doc in docs() {
        let text = prose(&doc.text);
        for (i, _) in text.match_indices("](") {
            let target = text[i + 2..].split(')').next().unwrap_or("");
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            checked += 1;
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                root.join(&doc.path)
            } else {
                root.join(doc.path.parent().unwrap()).join(file)
            };
            if !path.exists() {
                failures.push(format!("{}: {target}: no such file", doc.path.display()));
            } else if !anchor.is_empty() && path.extension().is_some_and(|e| e == "md") {
                let page = std::fs::read_to_string(&path).unwrap();
                if !anchors(&page).contains(anchor) {
                    failures.push(format!("{}: {target}: no such heading", doc.path.display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 50, "only {checked} links found");
}

/// `mdbook` on PATH, if any.
fn mdbook() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("mdbook"))
        .find(|p| p.is_file())
}

#[test]
fn the_manual_builds_with_mdbook_and_has_search() {
    let Some(mdbook) = mdbook() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "mdbook is not installed: scripts/test.sh installs it (cargo install mdbook)"
        );
        eprintln!("skipped: mdbook is not on PATH (scripts/test.sh installs it)");
        return;
    };
    let out_dir = tempfile::tempdir().unwrap();
    let out = run(Command::new(mdbook)
        .arg("build")
        .arg(repo().join("docs"))
        .arg("-d")
        .arg(out_dir.path()));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    // mdBook reports a missing {{#include}} as an error and goes on: none may be left.
    assert!(!log.contains("ERROR") && !log.contains("WARN"), "{log}");
    let names: Vec<String> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for page in [
        "index.html",
        "users.html",
        "ftps.html",
        "security.html",
        "architecture.html",
    ] {
        assert!(
            names.iter().any(|n| n == page),
            "{page} not built: {names:?}"
        );
    }
    assert!(
        names.iter().any(|n| n.starts_with("searchindex")),
        "no search index: {names:?}"
    );
    let config = std::fs::read_to_string(out_dir.path().join("reference/config.html")).unwrap();
    // The example file is included whole.
    assert!(
        config.contains("require_close_notify"),
        "the example is not in the reference"
    );
}

/// A server started by a test, killed when dropped (also when an assertion fails).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_metrics_page_documents_every_metric_the_server_serves() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server(
        Command::new(bin())
            .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The start-up lines on stdout name the metrics address (an ephemeral port); read up to
    // the last one, `listening`, and keep the pipe open: a server whose stdout is closed fails
    // when it writes there.
    let mut stdout = BufReader::new(server.0.stdout.take().unwrap());
    let mut address = None;
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if event["event"] == "metrics" {
            address = event["address"].as_str().map(str::to_owned);
        }
        if event["event"] == "listening" {
            break;
        }
        line.clear();
    }
    let address = address.expect("the server's metrics address");
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let families: Vec<(&str, &str)> = response
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert!(families.len() >= 10, "{response}");
    let page = std::fs::read_to_string(repo().join("docs/src/operations/metrics.md")).unwrap();
    let mut failures = Vec::new();
    for (name, kind) in families {
        match page
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{name}`")))
        {
            None => failures.push(format!("{name} ({kind}) has no row")),
            Some(row) if !row.contains(kind) => {
                failures.push(format!("{name}: the row does not say {kind}: {row}"));
            }
            Some(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "docs/src/operations/metrics.md:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_admin_api_page_lists_every_operation_of_the_openapi_document() {
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docs/admin-api.openapi.json")).unwrap(),
    )
    .unwrap();
    let page = std::fs::read_to_string(repo().join("docs/src/admin-api.md")).unwrap();
    let mut failures = Vec::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let path = path.strip_prefix("/api/v1").unwrap_or(path);
        for method in item.as_object().unwrap().keys() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let operation = format!("`{} {path}`", method.to_uppercase());
            if !page
                .lines()
                .any(|l| l.starts_with("| ") && l.contains(&operation))
            {
                failures.push(format!("no row names {operation}"));
            }
        }
    }
    assert!(operations >= 10, "{operations} operations");
    assert!(
        failures.is_empty(),
        "docs/src/admin-api.md:\n{}",
        failures.join("\n")
    );
}
