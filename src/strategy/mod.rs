//! The caching strategies behind one small trait, and the one registry that lists them.
//!
//! Reads go through one shared read path (`read`) that applies every remedy; writes go to
//! Postgres and then a strategy says what happens to the cache (`write`). A strategy file
//! overrides only what makes it different: write-through caches the written row,
//! write-behind queues writes in Redis, refresh-ahead refreshes hot entries early. The
//! HTTP layer knows nothing beyond this trait and the registry.

mod read;
pub mod registry;
pub mod remedies;
mod write;

pub use registry::StrategyEntry;
pub use write::Fill;

registry::strategies! {
    cache_aside::CacheAside,
    write_through::WriteThrough,
    write_behind::WriteBehind,
    refresh_ahead::RefreshAhead,
}

use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::{Cache, CacheError};
use crate::counters::{Counter, Counters};
use crate::knobs::Knobs;
use crate::store::{DbClass, DbError, Store, User};

/// What a strategy server works with: the table, the cache, its own counters, the shared
/// knobs, and the state its remedies and background work keep.
pub struct Backend {
    /// The strategy's registry name.
    pub name: &'static str,
    pub store: Store,
    pub cache: Cache,
    pub counters: Counters,
    pub knobs: Arc<Knobs>,
    pub remedies: remedies::State,
    /// Short background work of this server (refreshes, delayed deletes, shared reads):
    /// cancelled when a lab resets (see `lab_token`), waited for when the server stops.
    pub tasks: TaskTracker,
    /// Long-running background work (write-behind's flusher), waited for when the server
    /// stops.
    pub daemons: TaskTracker,
    /// Cancelled when the server stops: background work ends with it.
    pub stop: CancellationToken,
    /// The current lab's scope (a child of `stop`): short background work selects on the
    /// token that was current when it was scheduled, and the per-lab reset cancels it and
    /// starts a new one, so nothing a lab scheduled (a second DEL due in 5 s, a slow
    /// refresh) lands in the next lab. Daemons (write-behind's flusher) serve every lab
    /// and stop only with `stop`.
    lab_scope: std::sync::Mutex<CancellationToken>,
    /// Held by background writers (write-behind's flusher) while they write; the per-lab
    /// reset holds it so nothing lands in the table while it is rebuilt.
    pub quiet: tokio::sync::Mutex<()>,
}

impl Backend {
    pub fn new(name: &'static str, store: Store, cache: Cache, knobs: Arc<Knobs>) -> Self {
        let stop = CancellationToken::new();
        Self {
            name,
            store,
            cache,
            counters: Counters::default(),
            knobs,
            remedies: Default::default(),
            tasks: TaskTracker::new(),
            daemons: TaskTracker::new(),
            lab_scope: std::sync::Mutex::new(stop.child_token()),
            stop,
            quiet: tokio::sync::Mutex::new(()),
        }
    }

    /// The token background work scheduled now must end on: cancelled when this lab
    /// ends (the next reset) or the server stops.
    pub fn lab_token(&self) -> CancellationToken {
        self.lab_scope
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// End the current lab's scope: its background work is cancelled, not waited for, and
    /// work scheduled from now on belongs to a new scope.
    pub fn end_lab_scope(&self) {
        let mut scope = self.lab_scope.lock().unwrap_or_else(|p| p.into_inner());
        scope.cancel();
        *scope = self.stop.child_token();
    }

    /// Count a failed cache call (skipped by the breaker, or failed) and log it.
    pub fn cache_failed(&self, op: &str, key: &str, e: &CacheError) {
        self.counters.record(match e {
            CacheError::Skipped => Counter::CacheBypassed,
            CacheError::Redis(_) => Counter::CacheErrors,
        });
        self.cache.log_error(op, key, e);
    }
}

/// Where a read's answer came from: the `X-Cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XCache {
    /// The cache.
    Hit,
    /// This request's own Postgres read (cold, expired, or an early recompute).
    Miss,
    /// The cache, past freshness; a refresh was started.
    Stale,
    /// Another request's Postgres read, waited for.
    Coalesced,
}

impl XCache {
    pub const ALL: [XCache; 4] = [XCache::Hit, XCache::Miss, XCache::Stale, XCache::Coalesced];

    pub fn as_str(self) -> &'static str {
        match self {
            XCache::Hit => "HIT",
            XCache::Miss => "MISS",
            XCache::Stale => "STALE",
            XCache::Coalesced => "COALESCED",
        }
    }

    /// The counter each answer kind increments.
    pub fn counter(self) -> Counter {
        match self {
            XCache::Hit => Counter::Hits,
            XCache::Miss => Counter::Misses,
            XCache::Stale => Counter::Stale,
            XCache::Coalesced => Counter::Coalesced,
        }
    }
}

/// A read's answer: the user's JSON (`None`: no such user) and where it came from.
pub struct Fetched {
    pub user: Option<Bytes>,
    pub cache: XCache,
}

/// Fields a PUT may change.
pub struct Patch<'a> {
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
}

