//! A remote write's series stored: every host resolved to a node (registered on first sight where the
//! caller may, within the site's quota) and every node's batch checked before anything is written, then
//! the batches stored with everyone else's (group commit). A write refused for its content registers no
//! node and stores no sample.

use crate::ids::{NodeId, SiteId};
use wattlas_protocol::GpuBatch;

use crate::db;
use crate::names::NodeName;
use crate::service::caller::{self, Caller};
use crate::service::error::{Error, Result};
use crate::service::ingest::checks::{check_batch, validate_identities};
use crate::service::Context;

/// Nodes one remote write may register (a fleet's first write names a shard of its nodes).
const MAX_NEW_NODES_PER_WRITE: usize = 256;

/// Stores a remote write's body (snappy protobuf, read whole within the body limit) of `caller` (a
/// site's write token, a node's token or the admin's). `site`: where the admin registers nodes not
/// seen before. Decoded off the request threads, a core's worth at a time (issue 33, N2).
pub(crate) async fn write(
    cx: &Context,
    caller: &Caller,
    site: Option<&str>,
    body: impl AsRef<[u8]> + Send + 'static,
) -> Result<()> {
    let slot = cx
        .decoding
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| Error::internal(format!("decoding slots: {e}")))?;
    let mapped =
        tokio::task::spawn_blocking(move || super::decode_map(body.as_ref(), &super::wire::LIMITS))
            .await
            .map_err(|e| Error::internal(format!("decoding a remote write: {e}")))??;
    drop(slot);
    cx.metrics.remote_write_dropped(
        mapped.read.dropped_too_many_labels,
        mapped.read.dropped_label_too_long,
    );
    let (ignored, without_power) = (mapped.ignored, mapped.without_power);
    // Every host resolved and every batch checked before anything is written: a write refused for
    // its content registers no node and stores no sample.
    let mut checked = Vec::new();
    let mut new_nodes: Vec<(usize, NodeName, SiteId)> = Vec::new();
    for (host, series) in mapped.nodes {
        let node_id = match (caller, cx.known_nodes.find(&cx.db, &host).await?) {
            (Caller::Node { name, .. }, _) if *name != host => {
                return Err(Error::Forbidden(format!(
                    "Hostname: this token belongs to node '{name}', not '{host}'"
                )));
            }
            (Caller::Site { id, name }, Some(node)) if node.site_id != *id => {
                return Err(Error::Forbidden(format!(
                    "Hostname: node '{host}' is not in site '{name}', whose token this is"
                )));
            }
            (_, Some(node)) => Some(node.id),
            (Caller::Admin | Caller::Site { .. }, None) => {
                let site = match (caller, site) {
                    (Caller::Site { name, .. }, _) => name.clone(),
                    (_, Some(named)) => named.to_owned(),
                    (_, None) => {
                        return Err(Error::invalid(
                            "Hostname",
                            format!(
                            "unknown node '{host}' (give ?site= to register nodes on first sight)"
                        ),
                        ))
                    }
                };
                let host = NodeName::parse("Hostname", &host)?;
                let site = db::sites::by_name(&cx.db, &site)
                    .await?
                    .ok_or_else(|| Error::invalid("site", format!("unknown site '{site}'")))?;
                new_nodes.push((checked.len(), host.clone(), site.id));
                None
            }
            (_, None) => return Err(Error::invalid("Hostname", format!("unknown node '{host}'"))),
        };
        let batch = GpuBatch {
            node: Some(host.clone()),
            gpus: series.gpus,
            samples: series.samples,
            dropped_samples_total: None,
            clock_steps: None,
            node_energy: vec![],
            node_cpus: None,
            dropped_ranges: Vec::new(),
        };
        validate_identities(&batch)?;
        // A node not registered yet has no GPUs but those the write names.
        checked
            .push(check_batch(cx, node_id.unwrap_or_default(), &host, batch, None, false).await?);
    }
    if new_nodes.len() > MAX_NEW_NODES_PER_WRITE {
        return Err(Error::invalid(
            "Hostname",
            format!(
                "this write names {} nodes not registered; one write registers at most \
                 {MAX_NEW_NODES_PER_WRITE}",
                new_nodes.len()
            ),
        ));
    }
    if !new_nodes.is_empty() {
        let mut tx = cx.db.begin().await?;
        if let Caller::Site { id, name } = caller {
            // The site's row is locked: two writes at once cannot both take the last places.
            let (held, quota) = db::sites::nodes_and_quota_for_update(&mut tx, *id).await?;
            if held + new_nodes.len() as i64 > i64::from(quota) {
                return Err(Error::Forbidden(format!(
                    "Hostname: site '{name}' holds {held} nodes and its write token may register \
                     up to {quota} (its node_quota); {} more were named (the admin raises it)",
                    new_nodes.len()
                )));
            }
        }
        for (i, host, site_id) in &new_nodes {
            let token = caller::new_token("wn");
            checked[*i].node_id =
                db::nodes::create(&mut *tx, host, *site_id, &caller::token_digest(&token))
                    .await?
                    .ok_or_else(|| Error::Conflict(format!("Hostname: node '{host}' exists")))?;
        }
        tx.commit().await?;
    }
    // Each node's batch goes to the writers with everyone else's (group commit), all at once.
    let node_ids: Vec<NodeId> = checked.iter().map(|c| c.node_id).collect();
    let mut pending = Vec::new();
    for batch in checked {
        let (writers, db) = (cx.writers.clone(), cx.db.clone());
        pending.push(tokio::spawn(async move { writers.store(&db, batch).await }));
    }
    let mut stored = db::samples::Stored::default();
    let mut failed = None;
    let mut unused = Vec::new();
    for (i, p) in pending.into_iter().enumerate() {
        let result = p
            .await
            .map_err(|e| Error::internal(format!("storing a node's batch: {e}")));
        let error = match result {
            Ok(Ok(s)) => {
                stored.stored += s.stored;
                stored.duplicates += s.duplicates;
                continue;
            }
            Ok(Err(e)) => {
                cx.known_nodes.forget_gone(&e);
                Error::from(e)
            }
            Err(e) => e,
        };
        failed = Some(error);
        if new_nodes.iter().any(|(n, _, _)| *n == i) {
            unused.push(node_ids[i]);
        }
    }
    // A node this write registered whose batch was not stored goes with it: a refused write
    // registers nothing (it registered 5,000 nodes once and answered 503).
    if !unused.is_empty() {
        db::nodes::delete_unused(&cx.db, &unused).await?;
        cx.known_nodes.forget(&unused);
    }
    // What was stored stays (sent again, it is counted a duplicate); the sender retries a 5xx.
    cx.metrics.ingested(stored.stored, stored.duplicates);
    if let Some(e) = failed {
        return Err(e);
    }
    // Counted for writes taken only: a refused one is sent again.
    cx.metrics.remote_write(ignored, without_power);
    Ok(())
}
