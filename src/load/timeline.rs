//! The run seen interval by interval. Workers drop one `Event` per finished request into
//! their own inbox (a mutex only the sweeper also takes, once per interval); the sweeper
//! folds them into the run's totals and into one `Interval` per elapsed interval, so
//! memory holds one interval's events, not the run's. Long runs stay bounded by merging
//! neighbouring intervals and doubling the interval.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::plan::Sampler;

/// Milliseconds to the microsecond: what latency measurements can support.
pub(crate) fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// What the whole run observed.
pub struct Tally {
    /// Latency in microseconds, from the (intended) send time to the last body byte.
    pub latency: Histogram<u64>,
    pub status: BTreeMap<u16, u64>,
    /// Failures with no HTTP response, by kind ("connection refused", "timeout", ...).
    pub errors: BTreeMap<String, u64>,
    /// Responses by X-Cache value (HIT, MISS, STALE, COALESCED, or whatever a server sent).
    pub cache: BTreeMap<String, u64>,
    pub body_bytes: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            cache: BTreeMap::new(),
            body_bytes: 0,
        }
    }
}

impl Tally {
    pub(crate) fn record(&mut self, event: &Event) {
        match &event.outcome {
            Outcome::Response {
                status,
                cache,
                body_bytes,
            } => {
                let micros = (event.latency.as_micros() as u64).max(1);
                self.latency.saturating_record(micros);
                *self.status.entry(*status).or_default() += 1;
                if let Some(cache) = cache {
                    count(&mut self.cache, cache.as_str(), 1);
                }
                self.body_bytes += body_bytes;
            }
            Outcome::Error(kind) => count(&mut self.errors, kind, 1),
        }
    }
}

/// The most intervals a timeline holds before neighbours are merged.
pub(crate) const MAX_INTERVALS: usize = 2000;

/// What happened in one interval of a run (requests counted when they completed).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Interval {
    /// When the interval began, since the run started.
    pub start_ms: u64,
    /// Responses and transport failures together.
    pub requests: u64,
    /// Responses with a 2xx or 3xx status.
    pub ok: u64,
    /// Requests that got no response (refused, closed, timed out).
    pub errors: u64,
    /// Responses by X-Cache value.
    pub cache: BTreeMap<String, u64>,
    /// Latency of this interval's responses; after intervals were merged, `p50_ms` is the
    /// response-weighted mean of the merged medians and `p99_ms` the larger p99.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// How much each sampled counter changed during the interval.
    pub samples: BTreeMap<String, i64>,
}

/// An X-Cache value, without an allocation for the values our servers send.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CacheValue {
    Known(&'static str),
    Other(Box<str>),
}

const KNOWN_CACHE_VALUES: [&str; 4] = ["HIT", "MISS", "STALE", "COALESCED"];

