//! What a strategy server works with: the table, the cache, its own counters, the shared
//! knobs, the state its remedies keep, and the scopes its background work runs in.

use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::remedies::state;
use crate::cache::near::NearCache;
use crate::cache::{Cache, CacheError};
use crate::counters::{Counter, Counters};
use crate::knobs::Knobs;
use crate::store::Store;

/// What a strategy server works with: the table, the cache, its own counters, the shared
/// knobs, and the state its remedies and background work keep.
pub struct Backend {
    /// The strategy's registry name.
    pub name: &'static str,
    pub store: Store,
    pub cache: Cache,
    /// Shared with the near cache, whose invalidation link counts too.
    pub counters: Arc<Counters>,
    /// This server's in-process L1 in front of Redis (`set_near_cache`).
    pub near: Arc<NearCache>,
    pub knobs: Arc<Knobs>,
    pub remedies: state::State,
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
        let counters = Arc::new(Counters::default());
        let near = Arc::new(NearCache::new(counters.clone(), cache.is_cluster()));
        Self {
            name,
            store,
            cache,
            counters,
            near,
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
