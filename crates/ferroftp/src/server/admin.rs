//! The admin HTTP API (`admin.listen`): JSON over HTTP/1.1, every request authorised by a
//! bearer token read from `admin.token_file`. Sessions (list, kick), bans (list, lift), users
//! (list, show, add, change, disable, enable, delete), reload and server status. Described by the OpenAPI document
//! `docs/admin-api.openapi.json`, which is also served (without a token: it holds no secrets)
//! at `/api/v1/openapi.json`.
//!
//! Every error is JSON, `{"error": "<code>", "reason": "<text>"}`, axum's own rejections
//! (unknown route, wrong method, bad body) included.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::registry::SessionHandle;
use super::{ReloadHandle, Shared};
use crate::config::{ListenerMode, TlsPolicy};
use crate::policy::Permissions;
use crate::users::{self, AuthError, User, UserChange, UserDirectory};

/// The OpenAPI 3.1 description of this API.
pub(crate) const OPENAPI: &str = include_str!("../../../../docs/admin-api.openapi.json");

/// Where every route lives.
const PREFIX: &str = "/api/v1";

/// How long `DELETE /sessions/{id}` waits for the session to be gone.
const KICK_WAIT: Duration = Duration::from_secs(10);

/// The longest request body (a user is a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;

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
    fn matches(&self, given: &[u8]) -> bool {
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

/// Every request but the OpenAPI document needs `Authorization: Bearer <token>`.
async fn authenticate(
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

async fn status(State(st): State<AppState>) -> Json<Value> {
    let shared = &st.shared;
    let live = shared.live();
    let started = shared.metrics.started();
    let listeners: Vec<Value> = shared
        .listening()
        .into_iter()
        .map(|(addr, mode)| json!({ "address": addr.to_string(), "mode": mode_name(mode) }))
        .collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": rfc3339(started),
        "uptime_secs": SystemTime::now().duration_since(started).unwrap_or_default().as_secs(),
        "config_generation": live.generation,
        "listeners": listeners,
        "sessions": shared.registry.len(),
        "bans_active": shared.guard.active_bans(Instant::now()),
        "passive_ports_in_use": shared.metrics.passive_ports_in_use(),
        "users": live.users.len(),
        "anonymous": live.config.anonymous.enabled,
    }))
}

fn session_json(h: &SessionHandle) -> Value {
    let state = h.state();
    let transfer = state.transfer.as_ref().map(|t| {
        json!({
            "verb": t.verb.name(),
            "path": t.path,
            "direction": t.direction,
            "bytes": t.bytes(),
            "total": t.total,
            "started_at": rfc3339(t.started_at),
            "elapsed_secs": SystemTime::now().duration_since(t.started_at).unwrap_or_default().as_secs(),
        })
    });
    let tls = state
        .tls
        .as_ref()
        .map(|(version, cipher)| json!({ "version": version, "cipher": cipher }));
    json!({
        "id": h.id,
        "peer": h.peer.to_string(),
        "local": h.local.to_string(),
        "mode": mode_name(h.mode),
        "user": state.user,
        "tls": tls,
        "data_protection": if state.prot_private { "private" } else { "clear" },
        "connected_at": rfc3339(h.connected_at),
        "idle_secs": state.last_activity.elapsed().as_secs(),
        "transfer": transfer,
    })
}

fn session_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{raw:?} is not a session id (a number, as in GET /api/v1/sessions)"),
        )
    })
}

fn no_session(id: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no open session with id {id}"),
    )
}

async fn list_sessions(State(st): State<AppState>) -> Json<Value> {
    Json(Value::Array(
        st.shared
            .registry
            .list()
            .iter()
            .map(|h| session_json(h))
            .collect(),
    ))
}

async fn get_session(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&id)?;
    let h = st.shared.registry.get(id).ok_or_else(|| no_session(id))?;
    Ok(Json(session_json(&h)))
}

