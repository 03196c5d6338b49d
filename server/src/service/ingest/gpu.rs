//! A node's batch of GPU samples (and its CPU and DRAM counters): whose it is, checked whole, stored
//! with the other batches waiting (group commit).

use super::checks::{check_batch, validate_identities};
use crate::codec::RawSample;
use crate::db::samples::Stored;
use crate::service::caller::Caller;
use crate::service::error::{Error, Result};
use crate::service::Context;
use wattlas_protocol::GpuBatch;

/// Stores a batch of `caller` (a node's token names its node; the admin token names one in the batch):
/// refused whole on the first invalid field, each sample stored at most once. `import`: samples of an
/// imported log, which may be older than the raw retention (the admin only).
pub(crate) async fn store(
    cx: &Context,
    caller: &Caller,
    batch: GpuBatch,
    raw: Option<Vec<RawSample>>,
    import: bool,
    clock_offset_ms: Option<i64>,
) -> Result<Stored> {
    // A node token names its node; the admin token must name one.
    let (node_id, node_name) = match (caller, &batch.node) {
        (Caller::Node { name, .. }, Some(named)) if named != name => {
            return Err(Error::Forbidden(format!(
                "node: this token belongs to node '{name}', not '{named}'"
            )));
        }
        (Caller::Node { id, name, .. }, _) => (*id, name.clone()),
        (Caller::Admin, Some(named)) => {
            let node = cx
                .known_nodes
                .find(&cx.db, named)
                .await?
                .ok_or_else(|| Error::invalid("node", format!("unknown node '{named}'")))?;
            (node.id, named.clone())
        }
        (Caller::Admin, None) => {
            return Err(Error::invalid("node", "required with the admin token"))
        }
        (Caller::Meter { .. }, _) => {
            return Err(Error::Forbidden(
                "a meter token cannot send GPU samples".into(),
            ))
        }
        (Caller::Site { .. }, _) => {
            return Err(Error::Forbidden(
                "a site's write token writes by remote write (POST /api/v1/write) only".into(),
            ))
        }
        (Caller::User(_), _) => {
            return Err(Error::Forbidden("only collectors send samples".into()))
        }
    };
    // History spreads over as many chunks as it has days: the admin brings it, never a node's token
    // (100 one-sample requests once made 160 chunks in 5 s: issue 33, N7).
    if import && !matches!(caller, Caller::Admin) {
        return Err(Error::Forbidden(
            "source: import (history older than the raw retention) takes the admin token, naming the node".into(),
        ));
    }
    validate_identities(&batch)?;
    // Checked whole before anything is stored; then stored with the other batches waiting, in one
    // transaction (`service::ingest`).
    let mut checked = check_batch(cx, node_id, &node_name, batch, raw, import).await?;
    checked.clock_offset_ms = clock_offset_ms;
    let stored = cx
        .writers
        .store(&cx.db, checked)
        .await
        .inspect_err(|e| cx.known_nodes.forget_gone(e))?;
    cx.metrics.ingested(stored.stored, stored.duplicates);
    Ok(stored)
}
