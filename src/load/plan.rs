//! What a load run does, independent of who asked: the CLI, `load()` or `stampede()`.

use bytes::Bytes;
use hyper::{HeaderMap, Method};
use std::time::Duration;

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

/// A complete description of a load run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub targets: Vec<Target>,
    pub stop: Stop,
    pub concurrency: usize,
    pub pace: Pace,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub timeout: Duration,
    pub keepalive: bool,
    pub keys: KeyDist,
    pub ids: (u64, u64),
    /// Open every connection first, then release all requests at once (a stampede).
    pub release_together: bool,
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
}
