//! Reading the TOML into a [`Config`] with errors an administrator can act on: each names the
//! key (`limits.max_sessions`, not only a line and column), says what was expected in plain
//! words, and offers a "did you mean" for a misspelled key or value. Also the parsers for the
//! values whose standard errors say too little (CIDR networks, socket addresses, log filters).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Deserializer};

use super::Config;

/// Parse `text`; the error names the key and the line.
pub(super) fn config(text: &str) -> Result<Config, String> {
    match serde_path_to_error::deserialize::<_, Config>(toml::Deserializer::new(text)) {
        Ok(config) => Ok(config),
        Err(e) => {
            let path = e.path().to_string();
            Err(describe(text, &path, e.inner()))
        }
    }
}

/// One error as a sentence: where (key, line), then what is wrong.
fn describe(text: &str, path: &str, e: &toml::de::Error) -> String {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let message = e.message().trim();
    // A value that is not TOML at all (`enabled = yes`): toml only knows it wanted a quote.
    if let Some(line_no) = line {
        if let Some(said) = bare_word(text, line_no) {
            return said;
        }
    }
    let key = if path.is_empty() || path == "." {
        None
    } else {
        Some(path.replace(".?", "").replace('?', ""))
    };
    let (key, reason) = match unknown_key(message) {
        Some((field, expected)) => {
            // The path ends with the unknown key itself; its table is the rest.
            let full = key.unwrap_or_else(|| field.clone());
            let parent = full
                .strip_suffix(field.as_str())
                .map(|p| p.trim_end_matches('.').to_owned())
                .filter(|p| !p.is_empty());
            (
                Some(full),
                unknown_reason("key", &field, &expected, &parent),
            )
        }
        None => (key, plain_words(message)),
    };
    match (key, line) {
        (Some(key), Some(line)) => format!("key `{key}` (line {line}): {reason}"),
        (Some(key), None) => format!("key `{key}`: {reason}"),
        // A TOML syntax error: toml's own text shows the line and a caret; name the key of
        // that line when it has one.
        (None, Some(line)) => match key_at_line(text, line) {
            Some(key) => format!("key `{key}` (line {line}): {}", e.to_string().trim_end()),
            None => e.to_string().trim_end().to_owned(),
        },
        (None, None) => e.to_string().trim_end().to_owned(),
    }
}

/// `unknown field `x`, expected one of `a`, `b`` -> ("x", ["a", "b"]).
fn unknown_key(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    Some((field.to_owned(), backticked(rest)))
}

/// The words in backticks of `text`, in order.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// "unknown key `x`; did you mean `y`? (valid keys: ...)".
fn unknown_reason(what: &str, word: &str, valid: &[String], parent: &Option<String>) -> String {
    let mut out = format!("unknown {what} `{word}`");
    if let Some(best) = did_you_mean(word, valid.iter().map(String::as_str)) {
        out.push_str(&format!("; did you mean `{best}`?"));
    }
    if valid.is_empty() {
        out.push_str(" (this table has no keys)");
    } else {
        let here = match parent {
            Some(p) if !p.is_empty() => format!(" in `{p}`"),
            _ => String::new(),
        };
        out.push_str(&format!(" (valid {what}s{here}: {})", valid.join(", ")));
    }
    out
}

/// The candidate closest to `word`, if one is close enough to be a typo of it.
fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&word, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|&(d, c)| d <= (c.len() / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// serde's messages in the words of the config file.
fn plain_words(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((word, rest)) = rest.split_once('`') {
            let valid = backticked(rest);
            let mut out = format!("`{word}` is not one of {}", valid.join(", "));
            if let Some(best) = did_you_mean(word, valid.iter().map(String::as_str)) {
                out.push_str(&format!("; did you mean `{best}`?"));
            }
            return out;
        }
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((got, expected)) = rest.split_once(", expected ") {
                return type_mismatch(got, expected);
            }
        }
    }
    message.to_owned()
}

