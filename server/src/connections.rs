//! Which connections the server keeps open: at most `max_connections` in all and
//! `max_connections_per_client` from one address (the trusted proxies' are not counted per client), and
//! when a bound is reached the oldest idle connection goes first, so no client holds the server by
//! holding connections (issue 33, N5: 1,024 idle connections from one unauthenticated client locked
//! everyone out for as long as it held them).
//!
//! Closing is hyper's graceful shutdown: an idle connection closes at once, a busy one after the
//! response it is sending.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// One open connection as the admission sees it.
#[derive(Debug)]
pub(crate) struct Conn {
    id: u64,
    ip: IpAddr,
    /// Between requests (a new connection counts as idle until its first request).
    idle: AtomicBool,
    /// Milliseconds since the registry began at the last request's start or end.
    last_ms: AtomicU64,
    /// Asked to close (its slot is promised to a new connection).
    closing: AtomicBool,
    /// Notified to close it.
    close: Notify,
}

impl Conn {
    /// A request started on it.
    pub(crate) fn busy(&self, clock: &Registry) {
        self.idle.store(false, Ordering::Relaxed);
        self.last_ms.store(clock.now_ms(), Ordering::Relaxed);
    }

    /// Its request was answered.
    pub(crate) fn idle(&self, clock: &Registry) {
        self.last_ms.store(clock.now_ms(), Ordering::Relaxed);
        self.idle.store(true, Ordering::Relaxed);
    }

    /// Resolves when the registry asks it to close.
    pub(crate) async fn closing(&self) {
        self.close.notified().await;
    }
}

/// What the admission decided for a new connection.
#[derive(Debug)]
pub(crate) enum Admit {
    /// Serve it (it is registered; `Registry::leave` when it closes).
    Yes(Arc<Conn>),
    /// Serve it once a connection asked to close has gone (a slot frees when it does).
    AfterClosing(Arc<Conn>),
    /// Close it: its client holds its bound with busy connections, or every connection is busy.
    No,
}

/// The open connections.
#[derive(Debug)]
pub(crate) struct Registry {
    max: usize,
    per_client: usize,
    trusted: Vec<IpAddr>,
    began: Instant,
    next_id: AtomicU64,
    open: Mutex<Vec<Arc<Conn>>>,
}

impl Registry {
    /// Bounds: connections in all, connections of one address, addresses not bounded per client.
    pub(crate) fn new(max: usize, per_client: usize, trusted: Vec<IpAddr>) -> Self {
        Self {
            max: max.max(1),
            per_client: per_client.max(1),
            trusted,
            began: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.began.elapsed().as_millis() as u64
    }

    /// Decides for a connection from `ip`, closing an idle one where a bound is reached.
    pub(crate) fn admit(&self, ip: IpAddr) -> Admit {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let staying = |c: &&Arc<Conn>| !c.closing.load(Ordering::Relaxed);
        let idle = |c: &&Arc<Conn>| staying(c) && c.idle.load(Ordering::Relaxed);
        let oldest_idle = |of: &dyn Fn(&Conn) -> bool| {
            open.iter()
                .filter(|c| idle(c) && of(c))
                .min_by_key(|c| c.last_ms.load(Ordering::Relaxed))
                .cloned()
        };
        let mut evict = None;
        if !self.trusted.contains(&ip) {
            let mine = open.iter().filter(staying).filter(|c| c.ip == ip).count();
            if mine >= self.per_client {
                match oldest_idle(&|c| c.ip == ip) {
                    Some(c) => evict = Some(c),
                    None => return Admit::No,
                }
            }
        }
        let live = open.iter().filter(staying).count();
        if evict.is_none() && live >= self.max {
            // The client holding the most connections gives up its oldest idle one.
            let heaviest = |c: &Conn| open.iter().filter(|o| o.ip == c.ip).count();
            let victim = open
                .iter()
                .filter(idle)
                .max_by_key(|c| {
                    (
                        heaviest(c),
                        std::cmp::Reverse(c.last_ms.load(Ordering::Relaxed)),
                    )
                })
                .cloned();
            match victim {
                Some(c) => evict = Some(c),
                None => return Admit::No,
            }
        }
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            ip,
            idle: AtomicBool::new(true),
            last_ms: AtomicU64::new(self.now_ms()),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        open.push(conn.clone());
        match evict {
            Some(old) => {
                old.closing.store(true, Ordering::Relaxed);
                old.close.notify_one();
                Admit::AfterClosing(conn)
            }
            None => Admit::Yes(conn),
        }
    }

    /// A connection closed.
    pub(crate) fn leave(&self, conn: &Conn) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|c| c.id != conn.id);
    }

    /// Open connections (those asked to close among them).
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn conn(a: Admit) -> Arc<Conn> {
        match a {
            Admit::Yes(c) | Admit::AfterClosing(c) => c,
            Admit::No => panic!("refused"),
        }
    }

    #[test]
    fn one_client_cannot_hold_the_server() {
        let r = Registry::new(4, 2, vec![ip(9)]);
        let a1 = conn(r.admit(ip(2)));
        let a2 = conn(r.admit(ip(2)));
        // A third from the same client: its oldest idle one is asked to close.
        assert!(matches!(r.admit(ip(2)), Admit::AfterClosing(_)));
        r.leave(&a1);
        // Busy connections are never taken: past its bound with all busy, it is refused.
        a2.busy(&r);
        let open = r.open.lock().expect("lock").clone();
        for c in &open {
            c.busy(&r);
        }
        assert!(matches!(r.admit(ip(2)), Admit::No));
        // Another client still gets in; at the global bound an idle connection of the heaviest
        // client makes room.
        let b = conn(r.admit(ip(3)));
        assert!(matches!(r.admit(ip(4)), Admit::Yes(_)));
        assert_eq!(r.open(), 4);
        open[1].idle(&r);
        assert!(matches!(r.admit(ip(5)), Admit::AfterClosing(_)));
        // The trusted proxy is bounded by the total only: with every connection busy, none.
        b.busy(&r);
        for c in r.open.lock().expect("lock").iter() {
            c.busy(&r);
        }
        assert!(matches!(r.admit(ip(9)), Admit::No), "all busy, full");
    }
}
