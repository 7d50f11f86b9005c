//! `cachelab load` against small local HTTP servers that count what they receive, close
//! connections, go silent, or disappear mid-run: counts are exact, failures are counted by
//! kind, the run always completes, and only bad arguments fail the command.

mod common;

use common::cachelab;
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
}

/// What a test server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: Mutex<Vec<String>>,
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
                let (seen, answered, stop_tx) =
                    (seen_in.clone(), answered.clone(), stop_tx.clone());
                let mut stop_rx = stop_rx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(request) = read_request(&mut stream, &mut buf, &mut stop_rx).await
                        else {
                            return;
                        };
                        seen.requests.lock().unwrap().push(request);
                        if behaviour == Behaviour::Silent {
                            let _ = stop_rx.changed().await;
                            return;
                        }
                        if behaviour == Behaviour::Slow {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        let reply =
                            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Cache: HIT\r\n\r\nok";
                        if stream.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                        let n = answered.fetch_add(1, Ordering::SeqCst) + 1;
                        if limit.is_some_and(|l| n >= l) {
                            let _ = stop_tx.send(true);
                            return;
                        }
                    }
                });
            }
            // Gone: the listener closes when this returns, and so do open connections.
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
    });
    let port = rx.recv().unwrap();
    (format!("http://127.0.0.1:{port}"), seen)
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
    assert_eq!(f["cache_hits"], 50);
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
    assert!(f["total_secs"].as_f64().unwrap() >= 0.25, "{f}");
    // -q is per worker: 2 workers at 20/s send 5 requests each, the last ones 0.2 s in.
    let f = load_json(&[&url, "-n", "10", "-c", "2", "-q", "20"]);
    assert!(f["total_secs"].as_f64().unwrap() >= 0.2, "{f}");
    let f = load_json(&[&url, "-z", "500ms", "-c", "2"]);
    let secs = f["total_secs"].as_f64().unwrap();
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
    assert!(f["p50"].as_f64().unwrap() >= 250.0, "{f}");
    assert!(f["max"].as_f64().unwrap() >= 400.0, "{f}");
}

#[test]
fn text_output_follows_hey() {
    let (url, _) = test_server(Behaviour::Answer, None);
    let out = cachelab()
        .args(["load", &url, "-n", "40", "-c", "4"])
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
    ] {
        let out = cachelab().arg("load").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }
}