/// Close a session: the client gets 421 (and 426 for a transfer it was running); answered
/// once the session is gone.
async fn kick_session(
    State(st): State<AppState>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&id)?;
    let h = st.shared.registry.get(id).ok_or_else(|| no_session(id))?;
    let before = session_json(&h);
    tracing::info!(%admin, session = id, peer = %h.peer, user = before["user"].as_str().unwrap_or("-"), "admin API: closing a session");
    h.kick();
    drop(h);
    let deadline = Instant::now() + KICK_WAIT;
    let mut closed = false;
    while Instant::now() < deadline {
        if st.shared.registry.get(id).is_none() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Json(json!({ "closed": closed, "session": before })))
}

async fn list_bans(State(st): State<AppState>) -> Json<Value> {
    let now = Instant::now();
    let wall = SystemTime::now();
    let bans: Vec<Value> = st
        .shared
        .guard
        .bans(now)
        .into_iter()
        .map(|(ip, left)| {
            let (_, bans) = st.shared.guard.ip_record(ip);
            json!({
                "address": ip.to_string(),
                "seconds_left": left.as_secs().max(1),
                "until": rfc3339(wall + left),
                "times_banned": bans,
            })
        })
        .collect();
    Json(Value::Array(bans))
}

/// Lift the ban of an address (its failure count and escalation are forgotten too), or
/// forget the failed logins counted against a user name (they slow its replies).
async fn lift_ban(
    State(st): State<AppState>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let guard = &st.shared.guard;
    if let Ok(ip) = key.parse::<IpAddr>() {
        let ip = ip.to_canonical();
        if !guard.lift(ip, Instant::now()) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{ip} is not banned"),
            ));
        }
        tracing::info!(%admin, address = %ip, "admin API: ban lifted");
        return Ok(Json(json!({ "lifted": ip.to_string(), "kind": "address" })));
    }
    if !guard.forget_user(&key) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "{key:?} is neither a banned address nor a user name with failed logins counted"
            ),
        ));
    }
    tracing::info!(%admin, user = %key, "admin API: failed logins of a user name forgotten");
    Ok(Json(json!({ "lifted": key, "kind": "user" })))
}

/// `POST /users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    /// Hashed here with argon2id (the default cost, as `ferroftp passwd`).
    password: Option<String>,
    /// An argon2 PHC string made elsewhere.
    password_hash: Option<String>,
    home: Option<PathBuf>,
    permissions: Option<Permissions>,
    tls_policy: Option<TlsPolicy>,
    #[serde(default)]
    disabled: bool,
}

fn user_json(u: &User) -> Value {
    json!({
        "name": u.name,
        "home": u.home.as_ref().map(|h| h.display().to_string()),
        "permissions": u.permissions,
        "disabled": u.disabled,
        "tls_policy": u.tls_policy.as_str(),
    })
}

/// The directory the users come from, or 409 when it cannot be edited (no users file).
fn editable(st: &AppState) -> Result<Arc<dyn UserDirectory>, ApiError> {
    let users = Arc::clone(&st.shared.live().users);
    if users.writable() {
        Ok(users)
    } else {
        Err(edit_error(AuthError::ReadOnly {
            directory: users.describe(),
        }))
    }
}

fn edit_error(e: AuthError) -> ApiError {
    let status = match &e {
        AuthError::UserExists { .. } | AuthError::ReadOnly { .. } => StatusCode::CONFLICT,
        AuthError::NoSuchUser { .. } => StatusCode::NOT_FOUND,
        AuthError::InvalidName { .. }
        | AuthError::InvalidHash(_)
        | AuthError::InvalidHome { .. }
        | AuthError::EmptyPassword => StatusCode::BAD_REQUEST,
        AuthError::Write { path, error } => {
            // Most often the service's sandbox or the directory's owner: say which file and
            // why, so that the fix is plain (the file is written by a rename in its directory).
            let dir = path.parent().unwrap_or(FsPath::new("."));
            return ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                reason: format!(
                    "cannot write the users file {}: {error}; the server's user must be able to create files in {} (see `ferroftp doctor`)",
                    path.display(),
                    dir.display()
                ),
                code: Some("users_file_not_writable"),
            };
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

/// Run `f` (file I/O, hashing) on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )
    })?
}

