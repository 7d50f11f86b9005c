//! `LoadRun`: one load, typed, as every view reads it. `cachelab load` prints it as hey's
//! text or as JSON, a lab gets it as its `load()` map, and the report draws its table row
//! and charts from it. Every figure carries its unit in its name, so the JSON of
//! `cachelab run` and `cachelab load` say the same thing the same way; a new figure is one
//! field here.

use serde::Serialize;
use std::collections::BTreeMap;

use super::history::Verdict;
use super::summary::Summary;
use super::timeline::Interval;
use crate::xcache::{XCache, XCacheCounts};

/// One load run, from its label to the checker's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct LoadRun {
    /// What the reports call the run: `load(#{label})`, or the function and its paths.
    pub label: String,
    /// Responses and transport failures together.
    pub requests: u64,
    /// Responses with a 2xx or 3xx status.
    pub ok: u64,
    /// Requests that got no response.
    pub errors: u64,
    /// Those failures by kind ("connection refused", "timeout", ...).
    pub error_kinds: BTreeMap<String, u64>,
    /// The seed the ids were drawn from: give it back to repeat them.
    pub seed: u64,
    /// The targets had an `{id}`: the seed chose something.
    #[serde(skip)]
    pub keyed: bool,
    /// Stopped before the plan's end.
    pub cancelled: bool,
    pub duration_s: f64,
    /// Requests per second over the whole run.
    pub rps: f64,
    pub average_ms: f64,
    pub fastest_ms: f64,
    pub p10_ms: f64,
    pub p25_ms: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Responses by status code (the keys are strings, like JSON's: "200").
    pub status: BTreeMap<String, u64>,
    /// Responses by X-Cache value.
    pub cache: XCacheCounts,
    /// hits ÷ (hits + misses): from the servers' counters when they were read, else from
    /// the X-Cache answers; 0 with neither.
    pub hit_ratio: f64,
    /// Response body bytes.
    pub bytes: u64,
    /// With a `mix`: how many requests were GETs and PUTs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mix: Option<MixSplit>,
    pub interval_ms: u64,
    /// One entry per interval since the start; the last may be partial.
    pub timeline: Vec<Interval>,
    /// hey's response-time histogram: eleven buckets from the fastest to the slowest.
    pub histogram: Vec<Bucket>,
    /// How each server counter moved over the run (in a lab).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
    /// What the lab did to the system while the run went on (faults, heals, knobs ...).
    pub events: Vec<RunEvent>,
    /// The history checker's verdict, when the run recorded history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Verdict>,
}

/// The GET/PUT split of a run with a `mix`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct MixSplit {
    pub gets: u64,
    pub puts: u64,
}

/// One bucket of hey's histogram: responses slower than the previous bucket's bound and
/// at most `upto_ms` (hey labels a bucket by this upper bound).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Bucket {
    pub upto_ms: f64,
    pub responses: u64,
}

/// Something done to the system while a load ran, e.g. `fault` `redis down` at 1200 ms.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunEvent {
    /// Since the run's start.
    pub at_ms: f64,
    /// fault, heal, pause, restart, stop, start, set_policy, flush or knob.
    pub kind: String,
    /// What exactly, as the text report prints it after the kind.
    pub what: String,
}

impl RunEvent {
    /// `fault redis down`.
    pub fn title(&self) -> String {
        format!("{} {}", self.kind, self.what)
    }
}

impl LoadRun {
    /// The run's figures, labelled; server counters and events are the caller's to add.
    pub fn new(label: String, summary: &Summary, keyed: bool) -> Self {
        let cache = summary.tally.cache.clone();
        let mut run = LoadRun {
            label,
            requests: summary.requests(),
            ok: summary.ok(),
            errors: summary.error_count(),
            error_kinds: summary.tally.errors.clone(),
            seed: summary.seed,
            keyed,
            cancelled: summary.cancelled,
            duration_s: (summary.elapsed.as_secs_f64() * 1e6).round() / 1e6,
            rps: summary.rps(),
            average_ms: summary.average_ms(),
            fastest_ms: summary.fastest_ms(),
            p10_ms: summary.percentile_ms(0.10),
            p25_ms: summary.percentile_ms(0.25),
            p50_ms: summary.percentile_ms(0.50),
            p75_ms: summary.percentile_ms(0.75),
            p90_ms: summary.percentile_ms(0.90),
            p95_ms: summary.percentile_ms(0.95),
            p99_ms: summary.percentile_ms(0.99),
            p999_ms: summary.percentile_ms(0.999),
            max_ms: summary.slowest_ms(),
            status: summary
                .tally
                .status
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            hit_ratio: ratio(cache.get(XCache::Hit), cache.get(XCache::Miss)),
            cache,
            bytes: summary.tally.body_bytes,
            mix: summary.mixed.then(|| MixSplit {
                gets: summary.requests() - summary.tally.writes,
                puts: summary.tally.writes,
            }),
            interval_ms: summary.interval.as_millis() as u64,
            timeline: summary.timeline.clone(),
            histogram: histogram(summary),
            counters: BTreeMap::new(),
            events: Vec::new(),
            consistency: summary.consistency.clone(),
        };
        if run.timeline.iter().all(|i| i.db_reads.is_none()) {
            run.timeline.iter_mut().for_each(|i| i.db_reads = None);
        }
        run
    }

