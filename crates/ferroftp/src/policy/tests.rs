//! The policy types, and the layering of the whole crate (which module may use which).

use super::*;

#[test]
fn permissions_serde_round_trip() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Doc {
        p: Permissions,
    }
    for set in [
        Permissions::NONE,
        Permissions::READ_ONLY,
        Permissions::ALL,
        [Permission::Write, Permission::Rmdir].into_iter().collect(),
    ] {
        let text = toml::to_string(&Doc { p: set }).expect("serialize");
        assert_eq!(
            toml::from_str::<Doc>(&text).expect("deserialize"),
            Doc { p: set },
            "{text}"
        );
    }
    assert_eq!(
        toml::to_string(&Doc {
            p: Permissions::READ_ONLY
        })
        .expect("serialize"),
        "p = [\"list\", \"read\"]\n"
    );
    assert_eq!(
        toml::from_str::<Doc>("p = \"all\"").expect("all").p,
        Permissions::ALL
    );
    assert_eq!(
        toml::from_str::<Doc>("p = [\"read\", \"read\", \"list\"]")
            .expect("dups")
            .p,
        Permissions::READ_ONLY
    );
    assert!(toml::from_str::<Doc>("p = \"none\"").is_err());
    assert!(toml::from_str::<Doc>("p = [\"exec\"]").is_err());
    assert!(toml::from_str::<Doc>("p = [1]").is_err());

    assert_eq!(Permissions::READ_ONLY.to_string(), "list,read");
    assert_eq!(Permissions::NONE.to_string(), "none");
    assert_eq!(Permissions::ALL.iter().count(), 8);
    assert!(
        Permissions::NONE
            .with(Permission::Mkdir)
            .has(Permission::Mkdir)
    );
    assert!(!Permissions::READ_ONLY.has(Permission::Write));
}

#[test]
fn fingerprints_normalise_on_parse() {
    let lower: Fingerprint = "ab".repeat(32).parse().unwrap();
    let text = lower.to_string();
    assert!(text.starts_with("AB:AB:") && text.len() == 95, "{text}");
    assert_eq!(text.parse::<Fingerprint>(), Ok(lower));
    let mixed = format!("aB{}", "Ab".repeat(31));
    assert_eq!(mixed.parse::<Fingerprint>(), Ok(lower));
    // Colons anywhere, as some tools group digits differently.
    let grouped = format!("abab:{}", "ab".repeat(30));
    assert_eq!(grouped.parse::<Fingerprint>(), Ok(lower));
}

#[test]
fn fingerprints_refuse_wrong_lengths_and_non_hex() {
    for bad in [
        "",
        "abc",
        &"ab".repeat(31),
        &"ab".repeat(33),
        &format!("{}a", "ab".repeat(32)),
        &format!("{}zz", "ab".repeat(31)),
        &format!("{} ", "ab".repeat(32)),
        &format!("+b{}", "ab".repeat(31)),
        "é".repeat(32).as_str(),
    ] {
        assert_eq!(bad.parse::<Fingerprint>(), Err(FingerprintError), "{bad:?}");
    }
    assert_eq!(
        FingerprintError.to_string(),
        "must be a SHA-256 fingerprint (64 hex digits, colons optional)"
    );
}

#[test]
fn a_fingerprint_is_the_sha256_of_the_der() {
    // SHA-256 of the empty input, a known vector.
    assert_eq!(
        Fingerprint::of_der(b"").to_string(),
        "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
    );
}

#[test]
fn fingerprints_round_trip_through_serde() {
    let f = Fingerprint::of_der(b"certificate");
    let json = serde_json::to_string(&f).unwrap();
    assert_eq!(json, format!("\"{f}\""));
    assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), f);
    assert!(serde_json::from_str::<Fingerprint>("\"abc\"").is_err());
}

#[test]
fn tls_policies_order_and_spell_as_the_config_file() {
    assert!(TlsPolicy::Optional < TlsPolicy::Login && TlsPolicy::Login < TlsPolicy::LoginAndData);
    assert!(!TlsPolicy::Optional.login() && TlsPolicy::Login.login() && !TlsPolicy::Login.data());
    assert!(TlsPolicy::LoginAndData.login() && TlsPolicy::LoginAndData.data());
    assert_eq!(TlsPolicy::LoginAndData.to_string(), "login_and_data");
    assert_eq!(SyncPolicy::default(), SyncPolicy::Replacements);
}

/// The crate's layering, read from its sources: which module may use which (`crate::x` paths
/// on code lines), so that a leaf stays a leaf and no import circle comes back.
mod layering {
    use std::path::{Path, PathBuf};

