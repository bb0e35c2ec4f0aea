//! The admin API's server-wide endpoints: status, reload, and the OpenAPI document.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, AppState, OPENAPI, mode_name, rfc3339};

pub(super) async fn status(State(st): State<AppState>) -> Json<Value> {
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

pub(super) async fn reload(
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

pub(super) async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}