impl CacheValue {
    pub fn from_header(value: &[u8]) -> Self {
        match KNOWN_CACHE_VALUES
            .iter()
            .find(|known| known.as_bytes() == value)
        {
            Some(known) => Self::Known(known),
            None => Self::Other(String::from_utf8_lossy(value).into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(s) => s,
            Self::Other(s) => s,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Response {
        status: u16,
        cache: Option<CacheValue>,
        body_bytes: u64,
    },
    /// No response; the kind of failure ("connection refused", "timeout", ...).
    Error(String),
}

/// One finished request, as a worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    /// When it finished, since the run started.
    pub at: Duration,
    /// From the intended send time to the last body byte.
    pub latency: Duration,
    pub outcome: Outcome,
}

/// Where one worker leaves its events for the sweeper.
pub(crate) type Inbox = Arc<Mutex<Vec<Event>>>;

/// Adds `n` to `map[key]`, allocating the key only the first time it is seen.
pub(crate) fn count(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    match map.get_mut(key) {
        Some(total) => *total += n,
        None => {
            map.insert(key.to_string(), n);
        }
    }
}

/// The sweeper's state: the run's totals, the closed intervals, and the events that
/// belong to the interval still open.
pub(crate) struct Timeline {
    interval: Duration,
    max_intervals: usize,
    entries: Vec<Interval>,
    /// Events collected but not yet closed (they finished in the open interval).
    open: Vec<Event>,
    tally: Tally,
    sampler: Option<Sampler>,
    last_sample: BTreeMap<String, i64>,
}

impl Timeline {
    /// Starts a timeline, taking the sampler's first reading as the baseline.
    pub fn new(interval: Duration, sampler: Option<Sampler>) -> Self {
        Self::with_max(interval, sampler, MAX_INTERVALS)
    }

    fn with_max(interval: Duration, sampler: Option<Sampler>, max_intervals: usize) -> Self {
        let last_sample = sampler.as_ref().map(|s| s()).unwrap_or_default();
        Self {
            interval,
            // Merging pairs needs an even count.
            max_intervals: max_intervals.max(2) & !1,
            entries: Vec::new(),
            open: Vec::new(),
            tally: Tally::default(),
            sampler,
            last_sample,
        }
    }

    /// When (since the start) the open interval ends: the next time to `sweep`.
    pub fn next_boundary(&self) -> Duration {
        self.interval * (self.entries.len() as u32 + 1)
    }

    /// Close every interval that ended by `elapsed`, with the events workers left so far.
    pub fn sweep(&mut self, elapsed: Duration, inboxes: &[Inbox]) {
        if elapsed < self.next_boundary() {
            return;
        }
        self.collect(inboxes);
        self.close(elapsed, false);
        self.sample();
    }

    /// Close everything, the partial last interval included; the timeline's final
    /// interval length, entries and the run's totals.
    pub fn finish(
        mut self,
        elapsed: Duration,
        inboxes: &[Inbox],
    ) -> (Tally, Duration, Vec<Interval>) {
        self.collect(inboxes);
        self.close(elapsed, true);
        self.sample();
        (self.tally, self.interval, self.entries)
    }

    fn collect(&mut self, inboxes: &[Inbox]) {
        for inbox in inboxes {
            let mut events = inbox.lock().unwrap_or_else(|e| e.into_inner());
            self.open.append(&mut events);
        }
    }

    fn sample(&mut self) {
        let Some(sampler) = &self.sampler else {
            return;
        };
        let now = sampler();
        // Intervals closed since the last reading show every sampled name; the change
        // goes to the latest, the one that ended when it was read.
        for entry in self
            .entries
            .iter_mut()
            .rev()
            .take_while(|e| e.samples.is_empty())
        {
            for name in now.keys() {
                entry.samples.insert(name.clone(), 0);
            }
        }
        if let Some(last) = self.entries.last_mut() {
            for (name, value) in &now {
                let before = self.last_sample.get(name).copied().unwrap_or(0);
                *last.samples.entry(name.clone()).or_default() += value - before;
            }
        }
        self.last_sample = now;
    }

    fn close(&mut self, elapsed: Duration, end: bool) {
        loop {
            let closed = self.entries.len();
            let span = self.interval.as_nanos();
            let whole = (elapsed.as_nanos() / span) as usize;
            let due = if end && (!elapsed.as_nanos().is_multiple_of(span) || whole == 0) {
                whole + 1
            } else {
                whole
            };
            if due <= closed {
                return;
            }
            let target = due.min(self.max_intervals);
            let last_pass = target == due;
            let boundary = self.interval * target as u32;
            for i in closed..target {
                self.entries.push(Interval {
                    start_ms: (self.interval * i as u32).as_millis() as u64,
                    ..Interval::default()
                });
            }
            let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); target - closed];
            let mut still_open = Vec::new();
            for event in std::mem::take(&mut self.open) {
                if event.at >= boundary && !(end && last_pass) {
                    still_open.push(event);
                    continue;
                }
                let index = ((event.at.as_nanos() / span) as usize).min(target - 1);
                self.tally.record(&event);
                let entry = &mut self.entries[index];
                entry.requests += 1;
                match &event.outcome {
                    Outcome::Response { status, cache, .. } => {
                        if (200..400).contains(status) {
                            entry.ok += 1;
                        }
                        if let Some(cache) = cache {
                            count(&mut entry.cache, cache.as_str(), 1);
                        }
                        // An event from an interval closed earlier (its worker was slow
                        // to report it) still counts, but its percentiles are final.
                        if index >= closed {
                            latencies[index - closed].push(micros(event.latency));
                        }
                    }
                    Outcome::Error(_) => entry.errors += 1,
                }
            }
            self.open = still_open;
            for (entry, mut lat) in self.entries[closed..].iter_mut().zip(latencies) {
                lat.sort_unstable();
                entry.p50_ms = round_ms(quantile(&lat, 0.50) as f64 / 1000.0);
                entry.p99_ms = round_ms(quantile(&lat, 0.99) as f64 / 1000.0);
            }
            if self.entries.len() >= self.max_intervals {
                self.coarsen();
            }
        }
    }

