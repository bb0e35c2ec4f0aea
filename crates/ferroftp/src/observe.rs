//! Logging: `tracing` events to stderr, as text or JSON lines, filtered by the config's
//! `log.level` unless `RUST_LOG` is set. Sessions are spans carrying id, peer and user.
//! Also: Prometheus [`metrics`] and the [`xferlog`] transfer log.

use tracing_subscriber::EnvFilter;

pub(crate) mod metrics;
pub(crate) mod xferlog;

use crate::config::{LogConfig, LogFormat};

/// Install the global subscriber. Call once, at start.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
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
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("ferroftp: logging already set up: {e}");
    }
}
