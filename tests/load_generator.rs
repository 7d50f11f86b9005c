//! `cachelab load` and `load::run` against small local HTTP servers that count what they
//! receive, keep users, close connections, go silent, or disappear mid-run: counts are
//! exact, failures are counted by kind, a run always completes (or stops at once when
//! cancelled), and only bad arguments fail the command.

mod common;

use cachelab::load::{self, Mix, Plan, Progress, Sampler, Stop, Target};
use common::cachelab;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What a test server does with each connection.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answer every request 200 with `X-Cache: HIT`.
    Answer,
    /// Close the connection as soon as it is accepted.
    Close,
    /// Read the request and never answer.
    Silent,
    /// Answer like `Answer`, but 100 ms late.
    Slow,
    /// Keep users 1..=20 (named `init<id>`): GET /users/<id> answers the user as JSON,
    /// PUT /users/<id>?name=<name> renames it; any other id is a 404.
    Store,
}

/// Users a `Store` server starts with.
const STORED_USERS: u64 = 20;

/// What a test server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    /// Connections not yet closed by the client.
    open: AtomicUsize,
    requests: Mutex<Vec<String>>,
}

impl Seen {
    fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// The requests seen so far, forgotten so the next run starts from none.
    fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

/// Request lines' targets (`/users/7?name=x`), in arrival order.
fn paths(requests: &[String]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.split_whitespace().nth(1).unwrap().to_string())
        .collect()
}

/// A raw HTTP/1.1 server on a free loopback port, running on its own thread; it stops
/// answering (closing everything) once `limit` requests were answered.
fn test_server(behaviour: Behaviour, limit: Option<usize>) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let seen_in = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            let answered = Arc::new(AtomicUsize::new(0));
            let users: Arc<Mutex<HashMap<u64, String>>> = Arc::new(Mutex::new(
                (1..=STORED_USERS)
                    .map(|id| (id, format!("init{id}")))
                    .collect(),
            ));
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            loop {
                let mut stopped = stop_rx.clone();
                let (mut stream, _) = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap(),
                    _ = stopped.changed() => break,
                };
                seen_in.connections.fetch_add(1, Ordering::SeqCst);
                if behaviour == Behaviour::Close {
                    drop(stream);
                    continue;
                }
                let (seen, answered, stop_tx, users) = (
                    seen_in.clone(),
                    answered.clone(),
                    stop_tx.clone(),
                    users.clone(),
                );
                let mut stop_rx = stop_rx.clone();
                seen.open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(request) = read_request(&mut stream, &mut buf, &mut stop_rx).await
                        else {
                            break;
                        };
                        let reply = match behaviour {
                            Behaviour::Store => store_reply(&users, &request),
                            _ => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Cache: HIT\r\n\r\nok"
                                .to_string(),
                        };
                        seen.requests.lock().unwrap().push(request);
                        if behaviour == Behaviour::Silent {
                            // Never answer; notice when the client gives up.
                            let mut rest = [0u8; 64];
                            tokio::select! {
                                _ = stream.read(&mut rest) => {},
                                _ = stop_rx.changed() => {},
                            }
                            break;
                        }
                        if behaviour == Behaviour::Slow {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        if stream.write_all(reply.as_bytes()).await.is_err() {
                            break;
                        }
                        let n = answered.fetch_add(1, Ordering::SeqCst) + 1;
                        if limit.is_some_and(|l| n >= l) {
                            let _ = stop_tx.send(true);
                            break;
                        }
                    }
                    seen.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
            // Gone: the listener closes when this returns, and so do open connections.
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
    });
    let port = rx.recv().unwrap();
    (format!("http://127.0.0.1:{port}"), seen)
}

