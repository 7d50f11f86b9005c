//! One worker's request loop: take a ticket, wait for its pacing slot, pick the request
//! (URL, id, GET or PUT), send it on the worker's connection to that host, and report what
//! came back. Each worker has its own random generator, derived from the run's seed and
//! its index, so a seed repeats a run's ids; it stops at the plan's end or the moment the
//! run's stop token is cancelled.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONNECTION, HOST};
use hyper::{HeaderMap, Method, Request, Uri};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::history::{Op, OpKind};
use super::http::{self, Answer, Conn};
use super::keys::KeyPicker;
use super::plan::{Pace, Plan, Stop};
use super::timeline::{Event, Inbox, Outcome};

/// Requests completed so far, for a progress bar to poll.
#[derive(Default)]
pub struct Progress {
    pub done: AtomicU64,
}

/// What every worker of a run shares: the plan, prepared once, and the run's clocks.
pub(crate) struct Shared {
    pub plan: Plan,
    hosts: Vec<Host>,
    routes: Vec<Route>,
    pub seed: u64,
    tickets: AtomicU64,
    progress: Arc<Progress>,
    barrier: Barrier,
    stop: CancellationToken,
    /// The run's time zero: events, history and keys are measured from it.
    start: Instant,
    deadline: Option<Instant>,
}

/// A host a worker keeps one connection to, with the headers every request to it carries.
struct Host {
    addr: String,
    headers: HeaderMap,
}

/// A target, parsed once: which host, and the path with its `{id}` holes.
struct Route {
    host: usize,
    path: RoutePath,
}

enum RoutePath {
    Fixed(Uri),
    /// The path split at each `{id}`.
    Template(Vec<String>),
}

impl Route {
    fn render(&self, id: Option<u64>) -> String {
        match (&self.path, id) {
            (RoutePath::Template(parts), Some(id)) => parts.join(&id.to_string()),
            (RoutePath::Template(parts), None) => parts.join(""),
            (RoutePath::Fixed(uri), _) => uri.to_string(),
        }
    }
}

impl Shared {
    pub fn new(
        plan: Plan,
        seed: u64,
        progress: Arc<Progress>,
        stop: CancellationToken,
        start: Instant,
    ) -> Self {
        let authorities: Vec<String> = plan.authorities().into_iter().map(String::from).collect();
        let hosts = authorities
            .iter()
            .map(|addr| {
                let mut headers = HeaderMap::new();
                if let Ok(host) = HeaderValue::from_str(addr) {
                    headers.insert(HOST, host);
                }
                for name in plan.headers.keys() {
                    headers.remove(name);
                }
                for (name, value) in &plan.headers {
                    headers.append(name, value.clone());
                }
                if !plan.keepalive {
                    headers.insert(CONNECTION, HeaderValue::from_static("close"));
                }
                Host {
                    addr: addr.clone(),
                    headers,
                }
            })
            .collect();
        let routes = plan
            .targets
            .iter()
            .map(|t| Route {
                host: authorities
                    .iter()
                    .position(|a| *a == t.authority)
                    .expect("every authority is listed"),
                path: if t.has_key() {
                    RoutePath::Template(t.path.split("{id}").map(String::from).collect())
                } else {
                    RoutePath::Fixed(t.path.parse().unwrap_or_else(|_| Uri::from_static("/")))
                },
            })
            .collect();
        let workers = plan.concurrency.max(1);
        let deadline = match plan.stop {
            Stop::Duration(d) => Some(start + d),
            Stop::Requests(_) => None,
        };
        Self {
            hosts,
            routes,
            seed,
            tickets: AtomicU64::new(0),
            progress,
            barrier: Barrier::new(workers),
            stop,
            start,
            deadline,
            plan,
        }
    }
}

/// What a worker hands back besides its events.
#[derive(Default)]
pub(crate) struct Output {
    pub history: Vec<Op>,
    /// (sent at, ticket, id) of each counted request with an id.
    pub keys: Vec<(Duration, u64, u64)>,
}

