//! proto's modules import each other one way only: a test over their sources.

/// Each module's source, up to its unit tests (tests may import anything).
const MODULES: &[(&str, &str)] = &[
    ("addr", include_str!("addr.rs")),
    ("ascii", include_str!("ascii.rs")),
    ("command", include_str!("command.rs")),
    ("error", include_str!("error.rs")),
    ("line", include_str!("line.rs")),
    ("listing", include_str!("listing.rs")),
    ("reply", include_str!("reply.rs")),
    ("verbs", include_str!("verbs.rs")),
];

/// The modules `source` refers to as `crate::name`, outside comments and unit tests.
fn imports(source: &str) -> Vec<&'static str> {
    let code = source.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = Vec::new();
    for line in code.lines().map(str::trim) {
        if line.starts_with("//") {
            continue;
        }
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                // `use crate::{a, b::C};`
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or(""))
                    .collect(),
                None => vec![
                    rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                        .next()
                        .unwrap_or(""),
                ],
            };
            for name in names {
                if let Some((m, _)) = MODULES.iter().find(|(m, _)| *m == name) {
                    if !out.contains(m) {
                        out.push(*m);
                    }
                }
            }
        }
    }
    out
}

/// The modules that sit on an import cycle (or import one that does).
fn on_a_cycle<'a>(edges: &[(&'a str, Vec<&'a str>)]) -> Vec<&'a str> {
    // Peel off modules that import nothing left; whatever remains depends on a cycle.
    let mut left: Vec<&str> = edges.iter().map(|(m, _)| *m).collect();
    loop {
        let snapshot = left.clone();
        left.retain(|m| {
            edges
                .iter()
                .find(|(n, _)| n == m)
                .is_some_and(|(_, to)| to.iter().any(|t| snapshot.contains(t) && t != m))
        });
        if left.len() == snapshot.len() {
            return left;
        }
    }
}

#[test]
fn a_cycle_is_found() {
    let edges = vec![
        ("command", vec!["addr"]),
        ("addr", vec!["error"]),
        ("error", vec![]),
    ];
    assert!(on_a_cycle(&edges).is_empty());
    let edges = vec![
        ("command", vec!["addr"]),
        ("addr", vec!["command"]),
        ("error", vec![]),
    ];
    assert_eq!(on_a_cycle(&edges), ["command", "addr"]);
}

#[test]
fn the_scanner_sees_imports() {
    assert_eq!(
        imports("use crate::addr;\nuse crate::{error::E, reply};"),
        ["addr", "error", "reply"]
    );
    assert_eq!(
        imports("// crate::addr\nfn f() { crate::line::x() }"),
        ["line"]
    );
    assert_eq!(
        imports("#[cfg(test)]\nuse crate::addr;"),
        Vec::<&str>::new()
    );
}

#[test]
fn proto_modules_import_each_other_without_a_cycle() {
    let edges: Vec<(&str, Vec<&str>)> = MODULES.iter().map(|(m, src)| (*m, imports(src))).collect();
    let left = on_a_cycle(&edges);
    assert!(
        left.is_empty(),
        "modules on an import cycle: {left:?}; edges: {edges:?}"
    );
    // The intended direction: the parser depends on the codecs, never the other way.
    let of = |m: &str| {
        edges
            .iter()
            .find(|(n, _)| *n == m)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    };
    for leaf in ["addr", "listing", "error", "reply", "line", "ascii"] {
        assert!(!of(leaf).contains(&"command"), "{leaf} imports command");
        assert!(!of(leaf).contains(&"verbs"), "{leaf} imports verbs");
    }
    assert!(!of("verbs").contains(&"command"), "verbs imports command");
    // And the scanner does see the parser's imports.
    assert_eq!(of("command"), ["addr", "error", "listing", "verbs"]);
}
