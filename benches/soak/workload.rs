//! The soak's workers: each loops until the soak stops, picking a strategy, a method
//! (GET 40 %, PUT 40 %, DELETE 10 %, POST 10 %) and an id that strategy owns (half the
//! time one of its few most recently created live ids, so concurrent writes to one id
//! happen), sending it over HTTP and recording every write: id, strategy, invoke and
//! completion time, the answer, and what it asserts.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::STRATEGIES;

/// The methods, in the order the report prints them.
pub const METHODS: [&str; 4] = ["GET", "PUT", "DELETE", "POST"];
const GET: usize = 0;
const PUT: usize = 1;
const DELETE: usize = 2;
const POST: usize = 3;

/// A user row as the soak compares it: (name, email).
pub type Row = (Val, Val);

/// A name or email in 8 bytes (a 10-minute soak records millions of writes): the values
/// the soak writes are `n{seq}`, `e{seq}@soak.test`, `p{seq}` and `p{seq}@soak.test`, kept
/// as their kind and number; any other string (the rows loaded from users.json, or
/// something unexpected) is interned. 0 is "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Val(u64);

const TAG_SHIFT: u32 = 60;
const PUT_NAME: u64 = 1;
const PUT_EMAIL: u64 = 2;
const POST_NAME: u64 = 3;
const POST_EMAIL: u64 = 4;
const INTERNED: u64 = 5;
const EMAIL_DOMAIN: &str = "@soak.test";

/// The strings that are not the soak's own values, each once.
#[derive(Default)]
struct Interner {
    strings: Vec<String>,
    index: HashMap<String, u64>,
}

static INTERNER: LazyLock<Mutex<Interner>> = LazyLock::new(Mutex::default);

impl Val {
    pub const NONE: Val = Val(0);

    pub fn put_name(seq: u64) -> Val {
        Val(PUT_NAME << TAG_SHIFT | seq)
    }

    pub fn put_email(seq: u64) -> Val {
        Val(PUT_EMAIL << TAG_SHIFT | seq)
    }

    pub fn post_name(seq: u64) -> Val {
        Val(POST_NAME << TAG_SHIFT | seq)
    }

    pub fn post_email(seq: u64) -> Val {
        Val(POST_EMAIL << TAG_SHIFT | seq)
    }

    pub fn is_some(self) -> bool {
        self != Val::NONE
    }

    /// The value of a string: the soak's own values by kind and number, others interned.
    pub fn of(text: &str) -> Val {
        let seq = |digits: &str| {
            let canonical = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits.len() == 1 || !digits.starts_with('0'))
                && digits.len() < 18;
            canonical.then(|| digits.parse::<u64>().ok()).flatten()
        };
        let parsed = if let Some(local) = text.strip_suffix(EMAIL_DOMAIN) {
            match local.split_at_checked(1) {
                Some(("e", d)) => seq(d).map(Val::put_email),
                Some(("p", d)) => seq(d).map(Val::post_email),
                _ => None,
            }
        } else {
            match text.split_at_checked(1) {
                Some(("n", d)) => seq(d).map(Val::put_name),
                Some(("p", d)) => seq(d).map(Val::post_name),
                _ => None,
            }
        };
        parsed.unwrap_or_else(|| {
            let mut interner = INTERNER.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(&i) = interner.index.get(text) {
                return Val(INTERNED << TAG_SHIFT | i);
            }
            let i = interner.strings.len() as u64;
            interner.strings.push(text.to_string());
            interner.index.insert(text.to_string(), i);
            Val(INTERNED << TAG_SHIFT | i)
        })
    }
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (tag, n) = (self.0 >> TAG_SHIFT, self.0 & ((1 << TAG_SHIFT) - 1));
        match tag {
            0 => write!(f, "-"),
            PUT_NAME => write!(f, "n{n}"),
            PUT_EMAIL => write!(f, "e{n}{EMAIL_DOMAIN}"),
            POST_NAME => write!(f, "p{n}"),
            POST_EMAIL => write!(f, "p{n}{EMAIL_DOMAIN}"),
            _ => {
                let interner = INTERNER.lock().unwrap_or_else(|p| p.into_inner());
                write!(
                    f,
                    "{}",
                    interner.strings.get(n as usize).map_or("?", String::as_str)
                )
            }
        }
    }
}

