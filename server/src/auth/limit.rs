//! Sign-in throttling. Each attempt is counted before its password is checked (so concurrent guesses
//! cannot all slip under the limit while their hashes run) and forgotten when it succeeds.
//!
//! - Per user name and client: five failures are free; after that each attempt must wait twice as long
//!   as the one before (1 s, 2 s, 4 s ... at most 15 minutes) since the last failure. A guesser
//!   elsewhere never locks the real user out: the key holds the client.
//! - Per client: 50 failures within 15 minutes hold the client (many names from one place).
//!
//! Past either, sign-in answers 429 with Retry-After without checking the password, so guessing costs
//! the guesser time and the server no Argon2 work. The client is the peer address, or, when the peer is
//! a trusted proxy, the address the proxy appended to X-Forwarded-For. In memory, per server process:
//! behind several processes the limit is per process (still a bound).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures per user name and client before delays start.
pub const FREE: usize = 5;
/// The longest delay between two attempts of one name from one client.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Failures per client address within the window (many names from one place).
pub(crate) const PER_ADDRESS: usize = 50;
/// Keys kept at most; the map is cleared of expired keys, then emptied, past it.
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
struct Failures(HashMap<String, VecDeque<Instant>>);

impl Failures {
    fn prune(&mut self, key: &str, now: Instant) -> usize {
        let Some(times) = self.0.get_mut(key) else {
            return 0;
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        times.len()
    }

    /// How long a client over `limit` failures in the window must still wait.
    fn held_for(&mut self, key: &str, limit: usize, now: Instant) -> Option<Duration> {
        if self.prune(key, now) < limit {
            return None;
        }
        let oldest = *self.0.get(key)?.front()?;
        Some(WINDOW.saturating_sub(now.duration_since(oldest)))
    }

    /// How long a name and client past the free failures must still wait: twice as long per failure.
    fn delayed_for(&mut self, key: &str, now: Instant) -> Option<Duration> {
        let n = self.prune(key, now);
        if n < FREE {
            return None;
        }
        let last = *self.0.get(key)?.back()?;
        let shift = u32::try_from(n - FREE).unwrap_or(u32::MAX).min(20);
        let delay = Duration::from_secs(1u64 << shift).min(MAX_DELAY);
        let waited = now.duration_since(last);
        (waited < delay).then(|| delay - waited)
    }

    fn add(&mut self, key: String, now: Instant) {
        if self.0.len() >= MAX_KEYS {
            self.0
                .retain(|_, t| t.back().is_some_and(|b| now.duration_since(*b) < WINDOW));
            if self.0.len() >= MAX_KEYS {
                self.0.clear();
            }
        }
        self.0.entry(key).or_default().push_back(now);
    }

    fn forget_last(&mut self, key: &str) {
        if let Some(times) = self.0.get_mut(key) {
            times.pop_back();
        }
    }
}

/// Failed sign-ins by user name and client, and by client.
#[derive(Default)]
pub struct SignInLimiter(Mutex<Failures>);

fn user_key(name: &str, client: Option<IpAddr>) -> String {
    format!("user:{}@{}", name.to_lowercase(), address(client))
}

fn address(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
}

fn address_key(client: Option<IpAddr>) -> String {
    format!("addr:{}", address(client))
}

impl SignInLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts an attempt of `name` from `client` before its password is checked; `Err(wait)` when it
    /// must not be checked now.
    pub(crate) fn attempt(&self, name: &str, client: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let mut f = self.lock();
        let user = f.delayed_for(&user_key(name, client), now);
        let addr = f.held_for(&address_key(client), PER_ADDRESS, now);
        if let Some(wait) = user.into_iter().chain(addr).max() {
            return Err(wait);
        }
        f.add(user_key(name, client), now);
        f.add(address_key(client), now);
        Ok(())
    }

    /// The attempt succeeded: the name's failures from this client are forgotten, and the attempt
    /// does not count against the client.
    pub(crate) fn succeeded(&self, name: &str, client: Option<IpAddr>) {
        let mut f = self.lock();
        f.0.remove(&user_key(name, client));
        f.forget_last(&address_key(client));
    }
}

/// The client of a request: the peer, or where the peer is a trusted proxy, the last address of
/// X-Forwarded-For (the one the proxy added; earlier ones are the client's own claims).
pub(crate) fn client(
    peer: Option<IpAddr>,
    headers: &axum::http::HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    if !peer.is_some_and(|p| trusted.contains(&p)) {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|a| a.trim().parse::<IpAddr>().ok())
        .or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_name_and_client_and_success_clears_them() {
        let limiter = SignInLimiter::default();
        let here = Some(IpAddr::from([10, 0, 0, 1]));
        let there = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..FREE {
            assert!(limiter.attempt("Alice", here).is_ok());
        }
        let wait = limiter
            .attempt("alice", here)
            .expect_err("delayed: names are case-insensitive");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(
            limiter.attempt("alice", there).is_ok(),
            "not from elsewhere"
        );
        limiter.succeeded("alice", here);
        assert!(limiter.attempt("alice", here).is_ok());
        // Delays double: 1, 2, 4 ... s after the last failure, at most 15 minutes.
        let mut f = Failures::default();
        let t0 = Instant::now();
        for _ in 0..FREE + 3 {
            f.add("k".into(), t0);
        }
        assert_eq!(f.delayed_for("k", t0), Some(Duration::from_secs(8)));
        for _ in 0..40 {
            f.add("k".into(), t0);
        }
        assert_eq!(f.delayed_for("k", t0), Some(MAX_DELAY));
    }

    #[test]
    fn an_address_trying_many_names_is_held() {
        let limiter = SignInLimiter::default();
        let there = Some(IpAddr::from([192, 0, 2, 7]));
        for i in 0..PER_ADDRESS {
            assert!(limiter.attempt(&format!("user{i}"), there).is_ok());
        }
        assert!(limiter.attempt("someone-else", there).is_err());
        assert!(limiter
            .attempt("someone-else", Some(IpAddr::from([192, 0, 2, 8])))
            .is_ok());
    }

    #[test]
    fn the_client_behind_a_trusted_proxy_is_the_address_it_added() {
        let proxy = IpAddr::from([127, 0, 0, 1]);
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 198.51.100.4".parse().expect("header"),
        );
        assert_eq!(
            client(Some(proxy), &h, &[proxy]),
            Some(IpAddr::from([198, 51, 100, 4]))
        );
        assert_eq!(
            client(Some(proxy), &h, &[]),
            Some(proxy),
            "untrusted: the peer"
        );
    }
}
