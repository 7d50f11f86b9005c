//! The fault proxy as its clients see it: an echo server behind it shows what each fault
//! does to round trips, connects and open connections; a real redis-server shows that a
//! Redis client behaves through it as through a slow, dead or healthy network.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachelab::stack::proxy::observe::{Observed, Observer, Protocol};
use cachelab::stack::proxy::{Fault, FaultProxy, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// An upstream that echoes every byte and half-closes when its client does. Each connection
/// it has served sends one message on the returned channel when it ends.
async fn echo_server() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended, ended_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let ended = ended.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
                let _ = ended.send(());
            });
        }
    });
    (addr, ended_rx)
}

/// The two kinds of proxy: a lab's fault proxy, on the process's worker pool, and target
/// mode's observing proxy, on a thread of its own. Each fault must act the same on both.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Fault,
    Observing,
}

const KINDS: [Kind; 2] = [Kind::Fault, Kind::Observing];

/// A RESP observer. An echo is not RESP: the decoder gives up on it and only watches.
fn observer() -> Observer {
    Observer {
        protocol: Protocol::Redis {
            is_cache_key: Arc::new(|_: &str| true),
        },
        observed: Arc::new(Observed::default()),
    }
}

async fn proxy_to_echo(kind: Kind) -> (FaultProxy, mpsc::UnboundedReceiver<()>) {
    let (upstream, ended) = echo_server().await;
    (start(kind, "echo", upstream).await, ended)
}

async fn start(kind: Kind, name: &'static str, upstream: SocketAddr) -> FaultProxy {
    match kind {
        Kind::Fault => FaultProxy::start(name, upstream.to_string()).await,
        Kind::Observing => {
            FaultProxy::start_observing(name, upstream.to_string(), observer()).await
        }
    }
    .unwrap()
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connecting to the proxy");
    stream.set_nodelay(true).unwrap();
    stream
}

/// Send `message` and wait for its echo; how long that took.
async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Duration {
    let started = Instant::now();
    stream.write_all(message).await.unwrap();
    let mut echo = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echo))
        .await
        .expect("an echo within 5 s")
        .expect("reading the echo");
    assert_eq!(echo, message);
    started.elapsed()
}

/// The proxy cut `stream` with a reset (not a clean end), and promptly.
async fn assert_was_reset(stream: &mut TcpStream) {
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf))
        .await
        .expect("the connection ends within 1 s");
    match read {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("expected a reset, read {n} bytes"),
    }
}

