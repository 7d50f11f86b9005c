//! One log line when a dependency goes down and one when it comes back, however many
//! requests fail in between: a dead Postgres under load must not write a warning per
//! request (it once wrote 38,229 lines in 3 s).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Tracks whether a dependency (Redis, Postgres) is in an outage, and logs the edges.
pub struct OutageLog {
    what: String,
    down: AtomicBool,
    failures: AtomicU64,
    since: Mutex<Option<Instant>>,
}

impl OutageLog {
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            down: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            since: Mutex::new(None),
        }
    }

    /// Is the dependency in an outage (its last call failed)?
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// A call failed; the first failure of an outage is logged with `consequence`.
    pub fn failed(&self, error: &dyn std::fmt::Display, consequence: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::AcqRel) {
            *self.since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            tracing::warn!("{} is down: {error}; {consequence}", self.what);
        }
    }

    /// A call succeeded; the first success after an outage is logged.
    pub fn succeeded(&self) {
        if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::AcqRel) {
            let since = self.since.lock().unwrap_or_else(|p| p.into_inner()).take();
            let failures = self.failures.swap(0, Ordering::Relaxed);
            let secs = since.map_or(0.0, |t| t.elapsed().as_secs_f64());
            tracing::warn!(
                "{} is back after {secs:.1} s ({failures} failed calls in the outage)",
                self.what
            );
        } else {
            self.failures.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OutageLog;

    #[test]
    fn an_outage_is_one_state_change_each_way() {
        let log = OutageLog::new("Postgres");
        assert!(!log.is_down());
        for _ in 0..1000 {
            log.failed(&"refused", "answering 503");
        }
        assert!(log.is_down());
        log.succeeded();
        assert!(!log.is_down());
    }
}
