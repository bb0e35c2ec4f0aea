//! The admin HTTP API (`admin.listen`): JSON over HTTP/1.1, every request authorised by a
//! bearer token read from `admin.token_file`. Sessions (list, kick), bans (list, lift), users
//! (list, show, add, change, disable, enable, delete), reload and server status. Described by the OpenAPI document
//! `docs/admin-api.openapi.json`, which is also served (without a token: it holds no secrets)
//! at `/api/v1/openapi.json`.
//!
//! Every error is JSON, `{"error": "<code>", "reason": "<text>"}`, axum's own rejections
//! (unknown route, wrong method, bad body) included.
//!
//! This file holds the server (bind, spawn, stop), the route table, the error shape and the
//! helpers the handlers share; the handlers live beside it: [`auth`] (the token and the
//! middleware that checks it), [`status`](mod@status) (status, reload, the OpenAPI document),
//! [`sessions`] (sessions and bans) and [`users`] (the users file).

mod auth;
mod sessions;
mod status;
#[cfg(test)]
mod tests;
mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{ReloadHandle, Shared};
use crate::config::ListenerMode;

pub use auth::TokenError;
use auth::authenticate;
pub(crate) use auth::{Token, load_token};
use sessions::{get_session, kick_session, lift_ban, list_bans, list_sessions};
use status::{openapi, reload, status};
use users::{add_user, disable_user, enable_user, list_users, remove_user, set_user, show_user};

/// The OpenAPI 3.1 description of this API.
pub(crate) const OPENAPI: &str = include_str!("../../../../../docs/admin-api.openapi.json");

/// Where every route lives.
const PREFIX: &str = "/api/v1";

/// The longest request body (a user is a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;
/// Bind the admin listener, naming the key on failure.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, crate::error::BindError> {
    crate::error::bind(addr, "admin.listen").await
}

/// A running admin server.
pub(crate) struct AdminServer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// Stop: requests in flight get a moment to finish, then the socket is closed.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }

    /// Stop at once (server shutdown).
    pub(crate) fn abort(&self) {
        self.stop.cancel();
        self.task.abort();
    }
}

/// Serve the API on `listener` until stopped.
pub(crate) fn spawn(
    listener: TcpListener,
    shared: Arc<Shared>,
    reload: ReloadHandle,
) -> AdminServer {
    let state = AppState {
        shared,
        reload,
        edits: Arc::new(tokio::sync::Mutex::new(())),
    };
    let app = router(state);
    let stop = CancellationToken::new();
    let task = tokio::spawn(crate::http::serve(listener, app, LIMITS, stop.clone()));
    AdminServer { stop, task }
}

/// What each admin client may take: 16 connections at once, 10 s to send a request's head
/// (and to keep an idle keep-alive connection), 30 s per connection whatever it does (bounds a
/// body sent slowly: requests are short; the longest, a kick, waits up to 10 s), 16 KiB of head.
const LIMITS: crate::http::Limits = crate::http::Limits {
    name: "admin API",
    connections: 16,
    header_timeout: Duration::from_secs(10),
    lifetime: Duration::from_secs(30),
    max_head: 16 * 1024,
    keep_alive: true,
    title_case_headers: false,
};

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    reload: ReloadHandle,
    /// Users-file edits one at a time, so that none is lost.
    edits: Arc<tokio::sync::Mutex<()>>,
}

/// Declares the routes once: the router serves them and [`ROUTES`] lists them (a test checks
/// the list against the OpenAPI document).
macro_rules! routes {
    ($($method:ident $path:literal => $handler:ident),* $(,)?) => {
        /// Every route served, as (method, path under [`PREFIX`]).
        #[cfg(test)]
        pub(crate) const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
            $(let r = r.route(&format!("{PREFIX}{}", $path), $method($handler));)*
            r
        }
    };
}

routes! {
    get "/status" => status,
    get "/sessions" => list_sessions,
    get "/sessions/{id}" => get_session,
    delete "/sessions/{id}" => kick_session,
    get "/bans" => list_bans,
    delete "/bans/{key}" => lift_ban,
    get "/users" => list_users,
    post "/users" => add_user,
    get "/users/{name}" => show_user,
    patch "/users/{name}" => set_user,
    delete "/users/{name}" => remove_user,
    post "/users/{name}/disable" => disable_user,
    post "/users/{name}/enable" => enable_user,
    post "/reload" => reload,
    get "/openapi.json" => openapi,
}

fn router(state: AppState) -> axum::Router {
    routes(axum::Router::new())
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such endpoint; see /api/v1/openapi.json",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::map_response(json_errors))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// An error answer: `{"error": code, "reason": text}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    reason: String,
    /// A more precise code than the status's own.
    code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            code: None,
        }
    }
}

/// The short code of an error status.
fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "refused",
        s if s >= 500 => "internal_error",
        _ => "error",
    }
}

fn error_body(status: StatusCode, reason: &str) -> Response {
    coded_error_body(status, error_code(status), reason)
}

fn coded_error_body(status: StatusCode, code: &str, reason: &str) -> Response {
    let body = json!({ "error": code, "reason": reason });
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code.unwrap_or_else(|| error_code(self.status));
        coded_error_body(self.status, code, &self.reason)
    }
}

/// Turn axum's own error answers (plain text or empty: 405, a body that does not parse, ...)
/// into the JSON error shape, keeping their status and headers (`Allow`).
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let reason = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_owned(),
        t => t.to_owned(),
    };
    let fresh = error_body(status, &reason);
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in fresh.headers() {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, fresh.into_body())
}

/// RFC 3339 in UTC, to the second.
fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn mode_name(mode: ListenerMode) -> &'static str {
    match mode {
        ListenerMode::Plain => "plain",
        ListenerMode::Explicit => "explicit",
        ListenerMode::Implicit => "implicit",
    }
}
