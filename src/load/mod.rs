//! The load generator shared by `cachelab load`, `load()` and `stampede()`: a plan goes
//! in, the engine runs it, a `Summary` comes out, and the printer or the lab converts it.

mod engine;
pub mod history;
mod http;
mod keys;
mod plan;
mod printer;
mod summary;
mod timeline;
mod worker;

pub use engine::run;
pub use keys::{parse_ids, KeyDist};
pub(crate) use plan::{open_file_limit, open_files};
pub use plan::{AppModel, Mix, Pace, Plan, Sampler, Stop, Target, MAX_ZIPF_S};
pub use printer::print_text;
pub use summary::{CliFigures, LabFigures, Summary};
pub use timeline::{Interval, Tally};
pub use tokio_util::sync::CancellationToken;
pub use worker::Progress;

use clap::Args;
use hyper::header::{HeaderName, HeaderValue};
use std::time::Duration;

/// `cachelab load`'s flags, with hey's names and meanings.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// One or more http:// URLs; a `{id}` in a URL is replaced by a user id per request.
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// Number of requests to run.
    #[arg(short = 'n', default_value_t = 200)]
    pub requests: u64,
    /// Number of workers (connections) running concurrently.
    #[arg(short = 'c', default_value_t = 50)]
    pub concurrency: usize,
    /// Duration to send requests for (e.g. 10s, 2m); overrides -n.
    #[arg(short = 'z', value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Rate limit, in queries per second, per worker.
    #[arg(short = 'q')]
    pub qps: Option<f64>,
    /// Rate limit, in queries per second, for all workers together.
    #[arg(long)]
    pub rate: Option<f64>,
    /// HTTP method [default: GET].
    #[arg(short = 'm')]
    pub method: Option<String>,
    /// Custom HTTP header, "Name: value"; repeatable.
    #[arg(short = 'H')]
    pub headers: Vec<String>,
    /// HTTP request body.
    #[arg(short = 'd')]
    pub body: Option<String>,
    /// Timeout for each request, in seconds.
    #[arg(short = 't', default_value_t = 20.0)]
    pub timeout: f64,
    /// Open a new connection for every request.
    #[arg(long)]
    pub disable_keepalive: bool,
    /// How `{id}` is chosen: uniform, zipf or zipf:<s>.
    #[arg(long, value_parser = KeyDist::parse, default_value = "uniform")]
    pub keys: KeyDist,
    /// The ids `{id}` is drawn from, inclusive.
    #[arg(long, value_parser = parse_ids, default_value = "1..1000")]
    pub ids: (u64, u64),
    /// Draw the ids from this seed (the report shows the seed of every run, to repeat it).
    #[arg(long)]
    pub seed: Option<u64>,
    /// A read/write mix over the `{id}` URLs, in percent: GETs and PUTs (each PUT writes a
    /// unique `name`), e.g. get:90,put:10.
    #[arg(long, value_parser = Mix::parse)]
    pub mix: Option<Mix>,
    /// The timeline's granularity in the JSON output, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Print the figures as JSON instead of hey's text.
    #[arg(long)]
    pub json: bool,
    /// Also write the run as one self-contained HTML page (histogram, percentiles and
    /// timeline as charts) to this file.
    #[arg(long)]
    pub html: Option<std::path::PathBuf>,
    /// With --mix: record every operation and write the history to this file as
    /// Jepsen-style JSON lines (process, type, f, key, value, time), for outside checkers.
    #[arg(long)]
    pub history: Option<std::path::PathBuf>,
}

impl LoadArgs {
    /// Check the flags and turn them into a plan; the error is the message a user sees.
    pub fn plan(&self) -> Result<Plan, String> {
        let targets = self
            .urls
            .iter()
            .map(|u| Target::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        let mut plan = Plan::new(targets);
        if self.concurrency == 0 {
            return Err("-c must be at least 1".into());
        }
        plan.concurrency = self.concurrency;
        plan.stop = match self.duration {
            Some(d) if d.is_zero() => return Err("-z must be longer than zero".into()),
            Some(d) => Stop::Duration(d),
            None if self.requests == 0 => return Err("-n must be at least 1".into()),
            None if self.requests < self.concurrency as u64 => {
                return Err("-n cannot be less than -c".into())
            }
            None => Stop::Requests(self.requests),
        };
        plan.pace = match (self.qps, self.rate) {
            (Some(_), Some(_)) => {
                return Err("give -q (per worker) or --rate (total), not both".into())
            }
            (Some(q), None) if q > 0.0 => Pace::PerWorker(q),
            (None, Some(r)) if r > 0.0 => Pace::Total(r),
            (None, None) => Pace::Unlimited,
            _ => return Err("rate limits must be greater than zero".into()),
        };
        if let Some(method) = &self.method {
            plan.method = method
                .to_uppercase()
                .parse()
                .map_err(|_| format!("{method:?} is not an HTTP method"))?;
        }
        if self.mix.is_some() && (self.method.is_some() || self.body.is_some()) {
            return Err("--mix sends its own GETs and PUTs: drop -m and -d".into());
        }
        plan.mix = self.mix;
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| format!("header {header:?} must look like \"Name: value\""))?;
            let name: HeaderName = name
                .trim()
                .parse()
                .map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
            let value: HeaderValue = value
                .trim()
                .parse()
                .map_err(|_| format!("{:?} is not a valid header value", value.trim()))?;
            plan.headers.append(name, value);
        }
        plan.body = self.body.clone().unwrap_or_default().into();
        if !(self.timeout > 0.0 && self.timeout.is_finite()) {
            return Err("-t must be a positive number of seconds".into());
        }
        plan.timeout = Duration::from_secs_f64(self.timeout);
        plan.keepalive = !self.disable_keepalive;
        plan.keys = self.keys.clone();
        plan.ids = self.ids;
        plan.seed = self.seed;
        if self.history.is_some() {
            if self.mix.is_none() {
                return Err(
                    "--history records reads and writes: give --mix too, e.g. --mix get:90,put:10"
                        .into(),
                );
            }
            plan.record_history = true;
        }
        if self.interval_ms == 0 {
            return Err("--interval-ms must be at least 1".into());
        }
        plan.interval = Duration::from_millis(self.interval_ms);
        plan.check()?;
        Ok(plan)
    }
}
