//! State shared by every request: the pool, the configuration and the PUE cache.

use std::sync::Arc;

use sqlx::PgPool;

use crate::cache::PueCache;
use crate::config::Config;

/// Handed to every handler through `with_state`.
#[derive(Clone)]
pub struct AppState {
    /// The database pool.
    pub db: PgPool,
    /// Settings.
    pub config: Arc<Config>,
    /// Sites' hourly PUE, as the pages ask for it.
    pub pue_cache: Arc<PueCache>,
}

impl AppState {
    /// State over a pool and a configuration.
    pub fn new(db: PgPool, config: Config) -> Self {
        Self {
            db,
            config: Arc::new(config),
            pue_cache: Arc::default(),
        }
    }
}
