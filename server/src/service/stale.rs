//! The rule of stored job views: a write that changes what a job's energy is computed from marks the
//! views of the jobs it reaches stale, inside the writing transaction, so no reader sees the new data
//! beside an old view still marked fresh. Every write that does so goes through here.

use crate::ids::{NodeId, SiteId};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use super::Result;
use crate::db;

/// A site's facility readings, carbon intensity or settings changed over `[from, to]` (unbounded
/// where `None`): its jobs overlapping that span, widened by an hour each way (each hour's PUE and
/// intensity enter the jobs of that hour). Returns the views marked.
pub(crate) async fn site_changed(
    tx: &mut Transaction<'_, Postgres>,
    site_id: SiteId,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<u64> {
    Ok(db::jobs::mark_site_energy_stale(tx, site_id, from, to).await?)
}

/// A node's collector reported samples it dropped: the jobs over those ranges lost them (their views
/// say so). Inside the ingest writers' transaction, whose error is the store's.
pub(crate) async fn samples_dropped(
    tx: &mut Transaction<'_, Postgres>,
    node_id: NodeId,
    ranges: &[wattlas_protocol::DroppedRange],
) -> std::result::Result<u64, db::Error> {
    let ranges: Vec<_> = ranges.iter().map(|r| (node_id, r.from, r.to)).collect();
    Ok(db::jobs::mark_energy_stale(tx, &ranges).await?)
}

/// Samples or allocations of nodes changed: `(node, from, to)` each. Returns the views marked.
pub(crate) async fn nodes_changed(
    tx: &mut Transaction<'_, Postgres>,
    ranges: &[(NodeId, DateTime<Utc>, DateTime<Utc>)],
) -> Result<u64> {
    Ok(db::jobs::mark_energy_stale(tx, ranges).await?)
}