/// Within `within`, the client's connection ends without data and the upstream (the echo
/// server) sees its connection end.
async fn assert_both_ends_closed(
    client: &mut TcpStream,
    upstream_ended: &mut mpsc::UnboundedReceiver<()>,
    within: Duration,
) {
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(within, client.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("the client connection ends within {within:?}"));
    assert!(!matches!(read, Ok(n) if n > 0), "got data: {read:?}");
    tokio::time::timeout(within, upstream_ended.recv())
        .await
        .unwrap_or_else(|_| panic!("the upstream connection ends within {within:?}"));
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_healthy_proxy_echoes_counts_the_connection_and_carries_a_half_close() {
    for kind in KINDS {
        eprintln!("{kind:?} proxy");
        let (proxy, _) = proxy_to_echo(kind).await;
        let mut client = connect(proxy.addr()).await;
        round_trip(&mut client, b"hello").await;
        assert_eq!(proxy.open_connections(), 1);
        assert_eq!(proxy.fault(), None);

        // A megabyte, then end of stream: all of it comes back, then the end.
        let sent: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let (mut read, mut write) = client.into_split();
        let writer = tokio::spawn({
            let sent = sent.clone();
            async move {
                write.write_all(&sent).await.unwrap();
                write.shutdown().await.unwrap();
            }
        });
        let mut received = Vec::new();
        read.read_to_end(&mut received).await.unwrap();
        writer.await.unwrap();
        assert!(received == sent, "the echo differs from what was sent");
        wait_until("the closed connection is no longer counted", || {
            proxy.open_connections() == 0
        })
        .await;
    }
}

#[tokio::test]
async fn latency_delays_both_directions_on_open_and_new_connections_until_healed() {
    for kind in KINDS {
        eprintln!("{kind:?} proxy");
        let (proxy, _) = proxy_to_echo(kind).await;
        let mut open = connect(proxy.addr()).await;
        round_trip(&mut open, b"warm").await;

        proxy.set(Fault::Latency {
            ms: 100,
            jitter_ms: 0,
        });
        assert_eq!(
            proxy.fault(),
            Some(Fault::Latency {
                ms: 100,
                jitter_ms: 0
            })
        );
        let mut new = connect(proxy.addr()).await;
        for client in [&mut open, &mut new] {
            let took = round_trip(client, b"ping").await;
            assert!(
                took >= Duration::from_millis(200) && took < Duration::from_millis(400),
                "a round trip under 100 ms latency took {took:?}"
            );
        }

        proxy.heal();
        let took = round_trip(&mut open, b"ping").await;
        assert!(took < Duration::from_millis(50), "healed, it took {took:?}");
    }
}

#[tokio::test]
async fn jitter_varies_round_trips_within_its_bounds() {
    for kind in KINDS {
        eprintln!("{kind:?} proxy");
        let (proxy, _) = proxy_to_echo(kind).await;
        proxy.set(Fault::Latency {
            ms: 50,
            jitter_ms: 20,
        });
        let mut client = connect(proxy.addr()).await;
        let mut took = Vec::new();
        for _ in 0..10 {
            took.push(round_trip(&mut client, b"ping").await);
        }
        let (min, max) = (took.iter().min().unwrap(), took.iter().max().unwrap());
        // Two ways of 50 ± 20 ms each: 60..=140 ms, with room for a busy machine above.
        assert!(*min >= Duration::from_millis(60), "{took:?}");
        assert!(*max < Duration::from_millis(240), "{took:?}");
        assert!(
            *max - *min > Duration::from_millis(5),
            "no jitter seen: {took:?}"
        );
    }
}

#[tokio::test]
async fn pipelined_messages_under_latency_overlap_their_delays() {
    for kind in KINDS {
        eprintln!("{kind:?} proxy");
        let (proxy, _) = proxy_to_echo(kind).await;
        proxy.set(Fault::Latency {
            ms: 100,
            jitter_ms: 0,
        });
        let client = connect(proxy.addr()).await;
        let (mut read, mut write) = client.into_split();
        let started = Instant::now();
        // 100 messages arriving as separate chunks a few ms apart. On a delay line each one's
        // round trip is 200 ms however many are in flight; delaying each read in turn would
        // add the rest of the previous delay to the next chunk (up to ~300 ms) or, without
        // batching, take 100 × 200 ms in all.
        let writer = tokio::spawn(async move {
            let mut sent_at = Vec::new();
            for i in 0..100u32 {
                sent_at.push(Instant::now());
                write.write_all(&i.to_be_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (write, sent_at)
        });
        let mut echoed_at = Vec::new();
        for i in 0..100u32 {
            let mut echo = [0u8; 4];
            read.read_exact(&mut echo).await.unwrap();
            echoed_at.push(Instant::now());
            assert_eq!(u32::from_be_bytes(echo), i, "echoes out of order");
        }
        let took = started.elapsed();
        let (_write, sent_at) = writer.await.unwrap();
        let round_trips: Vec<Duration> = echoed_at
            .iter()
            .zip(&sent_at)
            .map(|(e, s)| *e - *s)
            .collect();
        for (i, rt) in round_trips.iter().enumerate() {
            assert!(
                *rt >= Duration::from_millis(200) && *rt < Duration::from_millis(280),
                "message {i} took {rt:?} under 100 ms latency each way"
            );
        }
        assert!(
            took < Duration::from_secs(1),
            "100 pipelined messages took {took:?}"
        );
    }
}

#[tokio::test]
async fn down_refuses_new_connections_resets_open_ones_and_heal_listens_on_the_same_address() {
    for kind in KINDS {
        eprintln!("{kind:?} proxy");
        let (proxy, _) = proxy_to_echo(kind).await;
        let addr = proxy.addr();
        let mut open = connect(addr).await;
        round_trip(&mut open, b"before").await;

        proxy.set(Fault::Down);
        assert_was_reset(&mut open).await;
        let refused = TcpStream::connect(addr)
            .await
            .expect_err("connect while down");
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
        wait_until("the cut connection is no longer counted", || {
            proxy.open_connections() == 0
        })
        .await;

        proxy.heal();
        assert_eq!(proxy.addr(), addr);
        let mut again = connect(addr).await;
        round_trip(&mut again, b"after").await;

        // Down and heal again, back to back: still the same address, still serving.
        proxy.set(Fault::Down);
        proxy.heal();
        assert_was_reset(&mut again).await;
        round_trip(&mut connect(addr).await, b"twice").await;
    }
}

#[tokio::test]
async fn blackhole_answers_nothing_and_heal_cuts_what_it_swallowed() {
    for kind in KINDS {
        eprintln!("{kind:?} proxy");
        let (proxy, _) = proxy_to_echo(kind).await;
        let mut before = connect(proxy.addr()).await;
        round_trip(&mut before, b"before").await;

        proxy.set(Fault::Blackhole);
        let mut during = connect(proxy.addr()).await;
        for client in [&mut before, &mut during] {
            client.write_all(b"anyone?").await.unwrap();
            let mut buf = [0u8; 16];
            let answer =
                tokio::time::timeout(Duration::from_millis(300), client.read(&mut buf)).await;
            assert!(answer.is_err(), "a blackhole answered: {answer:?}");
        }

        proxy.heal();
        assert_was_reset(&mut before).await;
        assert_was_reset(&mut during).await;
        round_trip(&mut connect(proxy.addr()).await, b"after").await;
    }
}

#[tokio::test]
async fn reset_cuts_open_connections_once_and_keeps_the_fault() {
    for kind in KINDS {
        eprintln!("{kind:?} proxy");
        let (proxy, _) = proxy_to_echo(kind).await;
        let latency = Fault::Latency {
            ms: 10,
            jitter_ms: 0,
        };
        proxy.set(latency);
        let mut first = connect(proxy.addr()).await;
        let mut second = connect(proxy.addr()).await;
        round_trip(&mut first, b"one").await;
        round_trip(&mut second, b"two").await;
        assert_eq!(proxy.open_connections(), 2);

        proxy.reset_connections();
        assert_was_reset(&mut first).await;
        assert_was_reset(&mut second).await;
        assert_eq!(proxy.fault(), Some(latency));
        wait_until("the cut connections are no longer counted", || {
            proxy.open_connections() == 0
        })
        .await;

        let mut later = connect(proxy.addr()).await;
        let took = round_trip(&mut later, b"three").await;
        assert!(took >= Duration::from_millis(20), "latency kept: {took:?}");
    }
}

#[tokio::test]
async fn a_dead_upstream_closes_the_client_connection() {
    let nothing_there = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = nothing_there.local_addr().unwrap();
    drop(nothing_there);
    for kind in KINDS {
        eprintln!("{kind:?} proxy");
        let proxy = start(kind, "dead", upstream).await;
        let mut client = connect(proxy.addr()).await;
        let _ = client.write_all(b"hello?").await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(1), client.read(&mut buf))
            .await
            .expect("the client hears within 1 s");
        assert!(!matches!(read, Ok(n) if n > 0), "got an answer: {read:?}");
    }
}

#[tokio::test]
async fn shutdown_ends_every_connection_and_stops_listening() {
    for kind in KINDS {
        eprintln!("{kind:?} proxy");
        let (proxy, mut upstream_ended) = proxy_to_echo(kind).await;
        let addr = proxy.addr();
        let mut client = connect(addr).await;
        round_trip(&mut client, b"hello").await;
        proxy.set(Fault::Latency {
            ms: 1000,
            jitter_ms: 0,
        });

        proxy.shutdown().await;
        // Every connection task has finished when shutdown returns: both ends are closed.
        assert_both_ends_closed(&mut client, &mut upstream_ended, Duration::from_millis(200)).await;
        let refused = TcpStream::connect(addr)
            .await
            .expect_err("connect after shutdown");
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    }
}

/// How many of this process's threads the OS names `comm` (at most 15 bytes of a name).
fn threads_named(comm: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == comm)
        .count()
}

#[tokio::test]
async fn a_dropped_observing_proxy_ends_its_connections_and_its_thread() {
    let (upstream, mut upstream_ended) = echo_server().await;
    // A name no other test uses, so its thread ("NAME proxy") is this proxy's.
    let proxy = FaultProxy::start_observing("dropped", upstream.to_string(), observer())
        .await
        .unwrap();
    assert_eq!(threads_named("dropped proxy"), 1);
    let mut client = connect(proxy.addr()).await;
    round_trip(&mut client, b"hello").await;

    drop(proxy);
    assert_both_ends_closed(&mut client, &mut upstream_ended, Duration::from_secs(1)).await;
    wait_until("the proxy's thread has ended", || {
        threads_named("dropped proxy") == 0
    })
    .await;
}

#[tokio::test]
async fn an_observing_proxy_abandoned_while_starting_ends_its_thread() {
    let (upstream, _) = echo_server().await;
    // The start is abandoned only if its first poll leaves it waiting for the thread's
    // runtime; on a busy machine the thread can win that race, so try a few times.
    for _ in 0..20 {
        let mut start = Box::pin(FaultProxy::start_observing(
            "abandoned",
            upstream.to_string(),
            observer(),
        ));
        let first =
            std::future::poll_fn(|cx| std::task::Poll::Ready(start.as_mut().poll(cx))).await;
        if let std::task::Poll::Ready(proxy) = first {
            drop(proxy);
            wait_until("a started proxy's thread has ended", || {
                threads_named("abandoned proxy") == 0
            })
            .await;
            continue;
        }
        // Let the thread hand its runtime over, then give up on the start, as a timeout or
        // Ctrl-C would.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(threads_named("abandoned proxy"), 1);
        drop(start);
        wait_until("the abandoned proxy's thread has ended", || {
            threads_named("abandoned proxy") == 0
        })
        .await;
        return;
    }
    panic!("the start never waited for its thread in 20 tries");
}

#[tokio::test]
async fn a_reset_cuts_a_connection_that_never_stops_streaming() {
    for kind in KINDS {
        eprintln!("{kind:?} proxy");
        let (proxy, _) = proxy_to_echo(kind).await;
        let (mut read, mut write) = connect(proxy.addr()).await.into_split();
        let writer = tokio::spawn(async move {
            let chunk = vec![7u8; 64 * 1024];
            while write.write_all(&chunk).await.is_ok() {}
        });
        let mut buf = vec![0u8; 64 * 1024];
        let mut echoed = 0;
        while echoed < 4 * 1024 * 1024 {
            let n = read.read(&mut buf).await.unwrap();
            assert!(n > 0, "the echo ended early");
            echoed += n;
        }

        // Data is still flowing both ways when the cut comes.
        proxy.reset_connections();
        let ended = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match read.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => continue,
                    Err(e) => return Err(e),
                }
            }
        })
        .await
        .expect("the streaming connection is cut within 1 s");
        let e = ended.expect_err("a reset, not a clean end");
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        tokio::time::timeout(Duration::from_secs(1), writer)
            .await
            .expect("the writer fails within 1 s")
            .unwrap();
        wait_until("the cut connection is no longer counted", || {
            proxy.open_connections() == 0
        })
        .await;
    }
}