/// "expected a number, got a string "1000" (write it without quotes)".
fn type_mismatch(got: &str, expected: &str) -> String {
    let wanted = match expected {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a number",
        "i64" | "i32" | "isize" => "a whole number",
        "a boolean" => "true or false",
        "a string" | "path string" => "a string in quotes",
        "a sequence" => "a list in brackets, like [\"a\", \"b\"]",
        other if other.starts_with("struct ") || other.starts_with("a map") => "a table",
        other => other,
    };
    // serde writes `string "1000"`, `integer `5``, `boolean `true``, `sequence`, `map`.
    let (got_words, unquoted) = if let Some(s) = got.strip_prefix("string ") {
        let inner = s.trim_matches('"');
        let fits = match wanted {
            "true or false" => matches!(inner, "true" | "false"),
            "a number" | "a whole number" => inner.parse::<i64>().is_ok(),
            _ => false,
        };
        (format!("a string {s}"), fits)
    } else if let Some(n) = got.strip_prefix("integer ") {
        let n = n.trim_matches('`');
        if wanted == "a number" && n.starts_with('-') {
            return format!("expected a number 0 or more, got {n}");
        }
        (format!("the number {n}"), false)
    } else if let Some(f) = got.strip_prefix("floating point ") {
        (
            format!("{} (a whole number is needed)", f.trim_matches('`')),
            false,
        )
    } else if let Some(b) = got.strip_prefix("boolean ") {
        (b.trim_matches('`').to_owned(), false)
    } else if got == "sequence" {
        ("a list".to_owned(), false)
    } else if got == "map" {
        ("a table".to_owned(), false)
    } else {
        (got.to_owned(), false)
    };
    let mut out = format!("expected {wanted}, got {got_words}");
    if unquoted {
        out.push_str(" (write it without quotes)");
    } else if expected == "a sequence" {
        if let Some(s) = got.strip_prefix("string ") {
            out.push_str(&format!(" (for one item write [{s}])"));
        }
    }
    out
}

/// The dotted key set on `line` (`key = ...` under the last table header above it).
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let this = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = this.split_once('=')?;
    let key = key.trim();
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if !plain {
        return None;
    }
    let table = text
        .lines()
        .take(line - 1)
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("[[")
                .and_then(|r| r.split_once("]]"))
                .or_else(|| l.strip_prefix('[').and_then(|r| r.split_once(']')))
                .map(|(name, _)| name.trim().to_owned())
        })
        .last();
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_owned(),
    })
}

/// `key = word` on `line` where the word is not a TOML value: say what to write instead.
fn bare_word(text: &str, line: usize) -> Option<String> {
    let this = text.lines().nth(line.checked_sub(1)?)?;
    let (key, value) = this.split_once('=')?;
    let key = key.trim();
    let value = value.split('#').next().unwrap_or("").trim();
    let is_word = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_alphanumeric() || "_-.".contains(c))
        && value.chars().next().is_some_and(char::is_alphabetic)
        && !matches!(value, "true" | "false" | "inf" | "nan");
    if !is_word {
        return None;
    }
    let full = key_at_line(text, line)?;
    let advice = match value.to_ascii_lowercase().as_str() {
        "yes" | "no" | "on" | "off" | "true" | "false" | "y" | "n" | "enabled" | "disabled" => {
            "write true or false (without quotes)".to_owned()
        }
        _ => format!("text must be in quotes: {key} = \"{value}\""),
    };
    Some(format!(
        "key `{full}` (line {line}): `{value}` is not a TOML value; {advice}"
    ))
}

