//! Where reads that may lag go: the read replica (`WATTLAS_READ_DATABASE_URL`) while it is provably at
//! most `WATTLAS_REPLICA_MAX_LAG_S` behind the primary, the primary otherwise.
//!
//! How far behind is measured without trusting either clock: a probe reads the primary's WAL position
//! (`pg_current_wal_lsn()`) at instant T, and once the replica has replayed past it
//! (`pg_last_wal_replay_lsn()`), the replica holds every commit made before T. Its staleness at any
//! later instant is at most now - T for the newest such T, and it grows by itself between probes, so
//! a replica that stops replaying (paused, cut off from its primary, or lost) is left as soon as the
//! bound is reached, not at the next probe. A promoted replica (no longer in recovery) is a primary
//! and fresh. While the primary does not answer, nothing newer can be written, so a replica that has
//! replayed all the primary was last seen to have is as fresh as the data is.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

/// Probes older than this are forgotten (the replica is stale beyond any bound by then).
const KEEP_PROBES: usize = 4096;

/// The pools, and the replica's measured freshness.
pub struct Reads {
    primary: PgPool,
    replica: Option<PgPool>,
    max_lag: Duration,
    state: Mutex<Freshness>,
    /// Reads sent to the replica and to the primary.
    served: [AtomicU64; 2],
}

#[derive(Default)]
struct Freshness {
    /// The replica holds every commit made before this instant; `None`: not known yet.
    as_of: Option<Instant>,
    /// Primary WAL positions read at instants, not yet replayed by the replica, oldest first.
    probes: VecDeque<(Instant, i64)>,
    /// Whether the replica answered the last probe.
    answering: bool,
    /// The primary did not answer (a probe, or a request's lookup): reads go to an answering replica
    /// whatever its measured staleness, since the primary cannot serve them and nothing newer than
    /// what the replica replayed can be written meanwhile. Cleared when a probe reaches the primary.
    primary_away: bool,
}

/// Which pool served a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// The read replica.
    Replica = 0,
    /// The primary.
    Primary = 1,
}

impl Reads {
    /// Every read on `primary` (no replica configured).
    pub(crate) fn primary_only(primary: PgPool) -> Self {
        Self::new(primary, None, Duration::ZERO)
    }

