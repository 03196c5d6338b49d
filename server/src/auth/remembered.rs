//! Identities remembered through a database outage: while the primary is away (a failover takes a few
//! seconds; a restart longer), a signed-in person's pages and a token's read APIs keep answering from
//! what this server last confirmed, instead of 503 for everyone (issue 32, item 3).
//!
//! Every request still asks the database first: while it answers, a revoked token, an ended session, a
//! disabled user or a changed role takes effect at once, and the answer replaces (or removes) what is
//! remembered. Only when the lookup fails because the database is unreachable is the remembered
//! identity used, and only if this server confirmed it within `WATTLAS_IDENTITY_GRACE_S` (default 600)
//! and, for a session, before the session's own expiry. So the bound on revocation: a credential
//! revoked while the database answers stops at its next request; one revoked just before an outage,
//! and not presented since, works at most the grace period after its last confirmation, and only
//! until the database answers again. Nothing is written while the database is away (sign-ins,
//! revocations and ingest answer 503; collectors spool).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

pub(crate) use super::who::Who;

/// Entries at most; when full, those past the grace period go, then the oldest half.
const MAX_ENTRIES: usize = 100_000;

struct Entry {
    who: Who,
    confirmed: Instant,
    /// The credential's own end (a session's expiry).
    until: Option<DateTime<Utc>>,
}

/// Credentials confirmed recently, by digest (bounded).
pub struct Remembered {
    grace: Duration,
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
}

impl Remembered {
    /// Remembers for `grace` (zero: never served from memory).
    pub(crate) fn new(grace: Duration) -> Self {
        Self {
            grace,
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The database confirmed `digest` as `who` just now.
    pub(crate) fn confirm(&self, digest: &[u8], who: Who, until: Option<DateTime<Utc>>) {
        if self.grace.is_zero() {
            return;
        }
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES && !map.contains_key(digest) {
            let grace = self.grace;
            map.retain(|_, e| e.confirmed.elapsed() < grace);
            if map.len() >= MAX_ENTRIES / 2 {
                let mut ages: Vec<Instant> = map.values().map(|e| e.confirmed).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                map.retain(|_, e| e.confirmed > cut);
            }
        }
        map.insert(
            digest.to_vec(),
            Entry {
                who,
                confirmed: Instant::now(),
                until,
            },
        );
    }

    /// The database said `digest` is no (longer a) credential.
    pub(crate) fn forget(&self, digest: &[u8]) {
        self.lock().remove(digest);
    }

    /// What `digest` was, while the database cannot say: confirmed within the grace period and not
    /// past its own end.
    pub(crate) fn recall(&self, digest: &[u8]) -> Option<Who> {
        let map = self.lock();
        let e = map.get(digest)?;
        if e.confirmed.elapsed() >= self.grace || e.until.is_some_and(|u| u <= Utc::now()) {
            return None;
        }
        Some(e.who.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::caller::Caller;

    fn node() -> Who {
        Who::Bearer(Caller::Admin)
    }

    #[test]
    fn recalled_within_grace_and_validity_only() {
        let r = Remembered::new(Duration::from_millis(200));
        r.confirm(b"a", node(), None);
        r.confirm(
            b"b",
            node(),
            Some(Utc::now() - chrono::Duration::seconds(1)),
        );
        assert!(r.recall(b"a").is_some());
        assert!(r.recall(b"b").is_none(), "past its own end");
        assert!(r.recall(b"c").is_none(), "never confirmed");
        r.forget(b"a");
        assert!(
            r.recall(b"a").is_none(),
            "forgotten when the database said no"
        );
        r.confirm(b"a", node(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert!(r.recall(b"a").is_none(), "past the grace period");
        let off = Remembered::new(Duration::ZERO);
        off.confirm(b"a", node(), None);
        assert!(off.recall(b"a").is_none());
    }

    #[test]
    fn bounded() {
        let r = Remembered::new(Duration::from_secs(60));
        for i in 0..MAX_ENTRIES + 10 {
            r.confirm(&i.to_le_bytes(), node(), None);
        }
        let len = r.lock().len();
        assert!(len <= MAX_ENTRIES, "{len}");
        assert!(
            r.recall(&(MAX_ENTRIES + 9).to_le_bytes()).is_some(),
            "the newest stays"
        );
    }
}
