//! The configuration reference, ferroftp.toml(5), made from the annotated example file
//! ([`EXAMPLE`](super::EXAMPLE)): one definition for `ferroftp config --example`, the man page
//! and the test that every `serve` flag names a key that exists.

/// One piece of the example file, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The opening comment: what the file is.
    Intro(Vec<String>),
    /// A table header (`[passive]`, `[[listener]]`), with the comment above it.
    Table {
        /// The table's dotted name, without brackets.
        name: String,
        /// `[[name]]`: an array of tables, one per item.
        array: bool,
        /// The comment lines just above the header.
        text: Vec<String>,
    },
    /// A key with the comment lines above it.
    Key {
        /// The dotted path, table included (`passive.ports`).
        path: String,
        /// The value as written (the default, or an example when `set` is false).
        value: String,
        /// Whether the key is set in the example (a default) or commented out (absent by
        /// default; the value is an example).
        set: bool,
        /// The comment lines just above it.
        text: Vec<String>,
    },
    /// A comment between keys that belongs to none (followed by a blank line).
    Note(Vec<String>),
}

/// `key = value` (or `# key = value`) -> (key, value).
fn key_line(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(" = ")?;
    let key = key.trim();
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    ok.then(|| (key, value.trim()))
}

/// `[name]` or `[[name]]` -> (name, array).
fn table_line(line: &str) -> Option<(&str, bool)> {
    let line = line.trim();
    if let Some(name) = line.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
        return Some((name.trim(), true));
    }
    let name = line.strip_prefix('[')?.strip_suffix(']')?;
    (!name.is_empty() && !name.contains(['"', ','])).then(|| (name.trim(), false))
}

/// The example file as a list of [`Item`]s.
pub fn items(example: &str) -> Vec<Item> {
    let mut out = Vec::new();
    let mut comment: Vec<String> = Vec::new();
    let mut table: Option<String> = None;
    let mut intro_done = false;
    for line in example.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            if !comment.is_empty() {
                let text = std::mem::take(&mut comment);
                out.push(if intro_done {
                    Item::Note(text)
                } else {
                    Item::Intro(text)
                });
            }
            intro_done = true;
            continue;
        }
        intro_done = true;
        let (body, set) = match trimmed.strip_prefix('#') {
            Some(rest) => (rest.strip_prefix(' ').unwrap_or(rest), false),
            None => (trimmed, true),
        };
        if let Some((name, array)) = table_line(body) {
            table = Some(name.to_owned());
            out.push(Item::Table {
                name: name.to_owned(),
                array,
                text: std::mem::take(&mut comment),
            });
        } else if let Some((key, value)) = key_line(body).filter(|_| set || !body.starts_with(' '))
        {
            out.push(Item::Key {
                path: match &table {
                    Some(t) => format!("{t}.{key}"),
                    None => key.to_owned(),
                },
                value: value.to_owned(),
                set,
                text: std::mem::take(&mut comment),
            });
        } else if !set {
            comment.push(body.to_owned());
        }
    }
    if !comment.is_empty() {
        out.push(Item::Note(comment));
    }
    out
}

/// Every key path the example documents (`root`, `passive.ports`, `listener.bind`, ...).
pub fn keys(example: &str) -> Vec<String> {
    items(example)
        .into_iter()
        .filter_map(|i| match i {
            Item::Key { path, .. } => Some(path),
            _ => None,
        })
        .collect()
}

/// Text for roff: backslashes and hyphens escaped, and a line never starts as a request.
fn roff(text: &str) -> String {
    format!("\\&{}", text.replace('\\', "\\e").replace('-', "\\-"))
}

/// Comment lines as roff: a line that starts a value's description (`"plain": ...`) starts a
/// new line, and so does an indented one after "e.g." or a colon (a command to type); the
/// rest, indented continuations included, is filled as a paragraph.
fn paragraph(out: &mut String, text: &[String]) {
    let mut previous = "";
    for line in text {
        if line.trim().is_empty() {
            out.push_str(".PP\n");
            previous = "";
            continue;
        }
        let command =
            line.starts_with("  ") && (previous.ends_with("e.g.") || previous.ends_with(':'));
        if line.starts_with('"') || command {
            out.push_str(".br\n");
        }
        out.push_str(&roff(line.trim()));
        out.push('\n');
        if command {
            out.push_str(".br\n");
        }
        previous = line.trim_end();
    }
}

/// ferroftp.toml(5) in man(7) roff.
pub fn man_page(example: &str, version: &str) -> String {
    let mut out = format!(
        ".TH ferroftp.toml 5 \"\" \"ferroftp {}\" \"File Formats\"\n.SH NAME\nferroftp.toml \\- configuration file of the ferroftp FTP server\n.SH SYNOPSIS\n/etc/ferroftp/ferroftp.toml\n",
        roff(version).trim_start_matches("\\&")
    );
    out.push_str(".SH DESCRIPTION\n");
    let mut in_keys = false;
    for item in items(example) {
        match item {
            Item::Intro(text) => {
                out.push_str(".PP\n");
                paragraph(&mut out, &text);
            }
            Item::Table { name, array, text } => {
                let header = if array {
                    format!("[[{name}]]")
                } else {
                    format!("[{name}]")
                };
                out.push_str(&format!(
                    ".SH \"{}\"\n",
                    roff(&header).trim_start_matches("\\&")
                ));
                in_keys = true;
                if !text.is_empty() {
                    out.push_str(".PP\n");
                    paragraph(&mut out, &text);
                }
            }
            Item::Key {
                path,
                value,
                set,
                text,
            } => {
                if !in_keys {
                    out.push_str(".SH \"TOP-LEVEL KEYS\"\n");
                    in_keys = true;
                }
                let key = path.rsplit('.').next().unwrap_or(&path);
                let shown = if set {
                    format!("default: {value}")
                } else {
                    format!("not set by default; for example: {value}")
                };
                out.push_str(&format!(
                    ".TP\n\\fB{}\\fR (\\fI{}\\fR)\n",
                    roff(key).trim_start_matches("\\&"),
                    roff(&shown).trim_start_matches("\\&")
                ));
                if text.is_empty() {
                    out.push_str("See above.\n");
                } else {
                    paragraph(&mut out, &text);
                }
            }
            Item::Note(text) => {
                out.push_str(".PP\n");
                paragraph(&mut out, &text);
            }
        }
    }
    out.push_str(
        ".SH \"SEE ALSO\"\n\\fBferroftp\\fR(1), \\fBferroftp\\-serve\\fR(1), \\fBferroftp\\-check\\-config\\fR(1), \\fBferroftp\\-config\\fR(1)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_yields_its_tables_and_keys() {
        let keys = keys(super::super::EXAMPLE);
        for key in [
            "root",
            "users_file",
            "listener.bind",
            "listener.tls_policy",
            "passive.ports",
            "passive.announce.from",
            "tls.cert",
            "log.level",
            "admin.token_file",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
        }
        let page = man_page(super::super::EXAMPLE, "0.1.0");
        assert!(page.contains(".SH \"[passive]\""), "{page}");
        assert!(
            page.contains("\\fBmax_sessions\\fR (\\fIdefault: 1000\\fR)"),
            "{page}"
        );
    }
}
