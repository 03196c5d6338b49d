//! Node tokens recently found, so a collector's batch a second does not read its token each time.

use crate::service::caller::Caller;

/// Node tokens recently found, by digest, for `NODE_TOKEN_TTL`: a replaced node token keeps
/// working that long on a server that saw it (DEVELOPERS.md, Access).
#[derive(Default)]
pub struct NodeTokens(
    std::sync::Mutex<std::collections::HashMap<Vec<u8>, (Caller, std::time::Instant)>>,
);

/// How long a node token found in the database is believed without asking again.
pub(crate) const NODE_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Entries at most (all are dropped when full: one lookup each to fill it again).
const NODE_TOKENS_MAX: usize = 100_000;

impl NodeTokens {
    pub(super) fn get(&self, digest: &[u8]) -> Option<Caller> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(digest)
            .filter(|(_, at)| at.elapsed() < NODE_TOKEN_TTL)
            .map(|(c, _)| c.clone())
    }

    pub(super) fn put(&self, digest: Vec<u8>, caller: Caller) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= NODE_TOKENS_MAX {
            map.clear();
        }
        map.insert(digest, (caller, std::time::Instant::now()));
    }

    /// Forgets every token (a node's token was replaced on this server).
    pub(crate) fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}
