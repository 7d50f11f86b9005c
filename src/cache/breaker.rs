//! A circuit breaker in front of Redis. While Redis answers, calls go through. After a few
//! calls in a row fail because Redis is unreachable (refused, reset, timed out), the
//! breaker opens: calls fail at once without touching the network, so a request whose
//! cache is down costs a Postgres read, not a Postgres read plus a connect timeout. A
//! background probe PINGs Redis every `PROBE_EVERY` and closes the breaker when it answers.
//! The outage is logged once when it opens and once when it closes.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use crate::outage::OutageLog;

/// Consecutive unreachable-Redis failures that open the breaker of one Redis node. One: a
/// call that could not reach Redis at all means the next ones would each wait on a
/// reconnect, and a breaker opened by a passing blip costs only Postgres reads until the
/// next probe.
pub const OPEN_AFTER_NODE: u32 = 1;
/// A breaker standing for a whole cluster (before its slot map is known, or for a call
/// with no key) opens only when calls keep failing in a row (every master unreachable),
/// not when one dead master's keys fail between the other masters' successes.
pub const OPEN_AFTER_CLUSTER: u32 = 3;
/// How often the probe tries Redis while the breaker is open.
pub const PROBE_EVERY: Duration = Duration::from_millis(200);

/// The breaker's state; shared by every clone of a `Cache`.
pub struct Breaker {
    open_after: u32,
    open: AtomicBool,
    failures_in_a_row: AtomicU32,
    probing: AtomicBool,
    outage: OutageLog,
}

impl Breaker {
    /// A closed breaker that opens after `open_after` unreachable calls in a row; its
    /// outage is logged under `name` ("Redis", "Redis node 127.0.0.1:7001").
    pub fn new(open_after: u32, name: impl Into<String>) -> Self {
        Self {
            open_after,
            open: AtomicBool::new(false),
            failures_in_a_row: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            outage: OutageLog::new(name),
        }
    }

    /// May a call go to Redis now?
    pub fn allows(&self) -> bool {
        !self.open.load(Ordering::Relaxed)
    }

    pub fn is_open(&self) -> bool {
        !self.allows()
    }

    /// A call got an answer (an error reply counts: Redis is there).
    pub fn succeeded(&self) {
        if self.failures_in_a_row.load(Ordering::Relaxed) != 0 {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
        }
    }

    /// A call could not reach Redis. Returns true when this failure opened the breaker
    /// and the caller should start the probe.
    pub fn unreachable(&self, error: &redis::RedisError) -> bool {
        let n = self.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if n < self.open_after || self.open.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.outage.failed(
            error,
            "reads are answered from Postgres and Redis is skipped until it is back",
        );
        !self.probing.swap(true, Ordering::AcqRel)
    }

    /// The probe reached Redis: close the breaker.
    pub fn close(&self) {
        self.failures_in_a_row.store(0, Ordering::Relaxed);
        self.probing.store(false, Ordering::Release);
        self.open.store(false, Ordering::Release);
        self.outage.succeeded();
    }
}

/// Does this error mean Redis could not be reached (rather than a reply like OOM)?
pub fn is_unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}
