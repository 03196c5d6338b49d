//! Serving: `run` takes a bound listener and a shutdown future, so tests start a real server on port 0.

use std::future::Future;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;

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
/// held a slot for ever), and a bound on open connections.
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
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(
        state.config.max_connections.max(1),
    ));
    let app = crate::routes::router(state);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = app.clone();
        // The peer address decides whether a trusted proxy's headers are believed.
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                router.clone().call(request)
            },
        );
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    // Requests in flight finish; the 60 s request timeout bounds the wait.
    graceful.shutdown().await;
    drop(tasks);
    if let Some(p) = probes {
        p.abort();
    }
    Ok(())
}
