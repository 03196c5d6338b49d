//! State shared by every request: the pool, the configuration, caches, limits and counters.

use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::limit::SignInLimiter;
use crate::cache::PueCache;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::reads::Reads;

/// Handed to every handler through `with_state`: one `Arc`, so the clone each request and each
/// middleware layer makes is one atomic increment (a struct of ten `Arc`s cost ten increments and ten
/// decrements a clone: `drop_in_place<AppState>` alone was 3.4 % of the ingest profile). Fields are
/// read through `Deref` as before (`state.db`, `state.config`).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What `AppState` shares.
pub struct Shared {
    /// The database pool (the primary: every write, and reads that must see them).
    pub db: PgPool,
    /// Where reads that may lag go: the read replica while within its bound, else the primary.
    pub reads: Arc<Reads>,
    /// Settings.
    pub config: Arc<Config>,
    /// Sites' hourly PUE, as the pages ask for it.
    pub pue_cache: Arc<PueCache>,
    /// Failed sign-ins, for rate limiting.
    pub sign_in: Arc<SignInLimiter>,
    /// Sign-ins hashing now: one slot per core (each Argon2 hash holds 19 MiB).
    pub hashing: Arc<tokio::sync::Semaphore>,
    /// People whose statement is being made (one at a time each).
    pub rendering: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Statements typeset at once, off the request threads (one per core): a 10,000-job PDF takes a
    /// second of a core and ~100 MB.
    pub typesetting: Arc<tokio::sync::Semaphore>,
    /// Remote-write bodies decoding at once, off the request threads (one per core): each holds up to
    /// 32 MiB decompressed.
    pub decoding: Arc<tokio::sync::Semaphore>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Node tokens recently found (a few seconds).
    pub node_tokens: Arc<crate::auth::NodeTokens>,
    /// The group-commit writers of live GPU batches.
    pub writers: Arc<crate::service::ingest::Writers>,
}

impl AppState {
    /// State over a pool and a configuration; heavy reads on the primary.
    pub fn new(db: PgPool, config: Config) -> Self {
        let reads = Reads::primary_only(db.clone());
        Self::with_reads(db, config, reads)
    }

    /// State over a pool, a configuration, and where reads that may lag go.
    pub fn with_reads(db: PgPool, config: Config, reads: Reads) -> Self {
        let writers = Arc::new(crate::service::ingest::Writers::new(
            config.ingest_writers,
            config.ingest_queue,
        ));
        Self(Arc::new(Shared {
            reads: Arc::new(reads),
            db,
            config: Arc::new(config),
            pue_cache: Arc::default(),
            sign_in: Arc::default(),
            hashing: Arc::new(tokio::sync::Semaphore::new(crate::auth::password::slots())),
            rendering: Arc::default(),
            typesetting: Arc::new(tokio::sync::Semaphore::new(crate::auth::password::slots())),
            decoding: Arc::new(tokio::sync::Semaphore::new(crate::auth::password::slots())),
            metrics: Arc::default(),
            node_tokens: Arc::default(),
            writers,
        }))
    }
}

impl AppState {
    /// The pool for one read that may lag by up to `WATTLAS_REPLICA_MAX_LAG_S` (see [`Reads`]).
    pub fn read_db(&self) -> &PgPool {
        self.reads.pool()
    }
}
