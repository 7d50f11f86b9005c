//! The HTTP servers: one listener per strategy, hyper 1.x with keep-alive, and a graceful
//! shutdown that stops accepting, lets requests in flight finish (up to a bound), and
//! returns.

mod input;
mod routes;

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::strategy::{Backend, Strategy};

/// How long requests in flight may take to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// A running strategy server.
pub struct StrategyServer {
    /// "cache-aside" or "write-through".
    pub name: &'static str,
    pub addr: SocketAddr,
    /// The server's store, cache, counters and knobs; the lab runner reads counters and
    /// turns knobs here.
    pub backend: Arc<Backend>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl StrategyServer {
    /// Bind `addr` (port 0 picks a free one) and serve `strategy` there.
    pub async fn start<S: Strategy>(
        strategy: S,
        backend: Arc<Backend>,
        addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the {} server to {addr}", S::NAME))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::new(strategy),
            backend.clone(),
            stopped,
        ));
        Ok(Self {
            name: S::NAME,
            addr,
            backend,
            stop,
            task,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:8000`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting, drain requests in flight, and wait for the server to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop<S: Strategy>(
    listener: TcpListener,
    strategy: Arc<S>,
    backend: Arc<Backend>,
    mut stopped: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
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
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let strategy = strategy.clone();
        let backend = backend.clone();
        let service = service_fn(move |req| {
            let strategy = strategy.clone();
            let backend = backend.clone();
            async move {
                let started = Instant::now();
                let reply = routes::handle(strategy.as_ref(), &backend, req).await;
                backend.counters.record_latency(started.elapsed());
                Ok::<_, std::convert::Infallible>(reply)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended with an error: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "{}: requests still in flight after {DRAIN_TIMEOUT:?}; closing anyway",
            S::NAME
        );
    }
}
