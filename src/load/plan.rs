//! What a load run does, independent of who asked: the CLI, `load()` or `stampede()`.
//! `Plan::check` refuses, with a message a user can act on, the plans that cannot run
//! (a mix without `{id}`, more connections than the process may open, a rate that is not
//! a positive finite number or too low to pace, a Zipf exponent outside (0, 10]).

use bytes::Bytes;
use hyper::{HeaderMap, Method};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::keys::KeyDist;

/// One URL a run sends to. A `{id}` in `path` is replaced by a user id per request.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`, used to connect and as the Host header.
    pub authority: String,
    /// Path and query, possibly with `{id}`.
    pub path: String,
}

impl Target {
    /// Parse an absolute `http://` URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "{url:?}: only http:// is supported, not {other}://"
                ))
            }
            None => {
                return Err(format!(
                    "{url:?}: give a full URL like http://127.0.0.1:8000/users/1"
                ))
            }
        }
        let host = uri.host().ok_or_else(|| format!("{url:?} has no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        // `{` and `}` are not legal in a URI: hyper refuses them, so accept the template
        // spelled raw or percent-encoded by the shell user.
        Ok(Self {
            authority: format!("{host}:{port}"),
            path: path.replace("%7Bid%7D", "{id}").replace("%7bid%7d", "{id}"),
        })
    }

    pub fn has_key(&self) -> bool {
        self.path.contains("{id}")
    }
}

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many requests in total.
    Requests(u64),
    /// After this long (requests in flight finish).
    Duration(Duration),
}

/// Pacing of requests.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As fast as the server answers.
    Unlimited,
    /// Each worker sends at most this many per second (hey's -q).
    PerWorker(f64),
    /// All workers together send this many per second (--rate).
    Total(f64),
}

/// The largest Zipf exponent a run takes. Past it the distribution is one key: with s = 10
/// the hottest id gets over 99.9% of the requests, so a larger s teaches nothing more and
/// is most likely a typo.
pub const MAX_ZIPF_S: f64 = 10.0;

/// A read/write mix, in percent weights: each request GETs or PUTs the same `{id}` URL,
/// so reads can be checked against the writes they raced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub get: u32,
    pub put: u32,
}

impl Mix {
    /// `get:90,put:10` (either part may be left out, meaning 0).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("a mix looks like get:90,put:10, got {text:?}");
        let mut mix = Mix { get: 0, put: 0 };
        for part in text.split(',') {
            let (name, weight) = part.split_once(':').ok_or_else(bad)?;
            let weight: u32 = weight.trim().parse().map_err(|_| bad())?;
            match name.trim().to_ascii_lowercase().as_str() {
                "get" => mix.get = weight,
                "put" => mix.put = weight,
                _ => return Err(bad()),
            }
        }
        if mix.get.checked_add(mix.put).is_none_or(|sum| sum == 0) {
            return Err(format!("a mix needs a positive weight, got {text:?}"));
        }
        Ok(mix)
    }
}

/// Reads a set of counters (e.g. the servers' `db_reads`) so the timeline can show how
/// they moved in each interval next to the load that moved them.
pub type Sampler = Arc<dyn Fn() -> BTreeMap<String, i64> + Send + Sync>;

/// A complete description of a load run.
#[derive(Clone)]
pub struct Plan {
    pub targets: Vec<Target>,
    pub stop: Stop,
    pub concurrency: usize,
    pub pace: Pace,
    /// Ignored with a `mix`, which picks GET or PUT per request.
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub timeout: Duration,
    pub keepalive: bool,
    pub keys: KeyDist,
    pub ids: (u64, u64),
    /// Open every connection first, then release all requests at once (a stampede).
    pub release_together: bool,
    /// Where the ids come from: `None` draws a fresh seed, so two identical runs ask for
    /// different ids; the seed used is in the summary to repeat a run.
    pub seed: Option<u64>,
    /// Cancelling it stops the run at once (requests in flight are abandoned); the run
    /// still returns what it observed until then. A cloned plan shares its token.
    pub cancel: CancellationToken,
    /// The servers run in this process (labs), so each connection costs two file
    /// descriptors, not one.
    pub same_process_server: bool,
    /// The timeline's granularity (it doubles when a long run would exceed ~2000 entries).
    pub interval: Duration,
    /// Called at the start, at each interval boundary and at the end; each timeline entry
    /// holds the change of every sampled value over that interval.
    pub sampler: Option<Sampler>,
    pub mix: Option<Mix>,
    /// Keep every operation for the consistency checker (`Summary::history`).
    pub record_history: bool,
    /// The names the ids had before the run, for the checker: a read of one of these is
    /// fresh until a write to its id completes.
    pub initial_values: HashMap<u64, String>,
    /// Keep every id requested, in sending order (`Summary::keys`).
    pub record_keys: bool,
    /// The targets are this many equal runs, one per server instance: worker `w` sends
    /// only to run `w % groups` (1: every worker uses every target).
    pub groups: usize,
    /// Target mode: how the user's app is written to and where a read's value is; `None`
    /// for cachelab's own servers (`PUT ?name=`, the body's `name`).
    pub app: Option<Arc<AppModel>>,
}

