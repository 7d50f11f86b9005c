//! The result of a load run: an HDR latency histogram, status, error and X-Cache counts,
//! the timeline, and (when asked) the history with its verdict and the key trace.
//! Percentiles are computed only when a result is read, and come out in two shapes:
//! unit-suffixed names for `cachelab load --json`, the lab API's names for `load()`.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

use super::history::{Op, Verdict};
use super::timeline::{round_ms, Interval, Tally};

/// A finished run, ready to print or convert.
pub struct Summary {
    pub tally: Tally,
    pub elapsed: Duration,
    /// The seed the ids were drawn from: give it back as `seed` / `--seed` to repeat them.
    pub seed: u64,
    /// Stopped by its cancel token or a shutdown before the plan's end.
    pub cancelled: bool,
    /// The timeline's granularity: the plan's, doubled for each coarsening.
    pub interval: Duration,
    /// One entry per `interval` since the start (the last one may be partial).
    pub timeline: Vec<Interval>,
    /// Every operation, when the plan recorded history (requests abandoned by a
    /// cancellation included, without completion).
    pub history: Vec<Op>,
    /// The checker's verdict on `history`, when it was recorded.
    pub consistency: Option<Verdict>,
    /// Every id requested, in sending order, when the plan recorded keys.
    pub keys: Vec<u64>,
}

/// The figures `cachelab load --json` prints: names carry their unit.
#[derive(Debug, Serialize)]
pub struct CliFigures {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub seed: u64,
    pub cancelled: bool,
    pub total_s: f64,
    pub rps: f64,
    pub average_ms: f64,
    pub fastest_ms: f64,
    pub slowest_ms: f64,
    pub p10_ms: f64,
    pub p25_ms: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub status: BTreeMap<String, u64>,
    pub error_kinds: BTreeMap<String, u64>,
    pub cache: BTreeMap<String, u64>,
    pub bytes: u64,
    pub interval_ms: u64,
    pub timeline: Vec<Interval>,
}

/// The figures `load()` and `stampede()` return, with the lab API's names: latencies are
/// milliseconds without a suffix, as DESIGN.md lists them.
#[derive(Debug, Serialize)]
pub struct LabFigures {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub seed: u64,
    pub duration_ms: f64,
    pub rps: f64,
    pub average: f64,
    pub fastest: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub status: BTreeMap<String, u64>,
    pub cache: BTreeMap<String, u64>,
    pub interval_ms: u64,
    pub timeline: Vec<Interval>,
    /// Present only when the run recorded history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Verdict>,
}

fn round_rps(rps: f64) -> f64 {
    (rps * 10.0).round() / 10.0
}

impl Summary {
    /// Responses of any status.
    pub fn responses(&self) -> u64 {
        self.tally.status.values().sum()
    }

    pub fn error_count(&self) -> u64 {
        self.tally.errors.values().sum()
    }

    /// Responses and transport failures together.
    pub fn requests(&self) -> u64 {
        self.responses() + self.error_count()
    }

    /// Responses with a 2xx or 3xx status.
    pub fn ok(&self) -> u64 {
        self.tally
            .status
            .iter()
            .filter(|(code, _)| (200..400).contains(*code))
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests per second over the whole run.
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            round_rps(self.requests() as f64 / secs)
        } else {
            0.0
        }
    }

    /// Latency at `quantile` (0..=1), in milliseconds to the microsecond.
    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        if self.tally.latency.is_empty() {
            return 0.0;
        }
        round_ms(self.tally.latency.value_at_quantile(quantile) as f64 / 1000.0)
    }

    pub fn average_ms(&self) -> f64 {
        let h = &self.tally.latency;
        if h.is_empty() {
            0.0
        } else {
            round_ms(h.mean() / 1000.0)
        }
    }

    pub fn fastest_ms(&self) -> f64 {
        let h = &self.tally.latency;
        if h.is_empty() {
            0.0
        } else {
            round_ms(h.min() as f64 / 1000.0)
        }
    }

    pub fn slowest_ms(&self) -> f64 {
        let h = &self.tally.latency;
        if h.is_empty() {
            0.0
        } else {
            round_ms(h.max() as f64 / 1000.0)
        }
    }

    fn status_by_name(&self) -> BTreeMap<String, u64> {
        self.tally
            .status
            .iter()
            .map(|(code, n)| (code.to_string(), *n))
            .collect()
    }

    pub fn cli_figures(&self) -> CliFigures {
        CliFigures {
            requests: self.requests(),
            ok: self.ok(),
            errors: self.error_count(),
            seed: self.seed,
            cancelled: self.cancelled,
            total_s: (self.elapsed.as_secs_f64() * 1e6).round() / 1e6,
            rps: self.rps(),
            average_ms: self.average_ms(),
            fastest_ms: self.fastest_ms(),
            slowest_ms: self.slowest_ms(),
            p10_ms: self.percentile_ms(0.10),
            p25_ms: self.percentile_ms(0.25),
            p50_ms: self.percentile_ms(0.50),
            p75_ms: self.percentile_ms(0.75),
            p90_ms: self.percentile_ms(0.90),
            p95_ms: self.percentile_ms(0.95),
            p99_ms: self.percentile_ms(0.99),
            p999_ms: self.percentile_ms(0.999),
            status: self.status_by_name(),
            error_kinds: self.tally.errors.clone(),
            cache: self.tally.cache.clone(),
            bytes: self.tally.body_bytes,
            interval_ms: self.interval.as_millis() as u64,
            timeline: self.timeline.clone(),
        }
    }

    pub fn lab_figures(&self) -> LabFigures {
        LabFigures {
            requests: self.requests(),
            ok: self.ok(),
            errors: self.error_count(),
            error_kinds: self.tally.errors.clone(),
            seed: self.seed,
            duration_ms: round_ms(self.elapsed.as_secs_f64() * 1000.0),
            rps: self.rps(),
            average: self.average_ms(),
            fastest: self.fastest_ms(),
            p50: self.percentile_ms(0.50),
            p90: self.percentile_ms(0.90),
            p99: self.percentile_ms(0.99),
            p999: self.percentile_ms(0.999),
            max: self.slowest_ms(),
            status: self.status_by_name(),
            cache: self.tally.cache.clone(),
            interval_ms: self.interval.as_millis() as u64,
            timeline: self.timeline.clone(),
            consistency: self.consistency.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::timeline::{Event, Outcome};

    #[test]
    fn figures_are_rounded_to_the_microsecond_and_rps_to_a_tenth() {
        let mut tally = Tally::default();
        for micros in [1016, 1500, 2000] {
            tally.record(&Event {
                at: Duration::ZERO,
                latency: Duration::from_micros(micros),
                outcome: Outcome::Response {
                    status: 200,
                    cache: None,
                    body_bytes: 0,
                },
            });
        }
        let summary = Summary {
            tally,
            elapsed: Duration::from_millis(700),
            seed: 1,
            cancelled: false,
            interval: Duration::from_millis(100),
            timeline: Vec::new(),
            history: Vec::new(),
            consistency: None,
            keys: Vec::new(),
        };
        let cli = summary.cli_figures();
        assert_eq!(cli.fastest_ms, 1.016);
        assert_eq!(cli.average_ms, 1.505);
        assert_eq!(cli.rps, 4.3);
        assert_eq!(cli.total_s, 0.7);
        let lab = serde_json::to_value(summary.lab_figures()).unwrap();
        assert_eq!(lab["max"], 2.0);
        assert!(lab.get("consistency").is_none());
    }
}
