//! Serving: `run` takes a bound listener and a shutdown future, so tests start a real server on port 0.

use std::future::Future;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::connections::{Admit, Registry};

use crate::config::Config;
use crate::state::AppState;

/// A pool that waits briefly for a connection: while the database is away, requests fail fast with 503.
pub fn pool_options(config: &Config) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(config.db_max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
}

/// Connects lazily: the server starts (and `/healthz` answers) even while the database is down.
pub fn connect_lazy(config: &Config, url: &str) -> sqlx::Result<PgPool> {
    pool_options(config).connect_lazy(url)
}

/// Serves the API and pages with the background tasks until `shutdown` resolves, then drains requests.
///
/// The accept loop is hyper's own rather than `axum::serve`, for what that lacks: a timeout on reading
/// a request's headers, counted from when a connection is idle (an idle or header-trickling connection
/// held a slot for ever), and bounds on open connections, in all and per client, that close idle
/// connections first (`connections`).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::Service;

    let tasks = crate::maintenance::spawn(&state);
    let probes = state.reads.spawn_probes();
    let header_timeout = std::time::Duration::from_secs(state.config.header_timeout_s.max(1));
    let max = state.config.max_connections.max(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let registry = Arc::new(Registry::new(
        max,
        state.config.max_connections_per_client,
        state.config.trusted_proxies.clone(),
    ));
    let app = crate::routes::router(state);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = match registry.admit(peer.ip()) {
            Admit::Yes(conn) | Admit::AfterClosing(conn) => conn,
            Admit::No => {
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (router, registry, slots, builder) = (
            app.clone(),
            registry.clone(),
            slots.clone(),
            builder.clone(),
        );
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            // A slot frees as soon as the idle connection asked to close for this one has gone.
            let slot =
                tokio::time::timeout(std::time::Duration::from_secs(2), slots.acquire_owned())
                    .await;
            let Ok(Ok(slot)) = slot else {
                registry.leave(&conn);
                return;
            };
            let (on, reg) = (conn.clone(), registry.clone());
            // The peer address decides whether a trusted proxy's headers are believed.
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    on.busy(&reg);
                    let answer = router.clone().call(request);
                    let (on, reg) = (on.clone(), reg.clone());
                    async move {
                        let response = answer.await;
                        on.idle(&reg);
                        response
                    }
                },
            );
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = conn.closing() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.as_mut().await;
                }
                () = stopped(&mut stopping) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.as_mut().await;
                }
            }
            registry.leave(&conn);
            drop(slot);
        });
    }
    drop(listener);
    // Requests in flight finish; the 60 s request timeout bounds the wait.
    let _ = stop.send(true);
    let _ = slots.acquire_many(max as u32).await;
    drop(tasks);
    if let Some(p) = probes {
        p.abort();
    }
    Ok(())
}

/// Resolves once the server is stopping.
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stopping.borrow_and_update() {
            return;
        }
        if stopping.changed().await.is_err() {
            return;
        }
    }
}