/// The path and query of a write of `value` to `id`.
pub type WritePath = Box<dyn Fn(u64, &str) -> String + Send + Sync>;

/// How a mix writes to an app cachelab did not write, and reads its value back.
pub struct AppModel {
    pub write_method: Method,
    /// The write's path and query for an id and the value written.
    pub write_path: WritePath,
    /// RFC 6901 pointer to the value in a read's JSON body.
    pub value_pointer: String,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("targets", &self.targets)
            .field("stop", &self.stop)
            .field("concurrency", &self.concurrency)
            .field("pace", &self.pace)
            .field("method", &self.method)
            .field("keys", &self.keys)
            .field("ids", &self.ids)
            .field("seed", &self.seed)
            .field("interval", &self.interval)
            .field("mix", &self.mix)
            .field("record_history", &self.record_history)
            .field("record_keys", &self.record_keys)
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// A plan with hey's defaults for everything but the targets.
    pub fn new(targets: Vec<Target>) -> Self {
        Self {
            targets,
            stop: Stop::Requests(200),
            concurrency: 50,
            pace: Pace::Unlimited,
            method: Method::GET,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            timeout: Duration::from_secs(20),
            keepalive: true,
            keys: KeyDist::Uniform,
            ids: (1, 1000),
            release_together: false,
            seed: None,
            cancel: CancellationToken::new(),
            same_process_server: false,
            interval: Duration::from_millis(100),
            sampler: None,
            mix: None,
            record_history: false,
            initial_values: HashMap::new(),
            app: None,
            record_keys: false,
            groups: 1,
        }
    }

    /// A stampede: `n` connections opened first, then `n` requests released at once.
    pub fn stampede(target: Target, n: u64) -> Self {
        Self {
            stop: Stop::Requests(n),
            concurrency: n as usize,
            release_together: true,
            ..Self::new(vec![target])
        }
    }

    /// The distinct `host:port`s, in first-seen order: each worker keeps one connection
    /// to each.
    pub fn authorities(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for t in &self.targets {
            if !seen.contains(&t.authority.as_str()) {
                seen.push(&t.authority);
            }
        }
        seen
    }

    /// Refuse a plan that cannot run as asked; the error is the message a user sees.
    pub fn check(&self) -> Result<(), String> {
        if self.targets.is_empty() {
            return Err("give at least one URL".into());
        }
        if self.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        if self.interval < Duration::from_millis(1) {
            return Err("the timeline interval must be at least 1 ms".into());
        }
        let first = self.ids.0;
        if first == 0 || self.ids.1 < first {
            return Err("ids must be first..last with 1 <= first <= last".into());
        }
        for target in &self.targets {
            if target
                .path
                .replace("{id}", "1")
                .parse::<hyper::Uri>()
                .is_err()
            {
                return Err(format!("{:?} is not a valid request path", target.path));
            }
        }
        if let Some(mix) = self.mix {
            if mix.get.checked_add(mix.put).is_none_or(|sum| sum == 0) {
                return Err("a mix needs a positive weight for get or put".into());
            }
        }
        if let KeyDist::Zipf(s) = self.keys {
            if !(s > 0.0 && s <= MAX_ZIPF_S) {
                return Err(format!(
                    "the zipf exponent must be in (0, {MAX_ZIPF_S}], got {s}"
                ));
            }
        }
        // Each worker waits its share of the rate between requests: an interval too long
        // for a Duration (a rate of 1e-300) would panic in the worker.
        let pace_interval = match self.pace {
            Pace::Unlimited => None,
            Pace::PerWorker(r) | Pace::Total(r) if !(r > 0.0 && r.is_finite()) => {
                return Err(format!(
                    "a rate must be a positive finite number of requests per second, got {r}"
                ));
            }
            Pace::PerWorker(q) => Some((q, 1.0 / q)),
            Pace::Total(r) => Some((r, self.concurrency as f64 / r)),
        };
        if let Some((rate, secs)) = pace_interval {
            if Duration::try_from_secs_f64(secs).is_err() {
                return Err(format!(
                    "a rate of {rate} requests per second is too low to pace (one every {secs:e} s)"
                ));
            }
        }
        let all_keyed = self.targets.iter().all(Target::has_key);
        if self.mix.is_some() && !all_keyed {
            return Err(
                "a read/write mix needs {id} in every URL, e.g. http://127.0.0.1:8000/users/{id}"
                    .into(),
            );
        }
        if self.record_history {
            if !all_keyed {
                return Err("a history needs {id} in every URL: it is kept per id".into());
            }
            if self.mix.is_none() && self.method != Method::GET {
                return Err(
                    "a history of non-GET requests needs a mix, so each write has a value to trace"
                        .into(),
                );
            }
        }
        let connections = (self.concurrency as u64).saturating_mul(self.authorities().len() as u64);
        let per_connection = if self.same_process_server { 2 } else { 1 };
        fd_room(connections, per_connection, open_file_limit(), open_files())
    }
}

