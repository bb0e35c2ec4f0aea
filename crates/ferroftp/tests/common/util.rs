//! Small helpers: running commands, comparing bytes, waiting, reading directories.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `cmd` with `input` on its stdin (then closed); its exit status and output.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // A command may refuse and exit before it reads its input (passwd checks the home
    // first): the pipe is then closed, which is not the test's failure.
    match child.stdin.take().unwrap().write_all(input) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    child.wait_with_output().unwrap()
}

/// Exit code (-1 when killed by a signal) and stdout followed by stderr.
pub fn code_and_text(out: &std::process::Output) -> (i32, String) {
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The lines of a checklist (`ferroftp doctor`) at `level` (OK, WARN, FAIL) that contain
/// `needle`.
pub fn lines_with<'a>(text: &'a str, level: &str, needle: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.trim_start().starts_with(level) && l.contains(needle))
        .collect()
}

/// Deterministic pseudo-random bytes (no extra crate): xorshift.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Compare bytes without dumping them on failure.
pub fn same(got: &[u8], want: &[u8], what: &str) {
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first differing byte at offset {i} (lengths {} and {})",
            got.len(),
            want.len()
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: length differs");
}

/// Wait until `cond` holds (polling), or panic with `what`.
pub fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the tests run as root (some need it, some make no sense under it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The names in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The name prefix of the server's upload temp files.
pub const TEMP_PREFIX: &str = ".ferroftp-upload.";

/// The upload temp files left in `dir`.
pub fn temp_files(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.starts_with(TEMP_PREFIX))
        .collect()
}

/// The names in `dir`, as a set.
pub fn files_in(dir: &Path) -> std::collections::BTreeSet<String> {
    names_in(dir).into_iter().collect()
}

/// A path as the `&str` a command line needs.
pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Quote a local path for an lftp command line.
pub fn q(p: &Path) -> String {
    format!("\"{}\"", path_str(p))
}

/// A script of tests/py.
pub fn script_path(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}

/// What a path in a tree is, for [`snapshot`].
#[derive(Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A file and its bytes.
    File(Vec<u8>),
}

/// Every directory and file under `base`, by relative path.
pub fn snapshot(base: &Path) -> std::collections::BTreeMap<String, Node> {
    fn walk(base: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Node>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_str().unwrap().to_string();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, Node::Dir);
                walk(base, &p, out);
            } else {
                out.insert(rel, Node::File(std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(base, base, &mut out);
    out
}

/// Assert two trees hold the same directories and byte-identical files.
pub fn assert_same_tree(got: &Path, want: &Path) {
    let (g, w) = (snapshot(got), snapshot(want));
    let missing: Vec<_> = w.keys().filter(|k| !g.contains_key(*k)).collect();
    let extra: Vec<_> = g.keys().filter(|k| !w.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{got:?} vs {want:?}: missing: {missing:?}\nextra: {extra:?}"
    );
    let differ: Vec<_> = w
        .iter()
        .filter(|(k, v)| g.get(*k) != Some(v))
        .map(|(k, v)| match (v, &g[k]) {
            (Node::File(a), Node::File(b)) => match a.iter().zip(b).position(|(x, y)| x != y) {
                Some(i) => format!("{k} (first differing byte at offset {i})"),
                None => format!("{k} ({} bytes, got {})", a.len(), b.len()),
            },
            _ => format!("{k} (kind differs)"),
        })
        .collect();
    assert!(differ.is_empty(), "files differ: {differ:?}");
}

/// The repository's top directory.
pub fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Set a file's modification time to `secs` after the epoch.
pub fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// A file's modification time, in whole seconds after the epoch.
pub fn mtime_secs(path: &Path) -> u64 {
    let m = std::fs::metadata(path).unwrap().modified().unwrap();
    m.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}
