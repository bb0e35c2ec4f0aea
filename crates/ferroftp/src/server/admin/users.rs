//! The admin API's users: list, show, add, change, disable, enable, delete. Each edit
//! writes the users file, one at a time, then reloads so that it is in force when answered.

use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::config::TlsPolicy;
use crate::policy::Permissions;
use crate::users::{self, AuthError, User, UserChange, UserDirectory};

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

pub(super) async fn list_users(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let users = Arc::clone(&st.shared.live().users);
    let mut users = blocking(move || users.list().map_err(edit_error)).await?;
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(Value::Array(users.iter().map(user_json).collect())))
}

fn no_user(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no user {name:?}"))
}

pub(super) async fn show_user(
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

pub(super) async fn set_user(
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

pub(super) async fn remove_user(
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

pub(super) async fn add_user(
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

pub(super) async fn disable_user(
    State(st): State<AppState>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(st, admin, name, true).await
}

pub(super) async fn enable_user(
    State(st): State<AppState>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(st, admin, name, false).await
}