/// The `Store` server's answer to one request; the lock is the moment it takes effect.
fn store_reply(users: &Mutex<HashMap<u64, String>>, request: &str) -> String {
    let mut words = request.split_whitespace();
    let (method, target) = (words.next().unwrap(), words.next().unwrap());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let id: u64 = path.trim_start_matches("/users/").parse().unwrap_or(0);
    let mut users = users.lock().unwrap();
    let (status, body) = match (method, users.get_mut(&id)) {
        (_, None) => ("404 Not Found", r#"{"error":"no such user"}"#.to_string()),
        ("PUT", Some(name)) => {
            *name = query.strip_prefix("name=").unwrap().to_string();
            ("200 OK", format!(r#"{{"id":{id},"name":"{name}"}}"#))
        }
        (_, Some(name)) => ("200 OK", format!(r#"{{"id":{id},"name":"{name}"}}"#)),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nX-Cache: MISS\r\n\r\n{body}",
        body.len()
    )
}

/// Read one request (head and Content-Length body) as text; `None` when the peer closed or
/// the server is stopping.
async fn read_request(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                buf.drain(..end + 4 + length);
                return Some(format!("{head}\r\n\r\n{body}"));
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::select! {
            n = stream.read(&mut chunk) => n.ok()?,
            _ = stop.changed() => return None,
        };
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn load_json(args: &[&str]) -> serde_json::Value {
    let out = cachelab()
        .arg("load")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "no progress bar when piped: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn counts_every_response_and_sends_the_method_headers_and_body_asked_for() {
    let (url, seen) = test_server(Behaviour::Answer, None);
    let f = load_json(&[
        &format!("{url}/users/1"),
        "-n",
        "50",
        "-c",
        "5",
        "-m",
        "post",
        "-H",
        "X-Test: yes",
        "-H",
        "Authorization: Bearer t",
        "-d",
        "hello",
    ]);
    assert_eq!(f["requests"], 50);
    assert_eq!(f["ok"], 50);
    assert_eq!(f["errors"], 0);
    assert_eq!(f["status"]["200"], 50);
    assert_eq!(f["cache"], serde_json::json!({"HIT": 50}));
    let requests = seen.requests.lock().unwrap();
    assert_eq!(requests.len(), 50, "the server saw exactly -n requests");
    for r in requests.iter() {
        assert!(r.starts_with("POST /users/1 HTTP/1.1"), "{r}");
        let lower = r.to_ascii_lowercase();
        assert!(
            lower.contains("x-test: yes") && lower.contains("authorization: bearer t"),
            "{r}"
        );
        assert!(r.ends_with("\r\n\r\nhello"), "{r}");
    }
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        5,
        "one keep-alive connection per worker"
    );
}

#[test]
fn disable_keepalive_opens_a_connection_per_request() {
    let (url, seen) = test_server(Behaviour::Answer, None);
    let f = load_json(&[&url, "-n", "30", "-c", "3", "--disable-keepalive"]);
    assert_eq!(f["ok"], 30);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 30);
}

#[test]
fn an_unreachable_url_counts_connection_refused_and_the_run_completes() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = cachelab()
        .args([
            "load",
            &format!("http://127.0.0.1:{port}/"),
            "-n",
            "20",
            "-c",
            "4",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Error distribution:") && text.contains("[20]\tconnection refused"),
        "{text}"
    );
}

#[test]
fn a_server_that_closes_connections_is_counted_as_connection_closed() {
    let (url, _) = test_server(Behaviour::Close, None);
    let f = load_json(&[&url, "-n", "12", "-c", "3"]);
    assert_eq!(f["requests"], 12);
    assert_eq!(f["errors"], 12);
    let kinds = f["error_kinds"].as_object().unwrap();
    let closed: u64 = kinds
        .iter()
        .filter(|(k, _)| k.contains("closed") || k.contains("reset"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(closed, 12, "{kinds:?}");
}

#[test]
fn a_silent_server_is_counted_as_timeouts_and_the_run_still_ends() {
    let (url, _) = test_server(Behaviour::Silent, None);
    let started = Instant::now();
    let f = load_json(&[&url, "-n", "4", "-c", "2", "-t", "0.3"]);
    assert_eq!(f["error_kinds"]["timeout"], 4, "{f}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_server_that_disappears_mid_run_gives_responses_then_errors_and_every_request_is_counted() {
    let (url, _) = test_server(Behaviour::Answer, Some(30));
    let f = load_json(&[&url, "-n", "100", "-c", "2"]);
    assert_eq!(f["requests"], 100);
    let ok = f["ok"].as_u64().unwrap();
    assert!((30..=32).contains(&ok), "{f}");
    assert_eq!(f["errors"].as_u64().unwrap(), 100 - ok);
    let kinds = f["error_kinds"].as_object().unwrap();
    assert!(
        kinds
            .keys()
            .any(|k| k.contains("refused") || k.contains("closed")),
        "{kinds:?}"
    );
}

#[test]
fn id_templates_spread_requests_over_users_with_zipf_making_id_1_the_hottest() {
    let (url, seen) = test_server(Behaviour::Answer, None);
    let f = load_json(&[
        &format!("{url}/users/{{id}}"),
        "-n",
        "600",
        "-c",
        "4",
        "--keys",
        "zipf:1.3",
        "--ids",
        "1..20",
    ]);
    assert_eq!(f["ok"], 600);
    let mut counts = [0usize; 21];
    for r in seen.requests.lock().unwrap().iter() {
        let path = r.split_whitespace().nth(1).unwrap();
        let id: usize = path.strip_prefix("/users/").unwrap().parse().unwrap();
        assert!((1..=20).contains(&id), "{path}");
        counts[id] += 1;
    }
    assert!(
        counts[1] > counts[2] && counts[2] > counts[10],
        "{counts:?}"
    );
    let (url2, seen2) = test_server(Behaviour::Answer, None);
    load_json(&[
        &format!("{url2}/a"),
        &format!("{url2}/b"),
        "-n",
        "10",
        "-c",
        "2",
    ]);
    let paths: Vec<String> = seen2
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        paths.iter().filter(|p| *p == "/a").count(),
        5,
        "several URLs share the requests: {paths:?}"
    );
}

#[test]
fn rate_limits_and_durations_bound_the_run() {
    let (url, _) = test_server(Behaviour::Answer, None);
    // A total rate of 100/s cannot send 30 requests in under ~0.29 s.
    let f = load_json(&[&url, "-n", "30", "-c", "3", "--rate", "100"]);
    assert_eq!(f["ok"], 30);
    assert!(f["duration_s"].as_f64().unwrap() >= 0.25, "{f}");
    // -q is per worker: 2 workers at 20/s send 5 requests each, the last ones 0.2 s in.
    let f = load_json(&[&url, "-n", "10", "-c", "2", "-q", "20"]);
    assert!(f["duration_s"].as_f64().unwrap() >= 0.2, "{f}");
    let f = load_json(&[&url, "-z", "500ms", "-c", "2"]);
    let secs = f["duration_s"].as_f64().unwrap();
    assert!(
        (0.5..5.0).contains(&secs) && f["requests"].as_u64().unwrap() > 10,
        "{f}"
    );
}

#[test]
fn under_a_rate_limit_latency_counts_from_the_intended_send_time() {
    // One connection, 100 requests/s wanted, 100 ms per answer: request k was meant to go
    // at k*10 ms but goes at k*100 ms. Without coordinated-omission correction every
    // latency would read ~100 ms; counted from the intended time the last reads ~460 ms.
    let (url, _) = test_server(Behaviour::Slow, None);
    let f = load_json(&[&url, "-n", "5", "-c", "1", "--rate", "100"]);
    assert_eq!(f["ok"], 5);
    assert!(f["p50_ms"].as_f64().unwrap() >= 250.0, "{f}");
    assert!(f["max_ms"].as_f64().unwrap() >= 400.0, "{f}");
}

#[test]
fn text_output_follows_hey() {
    let (url, _) = test_server(Behaviour::Answer, None);
    // With an `{id}` in the URL, the seed that drew the ids is printed too.
    let out = cachelab()
        .args([
            "load",
            &format!("{url}/users/{{id}}"),
            "-n",
            "40",
            "-c",
            "4",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for part in [
        "Summary:",
        "Total:",
        "Slowest:",
        "Fastest:",
        "Average:",
        "Requests/sec:",
        "Seed:",
        "Response time histogram:",
        "Latency distribution:",
        "10% in",
        "99.9% in",
        "Status code distribution:",
        "[200]\t40 responses",
        "Cache (X-Cache header):",
        "[HIT]\t40 responses",
    ] {
        assert!(text.contains(part), "{part:?} missing:\n{text}");
    }
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for (args, words) in [
        (
            vec!["http://127.0.0.1:1/", "-n", "5", "-c", "10"],
            "-n cannot be less than -c",
        ),
        (vec!["ftp://127.0.0.1/"], "only http://"),
        (
            vec!["http://127.0.0.1:1/", "-m", "BAD METHOD"],
            "not an HTTP method",
        ),
        (vec!["http://127.0.0.1:1/", "-H", "nocolon"], "Name: value"),
        (
            vec!["http://127.0.0.1:1/", "--keys", "zipf:-1"],
            "key distribution",
        ),
        (
            vec!["http://127.0.0.1:1/", "-q", "5", "--rate", "5"],
            "not both",
        ),
        (vec!["http://127.0.0.1:1/", "-z", "soon"], "-z"),
        (
            vec!["http://127.0.0.1:1/users/1", "--mix", "get:90,put:10"],
            "{id}",
        ),
        (
            vec!["http://127.0.0.1:1/users/{id}", "--mix", "get:90,delete:10"],
            "get:90,put:10",
        ),
        (
            vec!["http://127.0.0.1:1/", "--interval-ms", "0"],
            "--interval-ms",
        ),
        (vec!["http://127.0.0.1:1/", "--seed", "x"], "--seed"),
        (
            vec!["http://127.0.0.1:1/{id}", "-m", "PUT", "--mix", "put:5"],
            "drop -m",
        ),
    ] {
        let out = cachelab().arg("load").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }
}

/// The run's plan against `url` (a full URL, maybe with `{id}`), checked as the CLI would.
fn plan_for(url: &str, concurrency: usize, stop: Stop) -> Plan {
    let mut plan = Plan::new(vec![Target::parse(url).unwrap()]);
    plan.concurrency = concurrency;
    plan.stop = stop;
    plan
}

async fn run(plan: Plan) -> load::Summary {
    plan.check().unwrap();
    load::run(plan, Arc::new(Progress::default())).await
}

/// Wait (up to 5 s) until `condition` holds.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn each_run_draws_fresh_ids_unless_given_a_seed_and_reports_the_seed() {
    let (url, seen) = test_server(Behaviour::Answer, None);
    let url = format!("{url}/users/{{id}}");
    let args = [url.as_str(), "-n", "50", "-c", "1", "--ids", "1..1000000"];
    let first = load_json(&args);
    let first_paths = paths(&seen.take_requests());
    let second = load_json(&args);
    let second_paths = paths(&seen.take_requests());
    assert_ne!(first["seed"], second["seed"]);
    assert_ne!(
        first_paths, second_paths,
        "two plain runs replayed the same ids"
    );

    let seeded: Vec<&str> = args.iter().copied().chain(["--seed", "42"]).collect();
    let third = load_json(&seeded);
    let third_paths = paths(&seen.take_requests());
    let fourth = load_json(&seeded);
    assert_eq!(third["seed"], 42);
    assert_eq!(fourth["seed"], 42);
    assert_eq!(third_paths.len(), 50);
    assert_eq!(
        third_paths,
        paths(&seen.take_requests()),
        "--seed repeats the ids"
    );
    // The seed a plain run reports repeats it too.
    let reported = first["seed"].as_u64().unwrap().to_string();
    let again: Vec<&str> = args.iter().copied().chain(["--seed", &reported]).collect();
    load_json(&again);
    assert_eq!(paths(&seen.take_requests()), first_paths);
}

#[test]
fn a_worker_keeps_one_connection_per_host_across_several_urls() {
    let (a, seen_a) = test_server(Behaviour::Answer, None);
    let (b, seen_b) = test_server(Behaviour::Answer, None);
    let f = load_json(&[
        &format!("{a}/x"),
        &format!("{b}/y"),
        &format!("{a}/z"),
        "-c",
        "1",
        "-n",
        "400",
    ]);
    assert_eq!(f["ok"], 400);
    assert_eq!(seen_a.connections.load(Ordering::SeqCst), 1);
    assert_eq!(seen_b.connections.load(Ordering::SeqCst), 1);
    assert_eq!(seen_a.request_count() + seen_b.request_count(), 400);
    let host = |requests: &[String]| {
        requests
            .iter()
            .map(|r| {
                r.lines()
                    .find_map(|l| l.strip_prefix("host: ").or(l.strip_prefix("Host: ")))
                    .unwrap()
                    .to_string()
            })
            .collect::<HashSet<_>>()
    };
    assert_eq!(
        host(&seen_b.requests.lock().unwrap()),
        HashSet::from([b.trim_start_matches("http://").to_string()])
    );
}

#[tokio::test]
async fn cancelling_a_long_run_returns_at_once_and_sends_nothing_more() {
    let (url, seen) = test_server(Behaviour::Answer, None);
    let plan = plan_for(&url, 4, Stop::Duration(Duration::from_secs(60)));
    let cancel = plan.cancel.clone();
    let started = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let summary = run(plan).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(summary.cancelled);
    assert!(summary.requests() > 0);
    eventually("the workers' connections are closed", || {
        seen.open.load(Ordering::SeqCst) == 0
    })
    .await;
    let sent = seen.request_count();
    assert!(
        sent as u64 >= summary.requests() && sent as u64 <= summary.requests() + 4,
        "every counted request reached the server, at most one more per worker: {sent} vs {}",
        summary.requests()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        seen.request_count(),
        sent,
        "requests after the run returned"
    );
}

#[tokio::test]
async fn a_cancelled_run_abandons_requests_in_flight_instead_of_waiting_for_them() {
    let (url, seen) = test_server(Behaviour::Silent, None);
    let plan = plan_for(&url, 3, Stop::Duration(Duration::from_secs(60)));
    let cancel = plan.cancel.clone();
    let started = Instant::now();
    let run = tokio::spawn(run(plan));
    eventually("every worker has a request in flight", || {
        seen.request_count() == 3
    })
    .await;
    cancel.cancel();
    let summary = run.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited for the 20 s timeout"
    );
    assert_eq!(summary.requests(), 0, "abandoned requests are not counted");
    eventually("the abandoned connections are closed", || {
        seen.open.load(Ordering::SeqCst) == 0
    })
    .await;
}

#[tokio::test]
async fn dropping_the_run_stops_every_worker() {
    let (url, seen) = test_server(Behaviour::Answer, None);
    let plan = plan_for(&url, 4, Stop::Duration(Duration::from_secs(60)));
    let dropped = tokio::time::timeout(Duration::from_millis(200), run(plan)).await;
    assert!(dropped.is_err(), "the run was still going");
    eventually("the workers' connections are closed", || {
        seen.open.load(Ordering::SeqCst) == 0
    })
    .await;
    let sent = seen.request_count();
    assert!(sent > 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.request_count(), sent, "a worker outlived its run");
}

#[test]
fn ctrl_c_stops_a_cli_run_at_once_and_still_prints_the_report() {
    let (url, seen) = test_server(Behaviour::Answer, None);
    let child = cachelab()
        .args(["load", &url, "-z", "60s", "-c", "2", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.request_count() < 10 {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let interrupted = Instant::now();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(interrupted.elapsed() < Duration::from_secs(2));
    assert_eq!(out.status.code(), Some(0));
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["cancelled"], true);
    assert!(f["requests"].as_u64().unwrap() >= 10, "{f}");
}

#[test]
fn a_concurrency_beyond_the_open_file_limit_is_refused_naming_the_limit() {
    use std::os::unix::process::CommandExt;
    let mut command = cachelab();
    command.args(["load", "http://127.0.0.1:1/", "-c", "1000", "-n", "1000"]);
    // SAFETY: setrlimit is async-signal-safe; it only lowers the child's own limit.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 200,
                rlim_max: 200,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1000 connections") && stderr.contains("limit is 200"),
        "{stderr}"
    );
    assert!(stderr.contains("ulimit -n"), "{stderr}");
}

#[test]
fn the_timeline_has_one_entry_per_interval_and_adds_up_to_the_totals() {
    let (url, _) = test_server(Behaviour::Answer, None);
    let f = load_json(&[&url, "-z", "300ms", "-c", "2", "--interval-ms", "50"]);
    assert_eq!(f["interval_ms"], 50);
    let timeline = f["timeline"].as_array().unwrap();
    assert!((6..=8).contains(&timeline.len()), "{}", timeline.len());
    let sum = |field: &str| -> u64 { timeline.iter().map(|i| i[field].as_u64().unwrap()).sum() };
    assert_eq!(sum("requests"), f["requests"].as_u64().unwrap());
    assert_eq!(sum("ok"), f["ok"].as_u64().unwrap());
    for (i, interval) in timeline.iter().enumerate() {
        assert_eq!(interval["start_ms"], 50 * i as u64);
    }
    let hits: u64 = timeline
        .iter()
        .map(|i| i["cache"]["HIT"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(hits, f["cache"]["HIT"].as_u64().unwrap());
    assert!(
        timeline[1]["p50_ms"].as_f64().unwrap() > 0.0,
        "{}",
        timeline[1]
    );

    let f = load_json(&[&url, "-n", "500", "-c", "4"]);
    let timeline = f["timeline"].as_array().unwrap();
    let total: u64 = timeline
        .iter()
        .map(|i| i["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 500);
}

#[tokio::test]
async fn the_sampler_splits_a_counter_over_the_timeline() {
    let (url, seen) = test_server(Behaviour::Answer, None);
    let mut plan = plan_for(&url, 2, Stop::Duration(Duration::from_millis(250)));
    plan.interval = Duration::from_millis(50);
    let counted = seen.clone();
    let sampler: Sampler = Arc::new(move || counted.request_count() as i64);
    plan.sampler = Some(sampler);
    let summary = run(plan).await;
    let sampled: i64 = summary.timeline.iter().map(|i| i.db_reads.unwrap()).sum();
    assert_eq!(sampled as u64, summary.requests());
    assert!(summary.timeline.len() >= 5);
    assert!(summary.timeline[1].db_reads.unwrap() > 0);
}

#[test]
fn a_mix_sends_gets_and_puts_in_proportion_with_a_unique_name_per_put() {
    let (url, seen) = test_server(Behaviour::Answer, None);
    let f = load_json(&[
        &format!("{url}/users/{{id}}"),
        "-n",
        "2000",
        "-c",
        "4",
        "--mix",
        "get:90,put:10",
    ]);
    assert_eq!(f["ok"], 2000);
    let requests = seen.take_requests();
    let puts: Vec<&String> = requests.iter().filter(|r| r.starts_with("PUT ")).collect();
    let gets = requests.iter().filter(|r| r.starts_with("GET ")).count();
    assert_eq!(puts.len() + gets, 2000);
    assert!(
        (100..=300).contains(&puts.len()),
        "{} PUTs of 2000",
        puts.len()
    );
    let names: HashSet<&str> = puts
        .iter()
        .map(|r| {
            let target = r.split_whitespace().nth(1).unwrap();
            let (path, query) = target.split_once('?').unwrap();
            assert!(path.starts_with("/users/"), "{target}");
            query.strip_prefix("name=").unwrap()
        })
        .collect();
    assert_eq!(names.len(), puts.len(), "a PUT name was reused");
    assert!(requests.iter().filter(|r| r.starts_with("GET ")).all(|r| !r
        .split_whitespace()
        .nth(1)
        .unwrap()
        .contains('?')));
}

#[tokio::test]
async fn a_recorded_history_traces_reads_to_writes_and_is_judged_consistent() {
    let (url, _) = test_server(Behaviour::Store, None);
    let mut plan = plan_for(&format!("{url}/users/{{id}}"), 4, Stop::Requests(600));
    // Ids 21..=25 do not exist: reads of them are None, writes to them fail.
    plan.ids = (1, STORED_USERS + 5);
    plan.mix = Some(Mix { get: 70, put: 30 });
    plan.record_history = true;
    plan.initial_values = (1..=STORED_USERS)
        .map(|id| (id, format!("init{id}")))
        .collect();
    let summary = run(plan).await;
    assert_eq!(summary.requests(), 600);
    assert_eq!(summary.history.len(), 600);
    let mut written: HashMap<u64, HashSet<String>> = HashMap::new();
    for op in &summary.history {
        let complete = op.complete.expect("every request was answered");
        assert!(op.invoke < complete, "{op:?}");
        if op.kind == load::history::OpKind::Write {
            let value = op.value.clone().unwrap();
            assert!(written.entry(op.key).or_default().insert(value), "{op:?}");
            assert_eq!(
                op.ok,
                op.key <= STORED_USERS,
                "a PUT answered 404 failed: {op:?}"
            );
        }
    }
    let mut absent_reads = 0;
    for op in summary
        .history
        .iter()
        .filter(|op| op.kind == load::history::OpKind::Read)
    {
        assert!(op.ok, "{op:?}");
        if op.key > STORED_USERS {
            assert_eq!(op.value, None, "a 404 reads as absent");
            absent_reads += 1;
            continue;
        }
        let value = op.value.as_deref().unwrap();
        assert!(
            value == format!("init{}", op.key) || written[&op.key].contains(value),
            "{op:?}"
        );
    }
    let verdict = summary.consistency.expect("history was recorded");
    assert_eq!(
        verdict.reads as usize,
        600 - written.values().map(HashSet::len).sum::<usize>()
    );
    assert_eq!(verdict.stale_reads, 0, "{verdict:?}");
    // The checker knows no value for ids absent before the run.
    assert_eq!(verdict.unexplained, absent_reads);
}

#[tokio::test]
async fn the_key_trace_lists_every_id_in_sending_order() {
    let (url, seen) = test_server(Behaviour::Answer, None);
    let mut plan = plan_for(&format!("{url}/users/{{id}}"), 1, Stop::Requests(300));
    plan.record_keys = true;
    plan.keys = load::KeyDist::Zipf(1.1);
    let summary = run(plan).await;
    assert_eq!(summary.keys.len(), 300);
    let sent: Vec<u64> = paths(&seen.take_requests())
        .iter()
        .map(|p| p.trim_start_matches("/users/").parse().unwrap())
        .collect();
    assert_eq!(summary.keys, sent);

    let mut plan = plan_for(&format!("{url}/users/{{id}}"), 4, Stop::Requests(300));
    plan.record_keys = true;
    let summary = run(plan).await;
    assert_eq!(summary.keys.len() as u64, summary.requests());
    let mut sorted = summary.keys.clone();
    let mut sent: Vec<u64> = paths(&seen.take_requests())
        .iter()
        .map(|p| p.trim_start_matches("/users/").parse().unwrap())
        .collect();
    sorted.sort_unstable();
    sent.sort_unstable();
    assert_eq!(sorted, sent);
}