/// Reload after a users-file change, so that it is in force when the answer says so.
async fn reload_after_edit(st: &AppState) -> Result<(), ApiError> {
    st.reload.reload().await.map(|_| ()).map_err(|reason| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the users file was changed, but the reload was refused, so the change is not in force yet: {reason}"),
        )
    })
}

/// The user as in force now.
fn user_in_force(st: &AppState, name: &str) -> Value {
    st.shared
        .live()
        .users
        .get(name)
        .map_or(Value::Null, |u| user_json(&u))
}

/// The hash to store from a request's `password` (hashed here) or `password_hash`: `None`
/// when neither is given; both is a bad request.
async fn new_hash(
    st: &AppState,
    password: Option<String>,
    password_hash: Option<String>,
) -> Result<Option<String>, ApiError> {
    match (password, password_hash) {
        (Some(_), Some(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "give at most one of password and password_hash",
        )),
        (None, None) => Ok(None),
        (None, Some(hash)) => Ok(Some(hash)),
        (Some(password), None) => {
            if password.is_empty() {
                return Err(edit_error(AuthError::EmptyPassword));
            }
            // Bounded with the logins' verifications: hashing costs the same.
            let _permit = st.shared.hash_pool.acquire().await.map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the server is shutting down",
                )
            })?;
            blocking(move || {
                users::hash_password(&password, users::HashParams::default()).map_err(edit_error)
            })
            .await
            .map(Some)
        }
    }
}

async fn list_users(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let users = Arc::clone(&st.shared.live().users);
    let mut users = blocking(move || users.list().map_err(edit_error)).await?;
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(Value::Array(users.iter().map(user_json).collect())))
}

fn no_user(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no user {name:?}"))
}

async fn show_user(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match user_in_force(&st, &name) {
        Value::Null => Err(no_user(&name)),
        user => Ok(Json(user)),
    }
}

/// `PATCH /users/{name}`: what to change; absent keys stay as they are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    password: Option<String>,
    password_hash: Option<String>,
    home: Option<PathBuf>,
    permissions: Option<Permissions>,
    tls_policy: Option<TlsPolicy>,
    disabled: Option<bool>,
}

async fn set_user(
    State(st): State<AppState>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let patch: UserPatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid change: {e}")))?;
    let users = editable(&st)?;
    if patch.home.is_some() {
        // Refused before anything is written: a home outside the root (unless the configuration
        // allows it) or inside the anonymous home.
        st.shared
            .live()
            .check_new_home(&name, patch.home.as_deref())
            .map_err(|why| {
                ApiError::new(StatusCode::BAD_REQUEST, format!("invalid home: {why}"))
            })?;
    }
    let hash = new_hash(&st, patch.password, patch.password_hash).await?;
    if hash.is_none()
        && patch.home.is_none()
        && patch.permissions.is_none()
        && patch.tls_policy.is_none()
        && patch.disabled.is_none()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "nothing to change: give password, password_hash, home, permissions, tls_policy or disabled",
        ));
    }
    let _edit = st.edits.lock().await;
    {
        let (name, users) = (name.clone(), Arc::clone(&users));
        let (home, permissions, tls_policy, disabled) = (
            patch.home,
            patch.permissions,
            patch.tls_policy,
            patch.disabled,
        );
        blocking(move || {
            let change = UserChange {
                password_hash: hash.as_deref(),
                home: home.as_deref(),
                permissions,
                disabled,
                tls_policy,
            };
            users.update(&name, &change).map_err(edit_error)
        })
        .await?;
    }
    tracing::info!(%admin, user = %name, users = %users.describe(), "admin API: user changed");
    reload_after_edit(&st).await?;
    Ok(Json(user_in_force(&st, &name)))
}

