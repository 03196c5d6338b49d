//! All SQL lives here, by feature. SQL fetches and aggregates; `analytics` explains.
//!
//! Queries are runtime-checked (`sqlx::query_as`) rather than the `query!` macros, and every one runs in
//! the test suite against the real TimescaleDB: see the commit that introduced this for why.

pub mod carbon;
pub mod energy;
pub mod facility;
pub mod jobs;
pub mod nodes;
pub mod progress;
pub mod rollups;
pub mod samples;
pub mod sites;
pub mod users;

use chrono::{DateTime, TimeZone, Utc};

/// Milliseconds since the epoch to a timestamp.
pub fn ts(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
