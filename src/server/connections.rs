//! The open connections of one server, so that at the connection cap the server can make
//! room for a newcomer: it asks the idlest connection to close — one that never sent a
//! request first (a slowloris, a port scanner, a pool opened and forgotten), else the one
//! idle longest between requests. A flood of idle connections thus cannot lock clients out
//! for longer than it takes to close one, while connections in the middle of a request
//! are never touched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;

/// One open connection as the registry sees it.
pub struct Conn {
    /// Set while a request is being answered.
    busy: AtomicBool,
    /// Requests answered so far.
    served: AtomicU64,
    /// When it last finished a request (or was accepted), in ms since the server started.
    idle_since_ms: AtomicU64,
    /// Asks the connection's task to close it gracefully.
    pub close: Notify,
}

/// The open connections of one server.
pub struct Connections {
    started: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }
}

/// Marks a connection busy for as long as a request is answered.
pub struct Busy(Arc<Conn>, u64);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
        self.0.served.fetch_add(1, Ordering::Relaxed);
        self.0.idle_since_ms.store(self.1, Ordering::Relaxed);
    }
}

impl Conn {
    /// Is a request being answered on it?
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }
}

impl Connections {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Register a new connection; its id and record.
    pub fn open(&self) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            busy: AtomicBool::new(false),
            served: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
        });
        self.lock().insert(id, conn.clone());
        (id, conn)
    }

    /// Forget a connection that ended.
    pub fn closed(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// A request starts on `conn`.
    pub fn busy(&self, conn: &Arc<Conn>) -> Busy {
        conn.busy.store(true, Ordering::Release);
        Busy(conn.clone(), self.now_ms())
    }

    /// Ask every connection idle for `timeout` (no request under way since then — a
    /// keep-alive connection between requests, or one that never finished sending a
    /// request head) to close. One sweep every few hundred ms replaces a timer per request.
    pub fn sweep(&self, timeout: std::time::Duration) {
        let now = self.now_ms();
        let timeout = timeout.as_millis() as u64;
        for conn in self.lock().values() {
            let idle_for = now.saturating_sub(conn.idle_since_ms.load(Ordering::Relaxed));
            if !conn.busy.load(Ordering::Acquire) && idle_for >= timeout {
                conn.close.notify_one();
            }
        }
    }

    /// Ask every connection to close once its request in flight, if any, is answered.
    pub fn close_all(&self) {
        for conn in self.lock().values() {
            conn.close.notify_one();
        }
    }

    /// Is any connection answering a request right now?
    pub fn any_busy(&self) -> bool {
        self.lock().values().any(|c| c.busy.load(Ordering::Acquire))
    }

    /// Ask the idlest connection to close; false when every connection is busy.
    pub fn shed_idlest(&self) -> bool {
        let open = self.lock();
        let idlest = open
            .values()
            .filter(|c| !c.busy.load(Ordering::Acquire))
            .min_by_key(|c| {
                (
                    c.served.load(Ordering::Relaxed) > 0,
                    c.idle_since_ms.load(Ordering::Relaxed),
                )
            });
        match idlest {
            Some(conn) => {
                conn.close.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_idlest_is_a_connection_that_never_sent_a_request_then_the_longest_idle() {
        let conns = Connections::default();
        let (_, served) = conns.open();
        drop(conns.busy(&served));
        let (_, silent) = conns.open();
        let (_, working) = conns.open();
        let _busy = conns.busy(&working);
        assert!(conns.shed_idlest());
        // The silent one was asked to close: its notification is pending.
        tokio::time::timeout(
            std::time::Duration::from_millis(100),
            silent.close.notified(),
        )
        .await
        .expect("the silent connection is shed first");
    }

    #[tokio::test]
    async fn a_sweep_closes_connections_idle_past_the_timeout_and_no_busy_one() {
        let conns = Connections::default();
        let (_, idle) = conns.open();
        let (_, working) = conns.open();
        let _busy = conns.busy(&working);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        conns.sweep(std::time::Duration::from_millis(20));
        tokio::time::timeout(std::time::Duration::from_millis(100), idle.close.notified())
            .await
            .expect("the idle connection is asked to close");
        let busy_asked = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            working.close.notified(),
        )
        .await;
        assert!(busy_asked.is_err(), "a busy connection is left alone");
    }

    #[test]
    fn busy_connections_are_never_shed() {
        let conns = Connections::default();
        let (_, a) = conns.open();
        let _busy = conns.busy(&a);
        assert!(!conns.shed_idlest());
    }
}
