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
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tasks = crate::maintenance::spawn(&state);
    let app = crate::routes::router(state);
    // The peer address decides whether a trusted proxy's user header is believed.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    drop(tasks);
    result
}
