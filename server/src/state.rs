//! State shared by every request: the pool and the configuration.

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::Config;

/// Handed to every handler through `with_state`.
#[derive(Clone)]
pub struct AppState {
    /// The database pool.
    pub db: PgPool,
    /// Settings.
    pub config: Arc<Config>,
}

impl AppState {
    /// State over a pool and a configuration.
    pub fn new(db: PgPool, config: Config) -> Self {
        Self {
            db,
            config: Arc::new(config),
        }
    }
}
