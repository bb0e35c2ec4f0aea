//! Reading the documentation: its pages, fenced blocks, shell lines, headings and code spans.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::repo;

/// A Markdown file of the documentation, its path relative to the repository.
pub(crate) struct Doc {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
}

/// README.md, docs/ARCHITECTURE.md and every page under docs/src, in a stable order.
pub(crate) fn docs() -> Vec<Doc> {
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
pub(crate) struct Block {
    /// Where it starts, for messages: `docs/src/ftps.md:42`.
    pub(crate) at: String,
    /// The first word of the info string (`toml`, `sh`, ...).
    pub(crate) lang: String,
    /// `users-file`, `skip REASON`, ... from `<!-- check: ... -->` on the line before.
    pub(crate) marker: Option<String>,
    pub(crate) body: String,
}

/// The fenced code blocks of a page (fences may be indented, as in list items).
pub(crate) fn blocks(doc: &Doc) -> Vec<Block> {
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

/// A shell line as words, without comments; operators (`|`, `&&`, `;`, `>`...) are their own words.
pub(crate) fn words(line: &str) -> Vec<String> {
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
pub(crate) fn ferroftp_args(command: &[String]) -> Option<Vec<String>> {
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
pub(crate) fn shell_lines(block: &Block) -> Vec<String> {
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

/// The text of a page's section: from `heading` to the next heading of its level or above.
pub(crate) fn section<'a>(page: &'a str, heading: &str) -> Option<&'a str> {
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

/// The anchors mdBook gives a page's headings (and explicit `id="..."`s).
pub(crate) fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in prose_lines(text) {
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

/// The lines of a page outside its fenced code blocks (fence lines left out too).
fn prose_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut in_code = false;
    text.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            return false;
        }
        !in_code
    })
}

/// A page's text without its code blocks and code spans (no links there).
pub(crate) fn prose(text: &str) -> String {
    let mut out = String::new();
    for line in prose_lines(text) {
        out.extend(line.split('`').step_by(2));
        out.push('\n');
    }
    out
}

/// The inline code spans of a page's prose (outside fenced blocks).
pub(crate) fn code_spans(text: &str) -> Vec<String> {
    prose_lines(text)
        .flat_map(|line| line.split('`').skip(1).step_by(2).map(str::to_owned))
        .collect()
}
