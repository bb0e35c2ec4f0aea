//! Keeps the storage seam: outside the local back-end, the server reaches users' files only
//! through [`super::Storage`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// Ways to reach the file system directly.
const DIRECT: [&str; 3] = ["std::fs", "tokio::fs", "cap_std"];

/// Files that may, and why: none of them touch users' files.
const ALLOWED: [(&str, &str); 1] = [(
    "server/admin/auth.rs",
    "reads the admin API's token file (configuration)",
)];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of `text` before its unit tests (which may make fixtures however they like).
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at])
}

#[test]
fn only_the_local_back_end_touches_the_file_system_for_the_server() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    // The server (sessions, data path) wherever its parts live: the session core and its
    // driver may move out of `server/`.
    for dir in ["server", "storage", "core", "driver", "session"] {
        if src.join(dir).is_dir() {
            sources(&src.join(dir), &mut files);
        }
    }
    files.push(src.join("storage.rs"));
    let mut found = Vec::new();
    for file in &files {
        let name = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let local = name == "storage/local.rs" || name.starts_with("storage/local/");
        // Unit tests (a `tests.rs` beside the code, or `*_tests.rs`) make their own fixtures.
        let tests = name.ends_with("/tests.rs") || name.ends_with("_tests.rs");
        if local || tests || ALLOWED.iter().any(|(f, _)| *f == name) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in without_tests(&text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if DIRECT.iter().any(|d| code.contains(d)) {
                found.push(format!("{name}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "direct file system access outside storage::local (go through the Storage trait, or \
         add a local back-end function):\n{}",
        found.join("\n")
    );
    // The check looks where it should: the back-end itself does use them.
    let local = std::fs::read_to_string(src.join("storage/local.rs")).unwrap();
    assert!(DIRECT.iter().all(|d| local.contains(d)));
}
