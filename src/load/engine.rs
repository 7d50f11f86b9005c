//! The request loop: `concurrency` workers, each with its own keep-alive connection,
//! taking tickets from one shared counter until the plan says stop. Failures are counted
//! by kind and the worker reconnects; nothing a server does stops the run early.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, HOST};
use hyper::{HeaderMap, Request};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;
use tokio::time::Instant;

use super::keys::KeyPicker;
use super::plan::{Pace, Plan, Stop};
use super::summary::{Summary, Tally};

/// Requests completed so far, for a progress bar to poll.
#[derive(Default)]
pub struct Progress {
    pub done: AtomicU64,
}

/// Run `plan` to the end and return what was observed.
pub async fn run(plan: Plan, progress: Arc<Progress>) -> Summary {
    let plan = Arc::new(plan);
    let tickets = Arc::new(AtomicU64::new(0));
    let workers = plan.concurrency.max(1);
    let barrier = Arc::new(Barrier::new(workers));
    let started = Instant::now();
    let deadline = match plan.stop {
        Stop::Duration(d) => Some(started + d),
        Stop::Requests(_) => None,
    };
    let mut handles = Vec::with_capacity(workers);
    for index in 0..workers {
        let worker = Worker {
            plan: plan.clone(),
            tickets: tickets.clone(),
            progress: progress.clone(),
            barrier: barrier.clone(),
            index,
            deadline,
        };
        handles.push(tokio::spawn(worker.run()));
    }
    let mut tally = Tally::default();
    for handle in handles {
        if let Ok(worker_tally) = handle.await {
            tally.merge(worker_tally);
        }
    }
    Summary {
        tally,
        elapsed: started.elapsed(),
    }
}

struct Worker {
    plan: Arc<Plan>,
    tickets: Arc<AtomicU64>,
    progress: Arc<Progress>,
    barrier: Arc<Barrier>,
    index: usize,
    deadline: Option<Instant>,
}

impl Worker {
    async fn run(self) -> Tally {
        let plan = &self.plan;
        let mut tally = Tally::default();
        let mut picker = KeyPicker::new(
            &plan.keys,
            plan.ids,
            0x5eed ^ (self.index as u64).wrapping_mul(0x9e37_79b9),
        );
        let mut conn: Option<(usize, SendRequest<Full<Bytes>>)> = None;
        if plan.release_together {
            // Connect before the barrier so the requests, not the handshakes, collide.
            if let Ok(sender) = connect(&plan.targets[0].authority, plan.timeout).await {
                conn = Some((0, sender));
            }
            self.barrier.wait().await;
        }
        let interval = match plan.pace {
            Pace::Unlimited => None,
            Pace::PerWorker(q) => Some(Duration::from_secs_f64(1.0 / q)),
            Pace::Total(rate) => Some(Duration::from_secs_f64(plan.concurrency as f64 / rate)),
        };
        // Stagger paced workers so a total rate is spread evenly, not in bursts.
        let start = Instant::now()
            + interval.map_or(Duration::ZERO, |i| {
                i.mul_f64(self.index as f64 / plan.concurrency as f64)
            });
        let mut sent: u32 = 0;
        loop {
            if crate::shutdown::requested() {
                break;
            }
            let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
            match plan.stop {
                Stop::Requests(n) if ticket >= n => break,
                _ => {}
            }
            let intended = match interval {
                Some(i) => {
                    let at = start + i * sent;
                    tokio::time::sleep_until(at).await;
                    at
                }
                None => Instant::now(),
            };
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            sent += 1;
            let target_index = (ticket % plan.targets.len() as u64) as usize;
            let target = &plan.targets[target_index];
            let path = if target.has_key() {
                target.path.replace("{id}", &picker.next_id().to_string())
            } else {
                target.path.clone()
            };
            let outcome = tokio::time::timeout(
                plan.timeout,
                send(
                    plan,
                    &mut conn,
                    target_index,
                    &target.authority,
                    &path,
                    &mut tally,
                ),
            )
            .await;
            match outcome {
                Ok(Ok(())) => tally.record_latency(intended.elapsed()),
                Ok(Err(kind)) => {
                    *tally.errors.entry(kind).or_default() += 1;
                    conn = None;
                }
                Err(_) => {
                    *tally.errors.entry("timeout".to_string()).or_default() += 1;
                    conn = None;
                }
            }
            if !plan.keepalive {
                conn = None;
            }
            self.progress.done.fetch_add(1, Ordering::Relaxed);
        }
        tally
    }
}

/// Send one request on the worker's connection (connecting first if it has none) and read
/// the whole answer. Errors come back as their kind.
async fn send(
    plan: &Plan,
    conn: &mut Option<(usize, SendRequest<Full<Bytes>>)>,
    target_index: usize,
    authority: &str,
    path: &str,
    tally: &mut Tally,
) -> Result<(), String> {
    if conn
        .as_ref()
        .is_none_or(|(i, s)| *i != target_index || s.is_closed())
    {
        *conn = Some((target_index, connect(authority, plan.timeout).await?));
    }
    let (_, sender) = conn.as_mut().expect("connected above");
    sender.ready().await.map_err(|e| classify(&e))?;
    let request = build_request(plan, authority, path);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| classify(&e))?;
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache")
        .map(|v| v.as_bytes() == b"HIT");
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| classify(&e))?
        .to_bytes();
    *tally.status.entry(status).or_default() += 1;
    tally.body_bytes += body.len() as u64;
    match cache {
        Some(true) => tally.cache_hits += 1,
        Some(false) => tally.cache_misses += 1,
        None => {}
    }
    Ok(())
}

fn build_request(plan: &Plan, authority: &str, path: &str) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(plan.body.clone()));
    *request.method_mut() = plan.method.clone();
    *request.uri_mut() = path
        .parse()
        .unwrap_or_else(|_| hyper::Uri::from_static("/"));
    let headers: &mut HeaderMap = request.headers_mut();
    headers.insert(
        HOST,
        authority
            .parse()
            .expect("authority is a valid header value"),
    );
    for (name, value) in &plan.headers {
        headers.insert(name, value.clone());
    }
    if !plan.keepalive {
        headers.insert(CONNECTION, hyper::header::HeaderValue::from_static("close"));
    }
    request
}

async fn connect(authority: &str, timeout: Duration) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream =
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(authority)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(classify_io(&e)),
            Err(_) => return Err("connect timeout".to_string()),
        };
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| classify(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn classify_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".to_string(),
        ConnectionReset => "connection reset".to_string(),
        TimedOut => "connect timeout".to_string(),
        AddrNotAvailable | HostUnreachable | NetworkUnreachable => "unreachable".to_string(),
        _ if e.to_string().contains("lookup") || e.to_string().contains("resolve") => {
            "could not resolve host".to_string()
        }
        _ => format!("connect: {e}"),
    }
}

fn classify(e: &hyper::Error) -> String {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return "connection closed".to_string();
    }
    if e.is_parse() {
        return "malformed response".to_string();
    }
    if e.is_timeout() {
        return "timeout".to_string();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return classify_io(io);
        }
        source = s.source();
    }
    "connection closed".to_string()
}
