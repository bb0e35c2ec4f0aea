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
//! - README's two commands are the server on its defaults and what CI runs, and the manual
//!   shows the client lines README's test runs;
//! - every key named in prose (`passive.ports`, `[bans] allow`) exists, and every setting
//!   named with a value (`[uploads] fsync = "never"`) is accepted by `check-config`;
//! - relative links lead to files (and headings) that exist;
//! - the book builds with mdBook when it is installed (under CI=true it must be).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "docs/binary.rs"]
mod binary;
#[path = "docs/markdown.rs"]
mod markdown;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use binary::*;
use markdown::*;

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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

#[test]
fn every_config_key_named_in_the_prose_exists_and_every_setting_named_is_accepted() {
    let keys: BTreeSet<String> = example_keys().into_iter().map(|(p, _, _)| p).collect();
    let tables: BTreeSet<String> = keys
        .iter()
        .filter_map(|k| k.rsplit_once('.').map(|(t, _)| t.to_owned()))
        .collect();
    let mut named = 0;
    let mut failures = Vec::new();
    for doc in docs()
        .iter()
        .filter(|d| d.path != Path::new("docs/ARCHITECTURE.md"))
    {
        for span in code_spans(&doc.text) {
            let Some((path, table, value)) = key_in_prose(&span, &tables) else {
                continue;
            };
            named += 1;
            if !keys.contains(&path) {
                failures.push(format!(
                    "{}: `{span}`: no key {path} in ferroftp.example.toml",
                    doc.path.display()
                ));
            } else if let Some(value) = value {
                let key = path.rsplit('.').next().unwrap_or(&path);
                // A listener needs its address; the default one does.
                let bind = if table == "[[listener]]" && key != "bind" {
                    "bind = \"127.0.0.1:2121\"\n"
                } else {
                    ""
                };
                if let Err(e) = check_config(&format!("{table}\n{bind}{key} = {value}\n")) {
                    failures.push(format!("{}: `{span}`: {e}", doc.path.display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(named >= 100, "only {named} keys named in prose");
}

#[test]
fn the_manual_s_first_steps_show_the_client_lines_readme_s_test_runs() {
    // tests/clients_lftp.rs runs README's lines after "Connect with any client"; the manual
    // repeats them, and must not drift from what is run.
    let block = |text: &str| -> String {
        let start = text
            .find("Connect with any client")
            .expect("the client lines");
        text[start..]
            .split("```sh\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a sh block")
            .to_owned()
    };
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let manual = std::fs::read_to_string(repo().join("docs/src/first-steps.md")).unwrap();
    assert_eq!(block(&manual), block(&readme));
}
