//! The web edge's state: the domain's context, and what only requests use (sign-in limits, hashing
//! slots, node tokens recently found).

use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::limit::SignInLimiter;
use crate::config::Config;
use crate::reads::Reads;
use crate::service::context::Context;

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

/// What `AppState` shares: the domain's context (reached through `Deref`) and what only requests use.
pub struct Shared {
    /// The pools, settings, caches and counters the services take.
    pub ctx: Context,
    /// Failed sign-ins, for rate limiting.
    pub sign_in: Arc<SignInLimiter>,
    /// Sign-ins hashing now: one slot per core (each Argon2 hash holds 19 MiB).
    pub hashing: Arc<tokio::sync::Semaphore>,
    /// Node tokens recently found (a few seconds).
    pub writer_tokens: Arc<crate::auth::WriterTokens>,
    /// Tokens and sessions recently confirmed, for when the database cannot say.
    pub identities: Arc<crate::auth::remembered::Remembered>,
}

impl std::ops::Deref for Shared {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.ctx
    }
}

impl AppState {
    /// State over a pool and a configuration; heavy reads on the primary.
    pub fn new(db: PgPool, config: Config) -> Self {
        let reads = Reads::primary_only(db.clone());
        Self::with_reads(db, config, reads)
    }

    /// State over a pool, a configuration, and where reads that may lag go.
    pub fn with_reads(db: PgPool, config: Config, reads: Reads) -> Self {
        let grace = std::time::Duration::from_secs(config.identity_grace_s);
        Self(Arc::new(Shared {
            ctx: Context::new(db, config, reads),
            sign_in: Arc::default(),
            hashing: Arc::new(tokio::sync::Semaphore::new(crate::service::context::cores())),
            writer_tokens: Arc::default(),
            identities: Arc::new(crate::auth::remembered::Remembered::new(grace)),
        }))
    }
}