/// Why a request could not be answered. `status` and `counter` map every case to its
/// HTTP status and to what it counts, in one place.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    /// Postgres failed: unavailable (503 naming Postgres), or it refused the statement
    /// (409 for a unique violation, else 500 with its message).
    #[error("{}", postgres_message(.0))]
    Postgres(#[from] DbError),
    /// A write that needs Redis (write-behind queues in Redis) could not reach it.
    #[error("redis unavailable: {0}")]
    Redis(#[from] CacheError),
    /// The row's key is taken (write-behind's POST on an id a row already holds): 409.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A write that kept losing its compare-and-set to other writes of the same row: 503.
    #[error("busy: {0}")]
    Contended(String),
    /// A read's own failure, shared with the requests that waited on it: it counts once,
    /// for this request.
    #[error("{0}")]
    Shared(Arc<StrategyError>),
    /// Another request's failure, waited for: answered the same, counted by that one.
    #[error("{0}")]
    Coalesced(Arc<StrategyError>),
    /// Anything else: a 500 that says what failed.
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

fn postgres_message(e: &DbError) -> String {
    match e.class() {
        DbClass::Unavailable => format!("postgres unavailable: {e}"),
        DbClass::Conflict => format!("conflict: {e}"),
        DbClass::Rejected => format!("postgres refused the statement: {e}"),
    }
}

impl StrategyError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            StrategyError::Postgres(e) => match e.class() {
                DbClass::Unavailable => 503,
                DbClass::Conflict => 409,
                DbClass::Rejected => 500,
            },
            StrategyError::Redis(_) | StrategyError::Contended(_) => 503,
            StrategyError::Conflict(_) => 409,
            StrategyError::Shared(inner) | StrategyError::Coalesced(inner) => inner.status(),
            StrategyError::Internal(_) => 500,
        }
    }

    /// The counter this failed request adds to, if any: an unavailable Postgres counts
    /// `db_errors`, a refusal `db_rejected`. A Redis failure was counted where it
    /// happened (`cache_errors`), and a waiter's failure by the request it waited on.
    pub fn counter(&self) -> Option<Counter> {
        match self {
            StrategyError::Postgres(e) if e.is_unavailable() => Some(Counter::DbErrors),
            StrategyError::Postgres(_) | StrategyError::Conflict(_) => Some(Counter::DbRejected),
            StrategyError::Shared(inner) => inner.counter(),
            StrategyError::Redis(_)
            | StrategyError::Contended(_)
            | StrategyError::Coalesced(_)
            | StrategyError::Internal(_) => None,
        }
    }
}

/// A caching strategy: what a server does to the cache around reads and writes.
///
/// Strategies are zero-sized and `Copy`, so background work can take its own copy.
pub trait Strategy: Copy + Default + Send + Sync + 'static {
    /// The name URLs, logs, `use_strategy` and `--strategy` use.
    const NAME: &'static str;
    /// One line for `cachelab api`, the README and `serve --help`.
    const SUMMARY: &'static str;
    /// Fill the cache on a miss only if nothing is cached yet (NX): a write that cached a
    /// newer row in the meantime wins.
    const FILL_IF_ABSENT: bool = false;
    /// Refresh a hit in the background when little of its TTL remains (refresh-ahead).
    const REFRESHES_AHEAD: bool = false;
    /// Writes invalidate by the `set_invalidation` knob (cache-aside).
    const USES_INVALIDATION: bool = false;

    /// GET: the shared read path with every remedy.
    fn read(
        self,
        b: &Arc<Backend>,
        id: i32,
    ) -> impl Future<Output = Result<Fetched, StrategyError>> + Send {
        read::read(self, b.clone(), id)
    }

    /// Where a miss loads a user from: Postgres (write-behind looks in its queue first).
    fn load(
        self,
        b: &Arc<Backend>,
        id: i32,
    ) -> impl Future<Output = Result<Option<User>, StrategyError>> + Send {
        let b = b.clone();
        async move {
            b.counters.record(Counter::DbReads);
            let delay = b.knobs.get().db_delay();
            Ok(b.store.get_user(id, delay).await?)
        }
    }

    /// PUT: change a user in Postgres, then the strategy's cache step. `None` if absent.
    fn update(
        self,
        b: &Arc<Backend>,
        id: i32,
        patch: Patch<'_>,
    ) -> impl Future<Output = Result<Option<Bytes>, StrategyError>> + Send {
        write::update(self, b.clone(), id, patch.name, patch.email)
    }

    /// POST: create a user in Postgres, then the strategy's cache step.
    fn create(
        self,
        b: &Arc<Backend>,
        name: &str,
        email: &str,
    ) -> impl Future<Output = Result<Bytes, StrategyError>> + Send {
        write::create(self, b.clone(), name, email)
    }

    /// DELETE: remove the row, then the cache entry. `false` if there was no such user.
    fn delete(
        self,
        b: &Arc<Backend>,
        id: i32,
    ) -> impl Future<Output = Result<bool, StrategyError>> + Send {
        write::delete(self, b.clone(), id)
    }

    /// After a PUT changed `user` in Postgres (`body` is its JSON): by default the
    /// invalidation knob's step (cache-aside).
    fn after_update(
        self,
        b: &Arc<Backend>,
        user: &User,
        body: &Bytes,
    ) -> impl Future<Output = ()> + Send {
        let _ = body;
        remedies::invalidation::after_write(b.clone(), user.id, Self::USES_INVALIDATION)
    }

    /// After a POST created `user`: by default drop any tombstone cached for its id.
    fn after_create(
        self,
        b: &Arc<Backend>,
        user: &User,
        body: &Bytes,
    ) -> impl Future<Output = ()> + Send {
        let _ = body;
        remedies::invalidation::after_write(b.clone(), user.id, Self::USES_INVALIDATION)
    }

    /// After a DELETE removed user `id`.
    fn after_delete(self, b: &Arc<Backend>, id: i32) -> impl Future<Output = ()> + Send {
        remedies::invalidation::after_write(b.clone(), id, Self::USES_INVALIDATION)
    }

    /// Start the strategy's background work (write-behind's flusher); it must end when
    /// `b.stop` is cancelled. Most strategies have none.
    fn start_background(self, b: &Arc<Backend>) {
        let _ = b;
    }
}

/// The JSON the API returns for a user.
pub fn to_json(user: &User) -> Bytes {
    Bytes::from(serde_json::to_vec(user).expect("a user always serialises"))
}
