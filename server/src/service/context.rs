//! What the domain works with: the pools, the settings, the caches and counters, and the bounded
//! resources its heavy work queues on. Services, statements and background tasks take a `&Context`;
//! the web edge's `Context` holds one beside what only requests use (sign-in limits, hashing slots,
//! node tokens found) and derefs to it, so a handler passes `&cx` where a service asks for a context.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::cache::PueCache;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::reads::Reads;
use crate::service::ingest::{KnownNodes, Writers};

/// The domain's context: cheap to clone (a pool handle and `Arc`s).
#[derive(Clone)]
pub struct Context {
    /// The database pool (the primary: every write, and reads that must see them).
    pub db: PgPool,
    /// Where reads that may lag go: the read replica while within its bound, else the primary.
    pub reads: Arc<Reads>,
    /// Settings.
    pub config: Arc<Config>,
    /// Sites' hourly PUE, as the pages ask for it.
    pub pue_cache: Arc<PueCache>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The group-commit writers of live GPU batches.
    pub writers: Arc<Writers>,
    /// Nodes ingest found by name lately (a remote write's hosts).
    pub known_nodes: Arc<KnownNodes>,
    /// People whose statement is being made (one at a time each).
    pub rendering: Arc<Mutex<HashSet<String>>>,
    /// Statements typeset at once, off the request threads (one per core): a 10,000-job PDF takes a
    /// second of a core and ~100 MB.
    pub typesetting: Arc<Semaphore>,
    /// Remote-write bodies decoding at once, off the request threads (one per core): each holds up to
    /// 32 MiB decompressed.
    pub decoding: Arc<Semaphore>,
}

impl Context {
    /// A context over a pool, a configuration, and where reads that may lag go.
    pub(crate) fn new(db: PgPool, config: Config, reads: Reads) -> Self {
        let writers = Arc::new(Writers::new(config.ingest_writers, config.ingest_queue));
        Self {
            reads: Arc::new(reads),
            db,
            config: Arc::new(config),
            pue_cache: Arc::default(),
            metrics: Arc::default(),
            writers,
            known_nodes: Arc::default(),
            rendering: Arc::default(),
            typesetting: Arc::new(Semaphore::new(cores())),
            decoding: Arc::new(Semaphore::new(cores())),
        }
    }

    /// The pool for one read that may lag by up to `WATTLAS_REPLICA_MAX_LAG_S` (see [`Reads`]).
    pub(crate) fn read_db(&self) -> &PgPool {
        self.reads.pool()
    }
}

/// The cores this process may use (at least 2): one slot each for CPU-bound work off the request threads.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .max(2)
}
