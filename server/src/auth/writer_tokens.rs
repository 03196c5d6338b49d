//! Writers' tokens recently found (a node's, a site's write token), so a collector's batch a second
//! or a Prometheus remote write does not read its token each time (a site's token was three lookups a
//! request: node, meter, site).

use crate::service::caller::Caller;

/// Node and site write tokens recently found, by digest, for `WRITER_TOKEN_TTL`: a replaced one keeps
/// working that long on a server that saw it (DEVELOPERS.md, Access).
#[derive(Default)]
pub struct WriterTokens(
    std::sync::Mutex<std::collections::HashMap<Vec<u8>, (Caller, std::time::Instant)>>,
);

/// How long a writer's token found in the database is believed without asking again.
pub(crate) const WRITER_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Entries at most (all are dropped when full: one lookup each to fill it again).
const WRITER_TOKENS_MAX: usize = 100_000;

impl WriterTokens {
    pub(super) fn get(&self, digest: &[u8]) -> Option<Caller> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(digest)
            .filter(|(_, at)| at.elapsed() < WRITER_TOKEN_TTL)
            .map(|(c, _)| c.clone())
    }

    pub(super) fn put(&self, digest: Vec<u8>, caller: Caller) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= WRITER_TOKENS_MAX {
            map.clear();
        }
        map.insert(digest, (caller, std::time::Instant::now()));
    }

    /// Forgets every token (a node's or a site's token was replaced on this server).
    pub(crate) fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}
