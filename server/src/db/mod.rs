//! All SQL lives here, by feature. SQL fetches and aggregates; `analytics` explains.
//!
//! Queries are runtime-checked (`sqlx::query_as`) rather than the `query!` macros, and every one runs in
//! the test suite against the real TimescaleDB: see the commit that introduced this for why.

pub(crate) mod budgets;
pub(crate) mod calibration;
pub(crate) mod carbon;
pub(crate) mod closure;
pub(crate) mod comparisons;
pub mod energy;
pub mod facility;
pub mod jobs;
pub mod migrations;
pub(crate) mod node_energy;
pub(crate) mod nodes;
pub mod overview;
pub mod progress;
pub mod rollups;
pub mod samples;
pub(crate) mod scope2;
pub mod sites;
pub(crate) mod statements;
pub mod tokens;
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
    /// A node a batch was found for is gone (deleted since): the batch is sent again and finds it anew.
    #[error("node {0} is gone")]
    NodeGone(crate::ids::NodeId),
}

/// A common table `overlapping (id, start_time, end_time)`: the jobs holding any time in `[$2, $3)`
/// (binds 2 and 3 are the window), found by the span index (`jobs_span_idx`). Asking every job of a
/// node or a GPU for its span instead read tens of thousands of jobs at 100,000 jobs.
pub(crate) const OVERLAPPING_JOBS: &str = r#"overlapping as materialized (
            select j.id, j.start_time, j.end_time
            from jobs j
            where tstzrange(j.start_time, j.end_time, '[]')
                    && tstzrange(least($2, $3), greatest($2, $3), '[]')
                and j.start_time < $3
                and (j.end_time is null or j.end_time > $2)
        )"#;

/// Milliseconds since the epoch to a timestamp.
/// Whether `e` says the database is unreachable (refused, closed, timed out, shutting down, read-only
/// in a failover) rather than that a query is wrong: callers answer 503 (retry), or read elsewhere.
/// Protocol and TLS errors arise in connecting: a load balancer with no primary behind it (HAProxy in a
/// failover) accepts the connection and closes it, and sqlx reads "unexpected response from
/// SSLRequest".
pub(crate) fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08") || c == "25006"),
        _ => false,
    }
}

/// Whether `e` says the database cannot take more now (class 53, insufficient resources: its disk is
/// full, it is out of memory or connections): reachable, but a write should be retried later (503).
pub(crate) fn out_of_resources(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("53")))
}

pub(crate) fn ts(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