/// Descriptors kept free for what the process opens besides the load's connections
/// (listeners, log files, the runtime's own).
const FD_MARGIN: u64 = 64;

/// Check that `connections` fit under the open-file `limit` with `in_use` already open.
fn fd_room(connections: u64, per_connection: u64, limit: u64, in_use: u64) -> Result<(), String> {
    let needed = connections.saturating_mul(per_connection);
    if needed.saturating_add(in_use).saturating_add(FD_MARGIN) <= limit {
        return Ok(());
    }
    let why = if per_connection == 2 {
        " (2 per connection: the servers share this process)"
    } else {
        ""
    };
    Err(format!(
        "{connections} connections need {needed} file descriptors{why}, but the open-file \
         limit is {limit} with {in_use} in use; lower the concurrency or raise the limit \
         (ulimit -n {})",
        needed + in_use + FD_MARGIN
    ))
}

/// The soft RLIMIT_NOFILE: what this process may have open at once.
pub(crate) fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    limit.rlim_cur
}

/// Descriptors open now (0 where /proc is not available: the margin covers a few; all of
/// them when the table is too full to list it).
pub(crate) fn open_files() -> u64 {
    match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir.count() as u64,
        // Listing the table takes a descriptor itself: none left means it is full.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => u64::MAX,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fd_check_counts_both_ends_when_the_server_shares_the_process() {
        assert!(fd_room(900, 1, 1024, 20).is_ok());
        let err = fd_room(900, 2, 1024, 20).unwrap_err();
        assert!(err.contains("1800 file descriptors"), "{err}");
        assert!(err.contains("2 per connection"), "{err}");
        assert!(
            err.contains("limit is 1024") && err.contains("ulimit -n"),
            "{err}"
        );
    }

    #[test]
    fn a_plan_with_more_connections_than_the_limit_is_refused() {
        let target = Target::parse("http://127.0.0.1:1/users/{id}").unwrap();
        let mut plan = Plan::new(vec![target]);
        plan.concurrency = usize::MAX / 4;
        assert!(plan.check().unwrap_err().contains("ulimit -n"));
        plan.concurrency = 2;
        assert!(plan.check().is_ok());
    }

    #[test]
    fn mixes_parse_and_need_an_id_in_every_url() {
        assert_eq!(
            Mix::parse("get:90,put:10").unwrap(),
            Mix { get: 90, put: 10 }
        );
        assert_eq!(Mix::parse("put:5").unwrap(), Mix { get: 0, put: 5 });
        assert!(Mix::parse("get:0").is_err());
        assert!(Mix::parse("post:5").is_err());
        assert!(Mix::parse("get=5").is_err());
        let mut plan = Plan::new(vec![Target::parse("http://127.0.0.1:1/users/1").unwrap()]);
        plan.concurrency = 1;
        plan.mix = Some(Mix { get: 1, put: 1 });
        assert!(plan.check().unwrap_err().contains("{id}"));
    }

    #[test]
    fn plans_that_would_panic_mid_run_are_refused_up_front() {
        let target = Target::parse("http://127.0.0.1:1/users/{id}").unwrap();
        let checked = |change: fn(&mut Plan)| {
            let mut plan = Plan::new(vec![target.clone()]);
            plan.concurrency = 1;
            change(&mut plan);
            plan.check()
        };
        assert!(checked(|_| {}).is_ok());
        assert!(checked(|p| p.mix = Some(Mix { get: 0, put: 0 })).is_err());
        assert!(checked(|p| p.keys = KeyDist::Zipf(0.0)).is_err());
        assert!(checked(|p| p.pace = Pace::Total(0.0)).is_err());
        // Past the Zipf bound, and rates too low for a Duration (they panicked a worker).
        assert!(checked(|p| p.keys = KeyDist::Zipf(MAX_ZIPF_S)).is_ok());
        assert!(checked(|p| p.keys = KeyDist::Zipf(10.5))
            .unwrap_err()
            .contains("(0, 10]"));
        assert!(checked(|p| p.keys = KeyDist::Zipf(f64::NAN)).is_err());
        assert!(checked(|p| p.pace = Pace::Total(f64::NAN))
            .unwrap_err()
            .contains("positive finite"));
        assert!(checked(|p| p.pace = Pace::Total(1e-300))
            .unwrap_err()
            .contains("too low"));
        assert!(checked(|p| p.pace = Pace::PerWorker(1e-300)).is_err());
        assert!(checked(|p| p.pace = Pace::Total(1e-9)).is_ok());
        assert!(checked(|p| p.ids = (0, 5)).is_err());
        assert!(checked(|p| p.interval = Duration::ZERO).is_err());
        assert!(checked(|p| p.targets[0].path = "/a b/{id}".into()).is_err());
        assert!(checked(|p| {
            p.record_history = true;
            p.method = Method::POST;
        })
        .unwrap_err()
        .contains("mix"));
    }
}
