//! The HTTP servers: one listener per strategy, hyper 1.x with keep-alive, and a graceful
//! shutdown that stops accepting, lets requests in flight finish (up to a bound), stops
//! the strategy's background work, and returns.
//!
//! Hygiene against clients that misbehave: a connection idle for the idle timeout — one
//! between requests, or one still sending its first request head — is closed (one sweep
//! over all connections every few hundred ms, rather than a timer per request), and at
//! most `max_connections` are open at once. At the cap, a newcomer makes the idlest open
//! connection close (see `connections`); if every connection is busy, it waits.

mod connections;
mod input;
mod routes;

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::strategy::{
    Backend, CacheAside, RefreshAhead, Strategy, StrategyKind, WriteBehind, WriteThrough,
};

/// At the connection cap, how often a waiting newcomer asks for an idle connection to
/// close again.
const SHED_RETRY: Duration = Duration::from_millis(50);

/// How long requests in flight may take to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Limits that keep a server serving when clients misbehave.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Open connections at most; more wait to be accepted.
    pub max_connections: usize,
    /// A connection that sends no complete request head for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// A running strategy server.
pub struct StrategyServer {
    /// The strategy's registry name.
    pub name: &'static str,
    pub addr: SocketAddr,
    /// The server's store, cache, counters and knobs; the lab runner reads counters and
    /// turns knobs here.
    pub backend: Arc<Backend>,
    /// Its open connections (the reset waits until none is answering a request).
    connections: Arc<connections::Connections>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl StrategyServer {
    /// Bind `addr` (port 0 picks a free one) and serve the strategy `kind` there: the one
    /// place a registered strategy becomes its type (the compiler asks for a new one's arm).
    pub async fn start(
        kind: StrategyKind,
        backend: Arc<Backend>,
        addr: SocketAddr,
        limits: HttpLimits,
    ) -> anyhow::Result<Self> {
        match kind {
            StrategyKind::CacheAside => Self::serve(CacheAside, backend, addr, limits).await,
            StrategyKind::WriteThrough => Self::serve(WriteThrough, backend, addr, limits).await,
            StrategyKind::WriteBehind => Self::serve(WriteBehind, backend, addr, limits).await,
            StrategyKind::RefreshAhead => Self::serve(RefreshAhead, backend, addr, limits).await,
        }
    }

    async fn serve<S: Strategy>(
        strategy: S,
        backend: Arc<Backend>,
        addr: SocketAddr,
        limits: HttpLimits,
    ) -> anyhow::Result<Self> {
        let listener =
            listen(addr).with_context(|| format!("binding the {} server to {addr}", S::NAME))?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        strategy.start_background(&backend);
        let connections = Arc::new(connections::Connections::default());
        let task = tokio::spawn(accept_loop(
            listener,
            strategy,
            backend.clone(),
            limits,
            connections.clone(),
            stop.clone(),
        ));
        Ok(Self {
            name: S::NAME,
            addr,
            backend,
            connections,
            stop,
            task,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:8000`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Wait (at most `bound`) until no request is being answered and no background task
    /// runs: the per-lab reset must not race the last lab's stragglers.
    pub async fn settle(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        while self.connections.any_busy() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let tasks = &self.backend.tasks;
        tasks.close();
        let _ = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            tasks.wait(),
        )
        .await;
        tasks.reopen();
    }

    /// Stop accepting, drain requests in flight, stop background work (write-behind
    /// flushes what it queued), and wait for the server to end.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
        self.backend.stop.cancel();
        self.backend.tasks.close();
        self.backend.daemons.close();
        let ended = async {
            self.backend.tasks.wait().await;
            self.backend.daemons.wait().await;
        };
        if tokio::time::timeout(Duration::from_secs(10), ended)
            .await
            .is_err()
        {
            tracing::warn!("{}: background work still running after 10 s", self.name);
        }
    }
}

async fn accept_loop<S: Strategy>(
    listener: TcpListener,
    strategy: S,
    backend: Arc<Backend>,
    limits: HttpLimits,
    conns: Arc<connections::Connections>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tasks = tokio_util::task::TaskTracker::new();
    // Idle connections (between requests, or still sending their first head) are closed
    // by one sweep every quarter of the timeout (at most 500 ms).
    let sweep_every =
        (limits.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_millis(500));
    let sweeper = {
        let (conns, stop, timeout) = (conns.clone(), stop.clone(), limits.idle_timeout);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(sweep_every) => conns.sweep(timeout),
                }
            }
        })
    };
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("{}: accept failed: {e}", S::NAME);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        // At the cap: make room by closing the idlest connection, else wait for one to end.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Ask again every few ms: a connection busy now may be idle soon.
                let mut waited = None;
                while waited.is_none() {
                    conns.shed_idlest();
                    tokio::select! {
                        slot = slots.clone().acquire_owned() => waited = slot.ok(),
                        _ = tokio::time::sleep(SHED_RETRY) => {}
                        _ = stop.cancelled() => break,
                    }
                }
                match waited {
                    Some(slot) => slot,
                    None => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (id, record) = conns.open();
        let backend = backend.clone();
        let service = {
            let (conns, record) = (conns.clone(), record.clone());
            service_fn(move |req| {
                let backend = backend.clone();
                let busy = conns.busy(&record);
                async move {
                    let _busy = busy;
                    let started = Instant::now();
                    let reply = routes::handle(strategy, &backend, req).await;
                    backend.counters.record_latency(started.elapsed());
                    Ok::<_, std::convert::Infallible>(reply)
                }
            })
        };
        // No per-request timer: the sweeper below closes idle connections.
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let conns = conns.clone();
        tasks.spawn(async move {
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => Some(ended),
                _ = record.close.notified() => None,
            };
            let ended = match ended {
                Some(ended) => ended,
                // Idle (or still sending its first request head): close it now.
                None if !record.is_busy() => Ok(()),
                None => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    tokio::time::timeout(DRAIN_TIMEOUT, conn)
                        .await
                        .unwrap_or(Ok(()))
                }
            };
            if let Err(e) = ended {
                tracing::debug!("connection ended with an error: {e}");
            }
            conns.closed(id);
            drop(slot);
        });
    }
    drop(listener);
    sweeper.abort();
    conns.close_all();
    tasks.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{}: requests still in flight after {DRAIN_TIMEOUT:?}; closing anyway",
            S::NAME
        );
    }
}

/// Listen on `addr` with room for a burst of connections: a stampede opens hundreds at
/// once, and past a backlog of 128 (what `TcpListener::bind` gave) the kernel drops their
/// SYNs, each retried only a second later. The kernel caps 4096 at `somaxconn`.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
