//! The counts the observing proxies keep, and a short log of what they saw (the keys with
//! hit or miss, the statements) that `cachelab target check` prints. The log is kept only
//! while asked for: formatting every command would cost the proxies a third of their
//! throughput under load, and only `target check` reads it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// How many recent observations the log keeps.
const LOG_SIZE: usize = 200;

/// One observation for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A Redis command and, for reads of cache keys, its outcome: `"GET user:1 -> miss"`.
    Redis(String),
    /// A statement Postgres was asked to run.
    Sql(String),
    /// An error Postgres answered.
    SqlError(String),
}

/// Everything the proxies counted, shared by both.
#[derive(Default)]
pub struct Observed {
    hits: AtomicU64,
    misses: AtomicU64,
    cache_sets: AtomicU64,
    cache_dels: AtomicU64,
    cache_commands: AtomicU64,
    db_reads: AtomicU64,
    db_writes: AtomicU64,
    db_queries: AtomicU64,
    db_errors: AtomicU64,
    /// Whether `note` keeps what it is given.
    logging: AtomicBool,
    log: Mutex<VecDeque<Seen>>,
}

impl Observed {
    /// Every count by the name `stats()` gives it.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("hits", self.hits.load(Relaxed)),
            ("misses", self.misses.load(Relaxed)),
            ("cache_sets", self.cache_sets.load(Relaxed)),
            ("cache_dels", self.cache_dels.load(Relaxed)),
            ("cache_commands", self.cache_commands.load(Relaxed)),
            ("db_reads", self.db_reads.load(Relaxed)),
            ("db_writes", self.db_writes.load(Relaxed)),
            ("db_queries", self.db_queries.load(Relaxed)),
            ("db_errors", self.db_errors.load(Relaxed)),
        ]
    }

    /// The count called `name`.
    pub fn get(&self, name: &str) -> u64 {
        self.snapshot()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| v)
    }

    /// Start (or stop) keeping the log of what was seen.
    pub fn keep_log(&self, on: bool) {
        self.logging.store(on, Relaxed);
    }

    /// Whether the log is being kept.
    pub(super) fn logging(&self) -> bool {
        self.logging.load(Relaxed)
    }

    /// Take the log (oldest first), leaving it empty.
    pub fn take_log(&self) -> Vec<Seen> {
        self.lock_log().drain(..).collect()
    }

    /// Zero every count and empty the log (a lab's reset).
    pub fn reset(&self) {
        for counter in [
            &self.hits,
            &self.misses,
            &self.cache_sets,
            &self.cache_dels,
            &self.cache_commands,
            &self.db_reads,
            &self.db_writes,
            &self.db_queries,
            &self.db_errors,
        ] {
            counter.store(0, Relaxed);
        }
        self.lock_log().clear();
    }

    pub(super) fn hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }
    pub(super) fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }
    pub(super) fn cache_set(&self) {
        self.cache_sets.fetch_add(1, Relaxed);
    }
    pub(super) fn cache_del(&self, keys: u64) {
        self.cache_dels.fetch_add(keys, Relaxed);
    }
    pub(super) fn cache_command(&self) {
        self.cache_commands.fetch_add(1, Relaxed);
    }
    pub(super) fn db_query(&self, read: bool, write: bool) {
        self.db_queries.fetch_add(1, Relaxed);
        if read {
            self.db_reads.fetch_add(1, Relaxed);
        }
        if write {
            self.db_writes.fetch_add(1, Relaxed);
        }
    }
    pub(super) fn db_error(&self) {
        self.db_errors.fetch_add(1, Relaxed);
    }

    /// Log what `seen` makes, if the log is being kept (it is made only then).
    pub(super) fn note(&self, seen: impl FnOnce() -> Seen) {
        if !self.logging.load(Relaxed) {
            return;
        }
        let seen = seen();
        let mut log = self.lock_log();
        if log.len() == LOG_SIZE {
            log.pop_front();
        }
        log.push_back(seen);
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, VecDeque<Seen>> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}