/// What a write sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// `PUT /users/{id}` with the fields in `name`/`email` that are not `Val::NONE`.
    Put,
    Delete,
    /// `POST /users` with `name` and `email`: the id is known only from a 201's body.
    Post,
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: it took effect.
    Acked,
    /// 404: the row was not there; nothing changed.
    NotFound,
    /// No answer, a timeout, a 5xx or anything unexpected: it may or may not have
    /// applied (and may apply later than its completion time).
    Indeterminate,
}

/// One write and its answer (kept small: a 10-minute soak records millions).
#[derive(Debug, Clone)]
pub struct Write {
    /// The id written; for a POST, the id of its 201 (0 without one).
    pub id: i32,
    pub strategy: u8,
    pub kind: WriteKind,
    pub outcome: Outcome,
    /// HTTP status; 0 when there was no answer (connection error or timeout).
    pub status: u16,
    /// The fields it wrote (`Val::NONE`: not written).
    pub name: Val,
    pub email: Val,
    /// Microseconds since the soak's start.
    pub invoke_us: u64,
    pub complete_us: u64,
    /// The row a 2xx answered with (the row after the write); NONE for a 204.
    pub row_after: Row,
    /// What went wrong, when it did (the answer's body or the client's error), shortened:
    /// an index into `ERRORS`, 0 for none (a soak records millions of writes; few fail).
    error: u32,
}

/// The error texts of failed writes; index 0 is "none".
static ERRORS: LazyLock<Mutex<Vec<Box<str>>>> = LazyLock::new(|| Mutex::new(vec!["".into()]));

fn keep_error(text: &str) -> u32 {
    let mut errors = ERRORS.lock().unwrap_or_else(|p| p.into_inner());
    errors.push(text.into());
    (errors.len() - 1) as u32
}

impl Write {
    /// What went wrong, if it did.
    pub fn error(&self) -> Option<String> {
        error_text(self.error)
    }

    /// The row a 2xx answered with.
    pub fn row_answer(&self) -> Option<Row> {
        self.row_after.0.is_some().then_some(self.row_after)
    }

    /// What it asserts, for the report: the fields it set, or that the row is deleted.
    pub fn asserts(&self) -> String {
        match self.kind {
            WriteKind::Put => {
                let mut parts = vec!["PUT".to_string()];
                if self.name.is_some() {
                    parts.push(format!("name={}", self.name));
                }
                if self.email.is_some() {
                    parts.push(format!("email={}", self.email));
                }
                parts.join(" ")
            }
            WriteKind::Delete => "DELETE (deleted)".to_string(),
            WriteKind::Post => format!("POST name={} email={}", self.name, self.email),
        }
    }
}

/// A request that failed (no answer, or a status other than 2xx/404).
#[derive(Debug, Clone, Copy)]
pub struct ErrorAt {
    pub complete_us: u64,
    pub strategy: usize,
    pub method: usize,
    /// 0: no answer.
    pub status: u16,
    /// Index into `ERRORS`.
    error: u32,
}

impl ErrorAt {
    /// What went wrong.
    pub fn text(&self) -> String {
        error_text(self.error).unwrap_or_default()
    }
}

fn error_text(index: u32) -> Option<String> {
    if index == 0 {
        return None;
    }
    let errors = ERRORS.lock().unwrap_or_else(|p| p.into_inner());
    errors.get(index as usize).map(|e| e.to_string())
}

/// What the workers counted.
pub struct Stats {
    /// [strategy][method] requests.
    pub requests: [[u64; 4]; 4],
    /// (strategy, status) → count; status 0 is "no answer".
    pub status: BTreeMap<(usize, u16), u64>,
    /// Latency per method, microseconds.
    pub latency: Vec<Histogram<u64>>,
    pub errors: Vec<ErrorAt>,
}

