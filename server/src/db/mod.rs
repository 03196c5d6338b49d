//! All SQL lives here, by feature. SQL fetches and aggregates; `analytics` explains.
//!
//! Queries are runtime-checked (`sqlx::query_as`) rather than the `query!` macros, and every one runs in
//! the test suite against the real TimescaleDB: see the commit that introduced this for why.

pub mod carbon;
pub mod comparisons;
pub mod energy;
pub mod facility;
pub mod jobs;
pub mod node_energy;
pub mod nodes;
pub mod progress;
pub mod rollups;
pub mod samples;
pub mod sites;
pub mod users;

use chrono::{DateTime, TimeZone, Utc};

/// What reading or writing the store can fail with: the database, or a stored block that does not
/// decode. Callers above (`service`, `routes`) decide what each means to a client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// A stored raw block could not be decoded.
    #[error("stored samples are unreadable")]
    Codec(#[from] crate::codec::CodecError),
}

/// Milliseconds since the epoch to a timestamp.
pub fn ts(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// How far a read replica is behind its primary, s: 0 when it has replayed all it received, `None` when
/// the database is not a replica (no read replica configured: the read pool is the primary).
pub async fn replica_lag_s(db: &sqlx::PgPool) -> sqlx::Result<Option<f64>> {
    sqlx::query_scalar(
        r#"select case
            when not pg_is_in_recovery() then null
            when pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() then 0.0
            else coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp())::float8, 0.0)
        end"#,
    )
    .fetch_one(db)
    .await
}
