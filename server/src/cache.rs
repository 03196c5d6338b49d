//! In-process cache of sites' hourly PUE. A year of 5-minute readings is 105,000 rows to aggregate
//! with window functions (~0.3 s on a small machine), and the PUE page, a job page's "when to run"
//! sentence and the advice API each want that year.
//!
//! An entry is used while its site's readings are unchanged: facility ingest bumps the site's version
//! (`invalidate`), and a result computed under an older version is never served. Readings written by
//! another server process are not seen here, so entries also expire after `TTL`.

use crate::ids::SiteId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::db::facility::Hour;

/// Longest an entry is served, for readings other server processes stored.
const TTL: Duration = Duration::from_secs(60);
/// Entries kept at most; all are dropped when full (they are cheap to recompute once).
const MAX_ENTRIES: usize = 256;

/// `(site, from, to, origin)`, as Unix seconds.
pub(crate) type Key = (SiteId, i64, i64, i64);

struct Entry {
    version: u64,
    at: Instant,
    hours: Arc<Vec<Hour>>,
}

#[derive(Default)]
struct Inner {
    versions: HashMap<SiteId, u64>,
    entries: HashMap<Key, Entry>,
}

/// Hourly PUE per site and window.
#[derive(Default)]
pub struct PueCache(Mutex<Inner>);

impl PueCache {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: still usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The site's current version: pass it to `put` with what was computed after reading it.
    pub(crate) fn version(&self, site: SiteId) -> u64 {
        self.inner().versions.get(&site).copied().unwrap_or(0)
    }

    /// The hours of a window, when computed under the site's current version within the TTL.
    pub(crate) fn get(&self, key: Key) -> Option<Arc<Vec<Hour>>> {
        let inner = self.inner();
        let current = inner.versions.get(&key.0).copied().unwrap_or(0);
        inner
            .entries
            .get(&key)
            .filter(|e| e.version == current && e.at.elapsed() < TTL)
            .map(|e| e.hours.clone())
    }

    /// Stores hours computed under `version`.
    pub(crate) fn put(&self, key: Key, version: u64, hours: Arc<Vec<Hour>>) {
        let mut inner = self.inner();
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(
            key,
            Entry {
                version,
                at: Instant::now(),
                hours,
            },
        );
    }

    /// The site's readings changed: its entries are not served again.
    pub(crate) fn invalidate(&self, site: SiteId) {
        let mut inner = self.inner();
        *inner.versions.entry(site).or_default() += 1;
        inner.entries.retain(|k, _| k.0 != site);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_served_until_its_site_changes() {
        let cache = PueCache::default();
        let key = (SiteId(1), 0, 3600, 0);
        let other = (SiteId(2), 0, 3600, 0);
        assert!(cache.get(key).is_none());
        let v = cache.version(SiteId(1));
        cache.put(key, v, Arc::new(Vec::new()));
        cache.put(other, cache.version(SiteId(2)), Arc::new(Vec::new()));
        assert!(cache.get(key).is_some());
        cache.invalidate(SiteId(1));
        assert!(cache.get(key).is_none(), "site 1 changed");
        assert!(cache.get(other).is_some(), "site 2 did not");
        // Computed before the change, stored after it: never served.
        cache.put(key, v, Arc::new(Vec::new()));
        assert!(cache.get(key).is_none());
    }
}
