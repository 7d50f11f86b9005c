//! What each strategy server counts, and its request latency histogram, shared between
//! the request handlers, `/metrics` and the lab runner.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the Prometheus latency buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The counters of one strategy server. All methods are lock-free.
#[derive(Default)]
pub struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    db_reads: AtomicU64,
    db_writes: AtomicU64,
    cache_sets: AtomicU64,
    cache_dels: AtomicU64,
    cache_errors: AtomicU64,
    latency: LatencyHistogram,
}

/// A point-in-time copy of the counters, as labs and tests see them.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub db_reads: u64,
    pub db_writes: u64,
    pub cache_sets: u64,
    pub cache_dels: u64,
    pub cache_errors: u64,
}

impl CounterSnapshot {
    /// The named counters in a fixed order, for printing and conversion.
    pub fn fields(&self) -> [(&'static str, u64); 7] {
        [
            ("hits", self.hits),
            ("misses", self.misses),
            ("db_reads", self.db_reads),
            ("db_writes", self.db_writes),
            ("cache_sets", self.cache_sets),
            ("cache_dels", self.cache_dels),
            ("cache_errors", self.cache_errors),
        ]
    }

    /// What changed between `earlier` and this snapshot.
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot {
            hits: self.hits - earlier.hits,
            misses: self.misses - earlier.misses,
            db_reads: self.db_reads - earlier.db_reads,
            db_writes: self.db_writes - earlier.db_writes,
            cache_sets: self.cache_sets - earlier.cache_sets,
            cache_dels: self.cache_dels - earlier.cache_dels,
            cache_errors: self.cache_errors - earlier.cache_errors,
        }
    }
}

impl Counters {
    pub fn record_hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }
    pub fn record_miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }
    pub fn record_db_read(&self) {
        self.db_reads.fetch_add(1, Relaxed);
    }
    pub fn record_db_write(&self) {
        self.db_writes.fetch_add(1, Relaxed);
    }
    pub fn record_cache_set(&self) {
        self.cache_sets.fetch_add(1, Relaxed);
    }
    pub fn record_cache_del(&self) {
        self.cache_dels.fetch_add(1, Relaxed);
    }
    pub fn record_cache_error(&self) {
        self.cache_errors.fetch_add(1, Relaxed);
    }
    pub fn record_latency(&self, elapsed: Duration) {
        self.latency.record(elapsed);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            db_reads: self.db_reads.load(Relaxed),
            db_writes: self.db_writes.load(Relaxed),
            cache_sets: self.cache_sets.load(Relaxed),
            cache_dels: self.cache_dels.load(Relaxed),
            cache_errors: self.cache_errors.load(Relaxed),
        }
    }

    /// Zero everything (a lab's fresh start).
    pub fn reset(&self) {
        for c in [
            &self.hits,
            &self.misses,
            &self.db_reads,
            &self.db_writes,
            &self.cache_sets,
            &self.cache_dels,
            &self.cache_errors,
        ] {
            c.store(0, Relaxed);
        }
        self.latency.reset();
    }

    /// The counters and latency histogram in Prometheus text format.
    pub fn render_prometheus(&self, strategy: &str) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let label = format!("strategy=\"{strategy}\"");
        for (name, value) in self.snapshot().fields() {
            let _ = writeln!(out, "# TYPE cachelab_{name}_total counter");
            let _ = writeln!(out, "cachelab_{name}_total{{{label}}} {value}");
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
