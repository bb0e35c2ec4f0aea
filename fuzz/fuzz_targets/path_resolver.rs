//! `VPath::resolve`, the lexical half of home confinement: whatever the client sends, the
//! result is a normalized absolute path that cannot climb out of the home.
//!
//! Input: byte 0 = flags, byte 1 = repeat count, bytes 2..4 = length of the cwd part; then the
//! cwd text and the argument text. The cwd is itself resolved from "/" (so it is a valid
//! VPath); the argument is repeated to reach the length and depth limits cheaply.
#![no_main]

use std::path::Component;

use ferroftp::storage::{MAX_DEPTH, MAX_PATH_LEN, StorageError, VPath};
use libfuzzer_sys::fuzz_target;

mod coverage;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let flags = data[0];
    let repeat = usize::from(data[1]);
    let cwd_len = usize::from(u16::from_le_bytes([data[2], data[3]]));
    let rest = &data[4..];
    let (cwd_bytes, arg_bytes) = rest.split_at(cwd_len.min(rest.len()));
    let cwd_text = String::from_utf8_lossy(cwd_bytes);
    let mut arg = String::from_utf8_lossy(arg_bytes).into_owned();
    if flags & 1 != 0 && repeat > 0 {
        // Long and deep arguments: "a/" * 300, "../" * 200, ...
        arg = arg.repeat(repeat.min(64) * if flags & 2 != 0 { 8 } else { 1 });
    }
    if flags & 4 != 0 {
        arg.insert(0, '/');
    }

    let root = VPath::root();
    let cwd = match VPath::resolve(&root, &cwd_text) {
        Ok(c) => {
            check_normalized(&c);
            c
        }
        Err(_) => root.clone(),
    };
    let result = VPath::resolve(&cwd, &arg);
    let model = model_resolve(cwd.as_str(), &arg);
    match (&result, &model) {
        (Ok(p), Some(m)) => assert_eq!(
            p.as_str(),
            m,
            "resolve({cwd}, {arg:?}) differs from the model"
        ),
        (Err(e), None) => assert!(
            matches!(e, StorageError::InvalidName),
            "resolve fails with {e:?}, expected InvalidName"
        ),
        (Ok(p), None) => panic!("resolve({cwd}, {arg:?}) = {p}, but the model refuses it"),
        (Err(e), Some(m)) => {
            panic!("resolve({cwd}, {arg:?}) failed with {e:?}, the model gives {m:?}")
        }
    }
    let Ok(p) = result else { return };
    check_normalized(&p);

    // Stable: resolving the result again, from anywhere, gives the same path.
    assert_eq!(VPath::resolve(&root, p.as_str()).ok().as_ref(), Some(&p));
    assert_eq!(VPath::resolve(&cwd, p.as_str()).ok().as_ref(), Some(&p));
    assert_eq!(VPath::resolve(&p, "").ok().as_ref(), Some(&p));
    assert_eq!(VPath::resolve(&p, ".").ok().as_ref(), Some(&p));
    assert_eq!(VPath::resolve(&p, "./").ok().as_ref(), Some(&p));

    // Parent and name fit together, and ".." goes to the parent (never above "/").
    match p.parent() {
        None => {
            assert!(p.is_root());
            assert_eq!(p.file_name(), None);
            assert_eq!(VPath::resolve(&p, "..").ok(), Some(VPath::root()));
        }
        Some(parent) => {
            check_normalized(&parent);
            let name = p.file_name().expect("a non-root path has a name");
            assert!(!name.is_empty() && !name.contains('/'));
            assert_eq!(parent.join(name).ok().as_ref(), Some(&p));
            assert_eq!(VPath::resolve(&p, "..").ok().as_ref(), Some(&parent));
            assert!(p.as_str().starts_with(parent.as_str()));
        }
    }
});

/// A resolved path: "/" or "/a/b" with no empty, "." or ".." segment, no NUL, within the
/// limits; and its `relative()` form stays beneath the home.
fn check_normalized(p: &VPath) {
    let s = p.as_str();
    assert!(s.starts_with('/'), "{s:?} is not absolute");
    assert!(!s.contains('\0'), "{s:?} holds a NUL");
    assert!(
        s.len() <= MAX_PATH_LEN,
        "{} bytes is over the limit",
        s.len()
    );
    assert_eq!(p.to_string(), s);
    if s == "/" {
        assert!(p.is_root());
        assert_eq!(p.relative(), std::path::Path::new("."));
        return;
    }
    assert!(!p.is_root());
    let segments: Vec<&str> = s[1..].split('/').collect();
    assert!(
        segments.len() <= MAX_DEPTH,
        "{} segments is over the limit",
        segments.len()
    );
    for seg in &segments {
        assert!(
            !seg.is_empty() && *seg != "." && *seg != "..",
            "{s:?} has the segment {seg:?}"
        );
    }
    let rel = p.relative();
    let rel_str = rel.to_str().expect("relative() of a UTF-8 path is UTF-8");
    assert!(
        !rel_str.starts_with('/'),
        "relative() of {s:?} is {rel_str:?}"
    );
    assert!(!rel.is_absolute());
    assert_eq!(format!("/{rel_str}"), s);
    for c in rel.components() {
        assert!(
            matches!(c, Component::Normal(_)),
            "relative() of {s:?} has the component {c:?}"
        );
    }
}

/// The documented rules, written out independently: absolute if the argument starts with "/",
/// "." skipped, ".." pops (never above "/"), empty segments collapse; refused on NUL, an
/// argument or result over MAX_PATH_LEN bytes, or a result over MAX_DEPTH segments.
fn model_resolve(cwd: &str, arg: &str) -> Option<String> {
    // CR and LF too: a name goes on a line of its own in NLST and in replies.
    if arg.len() > MAX_PATH_LEN || arg.contains(['\0', '\r', '\n']) {
        return None;
    }
    let mut stack: Vec<&str> = Vec::new();
    let full_cwd = if arg.starts_with('/') { "" } else { cwd };
    for seg in full_cwd.split('/').chain(arg.split('/')) {
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    if stack.len() > MAX_DEPTH {
        return None;
    }
    let out = if stack.is_empty() {
        "/".to_owned()
    } else {
        stack.iter().map(|s| format!("/{s}")).collect::<String>()
    };
    if out.len() > MAX_PATH_LEN {
        return None;
    }
    Some(out)
}
