//! What each strategy server counts, and its request latency histogram, shared between
//! the request handlers, `/metrics`, `stats()` and `load()`.
//!
//! The counters are one indexed set declared in one table below: a new counter is one
//! line there, and `/metrics`, `stats()`, `load()` and `cachelab api` all pick it up.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Declares the `Counter` enum and its name/doc table from one list.
macro_rules! counters {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// One thing a server counts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Counter {
            $($variant,)*
        }

        impl Counter {
            /// Every counter, in the order reports list them.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// The name `stats()`, `/metrics` and reports use.
            pub fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }

            /// What it counts, in one line.
            pub fn doc(self) -> &'static str {
                match self {
                    $(Counter::$variant => $doc,)*
                }
            }
        }
    };
}

counters! {
    Hits => "hits", "reads answered from the cache (X-Cache HIT; a cached 404 tombstone included)";
    Misses => "misses", "reads that waited for their own Postgres read (X-Cache MISS)";
    Stale => "stale", "reads answered from an entry past its freshness while a refresh ran (X-Cache STALE)";
    Coalesced => "coalesced", "reads answered by another request's Postgres read (X-Cache COALESCED)";
    DbReads => "db_reads", "Postgres reads of a user, in the request or in the background";
    DbWrites => "db_writes", "rows written to Postgres (PUT, POST, DELETE, write-behind flushes)";
    DbErrors => "db_errors", "requests that failed because Postgres was unavailable (refused, reset, timed out, no pooled connection): answered 503";
    DbRejected => "db_rejected", "requests Postgres answered with an error (a constraint, a permission, bad data): 409 for a unique violation, else 500";
    CacheSets => "cache_sets", "values written to Redis";
    CacheDels => "cache_dels", "keys deleted from Redis by writes";
    CacheErrors => "cache_errors", "Redis calls that failed (the request went on without the cache)";
    CacheBypassed => "cache_bypassed", "Redis calls skipped because Redis was found down (breaker open)";
    Tombstones => "tombstones", "404s cached as tombstones (set_negative_ttl)";
    EarlyRefreshes => "early_refreshes", "xfetch hits that recomputed early in the request";
    BackgroundRefreshes => "background_refreshes", "refreshes run in the background (swr, refresh-ahead)";
    LockWaits => "lock_waits", "reads that waited on another request's Redis lock";
    LeaseRejects => "lease_rejects", "cache fills refused because a write revoked their lease";
    NearHits => "near_hits", "reads answered from the server's own near cache, L1 (X-Cache NEAR)";
    NearInvalidations => "near_invalidations", "invalidations Redis pushed to the near cache (a key written by anyone)";
    NearFlushes => "near_flushes", "times the near cache was emptied (a FLUSHALL, the invalidation link lost or re-established, a reset)";
    NearFills => "near_fills", "rows put in the near cache, L1, after a read from Redis or Postgres (and kept: the guard did not drop them)";
    NearGuardDrops => "near_guard_drops", "rows not put in L1 because an invalidation of their key arrived while they were read (the guard)";
    GuardRefusals => "guard_refusals", "cache writes and fills the write guard refused: the cache held a newer row or a newer write's marker";
    WbQueued => "wb_queued", "write-behind writes acknowledged and queued in Redis";
    WbCoalesced => "wb_coalesced", "write-behind writes that replaced a queued write to the same user";
    WbFlushed => "wb_flushed", "write-behind queued writes applied to Postgres";
    WbBatches => "wb_batches", "write-behind flush transactions";
    WbRejected => "wb_rejected", "write-behind queued writes Postgres refused or that could not be read, moved to {wb}:rejected (and wrong-typed queue keys moved aside)";
}

/// Upper bounds (seconds) of the Prometheus latency buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The counters of one strategy server. All methods are lock-free.
pub struct Counters {
    values: Vec<AtomicU64>,
    latency: LatencyHistogram,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            values: Counter::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            latency: LatencyHistogram::default(),
        }
    }
}

/// A point-in-time copy of the counters, as labs and tests see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSnapshot {
    values: Vec<u64>,
}

impl CounterSnapshot {
    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize]
    }

    /// The named counters in the table's order, for printing and conversion.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Counter::ALL.iter().map(|c| (c.name(), self.get(*c)))
    }

    /// What changed between `earlier` and this snapshot (a counter reset in between
    /// counts from zero).
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot {
            values: self
                .values
                .iter()
                .zip(&earlier.values)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        }
    }

    /// The sum of several servers' snapshots.
    pub fn sum<'a>(snapshots: impl IntoIterator<Item = &'a CounterSnapshot>) -> CounterSnapshot {
        let mut values = vec![0; Counter::ALL.len()];
        for s in snapshots {
            for (total, v) in values.iter_mut().zip(&s.values) {
                *total += v;
            }
        }
        CounterSnapshot { values }
    }
}

impl Counters {
    pub fn record(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub fn add(&self, counter: Counter, n: u64) {
        self.values[counter as usize].fetch_add(n, Relaxed);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize].load(Relaxed)
    }

    pub fn record_latency(&self, elapsed: Duration) {
        self.latency.record(elapsed);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            values: self.values.iter().map(|v| v.load(Relaxed)).collect(),
        }
    }

    /// Zero everything (a lab's fresh start).
    pub fn reset(&self) {
        for v in &self.values {
            v.store(0, Relaxed);
        }
        self.latency.reset();
    }

    /// The counters and latency histogram in Prometheus text format.
    pub fn render_prometheus(&self, strategy: &str) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let label = format!("strategy=\"{strategy}\"");
        for counter in Counter::ALL {
            let name = counter.name();
            let _ = writeln!(out, "# HELP cachelab_{name}_total {}", counter.doc());
            let _ = writeln!(out, "# TYPE cachelab_{name}_total counter");
            let _ = writeln!(
                out,
                "cachelab_{name}_total{{{label}}} {}",
                self.get(*counter)
            );
        }
        self.latency.render(&mut out, &label);
        out
    }
}

/// A fixed-bucket latency histogram (cumulative at render time).
#[derive(Default)]
struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    fn record(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&le| secs <= le) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
        self.count.store(0, Relaxed);
        self.sum_micros.store(0, Relaxed);
    }

    fn render(&self, out: &mut String, label: &str) {
        use std::fmt::Write;
        let name = "cachelab_request_duration_seconds";
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (le, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{label},le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{label}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{label}}} {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_a_unique_snake_case_name_and_a_doc() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        assert!(Counter::ALL.iter().all(|c| !c.doc().is_empty()));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
    }

    #[test]
    fn snapshots_subtract_and_sum_per_counter() {
        let a = Counters::default();
        a.record(Counter::Hits);
        let before = a.snapshot();
        a.add(Counter::Hits, 2);
        a.record(Counter::DbReads);
        let delta = a.snapshot().since(&before);
        assert_eq!(delta.get(Counter::Hits), 2);
        assert_eq!(delta.get(Counter::DbReads), 1);
        let total = CounterSnapshot::sum([&a.snapshot(), &a.snapshot()]);
        assert_eq!(total.get(Counter::Hits), 6);
        a.reset();
        assert_eq!(a.get(Counter::Hits), 0);
        assert!(a
            .render_prometheus("x")
            .contains("cachelab_hits_total{strategy=\"x\"} 0"));
    }
}
