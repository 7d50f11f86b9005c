//! The result of a load run: an HDR latency histogram, status and error counts, and the
//! X-Cache split. Workers each fill one and they are merged; percentiles are computed
//! only when a result is read.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What one worker (or the whole run, once merged) observed.
pub struct Tally {
    /// Latency in microseconds, from the (intended) send time to the last body byte.
    pub latency: Histogram<u64>,
    pub status: BTreeMap<u16, u64>,
    /// Failures with no HTTP response, by kind ("connection refused", "timeout", ...).
    pub errors: BTreeMap<String, u64>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub body_bytes: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            cache_hits: 0,
            cache_misses: 0,
            body_bytes: 0,
        }
    }
}

impl Tally {
    pub fn record_latency(&mut self, elapsed: Duration) {
        let micros = (elapsed.as_micros() as u64).max(1);
        self.latency.saturating_record(micros);
    }

    pub fn merge(&mut self, other: Tally) {
        let _ = self.latency.add(&other.latency);
        for (code, n) in other.status {
            *self.status.entry(code).or_default() += n;
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.cache_hits += other.cache_hits;
        self.cache_misses += other.cache_misses;
        self.body_bytes += other.body_bytes;
    }
}

/// A finished run, ready to print or convert.
pub struct Summary {
    pub tally: Tally,
    pub elapsed: Duration,
}

/// The figures of a run as `--json` and labs see them (milliseconds for latencies).
#[derive(Debug, Serialize)]
pub struct Figures {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub total_secs: f64,
    pub rps: f64,
    pub average: f64,
    pub fastest: f64,
    pub slowest: f64,
    pub p10: f64,
    pub p25: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub status: BTreeMap<String, u64>,
    pub error_kinds: BTreeMap<String, u64>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub bytes: u64,
}

impl Summary {
    /// Responses of any status.
    pub fn responses(&self) -> u64 {
        self.tally.status.values().sum()
    }

    pub fn error_count(&self) -> u64 {
        self.tally.errors.values().sum()
    }

    /// Latency at `quantile` (0..=1), in milliseconds.
    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        if self.tally.latency.is_empty() {
            return 0.0;
        }
        self.tally.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn figures(&self) -> Figures {
        let h = &self.tally.latency;
        let ms = |micros: u64| micros as f64 / 1000.0;
        let requests = self.responses() + self.error_count();
        let secs = self.elapsed.as_secs_f64();
        let empty = h.is_empty();
        Figures {
            requests,
            ok: self
                .tally
                .status
                .iter()
                .filter(|(code, _)| (200..400).contains(*code))
                .map(|(_, n)| n)
                .sum(),
            errors: self.error_count(),
            total_secs: secs,
            rps: if secs > 0.0 {
                requests as f64 / secs
            } else {
                0.0
            },
            average: if empty { 0.0 } else { h.mean() / 1000.0 },
            fastest: if empty { 0.0 } else { ms(h.min()) },
            slowest: if empty { 0.0 } else { ms(h.max()) },
            p10: self.percentile_ms(0.10),
            p25: self.percentile_ms(0.25),
            p50: self.percentile_ms(0.50),
            p75: self.percentile_ms(0.75),
            p90: self.percentile_ms(0.90),
            p95: self.percentile_ms(0.95),
            p99: self.percentile_ms(0.99),
            p999: self.percentile_ms(0.999),
            max: if empty { 0.0 } else { ms(h.max()) },
            status: self
                .tally
                .status
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            error_kinds: self.tally.errors.clone(),
            cache_hits: self.tally.cache_hits,
            cache_misses: self.tally.cache_misses,
            bytes: self.tally.body_bytes,
        }
    }
}