/// A network in CIDR notation, with errors that say what is wrong: the prefix length too
/// long, or host bits set (`10.0.0.1/8`, which is almost always a typo for `10.0.0.0/8`).
pub fn net(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    let Some((addr, len)) = text.split_once('/') else {
        return Err(format!(
            "`{text}` is not a network: write ADDRESS/PREFIX-LENGTH, like 10.0.0.0/8 (or {text}/32 for one IPv4 address, /128 for IPv6)"
        ));
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` in `{text}` is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 =
        len.parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| match len.parse::<u64>() {
                Ok(n) => format!(
                    "`{text}`: prefix length {n} is more than {max} (the most for {})",
                    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
                ),
                Err(_) => format!("`{len}` in `{text}` is not a prefix length (0-{max})"),
            })?;
    let net = ipnet::IpNet::new(ip, len).map_err(|e| format!("`{text}`: {e}"))?;
    if net.trunc() != net {
        return Err(format!(
            "`{text}` has host bits set ({ip} is not the first address of a /{len}): write `{}` for the network, or `{ip}/{max}` for this one address",
            net.trunc()
        ));
    }
    Ok(net)
}

/// An address and port, with errors that say which part is wrong.
pub fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let example = "like 127.0.0.1:2121, 0.0.0.0:21 or [::]:21";
    let Some((host, port)) = text.rsplit_once(':') else {
        if text.parse::<IpAddr>().is_ok() {
            return Err(format!(
                "`{text}` has no port: write ADDRESS:PORT, {example}"
            ));
        }
        return Err(format!(
            "`{text}` is not an IP address and port: write ADDRESS:PORT, {example}"
        ));
    };
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_err()
    {
        return Err(format!(
            "`{text}`: port {port} is more than 65535, the highest port"
        ));
    }
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "`{port}` in `{text}` is not a port number: write ADDRESS:PORT, {example}"
        ));
    }
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(format!(
            "an IPv6 address with a port is written in brackets: [{host}]:{port}"
        ));
    }
    Err(format!(
        "`{host}` in `{text}` is not an IP address (host names are not accepted here): write ADDRESS:PORT, {example}"
    ))
}

/// The level names a `log.level` directive may end in.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A `log.level` filter: EnvFilter directives whose levels are all real level names. A bare
/// word that is not a level (`inf`) would be taken by EnvFilter as a target name and silence
/// every other log line, failed logins included.
pub fn log_filter(text: &str) -> Result<(), String> {
    let allowed = LEVELS.join(", ");
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level.trim(),
            // `target[span]` alone: EnvFilter's syntax, checked by the parse below.
            None if directive.contains('[') => continue,
            None => directive,
        };
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            let mut out = format!("`{level}` is not a log level (allowed: {allowed}");
            if directive.contains('=') {
                out.push(')');
            } else {
                out.push_str("; for one module write MODULE=LEVEL, like ferroftp=debug)");
            }
            if let Some(best) = did_you_mean(level, LEVELS) {
                out.push_str(&format!("; did you mean `{best}`?"));
            }
            return Err(out);
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "`{text}` is not a valid filter such as \"info\" or \"ferroftp=debug,warn\": {e}"
            )
        })
}

/// serde glue: a list of networks through [`net`].
pub(super) fn nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| net(s).map_err(serde::de::Error::custom))
        .collect()
}

/// serde glue: an address through [`socket_addr`].
pub(super) fn addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    socket_addr(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// serde glue: an optional address through [`socket_addr`].
pub(super) fn opt_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    addr(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_say_what_is_wrong() {
        assert_eq!(net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(net("::1/128").unwrap().to_string(), "::1/128");
        let e = net("10.0.0.0/33").unwrap_err();
        assert!(e.contains("prefix length 33 is more than 32"), "{e}");
        let e = net("10.0.0.1/8").unwrap_err();
        assert!(e.contains("host bits") && e.contains("`10.0.0.0/8`"), "{e}");
        let e = net("10.0.0.1").unwrap_err();
        assert!(e.contains("10.0.0.1/32"), "{e}");
        let e = net("nonsense/8").unwrap_err();
        assert!(e.contains("not an IP address"), "{e}");
    }

    #[test]
    fn addresses_say_which_part_is_wrong() {
        assert_eq!(socket_addr("[::1]:21").unwrap().port(), 21);
        let e = socket_addr("0.0.0.0:99999").unwrap_err();
        assert!(e.contains("port 99999 is more than 65535"), "{e}");
        let e = socket_addr("127.0.0.1").unwrap_err();
        assert!(e.contains("no port"), "{e}");
        let e = socket_addr("ftp.example.org:21").unwrap_err();
        assert!(e.contains("not an IP address"), "{e}");
        let e = socket_addr("::1:21").unwrap_err();
        assert!(e.contains("[::1]:21"), "{e}");
    }

    #[test]
    fn log_levels_must_be_level_names() {
        for good in ["info", "INFO", "ferroftp=debug,warn", "warn,rustls=off", ""] {
            log_filter(good).unwrap();
        }
        let e = log_filter("inf").unwrap_err();
        assert!(
            e.contains("`inf`") && e.contains("did you mean `info`"),
            "{e}"
        );
        let e = log_filter("ferroftp=verbose").unwrap_err();
        assert!(e.contains("`verbose`") && e.contains("trace, debug"), "{e}");
    }

    #[test]
    fn parse_errors_name_the_key_and_suggest() {
        let e = config("[limits]\nmax_sessions = \"1000\"\n").unwrap_err();
        assert!(
            e.contains("`limits.max_sessions`")
                && e.contains("line 2")
                && e.contains("write it without quotes"),
            "{e}"
        );
        let e = config("[limits]\nmax_sesions = 5\n").unwrap_err();
        assert!(
            e.contains("`limits.max_sesions`") && e.contains("did you mean `max_sessions`"),
            "{e}"
        );
        let e = config("[tsl]\n").unwrap_err();
        assert!(e.contains("did you mean `tls`"), "{e}");
        let e = config("[active]\nenabled = yes\n").unwrap_err();
        assert!(
            e.contains("`active.enabled`") && e.contains("write true or false"),
            "{e}"
        );
        let e = config("[[listener]]\nbind = \"127.0.0.1:21\"\nmode = \"explict\"\n").unwrap_err();
        assert!(
            e.contains("`listener[0].mode`") && e.contains("did you mean `explicit`"),
            "{e}"
        );
        let e = config("[tls]\ncert = \n").unwrap_err();
        assert!(e.contains("key `tls.cert` (line 2)"), "{e}");
        let e = config("[bans]\nallow = [\"10.0.0.1/8\"]\n").unwrap_err();
        assert!(
            e.contains("`bans.allow`") && e.contains("10.0.0.0/8"),
            "{e}"
        );
    }
}
