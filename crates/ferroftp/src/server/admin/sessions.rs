//! The admin API's sessions (list, show, kick) and bans (list, lift).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState, mode_name, rfc3339};
use crate::server::registry::SessionHandle;

/// How long `DELETE /sessions/{id}` waits for the session to be gone.
const KICK_WAIT: Duration = Duration::from_secs(10);
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

pub(super) async fn list_sessions(State(st): State<AppState>) -> Json<Value> {
    Json(Value::Array(
        st.shared
            .registry
            .list()
            .iter()
            .map(|h| session_json(h))
            .collect(),
    ))
}

pub(super) async fn get_session(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&id)?;
    let h = st.shared.registry.get(id).ok_or_else(|| no_session(id))?;
    Ok(Json(session_json(&h)))
}

/// Close a session: the client gets 421 (and 426 for a transfer it was running); answered
/// once the session is gone.
pub(super) async fn kick_session(
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

pub(super) async fn list_bans(State(st): State<AppState>) -> Json<Value> {
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
pub(super) async fn lift_ban(
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
