//! The HTTP servers against clients that misbehave (issue #9): a request head that never
//! ends, keep-alive connections left idle, more connections than the cap, and a flood of
//! idle connections. Each test runs a cache-aside server in-process with its own
//! `HttpLimits` over the shared managed stack, and talks raw TCP as such clients do.

mod common;

use cachelab::server::HttpLimits;
use cachelab::services::{ServerOptions, Services};
use common::{serial, shared_stack};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE: Duration = Duration::from_secs(2);

/// A cache-aside server with these limits.
async fn server_with(limits: HttpLimits) -> Services {
    let mut options = ServerOptions::loopback(60);
    options.strategies = vec![cachelab::strategy::StrategyKind::CacheAside];
    options.http = limits;
    Services::start(shared_stack(), &options)
        .await
        .expect("starting the server")
}

fn addr(services: &Services) -> std::net::SocketAddr {
    services.servers[0].addr
}

async fn connect(services: &Services) -> TcpStream {
    let stream = TcpStream::connect(addr(services)).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    stream
}

/// Send a keep-alive GET on `stream`; its status code (reads exactly one response).
async fn request(stream: &mut TcpStream, path: &str) -> u16 {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("sending a request");
    read_response(stream).await
}

/// Read one whole response (head and a Content-Length body); its status code.
async fn read_response(stream: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("reading a response");
        assert!(n > 0, "the connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = buf.len() - head_end;
    while body < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("reading a body");
        assert!(n > 0, "the connection closed mid-body");
        body += n;
    }
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Wait (at most `bound`) for the server to close `stream`; how long that took.
async fn closed_after(stream: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(
            bound.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            // A 408 or the like before closing is fine.
            Ok(Ok(_)) => {}
        }
    }
}

fn assert_closed_near_the_idle_timeout(what: &str, closed: Option<Duration>) {
    let took = closed.unwrap_or_else(|| panic!("{what}: still open after 6 s"));
    assert!(
        took >= IDLE - Duration::from_millis(300) && took <= IDLE + Duration::from_millis(1500),
        "{what}: closed after {took:?}; the idle timeout is {IDLE:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_half_a_request_head_is_disconnected_after_the_idle_timeout() {
    let _turn = serial().await;
    let services = server_with(HttpLimits {
        max_connections: 50,
        idle_timeout: IDLE,
    })
    .await;
    let mut slow = connect(&services).await;
    slow.write_all(b"GET /users/1 HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    let closed = closed_after(&mut slow, Duration::from_secs(6)).await;
    assert_closed_near_the_idle_timeout("half a request head", closed);
    let mut fresh = connect(&services).await;
    assert_eq!(request(&mut fresh, "/users/1").await, 200);
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let _turn = serial().await;
    let services = server_with(HttpLimits {
        max_connections: 50,
        idle_timeout: IDLE,
    })
    .await;
    let mut client = connect(&services).await;
    assert_eq!(request(&mut client, "/users/1").await, 200);
    // Within the timeout the connection is kept alive and serves again.
    tokio::time::sleep(IDLE / 2).await;
    assert_eq!(request(&mut client, "/users/2").await, 200);
    let closed = closed_after(&mut client, Duration::from_secs(6)).await;
    assert_closed_near_the_idle_timeout("an idle keep-alive connection", closed);
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_a_newcomer_is_served_by_closing_the_longest_idle_connection() {
    let _turn = serial().await;
    // A longer idle timeout than the other tests: the 50 would stay open on their own
    // for the whole test.
    let services = server_with(HttpLimits {
        max_connections: 50,
        idle_timeout: Duration::from_secs(10),
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut stream = connect(&services).await;
        assert_eq!(request(&mut stream, "/users/1").await, 200);
        held.push(stream);
    }
    let started = Instant::now();
    let mut extra = TcpStream::connect(addr(&services))
        .await
        .expect("the 51st connection is not refused");
    extra
        .write_all(b"GET /users/3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(2), read_response(&mut extra))
        .await
        .expect("the newcomer is served");
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "served after {:?}",
        started.elapsed()
    );
    // The one idle longest (the first) made room: the server closed it.
    let closed = closed_after(&mut held[0], Duration::from_secs(2)).await;
    assert!(closed.is_some(), "the longest-idle connection was closed");
    // The others are still open and served.
    for stream in held.iter_mut().skip(1).take(5) {
        assert_eq!(request(stream, "/users/2").await, 200);
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_with_every_connection_busy_a_newcomer_waits_for_one_to_finish() {
    let _turn = serial().await;
    let services = server_with(HttpLimits {
        max_connections: 2,
        idle_timeout: Duration::from_secs(10),
    })
    .await;
    services.knobs.update(|k| k.db_delay_ms = 800);
    // Two slow requests keep both connections busy.
    let mut busy = Vec::new();
    for id in [101, 102] {
        let mut stream = connect(&services).await;
        stream
            .write_all(format!("GET /users/{id} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(addr(&services))
        .await
        .expect("not refused");
    extra
        .write_all(b"GET /users/3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut peek = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), extra.peek(&mut peek)).await;
    assert!(early.is_err(), "no busy connection is cut for a newcomer");
    for stream in busy.iter_mut() {
        assert_eq!(read_response(stream).await, 200, "the busy ones finish");
    }
    let status = tokio::time::timeout(Duration::from_secs(3), read_response(&mut extra))
        .await
        .expect("the newcomer is served once a busy connection is idle");
    assert_eq!(status, 200);
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_do_not_keep_a_fresh_request_waiting_past_the_idle_timeout() {
    let _turn = serial().await;
    let services = server_with(HttpLimits {
        max_connections: 50,
        idle_timeout: IDLE,
    })
    .await;
    let target = addr(&services);
    let opening: Vec<_> = (0..2000)
        .map(|_| tokio::spawn(TcpStream::connect(target)))
        .collect();
    // The flood is under way; a user now asks for something.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let fresh = tokio::spawn(async move {
        let mut stream = TcpStream::connect(target).await?;
        stream
            .write_all(b"GET /users/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        Ok::<_, std::io::Error>(read_response(&mut stream).await)
    });
    let bound = IDLE + Duration::from_secs(4);
    let answer = tokio::time::timeout(bound, fresh).await;
    let waited = started.elapsed();
    let mut idle = Vec::new();
    for open in opening {
        if let Ok(Ok(Ok(stream))) = tokio::time::timeout(Duration::from_millis(1), open).await {
            idle.push(stream);
        }
    }
    let opened = idle.len();
    drop(idle);
    services.shutdown().await;
    match answer {
        Ok(Ok(Ok(status))) => assert_eq!(status, 200),
        other => panic!(
            "with 2000 idle connections ({opened} connected) a fresh request got no answer within {waited:?} ({other:?}); the idle timeout is {IDLE:?} and the cap 50"
        ),
    }
}
