//! Nodes: their registration (with a fresh token), and the lists of them staff and admins see.

use wattlas_protocol::{NodeToken, NodeView};

use crate::names::NodeName;

use super::{Error, Result};
use crate::db;
use crate::service::caller;
use crate::service::Context;

pub(crate) use crate::db::nodes::Node;

/// Stores a new node in `site` with a fresh token (the API and the admin page).
pub(crate) async fn create_node(cx: &Context, name: &NodeName, site: &str) -> Result<NodeToken> {
    let site_row = db::sites::by_name(&cx.db, site)
        .await?
        .ok_or_else(|| Error::invalid("site", format!("unknown site '{site}'")))?;
    let token = caller::new_token("wn");
    db::nodes::create(&cx.db, name, site_row.id, &caller::token_digest(&token))
        .await?
        .ok_or_else(|| Error::Conflict(format!("name: node '{name}' exists")))?;
    Ok(NodeToken {
        name: name.to_string(),
        token,
    })
}

/// Nodes with their GPUs, what their collectors last reported, and their CPU and DRAM energy of the
/// last 24 h with the part no job held (idle).
pub(crate) async fn views(cx: &Context) -> Result<Vec<NodeView>> {
    let now = chrono::Utc::now().timestamp_millis();
    let (from_ms, to_ms) = (now - 24 * 3_600_000, now);
    let mut out = Vec::new();
    for n in db::nodes::list(&cx.db).await? {
        let cpus = db::node_energy::node_cpus(&cx.db, &[n.id]).await?;
        let max_gap_ms = cx.config.max_gap_ms.max(60_000);
        let zones = db::node_energy::readings(&cx.db, n.id, from_ms, to_ms, max_gap_ms).await?;
        let occupants: Vec<_> = db::node_energy::occupants(&cx.db, n.id, from_ms, to_ms)
            .await?
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        let (total, idle) = crate::analytics::node_energy::idle(
            &zones,
            &occupants,
            cpus.get(&n.id).copied(),
            from_ms,
            to_ms,
            max_gap_ms,
        );
        let measured = !zones.is_empty();
        out.push(NodeView {
            gpus: db::nodes::gpus(&cx.db, n.id).await?,
            name: n.name,
            site: n.site,
            last_seen: n.last_seen,
            dropped_samples_total: n.dropped_samples_total.max(0) as u64,
            cpu_dram_24h_kwh: measured.then_some(total / 3.6e6),
            idle_24h_kwh: measured.then_some(idle / 3.6e6),
        });
    }
    Ok(out)
}

/// Nodes by name, each with its GPUs' count and models and whether its collector is online (`online`,
/// `stale` past `overview::STALE_NODE_S`, `never reported`), for the admin page.
pub(crate) async fn with_state(
    cx: &Context,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Vec<Node>, Vec<(i64, String, &'static str)>)> {
    let nodes = db::nodes::list(&cx.db).await?;
    let gpus = db::nodes::gpu_summary(&cx.db).await?;
    let state = nodes
        .iter()
        .map(|n| {
            let (count, models) = gpus.get(&n.id).cloned().unwrap_or_default();
            let status = match n.last_seen {
                None => "never reported",
                Some(t) if (now - t).num_seconds() > super::overview::STALE_NODE_S => "stale",
                Some(_) => "online",
            };
            (count, models, status)
        })
        .collect();
    Ok((nodes, state))
}

/// Nodes by these names (those that exist).
pub(crate) async fn by_names(cx: &Context, names: &[String]) -> Result<Vec<Node>> {
    Ok(db::nodes::by_names(&cx.db, names).await?)
}