    /// The `.rs` files under `dir`, recursively.
    fn sources(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut dirs = vec![dir.to_owned()];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    /// The files of module `name`: `src/name.rs` and everything under `src/name/` (at least
    /// one, or the module was renamed and the test would check nothing).
    fn module(name: &str) -> Vec<PathBuf> {
        let file = src().join(format!("{name}.rs"));
        let mut files: Vec<PathBuf> = file.is_file().then_some(file).into_iter().collect();
        let dir = src().join(name);
        if dir.is_dir() {
            files.extend(sources(&dir));
        }
        assert!(!files.is_empty(), "no module {name}");
        files
    }

    /// Every `crate::a::b` path on a code line of `files` (comments left out), as
    /// (file:line, path).
    fn crate_paths(files: &[PathBuf]) -> Vec<(String, String)> {
        // Spelled in two pieces so that this file's own text is no match.
        let needle = ["crate", "::"].concat();
        let mut out = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                for (at, _) in code.match_indices(&needle) {
                    // `$crate::` and `ferroftp_proto::...crate::` are not this crate's paths.
                    if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
                        continue;
                    }
                    let rest = &code[at + needle.len()..];
                    let path: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':' || *c == '{')
                        .collect();
                    out.push((format!("{}:{}", file.display(), n + 1), path));
                }
            }
        }
        out
    }

    /// The paths of `files` that start with none of `allowed`.
    fn outside(files: &[PathBuf], allowed: &[&str]) -> Vec<(String, String)> {
        crate_paths(files)
            .into_iter()
            .filter(|(_, path)| !allowed.iter().any(|a| path.starts_with(a)))
            .collect()
    }

    #[test]
    fn the_scan_finds_crate_paths() {
        // The server uses config and auth: if the scan saw nothing there, it saw nothing.
        let server = crate_paths(&module("server"));
        assert!(
            server.iter().any(|(_, p)| p.starts_with("config::")),
            "{server:?}"
        );
        assert!(
            server.iter().any(|(_, p)| p.starts_with("auth::")),
            "{server:?}"
        );
    }

    #[test]
    fn policy_is_a_leaf() {
        let used = crate_paths(&module("policy"));
        assert!(
            used.is_empty(),
            "policy must import nothing from the crate: {used:?}"
        );
    }

    #[test]
    fn the_shared_error_module_is_a_leaf() {
        let used = crate_paths(&module("error"));
        assert!(
            used.is_empty(),
            "error must import nothing from the crate: {used:?}"
        );
    }

    #[test]
    fn config_uses_only_the_policy_leaf() {
        let used = outside(&module("config"), &["config::", "policy::"]);
        assert!(
            used.is_empty(),
            "config must not use auth, tls, server, ...: {used:?}"
        );
    }

    #[test]
    fn tls_uses_only_policy_and_the_tls_settings() {
        // The settings it is given are plain data; nothing of config's parsing or checks.
        let used = outside(&module("tls"), &["tls::", "policy::", "config::TlsConfig"]);
        assert!(
            used.is_empty(),
            "tls must not use auth, server, ...: {used:?}"
        );
    }

    #[test]
    fn the_modules_form_no_circle() {
        use std::collections::{BTreeMap, BTreeSet};
        let bin = src().join("bin");
        let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in sources(&src()).into_iter().filter(|f| !f.starts_with(&bin)) {
            let Ok(rel) = file.strip_prefix(src()) else {
                continue;
            };
            let top = rel
                .iter()
                .next()
                .and_then(|c| c.to_str())
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned();
            for (_, path) in crate_paths(std::slice::from_ref(&file)) {
                let used = path.split("::").next().unwrap_or("").to_owned();
                if !used.is_empty() && used != top {
                    uses.entry(top.clone()).or_default().insert(used);
                }
            }
        }
        assert!(uses.contains_key("server"), "{uses:?}");
        // From each module, follow the uses: coming back to it is a circle.
        for start in uses.keys() {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<&String> = uses[start].iter().collect();
            while let Some(m) = todo.pop() {
                assert!(m != start, "{start} uses itself through others: {uses:?}");
                if seen.insert(m) {
                    todo.extend(uses.get(m).into_iter().flatten());
                }
            }
        }
    }

    #[test]
    fn errors_are_typed_outside_the_binary() {
        let bin = src().join("bin");
        let found: Vec<String> = sources(&src())
            .into_iter()
            .filter(|f| !f.starts_with(&bin))
            .flat_map(|f| {
                let text = std::fs::read_to_string(&f).unwrap();
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| l.contains(&["any", "how"].concat()))
                    .map(|(n, _)| format!("{}:{}", f.display(), n + 1))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            found.is_empty(),
            "the library's errors are typed (thiserror): {found:?}"
        );
    }
}
