//! The admin API's bearer token: read from `admin.token_file`, compared in constant time,
//! checked on every request but the OpenAPI document.

use std::net::SocketAddr;
use std::path::Path as FsPath;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, PREFIX};

/// The bearer token. Compared in constant time; never printed.
pub(crate) struct Token(ring::digest::Digest);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Whether `given` is the token. Both sides are hashed first, so the comparison takes
    /// the same time whatever the lengths, and then compared without an early exit.
    pub(super) fn matches(&self, given: &[u8]) -> bool {
        let given = ring::digest::digest(&ring::digest::SHA256, given);
        let diff = self
            .0
            .as_ref()
            .iter()
            .zip(given.as_ref())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        diff == 0
    }
}

/// Why the admin API's token file cannot be used; names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file cannot be read.
    #[error("cannot read the admin token file {} (admin.token_file): {error}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why (in the message, so not a `source`).
        error: std::io::Error,
    },
    /// The file holds only white space.
    #[error(
        "the admin token file {} is empty (admin.token_file); put a long random token in it, e.g. `openssl rand -hex 32`",
        path.display()
    )]
    Empty {
        /// The file.
        path: std::path::PathBuf,
    },
}

/// Read the token file: its contents, trimmed. An unreadable or empty file is an error naming
/// the key; a file others may read is accepted with a warning.
pub(crate) fn load_token(path: &FsPath) -> Result<Token, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|error| TokenError::Read {
        path: path.to_owned(),
        error,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_owned(),
        });
    }
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the admin token file can be read by other users; make it readable by the server only (chmod 600)"
            );
        }
    }
    Ok(Token(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    )))
}

/// Every request but the OpenAPI document needs `Authorization: Bearer <token>`.
pub(super) async fn authenticate(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == format!("{PREFIX}/openapi.json") {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let live = st.shared.live();
    let refusal = match (&live.admin_token, given) {
        (_, None) => "missing bearer token (Authorization: Bearer TOKEN)",
        (Some(token), Some(given)) if token.matches(given.as_bytes()) => {
            return next.run(request).await;
        }
        _ => "wrong token",
    };
    tracing::warn!(
        %peer,
        method = %request.method(),
        path = %request.uri().path(),
        reason = refusal,
        "admin API: request refused"
    );
    ApiError::new(StatusCode::UNAUTHORIZED, refusal).into_response()
}