    /// Halve the number of entries by merging neighbours, and double the interval.
    fn coarsen(&mut self) {
        self.entries = self.entries.chunks(2).map(merge).collect();
        self.interval *= 2;
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// Nearest-rank quantile of sorted values (0 when there are none).
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn merge(pair: &[Interval]) -> Interval {
    let mut merged = pair[0].clone();
    let Some(second) = pair.get(1) else {
        return merged;
    };
    let weight = |i: &Interval| (i.requests - i.errors) as f64;
    let (w0, w1) = (weight(&merged), weight(second));
    merged.p50_ms = if w0 + w1 > 0.0 {
        round_ms((merged.p50_ms * w0 + second.p50_ms * w1) / (w0 + w1))
    } else {
        0.0
    };
    merged.p99_ms = merged.p99_ms.max(second.p99_ms);
    merged.requests += second.requests;
    merged.ok += second.ok;
    merged.errors += second.errors;
    for (value, n) in &second.cache {
        count(&mut merged.cache, value, *n);
    }
    for (name, delta) in &second.samples {
        *merged.samples.entry(name.clone()).or_default() += delta;
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    fn hit(at_ms: u64, latency_ms: u64) -> Event {
        Event {
            at: Duration::from_millis(at_ms),
            latency: Duration::from_millis(latency_ms),
            outcome: Outcome::Response {
                status: 200,
                cache: Some(CacheValue::from_header(b"HIT")),
                body_bytes: 2,
            },
        }
    }

    fn inbox(events: Vec<Event>) -> Inbox {
        Arc::new(Mutex::new(events))
    }

    #[test]
    fn events_land_in_the_interval_they_finished_in_with_its_percentiles() {
        let mut timeline = Timeline::new(Duration::from_millis(100), None);
        let worker = inbox(vec![hit(10, 1), hit(20, 3), hit(150, 7)]);
        let other = inbox(vec![Event {
            at: Duration::from_millis(120),
            latency: Duration::from_millis(50),
            outcome: Outcome::Error("timeout".into()),
        }]);
        let inboxes = [worker.clone(), other];
        timeline.sweep(Duration::from_millis(99), &inboxes);
        assert_eq!(
            timeline.entries.len(),
            0,
            "nothing closes before the boundary"
        );
        timeline.sweep(Duration::from_millis(100), &inboxes);
        assert_eq!(timeline.entries.len(), 1);
        // Reported late: counted in the interval it finished in, without its latency.
        worker.lock().unwrap().push(hit(90, 900));
        worker.lock().unwrap().push(Event {
            outcome: Outcome::Response {
                status: 500,
                cache: Some(CacheValue::from_header(b"odd")),
                body_bytes: 0,
            },
            ..hit(230, 1)
        });
        let (tally, interval, entries) = timeline.finish(Duration::from_millis(250), &inboxes);
        assert_eq!(interval, Duration::from_millis(100));
        assert_eq!(entries.len(), 3);
        let e0 = &entries[0];
        assert_eq!((e0.start_ms, e0.requests, e0.ok, e0.errors), (0, 3, 3, 0));
        assert_eq!((e0.p50_ms, e0.p99_ms), (1.0, 3.0));
        assert_eq!(e0.cache["HIT"], 3);
        let e1 = &entries[1];
        assert_eq!((e1.start_ms, e1.requests, e1.ok, e1.errors), (100, 2, 1, 1));
        assert_eq!(e1.p50_ms, 7.0);
        let e2 = &entries[2];
        assert_eq!((e2.start_ms, e2.requests, e2.ok), (200, 1, 0));
        assert_eq!(e2.cache["odd"], 1);
        assert_eq!(
            tally.latency.len(),
            5,
            "every response's latency is in the totals"
        );
        assert_eq!(tally.errors["timeout"], 1);
        assert_eq!(tally.cache["HIT"], 4);
        assert_eq!(tally.status[&500], 1);
    }

    #[test]
    fn a_long_run_merges_neighbours_and_keeps_every_request_and_sample() {
        let counter = Arc::new(AtomicI64::new(0));
        let c = counter.clone();
        let sampler: Sampler =
            Arc::new(move || BTreeMap::from([("db_reads".to_string(), c.load(Ordering::SeqCst))]));
        let mut timeline = Timeline::with_max(Duration::from_millis(10), Some(sampler), 8);
        let worker = inbox(Vec::new());
        let inboxes = [worker.clone()];
        for ms in 0..1000u64 {
            worker.lock().unwrap().push(hit(ms, 1 + ms % 3));
            counter.fetch_add(2, Ordering::SeqCst);
            timeline.sweep(Duration::from_millis(ms + 1), &inboxes);
            assert!(timeline.entries.len() <= 8);
        }
        let (tally, interval, entries) = timeline.finish(Duration::from_millis(1000), &inboxes);
        assert!(entries.len() <= 8, "{}", entries.len());
        assert_eq!(interval, Duration::from_millis(160));
        assert_eq!(entries.iter().map(|e| e.requests).sum::<u64>(), 1000);
        assert_eq!(tally.latency.len(), 1000);
        let sampled: i64 = entries.iter().map(|e| e.samples["db_reads"]).sum();
        assert_eq!(sampled, 2000);
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.start_ms, 160 * i as u64);
            assert!((1.0..=3.0).contains(&e.p50_ms) && e.p99_ms == 3.0, "{e:?}");
        }
    }

    #[test]
    fn intervals_closed_together_all_show_the_sampled_names() {
        let sampler: Sampler = Arc::new(|| BTreeMap::from([("db_reads".to_string(), 7)]));
        let timeline = Timeline::new(Duration::from_millis(10), Some(sampler));
        let (_, _, entries) = timeline.finish(Duration::from_millis(35), &[]);
        assert_eq!(entries.len(), 4);
        assert!(
            entries.iter().all(|e| e.samples["db_reads"] == 0),
            "{entries:?}"
        );
    }

    #[test]
    fn a_run_shorter_than_an_interval_has_one_entry() {
        let timeline = Timeline::new(Duration::from_millis(100), None);
        let (_, _, entries) = timeline.finish(Duration::ZERO, &[inbox(vec![hit(0, 1)])]);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].requests, 1);
    }
}
