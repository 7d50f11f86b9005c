//! The result of a load run: an HDR latency histogram, status, error and X-Cache counts,
//! the timeline, and (when asked) the history with its verdict and the key trace.
//! Percentiles are computed only when a result is read; `LoadRun` is what every view
//! reads.

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
    /// The plan had a GET/PUT `mix`.
    pub mixed: bool,
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
}

/// A finished run of successful GETs with these latencies over 700 ms, for unit tests of
/// the views of a run.
#[cfg(test)]
pub(crate) fn summary_of(latencies_us: &[u64]) -> Summary {
    use crate::load::timeline::{Event, Outcome};
    let mut tally = Tally::default();
    for &micros in latencies_us {
        tally.record(&Event {
            at: Duration::ZERO,
            latency: Duration::from_micros(micros),
            write: false,
            outcome: Outcome::Response {
                status: 200,
                cache: None,
                body_bytes: 0,
            },
        });
    }
    Summary {
        tally,
        elapsed: Duration::from_millis(700),
        seed: 1,
        cancelled: false,
        mixed: false,
        interval: Duration::from_millis(100),
        timeline: Vec::new(),
        history: Vec::new(),
        consistency: None,
        keys: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_rounded_to_the_microsecond_and_rps_to_a_tenth() {
        let summary = summary_of(&[1016, 1500, 2000]);
        assert_eq!(summary.fastest_ms(), 1.016);
        assert_eq!(summary.average_ms(), 1.505);
        assert_eq!(summary.rps(), 4.3);
    }
}
