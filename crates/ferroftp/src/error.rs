//! Errors that more than one part of the library returns. A leaf: it imports nothing from the
//! crate, so that the server, the metrics and the admin API can all use it.

use std::io;
use std::net::SocketAddr;

/// A configured address cannot be listened on; names the address and its config key.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({key}): {error}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// The config key it comes from (`listener.bind`, `metrics.listen`, `admin.listen`).
    pub key: &'static str,
    /// Why, as the OS said it. Not a `source`: the message already ends with it, and a
    /// source would be printed a second time by error reporters that walk the chain.
    pub error: io::Error,
}

/// Bind a TCP listener on `addr`, the error naming `key`.
pub(crate) async fn bind(
    addr: SocketAddr,
    key: &'static str,
) -> Result<tokio::net::TcpListener, BindError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| BindError { addr, key, error })
}