impl Stats {
    fn new() -> Self {
        Stats {
            requests: [[0; 4]; 4],
            status: BTreeMap::new(),
            latency: (0..METHODS.len())
                .map(|_| Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"))
                .collect(),
            errors: Vec::new(),
        }
    }

    pub fn merge(&mut self, other: Stats) {
        for (s, row) in other.requests.iter().enumerate() {
            for (m, n) in row.iter().enumerate() {
                self.requests[s][m] += n;
            }
        }
        for (k, n) in other.status {
            *self.status.entry(k).or_default() += n;
        }
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            mine.add(theirs).expect("same bounds");
        }
        self.errors.extend(other.errors);
    }

    pub fn empty() -> Self {
        Self::new()
    }
}

/// Writes per chunk a worker records into.
const WRITES_CHUNK: usize = 1 << 16;

/// What every worker shares.
pub struct Shared {
    pub urls: Vec<String>,
    /// Per strategy, the ids it owns that are live as far as the workers know, oldest
    /// first (the last `hot` are the hot set: new rows, soon written and deleted).
    pub pools: Vec<Mutex<Vec<i32>>>,
    pub hot: usize,
    pub timeout: Duration,
    pub start: Instant,
    pub stop: AtomicBool,
    seq: AtomicU64,
    pub done_requests: AtomicU64,
    pub done_errors: AtomicU64,
}

