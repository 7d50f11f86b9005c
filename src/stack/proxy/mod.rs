//! An in-process TCP proxy that can inject faults between the strategy servers and Redis or
//! PostgreSQL. The servers connect through it while a lab's own connections go direct, so a
//! lab can make the servers suffer (latency, an outage, a blackhole, cut connections) and
//! still look inside the data stores. In target mode a proxy also observes: it decodes
//! the app's RESP or Postgres traffic and counts what the app did (`observe`).

mod connection;
mod delay_line;
pub mod kinds;
mod listener;
pub mod observe;
mod own_thread;
mod upstream;

pub use upstream::Upstream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the proxy does to the traffic it carries. No fault (`None` where one is returned)
/// means it forwards faithfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every chunk, in both directions, waits `ms` ± a uniform `jitter_ms` (never below 0)
    /// from its arrival: a slow network, not a slow server, so pipelined requests overlap.
    Latency { ms: u64, jitter_ms: u64 },
    /// New connections are refused and open ones reset: the server process is gone.
    Down,
    /// Connections are accepted and whatever they send is swallowed: a silent network
    /// partition, the fault that only timeouts can detect.
    Blackhole,
}

/// One proxy in front of one upstream. Dropping it stops it too; `shutdown` also waits
/// until every connection has ended.
pub struct FaultProxy {
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listen on a free loopback port and forward every connection to `upstream`
    /// (`host:port`, resolved for each connection, or a Unix socket). `name` labels its log
    /// lines.
    pub async fn start(name: &'static str, upstream: impl Into<Upstream>) -> anyhow::Result<Self> {
        Self::start_with(name, upstream, None).await
    }

    /// The same, decoding and counting what passes through with `observer`.
    pub async fn start_observing(
        name: &'static str,
        upstream: impl Into<Upstream>,
        observer: observe::Observer,
    ) -> anyhow::Result<Self> {
        Self::start_with(name, upstream, Some(observer)).await
    }

    async fn start_with(
        name: &'static str,
        upstream: impl Into<Upstream>,
        observer: Option<observe::Observer>,
    ) -> anyhow::Result<Self> {
        let upstream = upstream.into();
        let (cancel, tasks) = (CancellationToken::new(), TaskTracker::new());
        // Until the proxy exists, an error, a panic or this future being dropped ends its
        // own thread, if it has one.
        let unfinished = cancel.clone().drop_guard();
        // An observing proxy (target mode) carries an app's load test: it gets a thread of
        // its own (`own_thread`). The proxies in front of cachelab's own servers stay on
        // the worker pool, where the labs in `labs/` were measured.
        let runtime = match observer {
            Some(_) => own_thread::start(name, cancel.clone(), tasks.clone())
                .await
                .with_context(|| format!("starting the {name} proxy's thread"))?,
            None => tokio::runtime::Handle::current(),
        };
        // The listener belongs to the runtime that polls it.
        let bound = {
            let _runtime = runtime.enter();
            listener::bind("127.0.0.1:0".parse().expect("a socket address"))
                .and_then(|listener| Ok((listener.local_addr()?, listener)))
        };
        let (addr, listener) = bound.with_context(|| format!("starting the {name} proxy"))?;
        let (control, _) = watch::channel(Control::default());
        let shared = Arc::new(Shared {
            name,
            upstream,
            addr,
            observer,
            runtime,
            listener: Mutex::new(Some(listener)),
            control,
            open: AtomicUsize::new(0),
            cancel,
            tasks,
        });
        shared
            .tasks
            .spawn_on(listener::accept_loop(Arc::clone(&shared)), &shared.runtime);
        tracing::debug!("{name} proxy on {addr} forwards to {}", shared.upstream);
        unfinished.disarm();
        Ok(Self { shared })
    }

    /// The address clients use. It stays the same for the proxy's life, across Down and
    /// heal, so connection pools configured with it reconnect by themselves.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Where it forwards to.
    pub fn upstream(&self) -> &Upstream {
        &self.shared.upstream
    }

