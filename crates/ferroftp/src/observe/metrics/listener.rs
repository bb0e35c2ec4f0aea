//! The metrics listener: binding it, and the axum router served through the admin API's
//! serve loop ([`crate::http`]): `GET /metrics` and nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

/// Bind the metrics listener, naming the key on failure.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, crate::error::BindError> {
    crate::error::bind(addr, "metrics.listen").await
}

/// What each scraper may take, no more than the hand-written server this replaced allowed:
/// 8 connections at once (more wait in the accept queue), 10 s for the request and the answer,
/// 8 KiB of request head (more is a 431), one request per connection.
const LIMITS: crate::http::Limits = crate::http::Limits {
    name: "metrics",
    connections: 8,
    header_timeout: Duration::from_secs(10),
    lifetime: Duration::from_secs(10),
    max_head: 8 * 1024,
    keep_alive: false,
    title_case_headers: true,
};

/// Makes the body of a scrape.
type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serve `GET /metrics` on `listener` until the task is aborted; `render` makes the body.
pub(crate) async fn serve(listener: TcpListener, render: Render) {
    let stop = tokio_util::sync::CancellationToken::new();
    crate::http::serve(listener, router(render), LIMITS, stop).await;
}

/// `GET` (and `HEAD`) of `/metrics` (a query string is ignored); 405 for another method
/// there, 404 elsewhere. Requests that are not HTTP/1 get hyper's 400.
fn router(render: Render) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(scrape).fallback(method_not_allowed),
        )
        .fallback(not_found)
        .with_state(render)
}

async fn scrape(State(render): State<Render>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render()).into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "GET, HEAD")],
        "Only GET (and HEAD) are allowed on /metrics\n",
    )
        .into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not found: try /metrics\n").into_response()
}

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
