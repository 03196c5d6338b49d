//! Sign-in rate limiting: failed attempts per user name and per client address within a window. Past
//! the limit, sign-in answers 429 with Retry-After without checking the password, so guessing costs
//! the guesser time and the server no Argon2 work. A success clears the user name's failures.
//!
//! In memory, per server process: behind several processes the limit is per process (still a bound).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures per user name within the window.
pub const PER_USER: usize = 10;
/// Failures per client address within the window (many names from one place).
pub const PER_ADDRESS: usize = 50;
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

    /// When the key may try again, if it is over `limit`.
    fn blocked_until(&mut self, key: &str, limit: usize, now: Instant) -> Option<Duration> {
        if self.prune(key, now) < limit {
            return None;
        }
        let oldest = *self.0.get(key)?.front()?;
        Some(WINDOW.saturating_sub(now.duration_since(oldest)))
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
}

/// Failed sign-ins by user name and by address.
#[derive(Default)]
pub struct SignInLimiter(Mutex<Failures>);

fn user_key(name: &str) -> String {
    format!("user:{}", name.to_lowercase())
}

fn address_key(peer: Option<IpAddr>) -> String {
    format!(
        "addr:{}",
        peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
    )
}

impl SignInLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Some(wait)` when this name or this address has failed too often lately.
    pub fn check(&self, name: &str, peer: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let mut f = self.lock();
        let user = f.blocked_until(&user_key(name), PER_USER, now);
        let address = f.blocked_until(&address_key(peer), PER_ADDRESS, now);
        user.into_iter().chain(address).max()
    }

    /// Counts a failed attempt.
    pub fn failed(&self, name: &str, peer: Option<IpAddr>) {
        let now = Instant::now();
        let mut f = self.lock();
        f.add(user_key(name), now);
        f.add(address_key(peer), now);
    }

    /// A successful sign-in: the name's failures are forgotten (the address's stay).
    pub fn succeeded(&self, name: &str) {
        self.lock().0.remove(&user_key(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_held_after_its_limit_and_released_by_success() {
        let limiter = SignInLimiter::default();
        let here = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..PER_USER {
            assert!(limiter.check("Alice", here).is_none());
            limiter.failed("Alice", here);
        }
        let wait = limiter
            .check("alice", here)
            .expect("held: names are case-insensitive");
        assert!(
            wait <= WINDOW && wait > WINDOW - Duration::from_secs(60),
            "{wait:?}"
        );
        assert!(
            limiter.check("bob", here).is_none(),
            "another name from here is not"
        );
        limiter.succeeded("alice");
        assert!(limiter.check("alice", here).is_none());
    }

    #[test]
    fn an_address_trying_many_names_is_held() {
        let limiter = SignInLimiter::default();
        let there = Some(IpAddr::from([192, 0, 2, 7]));
        for i in 0..PER_ADDRESS {
            limiter.failed(&format!("user{i}"), there);
        }
        assert!(limiter.check("someone-else", there).is_some());
        assert!(limiter
            .check("someone-else", Some(IpAddr::from([192, 0, 2, 8])))
            .is_none());
    }
}