    /// Replace the current fault. It applies at once, to open connections as well as new
    /// ones; when it returns, a Down proxy already refuses connections.
    pub fn set(&self, fault: Fault) {
        self.shared.apply(Some(fault));
    }

    /// Cut every open connection once with a reset, as a flaky network or a restarted
    /// middlebox would (toward a Unix-socket upstream, which has no reset, the connection
    /// is closed); the fault in force (if any) stays.
    pub fn reset_connections(&self) {
        self.shared.control.send_modify(|c| c.cuts += 1);
        tracing::info!("{} proxy: connections reset", self.shared.name);
    }

    /// Remove the fault. Connections that were blackholed are cut (their protocol state is
    /// lost); a Down proxy listens again on the same address before this returns (or keeps
    /// trying in the background if the port was taken meanwhile).
    pub fn heal(&self) {
        self.shared.apply(None);
    }

    /// Hold everything the upstream answers `ms` before it goes on to the client (0: not
    /// at all): in front of Postgres, every query's answer comes `ms` later.
    pub fn set_hold(&self, ms: u64) {
        self.shared.control.send_modify(|c| c.hold_ms = ms);
    }

    /// The fault in force, if any.
    pub fn fault(&self) -> Option<Fault> {
        self.shared.control.borrow().fault
    }

    /// Connections being served now, so a lab can see its pool reconnect.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Stop listening, end every connection and wait until their tasks have finished.
    pub async fn shutdown(self) {
        self.shared.close();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// What every task of one proxy shares. The fault travels through a watch channel, so a
/// connection learns of a change when it happens and reads nothing per chunk.
struct Shared {
    name: &'static str,
    upstream: Upstream,
    addr: SocketAddr,
    /// Decodes and counts the traffic (target mode).
    observer: Option<observe::Observer>,
    /// Where the proxy's tasks run (its own thread's, when observing); `set` and `heal`
    /// bind the listener on it from any thread (a lab script's, say).
    runtime: tokio::runtime::Handle,
    /// `None` while Down (really not listening, so connects are refused), after shutdown,
    /// or while a re-bind waits for the port to be free again.
    listener: Mutex<Option<TcpListener>>,
    control: watch::Sender<Control>,
    open: AtomicUsize,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Shared {
    /// Switch to `fault`: close or re-open the listener first, then tell the connections.
    fn apply(&self, fault: Option<Fault>) {
        let mut listener = self.lock_listener();
        if fault == Some(Fault::Down) {
            *listener = None;
        } else if listener.is_none() && !self.cancel.is_cancelled() {
            let _runtime = self.runtime.enter();
            match listener::bind(self.addr) {
                Ok(bound) => *listener = Some(bound),
                // The accept loop keeps trying and says so.
                Err(e) => tracing::debug!("{} proxy: re-binding {}: {e}", self.name, self.addr),
            }
        }
        self.control.send_modify(|c| {
            c.fault = fault;
            match fault {
                Some(Fault::Down) => c.cuts += 1,
                Some(Fault::Blackhole) => c.blackholes += 1,
                _ => {}
            }
        });
        match fault {
            Some(fault) => tracing::info!("{} proxy: {fault:?}", self.name),
            None => tracing::info!("{} proxy: healed", self.name),
        }
    }

    /// Stop accepting and tell every task to end. Safe to call more than once.
    fn close(&self) {
        // Cancel first: a re-bind checks the token under the listener lock.
        self.cancel.cancel();
        self.lock_listener().take();
    }

    fn lock_listener(&self) -> MutexGuard<'_, Option<TcpListener>> {
        // A panic while holding it cannot leave the Option half-written.
        self.listener.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The state connections watch. The counters make an event visible even when the watch
/// channel folds several changes into one (a Down healed before a connection looked).
#[derive(Debug, Clone, Copy, Default)]
struct Control {
    fault: Option<Fault>,
    /// Bumped by every reset and every Down: connections older than the bump are cut.
    cuts: u64,
    /// Bumped whenever a Blackhole is set: connections that lived through one are cut when
    /// it ends.
    blackholes: u64,
    /// How long answers toward the client are held (`set_hold`).
    hold_ms: u64,
}
