//! The state of the lab being run, reachable from every registered function.
//!
//! Each lab runs on a thread of its own, so the context lives in a thread-local: the
//! functions capture nothing and the same registration serves `cachelab api`, which lists
//! them without any stack behind them. Everything a lab opens (its Redis connection, its
//! Postgres session, requests and loads in the background) belongs to the context and
//! ends with it, so nothing a lab does reaches the next one.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::convert::{lab_error, LabResult};
use super::frozen::Frozen;
use crate::report::{Event, LabRecord};
use crate::services::Services;
use crate::store::lab::LabDb;

/// The HTTP client labs use: pooled keep-alive connections, dropped when idle a little
/// sooner than the servers close them, so a pooled connection is never closed under a
/// request.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Why a lab stopped before its end, when it was not a script error.
#[derive(Debug, Clone)]
pub enum Halt {
    /// `assert` or `assert_eq` failed with this message.
    Assert(String),
    /// The lab ran past `--timeout`.
    Timeout,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// Something a lab started in the background and collects with a `*_wait` call.
pub enum Pending {
    Http(JoinHandle<Result<serde_json::Value, String>>),
    /// A load (its figures and history) and its label in the report.
    Load(
        JoinHandle<(serde_json::Value, Vec<crate::load::history::Op>)>,
        String,
    ),
}

/// What a lab may reach beyond cachelab's own servers.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// Hosts (`host` or `host:port`) given with `--allow-host`.
    pub allowed_hosts: Vec<String>,
    /// Where `save_history` may write (`--history-dir`); nowhere without it.
    pub history_dir: Option<PathBuf>,
    /// Target mode (`--target`): the user's app, where relative paths go.
    pub target: Option<std::sync::Arc<crate::target::Target>>,
}

/// Everything a lab function may touch.
pub struct LabContext {
    pub services: Arc<Services>,
    pub runtime: tokio::runtime::Handle,
    pub http: HttpClient,
    pub deadline: Instant,
    /// Cancelled when the lab ends: loads and requests it started stop with it.
    pub cancel: CancellationToken,
    pub reach: Reach,
    /// The folder of the lab file (imports resolve there).
    pub folder: PathBuf,
    /// The strategy relative paths go to.
    pub strategy: RefCell<String>,
    /// Which of its instances (`use_instance`).
    pub instance: Cell<usize>,
    pub record: RefCell<LabRecord>,
    pub halt: RefCell<Option<Halt>>,
    pub pending: RefCell<HashMap<i64, Pending>>,
    next_handle: Cell<i64>,
    /// The lab's own Redis connection, opened on first use (on a cluster, routed by key).
    redis: RefCell<Option<crate::cache::RedisConn>>,
    /// What that Redis says of its commands, read on a lab's first raw command.
    commands: RefCell<Option<std::rc::Rc<crate::lab::redis_guard::CommandTable>>>,
    /// The lab's own Postgres session, opened on first use.
    pub db: RefCell<LabDb>,
    /// The field names of the maps lab functions last returned, by function: what a
    /// misspelt field is compared against.
    pub shapes: RefCell<HashMap<&'static str, Vec<String>>>,
    /// The history of the last load run with `history: true`.
    pub last_history: RefCell<Vec<crate::load::history::Op>>,
    /// What `pause()` froze, continued at the latest when the lab ends.
    pub frozen: RefCell<Vec<Frozen>>,
}

/// Create or replace the regular file at `path`, never following a symlink planted there
/// (it could point anywhere the user may write) and never opening anything but a regular
/// file (a FIFO would block the lab, a device would take the history).
fn create_plain_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::other("a symlink is there; refusing to follow it"),
            Some(libc::ENXIO) => {
                std::io::Error::other("not a regular file; refusing to write to it")
            }
            _ => e,
        })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "not a regular file; refusing to write to it",
        ));
    }
    file.set_len(0)?;
    Ok(file)
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<LabContext>>> = const { RefCell::new(None) };
}

/// Make `ctx` the current lab of this thread.
pub fn enter(ctx: Rc<LabContext>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(ctx));
}

/// Leave the current lab.
pub fn leave() {
    CURRENT.with(|c| c.borrow_mut().take());
}

/// Run `f` with the current lab. Outside a lab (impossible in `cachelab run`) it is an error.
///
/// A lab that was stopped (its deadline passed, an assert failed, Ctrl-C) gets the stop
/// again from every lab function it calls: nothing it does after the stop — a check
/// least of all — can count.
pub fn with<R>(f: impl FnOnce(&LabContext) -> LabResult<R>) -> LabResult<R> {
    let ctx = CURRENT.with(|c| c.borrow().clone());
    match ctx {
        Some(ctx) => {
            ctx.still_running()?;
            f(&ctx)
        }
        None => Err(lab_error(
            "lab functions can only be called while a lab runs",
        )),
    }
}

