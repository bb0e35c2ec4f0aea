//! Logging: `tracing` events to stderr, as text or JSON lines, filtered by the config's
//! `log.level` unless `RUST_LOG` is set. Sessions are spans carrying id, peer and user.
//! Also: Prometheus [`metrics`] and the [`xferlog`] transfer log.

use std::fmt::{self, Write as _};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt as _;

pub(crate) mod metrics;
pub(crate) mod xferlog;

use crate::config::{LogConfig, LogFormat};

/// Install the global subscriber. Call once, at start.
pub fn init(cfg: &LogConfig) {
    // RUST_LOG gets the same check as `log.level`: a bare typo such as `inf` would be taken as
    // a target name and silence every line, failed logins included.
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| match crate::config::log_filter(&v) {
            Ok(()) => EnvFilter::try_new(&v).ok(),
            Err(why) => {
                eprintln!(
                    "ferroftp: ignoring RUST_LOG: {why}; logging with log.level = {:?}",
                    cfg.level
                );
                None
            }
        });
    let filter = from_env
        .or_else(|| EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // rustls warns about every client that sends an IP address as SNI (lftp, curl); we log
    // handshake failures ourselves, with the session they belong to.
    let filter = match "rustls=error".parse() {
        Ok(directive) if !filter.to_string().contains("rustls") => filter.add_directive(directive),
        _ => filter,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        );
    let result = match cfg.format {
        // Every field goes through one escaping formatter: user names, paths and commands are
        // chosen by clients, and a raw CR or ESC in them could forge or hide log lines.
        // (JSON strings are escaped by the JSON encoder.)
        LogFormat::Text => builder.fmt_fields(escaped_fields()).try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("ferroftp: logging already set up: {e}");
    }
}

/// The text format's fields, `name=value` separated by spaces as tracing's default formatter
/// writes them, with every control character escaped (`\r`, `\u{1b}`).
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    tracing_subscriber::fmt::format::debug_fn(
        |w: &mut tracing_subscriber::fmt::format::Writer<'_>,
         field: &tracing::field::Field,
         value: &dyn fmt::Debug| {
            let mut out = Escaping(w);
            if field.name() == "message" {
                write!(out, "{value:?}")
            } else {
                write!(out, "{field}={value:?}")
            }
        },
    )
    .delimited(" ")
}

/// A `fmt::Write` that passes text through with control characters escaped.
struct Escaping<'a, W: ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for part in s.split_inclusive(char::is_control) {
            let mut chars = part.chars();
            match chars.next_back() {
                Some(c) if c.is_control() => {
                    self.0.write_str(chars.as_str())?;
                    write!(self.0, "{}", c.escape_default())?;
                }
                _ => self.0.write_str(part)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let mut s = String::new();
        write!(Escaping(&mut s), "ev\x1b[31mil\rfake ip=6.6.6.6\n\u{9b}é").unwrap();
        assert_eq!(s, "ev\\u{1b}[31mil\\rfake ip=6.6.6.6\\n\\u{9b}é");
    }
}