/// The generator of worker `index`: distinct per worker, fixed by the seed.
fn worker_rng(seed: u64, index: usize) -> SmallRng {
    SmallRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// What one request does.
#[derive(Clone, Copy, PartialEq)]
enum Action {
    /// The plan's method and body.
    Plain,
    Read,
    Write,
}

pub(crate) async fn work(shared: Arc<Shared>, index: usize, inbox: Inbox) -> Output {
    let s = &*shared;
    let plan = &s.plan;
    let mut out = Output::default();
    let mut rng = worker_rng(s.seed, index);
    let picker = KeyPicker::new(&plan.keys, plan.ids);
    let mut conns: Vec<Option<Conn>> = s.hosts.iter().map(|_| None).collect();
    if plan.release_together {
        // Connect before the barrier so the requests, not the handshakes, collide.
        for (host, conn) in s.hosts.iter().zip(conns.iter_mut()) {
            tokio::select! {
                _ = s.stop.cancelled() => return out,
                connected = http::connect(&host.addr, plan.timeout) => *conn = connected.ok(),
            }
        }
        tokio::select! {
            _ = s.stop.cancelled() => return out,
            _ = s.barrier.wait() => {}
        }
    }
    let pace = match plan.pace {
        Pace::Unlimited => None,
        Pace::PerWorker(q) => Some(Duration::from_secs_f64(1.0 / q)),
        Pace::Total(rate) => Some(Duration::from_secs_f64(plan.concurrency as f64 / rate)),
    };
    // Stagger paced workers so a total rate is spread evenly, not in bursts.
    let paced_from = Instant::now()
        + pace.map_or(Duration::ZERO, |i| {
            i.mul_f64(index as f64 / plan.concurrency as f64)
        });
    let mut sent: u32 = 0;
    let mut writes: u64 = 0;
    loop {
        if s.stop.is_cancelled() {
            break;
        }
        let ticket = s.tickets.fetch_add(1, Ordering::Relaxed);
        if let Stop::Requests(n) = plan.stop {
            if ticket >= n {
                break;
            }
        }
        let intended = match pace {
            Some(i) => {
                let at = paced_from + i * sent;
                if s.deadline.is_some_and(|d| at >= d) {
                    break;
                }
                tokio::select! {
                    _ = s.stop.cancelled() => break,
                    _ = tokio::time::sleep_until(at) => at,
                }
            }
            None => Instant::now(),
        };
        if s.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        sent += 1;

        // With instances, each worker keeps to its own run of routes.
        let groups = plan.groups.clamp(1, s.routes.len());
        let per_group = s.routes.len() / groups;
        let first = (index % groups) * per_group;
        let route = &s.routes[first + (ticket % per_group as u64) as usize];
        let action = match plan.mix {
            None => Action::Plain,
            Some(mix) if rng.random_range(0..mix.get + mix.put) < mix.get => Action::Read,
            Some(_) => Action::Write,
        };
        let id =
            matches!(route.path, RoutePath::Template(_)).then(|| picker.next_id(&mut rng, ticket));
        let mut path = route.render(id);
        let written = (action == Action::Write).then(|| {
            let name = format!("w{}-{index}-{writes}", s.seed);
            writes += 1;
            match &plan.app {
                Some(app) => path = (app.write_path)(id.unwrap_or(0), &name),
                None => {
                    path.push(if path.contains('?') { '&' } else { '?' });
                    path.push_str("name=");
                    path.push_str(&name);
                }
            }
            name
        });
        let host = &s.hosts[route.host];
        let request = match build_request(plan, host, action, &path) {
            Ok(request) => request,
            Err(kind) => {
                report(s, &inbox, intended, Outcome::Error(kind));
                continue;
            }
        };

        let invoke = s.start.elapsed();
        let conn = &mut conns[route.host];
        let result = tokio::select! {
            biased;
            _ = s.stop.cancelled() => None,
            r = tokio::time::timeout(plan.timeout, http::send(conn, &host.addr, request, plan.timeout)) => {
                Some(r.unwrap_or_else(|_| Err("timeout".to_string())))
            }
        };
        let complete = s.start.elapsed();
        let Some(result) = result else {
            // Abandoned: not counted, but a write may still land, so history keeps it.
            if plan.record_history {
                if let Some(key) = id {
                    out.history
                        .push(abandoned(index, action, key, written, invoke));
                }
            }
            break;
        };
        if result.is_err() || !plan.keepalive {
            *conn = None;
        }
        if plan.record_history {
            if let Some(key) = id {
                out.history.push(history_op(
                    index,
                    action,
                    key,
                    written,
                    (invoke, complete),
                    result.as_ref().ok(),
                    plan.app
                        .as_ref()
                        .map_or("/name", |app| app.value_pointer.as_str()),
                ));
            }
        }
        if plan.record_keys {
            if let Some(key) = id {
                out.keys.push((invoke, ticket, key));
            }
        }
        let failed = result.is_err();
        let outcome = match result {
            Ok(answer) => Outcome::Response {
                status: answer.status,
                cache: answer.cache,
                body_bytes: answer.body.len() as u64,
            },
            Err(kind) => Outcome::Error(kind),
        };
        report(s, &inbox, intended, outcome);
        if failed {
            // A failure can come back at once (refused, out of file descriptors): pause so
            // that thousands of failing workers cannot keep the runtime from its timers.
            tokio::select! {
                _ = s.stop.cancelled() => break,
                _ = tokio::time::sleep(ERROR_PAUSE) => {}
            }
        }
    }
    out
}

/// How long a worker pauses after a failed request.
const ERROR_PAUSE: Duration = Duration::from_millis(2);

/// Count one finished request.
fn report(s: &Shared, inbox: &Inbox, intended: Instant, outcome: Outcome) {
    let event = Event {
        at: s.start.elapsed(),
        latency: intended.elapsed(),
        outcome,
    };
    inbox.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    s.progress.done.fetch_add(1, Ordering::Relaxed);
}

fn build_request(
    plan: &Plan,
    host: &Host,
    action: Action,
    path: &str,
) -> Result<Request<Full<Bytes>>, String> {
    let uri: Uri = path
        .parse()
        .map_err(|_| format!("invalid request path {path:?}"))?;
    let (method, body) = match action {
        Action::Plain => (plan.method.clone(), plan.body.clone()),
        Action::Read => (Method::GET, Bytes::new()),
        Action::Write => match &plan.app {
            Some(app) => (app.write_method.clone(), Bytes::new()),
            None => (Method::PUT, Bytes::new()),
        },
    };
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = host.headers.clone();
    Ok(request)
}

fn kind_of(action: Action) -> OpKind {
    match action {
        Action::Write => OpKind::Write,
        Action::Read | Action::Plain => OpKind::Read,
    }
}

/// The history entry of a request that got an answer (or failed without one).
fn history_op(
    worker: usize,
    action: Action,
    key: u64,
    written: Option<String>,
    (invoke, complete): (Duration, Duration),
    answer: Option<&Answer>,
    value_pointer: &str,
) -> Op {
    let kind = kind_of(action);
    let Some(answer) = answer else {
        return Op {
            complete: None,
            ..abandoned(worker, action, key, written, invoke)
        };
    };
    let success = (200..300).contains(&answer.status);
    let (value, ok) = match kind {
        // A PUT answered 404 wrote nothing: not ok, so it never counts as a finished write.
        OpKind::Write => (written, success),
        OpKind::Read if answer.status == 404 => (None, true),
        OpKind::Read if success => match value_in(&answer.body, value_pointer) {
            Some(name) => (Some(name), true),
            None => (None, false),
        },
        OpKind::Read => (None, false),
    };
    Op {
        process: worker as u64,
        kind,
        key,
        value,
        invoke,
        complete: Some(complete),
        ok,
    }
}

fn abandoned(
    worker: usize,
    action: Action,
    key: u64,
    written: Option<String>,
    invoke: Duration,
) -> Op {
    Op {
        process: worker as u64,
        kind: kind_of(action),
        key,
        value: written,
        invoke,
        complete: None,
        ok: false,
    }
}

/// The value a read returned: the string at `pointer` in its JSON body (`/name` of a
/// user on cachelab's own servers).
fn value_in(body: &[u8], pointer: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.pointer(pointer)?.as_str().map(String::from)
}