async fn remove_user(
    State(st): State<AppState>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let users = editable(&st)?;
    let _edit = st.edits.lock().await;
    {
        let (name, users) = (name.clone(), Arc::clone(&users));
        blocking(move || users.delete(&name).map_err(edit_error)).await?;
    }
    tracing::info!(%admin, user = %name, users = %users.describe(), "admin API: user deleted");
    // The reload logs the user's sessions out (421).
    reload_after_edit(&st).await?;
    Ok(Json(json!({ "deleted": name })))
}

async fn add_user(
    State(st): State<AppState>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new: NewUser = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid user: {e}")))?;
    let users = editable(&st)?;
    // Refused before anything is written: a home outside the root (unless the configuration
    // allows it) or inside the anonymous home.
    st.shared
        .live()
        .check_new_home(&new.name, new.home.as_deref())
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid home: {why}")))?;
    let hash = match new_hash(&st, new.password, new.password_hash).await? {
        Some(hash) => hash,
        None => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give exactly one of password and password_hash",
            ));
        }
    };
    let name = new.name;
    let _edit = st.edits.lock().await;
    {
        let (name, users) = (name.clone(), Arc::clone(&users));
        let (home, permissions, tls_policy, disabled) =
            (new.home, new.permissions, new.tls_policy, new.disabled);
        blocking(move || {
            let change = UserChange {
                password_hash: Some(&hash),
                home: home.as_deref(),
                permissions,
                disabled: disabled.then_some(true),
                tls_policy,
            };
            users.create(&name, &change).map_err(edit_error)
        })
        .await?;
    }
    tracing::info!(%admin, user = %name, users = %users.describe(), "admin API: user added");
    reload_after_edit(&st).await?;
    Ok((StatusCode::CREATED, Json(user_in_force(&st, &name))))
}

async fn set_disabled(
    st: AppState,
    admin: SocketAddr,
    name: String,
    disabled: bool,
) -> Result<Json<Value>, ApiError> {
    let users = editable(&st)?;
    let _edit = st.edits.lock().await;
    {
        let (name, users) = (name.clone(), Arc::clone(&users));
        blocking(move || {
            let change = UserChange {
                disabled: Some(disabled),
                ..UserChange::default()
            };
            users.update(&name, &change).map_err(edit_error)
        })
        .await?;
    }
    let what = if disabled { "disabled" } else { "enabled" };
    tracing::info!(%admin, user = %name, users = %users.describe(), "admin API: user {what}");
    reload_after_edit(&st).await?;
    // The reload logs the user's sessions out (421); they are listed until they have closed.
    Ok(Json(user_in_force(&st, &name)))
}

async fn disable_user(
    State(st): State<AppState>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(st, admin, name, true).await
}

async fn enable_user(
    State(st): State<AppState>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(st, admin, name, false).await
}

async fn reload(
    State(st): State<AppState>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
) -> Result<Json<Value>, ApiError> {
    tracing::info!(%admin, "admin API: reloading");
    let summary = st
        .reload
        .reload()
        .await
        .map_err(|reason| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, reason))?;
    Ok(Json(json!({
        "summary": summary,
        "config_generation": st.shared.live().generation,
    })))
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document_and_nothing_else() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("the OpenAPI file is JSON");
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"));
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented = Vec::new();
        for (path, ops) in paths {
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
                if ops.get(method).is_some() {
                    documented.push((method.to_owned(), path.clone()));
                }
            }
        }
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), format!("{PREFIX}{p}")))
            .collect();
        served.sort();
        documented.sort();
        assert_eq!(served, documented);
    }

    #[test]
    fn the_token_matches_only_itself() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret-token\n").expect("write");
        let token = load_token(&path).expect("load");
        assert!(token.matches(b"s3cret-token"));
        assert!(!token.matches(b"s3cret-toke"));
        assert!(!token.matches(b""));
        assert!(!format!("{token:?}").contains("s3cret"));
        std::fs::write(&path, " \n").expect("write");
        let e = load_token(&path).expect_err("empty");
        assert!(e.to_string().contains("admin.token_file"), "{e}");
        let e = load_token(&dir.path().join("missing")).expect_err("missing");
        assert!(e.to_string().contains("admin.token_file"), "{e}");
    }
}
