//! Why a server cannot start: each error names the key or the listener and the reason.

use std::io;
use std::net::SocketAddr;

use crate::config::ListenerMode;
use crate::error::BindError;
use crate::observe::xferlog::XferlogError;

use super::admin::TokenError;

/// Why [`Server::bind`](super::Server::bind) failed; nothing is served then.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener, the metrics or the admin API cannot listen on its address.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// `active.source_port_below_listener` is on, but the port below a listener's cannot be
    /// bound.
    #[error(
        "active.source_port_below_listener: cannot bind port {port} for active data connections of listener {listener}: {error}{hint}"
    )]
    SourcePort {
        /// The port below the listener's.
        port: u16,
        /// The listener's address.
        listener: SocketAddr,
        /// Why (in the message, so not a `source`).
        error: io::Error,
        /// What to do about a privileged port, or nothing.
        hint: &'static str,
    },
    /// A listener offers TLS but no TLS state was given.
    #[error("listener {bind} ({mode}) needs TLS, but no TLS configuration was given")]
    NoTls {
        /// The listener's address.
        bind: SocketAddr,
        /// Its mode.
        mode: ListenerMode,
    },
    /// A home (of a user or of anonymous logins) is not where the server accepts it.
    #[error("{0}")]
    Homes(String),
    /// The admin API's token file cannot be used.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The transfer log cannot be opened.
    #[error(transparent)]
    Xferlog(#[from] XferlogError),
    /// Another I/O error (the root's absolute path, a socket).
    #[error(transparent)]
    Io(#[from] io::Error),
}
