//! The one HTTP/1 serve loop behind the side listeners (the admin API and the metrics): an
//! axum router served through hyper with limits, which `axum::serve` does not offer: a cap on
//! connections at once, a deadline for a request's head, a lifetime per connection and a bound
//! on the head's size, so that half-sent requests cannot hold descriptors or memory.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What a listener allows each client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Names the listener in logs ("admin API", "metrics").
    pub(crate) name: &'static str,
    /// Connections served at once; more wait in the accept queue.
    pub(crate) connections: usize,
    /// Time to send a request's head (and how long an idle keep-alive connection is kept).
    pub(crate) header_timeout: Duration,
    /// The longest a connection lasts, whatever it does.
    pub(crate) lifetime: Duration,
    /// The most a request's head may take in memory (hyper's floor is 8 KiB); more is a 431.
    pub(crate) max_head: usize,
    /// Whether a connection serves more than one request.
    pub(crate) keep_alive: bool,
    /// Write header names as `Content-Type` rather than `content-type`, as scrapers and
    /// tests that read the raw answer have always seen them.
    pub(crate) title_case_headers: bool,
}

/// Accept and serve connections with `app` until `stop` (or until the task is aborted, which
/// aborts the connections too): at most `limits.connections` at once, each closed if its
/// request head is not in within `limits.header_timeout` and after `limits.lifetime` in any
/// case. Handlers can read the peer's address as `ConnectInfo<SocketAddr>`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let name = limits.name;
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    // Dropping the set (the task aborted) aborts the connections too.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(error = %e, "{name}: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while conns.try_join_next().is_some() {}
        // The peer's address goes into each request's extensions: cheaper than layering the
        // router again for every connection (which rebuilds every route).
        let router = hyper_util::service::TowerToHyperService::new(app.clone());
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            hyper::service::Service::call(&router, req)
        });
        let stop = stop.clone();
        conns.spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_head)
                .keep_alive(limits.keep_alive)
                .title_case_headers(limits.title_case_headers);
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = tokio::time::sleep(limits.lifetime) => {
                    tracing::debug!(%peer, "{name}: connection closed after its lifetime");
                }
                () = stop.cancelled() => {
                    // Requests in flight finish; idle connections close.
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(slot);
        });
    }
    while conns.join_next().await.is_some() {}
}