#[tokio::test]
async fn a_blackhole_ended_by_another_fault_cuts_what_it_swallowed() {
    for kind in KINDS {
        eprintln!("{kind:?} proxy");
        let (proxy, _) = proxy_to_echo(kind).await;
        let mut client = connect(proxy.addr()).await;
        round_trip(&mut client, b"before").await;
        proxy.set(Fault::Blackhole);
        client.write_all(b"lost").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        let latency = Fault::Latency {
            ms: 10,
            jitter_ms: 0,
        };
        proxy.set(latency);
        assert_was_reset(&mut client).await;
        let took = round_trip(&mut connect(proxy.addr()).await, b"after").await;
        assert!(
            took >= Duration::from_millis(20),
            "latency in force: {took:?}"
        );
    }
}

#[tokio::test]
async fn a_redis_client_through_the_proxy_feels_latency_and_down() {
    let dir = tempfile::tempdir().unwrap();
    let redis_server = cachelab::stack::ManagedRedis::start(dir.path()).unwrap();
    let upstream = Upstream::Tcp(format!("127.0.0.1:{}", redis_server.port()));
    feels_latency_and_down(upstream, &redis_server).await;
}

#[tokio::test]
async fn through_the_managed_redis_unix_socket_too_and_down_ends_the_upstream_connection() {
    let dir = tempfile::tempdir().unwrap();
    let redis_server = cachelab::stack::ManagedRedis::start(dir.path()).unwrap();
    let socket = redis_server
        .socket()
        .expect("a managed Redis in a short temp dir listens on a Unix socket");
    feels_latency_and_down(Upstream::Unix(socket), &redis_server).await;
}