impl Shared {
    pub fn new(
        urls: Vec<String>,
        pools: Vec<Vec<i32>>,
        hot: usize,
        timeout: Duration,
        start: Instant,
    ) -> Self {
        Shared {
            urls,
            pools: pools.into_iter().map(Mutex::new).collect(),
            hot,
            timeout,
            start,
            stop: AtomicBool::new(false),
            seq: AtomicU64::new(1),
            done_requests: AtomicU64::new(0),
            done_errors: AtomicU64::new(0),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn pick(&self, strategy: usize, rng: &mut SmallRng) -> Option<i32> {
        let pool = self.pools[strategy]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if pool.is_empty() {
            return None;
        }
        let n = pool.len();
        Some(if rng.random_bool(0.5) {
            pool[n - 1 - rng.random_range(0..self.hot.min(n))]
        } else {
            pool[rng.random_range(0..n)]
        })
    }

    fn forget(&self, strategy: usize, id: i32) {
        let mut pool = self.pools[strategy]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(i) = pool.iter().position(|&x| x == id) {
            pool.remove(i);
        }
    }

    fn adopt(&self, strategy: usize, id: i32) {
        self.pools[strategy]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id);
    }
}

/// One worker's loop; returns its writes and counts.
pub async fn worker(shared: std::sync::Arc<Shared>, seed: u64) -> (Vec<Vec<Write>>, Stats) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut client = Client::builder(TokioExecutor::new());
    // Below serve's 10 s idle timeout, so a pooled connection is not closed under a request.
    client.pool_idle_timeout(Duration::from_secs(5));
    let client: Client<HttpConnector, Empty<Bytes>> = client.build_http();
    // In fixed-size chunks: no doubling slack, and merging frees them one by one.
    let mut writes: Vec<Vec<Write>> = vec![Vec::with_capacity(WRITES_CHUNK)];
    let mut stats = Stats::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let strategy = rng.random_range(0..STRATEGIES.len());
        let roll = rng.random_range(0..100);
        let picked = shared.pick(strategy, &mut rng);
        let method = match (roll, picked) {
            (_, None) | (90.., _) => POST,
            (..40, _) => GET,
            (..80, _) => PUT,
            _ => DELETE,
        };
        let base = &shared.urls[strategy];
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let (name, email) = match method {
            PUT => match rng.random_range(0..4) {
                0 | 1 => (Val::put_name(seq), Val::NONE),
                2 => (Val::NONE, Val::put_email(seq)),
                _ => (Val::put_name(seq), Val::put_email(seq)),
            },
            POST => (Val::post_name(seq), Val::post_email(seq)),
            _ => (Val::NONE, Val::NONE),
        };
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if name.is_some() {
                query.append_pair("name", &name.to_string());
            }
            if email.is_some() {
                query.append_pair("email", &email.to_string());
            }
            query.finish()
        };
        let (uri, kind) = match (method, picked) {
            (GET, Some(id)) => (format!("{base}/users/{id}"), None),
            (PUT, Some(id)) => (format!("{base}/users/{id}?{query}"), Some(WriteKind::Put)),
            (DELETE, Some(id)) => (format!("{base}/users/{id}"), Some(WriteKind::Delete)),
            _ => (format!("{base}/users?{query}"), Some(WriteKind::Post)),
        };
        let http_method = [Method::GET, Method::PUT, Method::DELETE, Method::POST][method].clone();
        let invoke_us = shared.now_us();
        let answer = send(&client, http_method, &uri, shared.timeout).await;
        let complete_us = shared.now_us();

        let status = answer.as_ref().map(|(s, _)| *s).unwrap_or(0);
        stats.requests[strategy][method] += 1;
        *stats.status.entry((strategy, status)).or_default() += 1;
        let _ = stats.latency[method].record((complete_us - invoke_us).max(1));
        shared.done_requests.fetch_add(1, Ordering::Relaxed);
        let ok = (200..300).contains(&status) || status == 404;
        let body = answer.as_ref().map(|(_, b)| b.clone()).unwrap_or_default();
        let error = match &answer {
            Err(e) => keep_error(e),
            Ok(_) if !ok => keep_error(&shorten(&String::from_utf8_lossy(&body))),
            Ok(_) => 0,
        };
        if !ok {
            stats.errors.push(ErrorAt {
                complete_us,
                strategy,
                method,
                status,
                error,
            });
            shared.done_errors.fetch_add(1, Ordering::Relaxed);
        }
        let row_json: Option<serde_json::Value> = if method != GET && (200..300).contains(&status) {
            serde_json::from_slice(&body).ok()
        } else {
            None
        };
        // Keep the workers' idea of the live ids moving with what the servers said.
        match (method, status) {
            (GET | PUT | DELETE, 404) | (DELETE, 204) => {
                if let Some(id) = picked {
                    shared.forget(strategy, id);
                }
            }
            (POST, 201) => {
                if let Some(id) = row_json.as_ref().and_then(json_id) {
                    shared.adopt(strategy, id);
                }
            }
            _ => {}
        }
        let Some(kind) = kind else { continue };
        let outcome = match status {
            200..=299 => Outcome::Acked,
            404 => Outcome::NotFound,
            _ => Outcome::Indeterminate,
        };
        let id = match method {
            POST => row_json.as_ref().and_then(json_id),
            _ => picked,
        };
        if writes.last().is_none_or(|c| c.len() == WRITES_CHUNK) {
            writes.push(Vec::with_capacity(WRITES_CHUNK));
        }
        writes.last_mut().expect("a chunk").push(Write {
            id: id.unwrap_or(0),
            strategy: strategy as u8,
            kind,
            outcome,
            status,
            name,
            email,
            invoke_us,
            complete_us,
            row_after: row_json
                .as_ref()
                .and_then(json_row)
                .unwrap_or((Val::NONE, Val::NONE)),
            error,
        });
    }
    (writes, stats)
}

/// Send one request and read its whole answer, within `timeout`.
async fn send(
    client: &Client<HttpConnector, Empty<Bytes>>,
    method: Method,
    uri: &str,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

fn json_id(v: &serde_json::Value) -> Option<i32> {
    v.get("id")?.as_i64()?.try_into().ok()
}

fn json_row(v: &serde_json::Value) -> Option<Row> {
    Some((
        Val::of(v.get("name")?.as_str()?),
        Val::of(v.get("email")?.as_str()?),
    ))
}

fn shorten(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(160) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}