impl LabContext {
    /// A lab that starts now, sends relative paths to cache-aside, and must end by `deadline`.
    pub fn new(
        services: Arc<Services>,
        runtime: tokio::runtime::Handle,
        deadline: Instant,
        reach: Reach,
        folder: PathBuf,
    ) -> Self {
        let db = LabDb::new(
            services.stack.database_lab_url.clone(),
            !services.stack.may_reset_data,
            !services.stack.postgres_managed,
        );
        Self {
            services,
            runtime,
            http: Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(5))
                .build_http(),
            deadline,
            cancel: CancellationToken::new(),
            reach,
            folder,
            strategy: RefCell::new("cache-aside".to_string()),
            instance: Cell::new(0),
            record: RefCell::new(LabRecord::default()),
            halt: RefCell::new(None),
            pending: RefCell::new(HashMap::new()),
            next_handle: Cell::new(0),
            redis: RefCell::new(None),
            commands: RefCell::new(None),
            db: RefCell::new(db),
            shapes: RefCell::new(HashMap::new()),
            last_history: RefCell::new(Vec::new()),
            frozen: RefCell::new(Vec::new()),
        }
    }

    /// Wait for `future` on the runtime, but no longer than the lab's deadline and not past
    /// a Ctrl-C.
    pub fn block_on<T>(&self, future: impl Future<Output = T>) -> LabResult<T> {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let shutdown = crate::shutdown::token();
        let outcome = self.runtime.block_on(async {
            tokio::select! {
                value = future => Ok(value),
                _ = tokio::time::sleep_until(deadline) => Err(Halt::Timeout),
                _ = shutdown.cancelled() => Err(Halt::Interrupted),
            }
        });
        outcome.map_err(|halt| self.halt_with(halt))
    }

    /// Record why the lab stops and return the error that unwinds the script. It is a
    /// termination, which Rhai's `try` does not catch: a stopped lab cannot catch its stop
    /// and go on to pass.
    pub fn halt_with(&self, halt: Halt) -> Box<rhai::EvalAltResult> {
        let first = self.halt.borrow_mut().get_or_insert(halt).clone();
        let message = match first {
            Halt::Assert(m) => format!("assert failed: {m}"),
            Halt::Timeout => "the lab ran past its --timeout".to_string(),
            Halt::Interrupted => "interrupted".to_string(),
        };
        Box::new(rhai::EvalAltResult::ErrorTerminated(
            message.into(),
            rhai::Position::NONE,
        ))
    }

    /// The stop, if the lab was stopped or its deadline has passed (or Ctrl-C came).
    fn still_running(&self) -> LabResult<()> {
        let halt = self.halt.borrow().clone();
        let halt = halt.or_else(|| {
            if crate::shutdown::requested() {
                Some(Halt::Interrupted)
            } else if Instant::now() >= self.deadline {
                Some(Halt::Timeout)
            } else {
                None
            }
        });
        match halt {
            Some(halt) => Err(self.halt_with(halt)),
            None => Ok(()),
        }
    }

    /// The base URL of the current strategy's server (its current instance).
    pub fn base_url(&self) -> LabResult<String> {
        if let Some(target) = &self.reach.target {
            return Ok(target.url.clone());
        }
        self.current_instance().map(|i| i.url())
    }

    /// The current strategy's current instance (`use_strategy`, `use_instance`).
    pub fn current_instance(&self) -> LabResult<crate::services::Instance> {
        let name = self.strategy.borrow().clone();
        let index = self.instance.get();
        let all = self.services.instances(&name);
        if all.is_empty() {
            return Err(lab_error(format!("no {name} server is running")));
        }
        all.get(index).cloned().ok_or_else(|| {
            lab_error(format!(
                "{name} runs {} instance(s) now; use_instance({index}) points past them",
                all.len()
            ))
        })
    }

    /// `path` made absolute against the current strategy's server. An absolute URL must
    /// point at one of cachelab's servers or a host allowed with `--allow-host`.
    pub fn url_for(&self, path: &str) -> LabResult<String> {
        if let Some(rest) = path.strip_prefix("http://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if self.may_reach(authority) {
                return Ok(path.to_string());
            }
            return Err(lab_error(format!(
                "{path}: labs may only reach cachelab's own servers ({}); rerun with --allow-host {} to allow it",
                self.services
                    .servers
                    .iter()
                    .map(|s| s.addr.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                authority
            )));
        }
        if !path.starts_with('/') {
            return Err(lab_error(format!(
                "path {path:?} must start with / (or be a full http:// URL of a cachelab server)"
            )));
        }
        Ok(format!("{}{path}", self.base_url()?))
    }

    fn may_reach(&self, authority: &str) -> bool {
        if let Some(target) = &self.reach.target {
            if target.url.strip_prefix("http://") == Some(authority) {
                return true;
            }
        }
        let ours = self.services.all_instances().iter().any(|s| {
            s.addr.to_string() == authority || format!("localhost:{}", s.addr.port()) == authority
        });
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        ours || self
            .reach
            .allowed_hosts
            .iter()
            .any(|allowed| allowed == authority || allowed == host)
    }

    /// Append an event to the lab's record.
    pub fn add(&self, event: Event) {
        self.record.borrow_mut().events.push(event);
    }

    /// How long the lab may still run.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// A new handle for something started in the background.
    pub fn park(&self, pending: Pending) -> i64 {
        let handle = self.next_handle.get() + 1;
        self.next_handle.set(handle);
        self.pending.borrow_mut().insert(handle, pending);
        handle
    }

    /// The lab's own Redis connection (opened on first use, closed with the lab). On a
    /// cluster it is a cluster connection: each command goes to the master owning its key.
    pub fn redis(&self) -> LabResult<crate::cache::RedisConn> {
        if let Some(conn) = self.redis.borrow().as_ref() {
            return Ok(conn.clone());
        }
        let target = self.services.stack.redis.clone();
        let conn = self
            .block_on(async move { crate::cache::RedisConn::direct(&target).await })?
            .map_err(|e| lab_error(format!("redis: {e:#}")))?;
        *self.redis.borrow_mut() = Some(conn.clone());
        Ok(conn)
    }

    /// Drop the lab's own Redis connection (its server was restarted: the connection is
    /// broken); the next call opens another.
    pub fn renew_redis(&self) {
        *self.redis.borrow_mut() = None;
    }

    /// Drop the lab's Postgres session (stuck, or broken); the next call opens another.
    pub fn renew_db(&self) {
        let db = LabDb::new(
            self.services.stack.database_lab_url.clone(),
            !self.services.stack.may_reset_data,
            !self.services.stack.postgres_managed,
        );
        drop(std::mem::replace(&mut *self.db.borrow_mut(), db));
    }

    /// Drop the lab's Redis connection (it died); the next call opens another.
    pub fn forget_redis(&self) {
        self.redis.borrow_mut().take();
    }

    /// Refuse a raw command that would break or expose the stack (or, on an external
    /// Redis without `--allow-flush`, anything but reads and writes to `user:*` keys).
    pub fn guard_redis(&self, words: &[String]) -> LabResult<()> {
        use crate::lab::redis_guard::{check, Access, CommandTable};
        let mut conn = self.redis()?;
        let table = match self.commands.borrow().clone() {
            Some(table) => table,
            None => {
                let mut reading = conn.clone();
                let table = self
                    .block_on(async move { CommandTable::load(&mut reading).await })?
                    .map_err(|e| lab_error(format!("redis: reading COMMAND: {e}")))?;
                std::rc::Rc::new(table)
            }
        };
        *self.commands.borrow_mut() = Some(table.clone());
        let access = Access::for_stack(self.services.stack.may_flush_redis);
        self.block_on(async move { check(&table, access, words, &mut conn).await })?
            .map_err(|refused| lab_error(refused.0))
    }

    /// Remember the fields of a map a lab function returned (for error messages).
    pub fn remember_shape(&self, function: &'static str, map: &rhai::Map) {
        let fields = map.keys().map(|k| k.to_string()).collect();
        self.shapes.borrow_mut().insert(function, fields);
    }

    /// Write the last recorded history as Jepsen-style JSON lines to `name` in the
    /// `--history-dir`. A lab writes no file anywhere else.
    pub fn save_history(&self, name: &str) -> LabResult<()> {
        let Some(dir) = &self.reach.history_dir else {
            return Err(lab_error(
                "save_history: labs write files only into --history-dir DIR; rerun with it",
            ));
        };
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name.ends_with(".jsonl")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !plain {
            return Err(lab_error(format!(
                "save_history: {name:?} must be a plain file name ending in .jsonl (letters, digits, . - _)"
            )));
        }
        let history = self.last_history.borrow();
        if history.is_empty() {
            return Err(lab_error(
                "save_history: no history recorded yet; run load() with history: true first",
            ));
        }
        let path = dir.join(name);
        let file = create_plain_file(&path)
            .map_err(|e| lab_error(format!("save_history: {}: {e}", path.display())))?;
        crate::load::history::write_jepsen(&history, file)
            .map_err(|e| lab_error(format!("save_history: {}: {e}", path.display())))
    }

    /// SIGSTOP the process trees of `pids` (a managed `target`) and SIGCONT them after
    /// `pause_for`, or when the lab ends if that is sooner.
    pub fn freeze(&self, target: &str, pids: Vec<u32>, pause_for: Duration) {
        let frozen = Frozen::stop(target, &pids);
        frozen.thaw_after(pause_for, self.cancel.clone());
        self.frozen.borrow_mut().push(frozen);
    }

    /// Is a process of `target` (`"redis"` matches every Redis node) frozen by `pause()`
    /// right now?
    pub fn is_frozen(&self, target: &str) -> bool {
        self.frozen.borrow().iter().any(|f| f.holds(target))
    }

    /// End everything the lab started: processes it froze (continued at once), loads and
    /// requests in the background, its Redis connection and Postgres session.
    pub fn close(&self) {
        for frozen in self.frozen.borrow_mut().drain(..) {
            frozen.thaw();
        }
        self.cancel.cancel();
        for (_, pending) in self.pending.borrow_mut().drain() {
            match pending {
                Pending::Http(task) => task.abort(),
                Pending::Load(task, _) => task.abort(),
            }
        }
        self.redis.borrow_mut().take();
        let db = std::mem::replace(
            &mut *self.db.borrow_mut(),
            LabDb::new(String::new(), true, true),
        );
        drop(db);
    }
}