/// Socket clients of `redis_server` (CLIENT LIST's `U` flag), asked over TCP.
async fn unix_clients(redis_server: &cachelab::stack::ManagedRedis) -> usize {
    let direct = redis::Client::open(redis_server.url()).unwrap();
    let mut direct = direct.get_multiplexed_async_connection().await.unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut direct)
        .await
        .unwrap();
    list.lines()
        .filter(|line| {
            line.split(' ')
                .any(|field| field.starts_with("flags=") && field.contains('U'))
        })
        .count()
}

/// A Redis client through a proxy to `upstream` (`redis_server`, over TCP or its socket):
/// healthy, then slow, then Down, then healed. Over the socket, Redis sees the proxy's
/// connection there, and Down ends it.
async fn feels_latency_and_down(upstream: Upstream, redis_server: &cachelab::stack::ManagedRedis) {
    let over_socket = matches!(upstream, Upstream::Unix(_));
    let proxy = FaultProxy::start("redis", upstream).await.unwrap();
    let client = redis::Client::open(format!("redis://{}/", proxy.addr())).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();

    proxy.set(Fault::Latency {
        ms: 30,
        jitter_ms: 0,
    });
    let started = Instant::now();
    let value: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, "v");
    if over_socket {
        assert_eq!(
            unix_clients(redis_server).await,
            1,
            "the proxy reached Redis on its socket"
        );
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(60), "GET took {took:?}");

    proxy.set(Fault::Down);
    let started = Instant::now();
    let failed = tokio::time::timeout(
        Duration::from_secs(2),
        redis::cmd("GET").arg("k").query_async::<String>(&mut conn),
    )
    .await
    .expect("the GET ends within 2 s");
    assert!(failed.is_err(), "GET through a Down proxy: {failed:?}");
    assert!(started.elapsed() < Duration::from_millis(500));
    if over_socket {
        let deadline = Instant::now() + Duration::from_secs(2);
        while unix_clients(redis_server).await > 0 {
            assert!(
                Instant::now() < deadline,
                "Down left the upstream connection open"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    proxy.heal();
    let mut fresh = client.get_multiplexed_async_connection().await.unwrap();
    let value: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut fresh)
        .await
        .unwrap();
    assert_eq!(value, "v");
}