    /// Add the servers' counter deltas over the run; the hit ratio is then theirs.
    pub fn with_counters(mut self, deltas: impl IntoIterator<Item = (String, u64)>) -> Self {
        self.counters = deltas.into_iter().collect();
        let get = |name: &str| self.counters.get(name).copied().unwrap_or(0);
        self.hit_ratio = ratio(get("hits"), get("misses"));
        self
    }

    /// The latency percentiles, named as a reader says them, in milliseconds.
    pub fn percentiles(&self) -> [(&'static str, f64); 9] {
        [
            ("p10", self.p10_ms),
            ("p25", self.p25_ms),
            ("p50", self.p50_ms),
            ("p75", self.p75_ms),
            ("p90", self.p90_ms),
            ("p95", self.p95_ms),
            ("p99", self.p99_ms),
            ("p99.9", self.p999_ms),
            ("max", self.max_ms),
        ]
    }

    /// The hit ratio, when something said what was a hit: the servers' counters or the
    /// X-Cache header (a server that sends neither has none).
    pub fn known_hit_ratio(&self) -> Option<f64> {
        (!self.counters.is_empty() || self.cache.total() > 0).then_some(self.hit_ratio)
    }

    /// Postgres reads over the run: the servers' counter, else the sampled timeline.
    pub fn db_reads(&self) -> Option<u64> {
        self.counters.get("db_reads").copied().or_else(|| {
            let sampled: Vec<i64> = self.timeline.iter().filter_map(|i| i.db_reads).collect();
            (!sampled.is_empty()).then(|| sampled.iter().sum::<i64>().max(0) as u64)
        })
    }
}

/// `hits ÷ (hits + misses)` rounded to four digits, 0 when neither happened.
fn ratio(hits: u64, misses: u64) -> f64 {
    if hits + misses == 0 {
        0.0
    } else {
        (hits as f64 / (hits + misses) as f64 * 1e4).round() / 1e4
    }
}

/// hey's histogram: ten even steps from the fastest response, the last bucket ending at
/// the slowest; each response counts in the first bucket whose bound it does not exceed.
fn histogram(summary: &Summary) -> Vec<Bucket> {
    let h = &summary.tally.latency;
    if h.is_empty() {
        return Vec::new();
    }
    const STEPS: u64 = 10;
    let (lo, hi) = (h.min(), h.lowest_equivalent(h.max()));
    let step = (hi - lo) as f64 / STEPS as f64;
    let bounds: Vec<u64> = (0..STEPS)
        .map(|i| lo + (step * i as f64) as u64)
        .chain([hi])
        .collect();
    let mut counts = vec![0u64; bounds.len()];
    for v in h.iter_recorded() {
        let value = h.lowest_equivalent(v.value_iterated_to()).min(hi);
        let i = bounds.partition_point(|&b| b < value).min(bounds.len() - 1);
        counts[i] += v.count_at_value();
    }
    bounds
        .into_iter()
        .zip(counts)
        .map(|(b, responses)| Bucket {
            upto_ms: b as f64 / 1000.0,
            responses,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(latencies_us: &[u64]) -> Summary {
        crate::load::summary::summary_of(latencies_us)
    }

    #[test]
    fn every_json_name_of_a_figure_carries_its_unit_and_the_ratio_follows_the_counters() {
        let run = LoadRun::new("load /users/{id}".into(), &summary(&[1016, 2000]), true)
            .with_counters([("hits".to_string(), 3), ("misses".to_string(), 1)]);
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(json["max_ms"], 2.0);
        assert_eq!(json["duration_s"], 0.7);
        assert_eq!(json["hit_ratio"], 0.75);
        assert!(json.get("p50").is_none() && json.get("max").is_none());
        assert!(json.get("mix").is_none(), "no mix, no split");
        assert_eq!(run.known_hit_ratio(), Some(0.75));
        let bare = LoadRun::new("x".into(), &summary(&[1000]), false);
        assert_eq!(
            bare.known_hit_ratio(),
            None,
            "no X-Cache, no counters: no ratio"
        );
    }

    #[test]
    fn the_histogram_is_labelled_by_its_upper_bounds_as_hey_does() {
        let fast: Vec<u64> = std::iter::repeat_n(1000, 99).chain([11_000]).collect();
        let run = LoadRun::new("x".into(), &summary(&fast), false);
        let first = run.histogram[0];
        assert_eq!(first.upto_ms, 1.0, "the fastest bucket ends at the fastest");
        assert_eq!(first.responses, 99);
        let last = run.histogram.last().unwrap();
        assert_eq!((last.upto_ms, last.responses), (11.0, 1));
        assert_eq!(run.histogram.len(), 11);
    }
}
