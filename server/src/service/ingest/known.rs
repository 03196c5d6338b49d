//! Nodes recently found by name, so a remote write's hosts (or the admin's named node) are not read
//! from the database for every request: a fleet's Prometheus sends each node's series every few
//! seconds, and that lookup was a round trip a request (issue 34).
//!
//! Safe to believe for a while: a node's id and site never change, and a node is deleted only when a
//! write that registered it stored nothing (`nodes::delete_unused`). The writers lock each node's row
//! before storing, and a node gone by then refuses the group (`db::Error::NodeGone`, answered 503):
//! the sender's retry finds it anew.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db;
use crate::ids::{NodeId, SiteId};

/// How long a node found is believed without asking again.
const KNOWN_TTL: Duration = Duration::from_secs(60);
/// Entries at most (all are dropped when full: one lookup each to fill it again).
const KNOWN_MAX: usize = 100_000;

/// A node as ingest needs it: its id and site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KnownNode {
    /// Its id.
    pub id: NodeId,
    /// Its site's.
    pub site_id: SiteId,
}

/// Nodes found by name, each for [`KNOWN_TTL`].
#[derive(Default)]
pub struct KnownNodes(Mutex<HashMap<String, (KnownNode, Instant)>>);

impl KnownNodes {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (KnownNode, Instant)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The node named `name`: remembered, or read and remembered; `None` when there is none (not
    /// remembered: it may be registered next).
    pub(crate) async fn find(
        &self,
        db: &sqlx::PgPool,
        name: &str,
    ) -> sqlx::Result<Option<KnownNode>> {
        if let Some((node, at)) = self.map().get(name) {
            if at.elapsed() < KNOWN_TTL {
                return Ok(Some(*node));
            }
        }
        let Some(node) = db::nodes::by_name(db, name).await? else {
            return Ok(None);
        };
        let known = KnownNode {
            id: node.id,
            site_id: node.site_id,
        };
        let mut map = self.map();
        if map.len() >= KNOWN_MAX {
            map.clear();
        }
        map.insert(name.to_owned(), (known, Instant::now()));
        Ok(Some(known))
    }

    /// Forgets the nodes with these ids (deleted, or gone when a batch was stored).
    pub(crate) fn forget(&self, ids: &[NodeId]) {
        self.map().retain(|_, (node, _)| !ids.contains(&node.id));
    }

    /// Forgets the node a failed store found gone ([`db::Error::NodeGone`]): the sender's retry finds
    /// it anew. Any other failure forgets nothing.
    pub(crate) fn forget_gone(&self, failed: &super::writers::WriteError) {
        if let super::writers::WriteError::Db(db::Error::NodeGone(id)) = failed {
            self.forget(&[*id]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_a_node_forgets_it_by_any_name() {
        let known = KnownNodes::default();
        let node = |id| KnownNode {
            id: NodeId(id),
            site_id: SiteId(1),
        };
        known.map().insert("a".into(), (node(1), Instant::now()));
        known.map().insert("b".into(), (node(2), Instant::now()));
        known.forget(&[NodeId(1)]);
        assert!(!known.map().contains_key("a"));
        assert_eq!(known.map().get("b").map(|e| e.0), Some(node(2)));
    }
}