    /// Reads that may lag go to `replica` while it is at most `max_lag` behind `primary`.
    pub fn new(primary: PgPool, replica: Option<PgPool>, max_lag: Duration) -> Self {
        Self {
            primary,
            replica,
            max_lag,
            state: Mutex::new(Freshness::default()),
            served: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// The replica, for a read the primary could not serve because it is away (counted as the
    /// replica's): it holds all the primary was seen to have, as `probe` says.
    pub(crate) fn replica_while_primary_away(&self) -> Option<&PgPool> {
        let replica = self.replica.as_ref()?;
        self.served[Served::Replica as usize].fetch_add(1, Ordering::Relaxed);
        Some(replica)
    }

    /// Whether a replica is configured.
    pub(crate) fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// The configured bound.
    pub(crate) fn max_lag(&self) -> Duration {
        self.max_lag
    }

    /// The pool for one read that may lag by up to the bound, counted.
    pub(crate) fn pool(&self) -> &PgPool {
        let (pool, served) = self.choose(Instant::now());
        self.served[served as usize].fetch_add(1, Ordering::Relaxed);
        pool
    }

    fn choose(&self, now: Instant) -> (&PgPool, Served) {
        let Some(replica) = &self.replica else {
            return (&self.primary, Served::Primary);
        };
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = state
            .as_of
            .is_some_and(|t| now.saturating_duration_since(t) <= self.max_lag);
        if fresh || (state.primary_away && state.answering) {
            (replica, Served::Replica)
        } else {
            (&self.primary, Served::Primary)
        }
    }

    /// A request found the primary unreachable: until a probe reaches it again, reads go to the
    /// replica while it answers (without a replica, nothing changes).
    pub(crate) fn primary_unreachable(&self) {
        if self.replica.is_some() {
            if let Ok(mut s) = self.state.lock() {
                s.primary_away = true;
            }
        }
    }

    /// How far behind the replica may be now, at most; `None` without a replica or before a probe
    /// succeeded.
    pub(crate) fn staleness(&self) -> Option<Duration> {
        self.staleness_at(Instant::now())
    }

    fn staleness_at(&self, now: Instant) -> Option<Duration> {
        self.replica.as_ref()?;
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.as_of.map(|t| now.saturating_duration_since(t))
    }

    /// Whether the replica answered its last probe (true without a replica).
    pub(crate) fn replica_answering(&self) -> bool {
        self.replica.is_none() || self.state.lock().is_ok_and(|s| s.answering)
    }

    /// Reads served so far by (replica, primary).
    pub(crate) fn served(&self) -> (u64, u64) {
        (
            self.served[0].load(Ordering::Relaxed),
            self.served[1].load(Ordering::Relaxed),
        )
    }

    /// One probe: the primary's WAL position, then how far the replica has replayed.
    pub(crate) async fn probe(&self) {
        let Some(replica) = &self.replica else {
            return;
        };
        let timeout = Duration::from_secs(1).max(self.max_lag / 4);
        let at = Instant::now();
        let primary: Result<sqlx::Result<i64>, _> = tokio::time::timeout(
            timeout,
            sqlx::query_scalar("select (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8")
                .fetch_one(&self.primary),
        )
        .await;
        // An error (refused, closed): the primary is away. A timeout says only that it is slow.
        let primary_away = match &primary {
            Ok(Ok(_)) => Some(false),
            Ok(Err(_)) => Some(true),
            Err(_) => None,
        };
        let primary_lsn = primary.ok().and_then(Result::ok);
        let replayed: Option<(bool, Option<i64>)> = tokio::time::timeout(
            timeout,
            sqlx::query_as(
                "select pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8",
            )
            .fetch_one(replica),
        )
        .await
        .ok()
        .and_then(Result::ok);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lsn) = primary_lsn {
            if state.probes.len() == KEEP_PROBES {
                state.probes.pop_front();
            }
            state.probes.push_back((at, lsn));
        }
        state.answering = replayed.is_some();
        if let Some(away) = primary_away {
            state.primary_away = away;
        }
        match replayed {
            None => {}
            // Promoted: it is a primary itself.
            Some((false, _)) => {
                state.probes.clear();
                state.as_of = Some(at);
            }
            Some((true, replay)) => {
                let replay = replay.unwrap_or(-1);
                while let Some(&(t, lsn)) = state.probes.front() {
                    if lsn > replay {
                        break;
                    }
                    state.as_of = Some(state.as_of.map_or(t, |a| a.max(t)));
                    state.probes.pop_front();
                }
                // The primary is away and everything it was seen to have is replayed.
                if primary_lsn.is_none() && state.probes.is_empty() {
                    state.as_of = Some(at);
                }
            }
        }
    }

    /// Probes every quarter of the bound (at most every second, at least every 50 ms) until dropped.
    pub(crate) fn spawn_probes(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        self.replica.as_ref()?;
        let reads = Arc::downgrade(self);
        let every = (self.max_lag / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        Some(tokio::spawn(async move {
            loop {
                match reads.upgrade() {
                    Some(r) => r.probe().await,
                    None => return,
                }
                tokio::time::sleep(every).await;
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(max_lag_ms: u64) -> Reads {
        // Lazy pools never connect here: only the choice is exercised.
        let url = "postgres://nobody@127.0.0.1:9/none";
        let pool = || {
            sqlx::postgres::PgPoolOptions::new()
                .connect_lazy(url)
                .expect("pool")
        };
        Reads::new(pool(), Some(pool()), Duration::from_millis(max_lag_ms))
    }

    #[tokio::test]
    async fn the_replica_serves_only_while_provably_within_the_bound() {
        let r = reads(1000);
        let t0 = Instant::now();
        // Before any probe succeeded: unknown, so the primary.
        assert_eq!(r.choose(t0).1, Served::Primary);
        r.state.lock().expect("state").as_of = Some(t0);
        assert_eq!(r.choose(t0 + Duration::from_millis(999)).1, Served::Replica);
        assert_eq!(
            r.choose(t0 + Duration::from_millis(1000)).1,
            Served::Replica
        );
        // No new probe: staleness grows by itself and the bound is kept without one.
        assert_eq!(
            r.choose(t0 + Duration::from_millis(1001)).1,
            Served::Primary
        );
        assert_eq!(
            r.staleness_at(t0 + Duration::from_millis(1500)),
            Some(Duration::from_millis(1500))
        );
        // The primary away (a request's lookup failed to reach it): an answering replica serves,
        // however stale, since the primary cannot; a silent one does not.
        let late = t0 + Duration::from_secs(60);
        r.primary_unreachable();
        assert_eq!(
            r.choose(late).1,
            Served::Primary,
            "the replica has not answered"
        );
        r.state.lock().expect("state").answering = true;
        assert_eq!(r.choose(late).1, Served::Replica);
        r.state.lock().expect("state").primary_away = false;
        assert_eq!(r.choose(late).1, Served::Primary);
        // Without a replica, always the primary and no staleness.
        let only = Reads::primary_only(r.primary.clone());
        only.primary_unreachable();
        assert_eq!(only.choose(t0).1, Served::Primary);
        assert_eq!(only.staleness_at(t0), None);
    }
}
