//! The state of the lab being run, reachable from every registered function.
//!
//! Each lab runs on a thread of its own, so the context lives in a thread-local: the
//! functions capture nothing and the same registration serves `cachelab api`, which lists
//! them without any stack behind them.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::convert::{lab_error, LabResult};
use super::report::{CheckRecord, LabRecord};
use crate::services::Services;

/// The HTTP client labs use: pooled keep-alive connections, like curl in a loop would not.
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

/// Everything a lab function may touch.
pub struct LabContext {
    pub services: Arc<Services>,
    pub runtime: tokio::runtime::Handle,
    pub http: HttpClient,
    pub deadline: Instant,
    /// The strategy relative paths go to.
    pub strategy: RefCell<String>,
    pub record: RefCell<LabRecord>,
    pub halt: RefCell<Option<Halt>>,
    /// Requests started with `http_get_async`, by handle.
    pub pending: RefCell<HashMap<i64, tokio::task::JoinHandle<Result<serde_json::Value, String>>>>,
    pub next_handle: RefCell<i64>,
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
pub fn with<R>(f: impl FnOnce(&LabContext) -> LabResult<R>) -> LabResult<R> {
    let ctx = CURRENT.with(|c| c.borrow().clone());
    match ctx {
        Some(ctx) => f(&ctx),
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
    ) -> Self {
        Self {
            services,
            runtime,
            http: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            deadline,
            strategy: RefCell::new("cache-aside".to_string()),
            record: RefCell::new(LabRecord::default()),
            halt: RefCell::new(None),
            pending: RefCell::new(HashMap::new()),
            next_handle: RefCell::new(0),
        }
    }

    /// Wait for `future` on the runtime, but no longer than the lab's deadline and not past
    /// a Ctrl-C.
    pub fn block_on<T>(&self, future: impl Future<Output = T>) -> LabResult<T> {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let outcome = self.runtime.block_on(async {
            tokio::select! {
                value = future => Ok(value),
                _ = tokio::time::sleep_until(deadline) => Err(Halt::Timeout),
                _ = interrupted() => Err(Halt::Interrupted),
            }
        });
        outcome.map_err(|halt| self.halt_with(halt))
    }

    /// Record why the lab stops and return the error that unwinds the script.
    pub fn halt_with(&self, halt: Halt) -> Box<rhai::EvalAltResult> {
        let message = match &halt {
            Halt::Assert(m) => format!("assert failed: {m}"),
            Halt::Timeout => "the lab ran past its --timeout".to_string(),
            Halt::Interrupted => "interrupted".to_string(),
        };
        self.halt.borrow_mut().get_or_insert(halt);
        lab_error(message)
    }

    /// The base URL of the current strategy's server.
    pub fn base_url(&self) -> LabResult<String> {
        let name = self.strategy.borrow().clone();
        self.services
            .server(&name)
            .map(|s| s.url())
            .ok_or_else(|| lab_error(format!("no {name} server is running")))
    }

    /// `path` made absolute against the current strategy's server.
    pub fn url_for(&self, path: &str) -> LabResult<String> {
        if path.starts_with("http://") {
            return Ok(path.to_string());
        }
        if !path.starts_with('/') {
            return Err(lab_error(format!(
                "path {path:?} must start with / (or be a full http:// URL)"
            )));
        }
        Ok(format!("{}{path}", self.base_url()?))
    }

    pub fn add_check(&self, name: String, pass: bool, line: Option<usize>) {
        self.record
            .borrow_mut()
            .checks
            .push(CheckRecord { name, pass, line });
    }

    pub fn add_note(&self, text: String) {
        self.record.borrow_mut().notes.push(text);
    }

    /// How long the lab may still run.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

async fn interrupted() {
    while !crate::shutdown::requested() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
