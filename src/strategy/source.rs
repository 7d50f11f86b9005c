//! Where a miss gets its row and how its fill may write the cache: the part of a strategy
//! the shared read and fill paths need. It sits below both, so the read path, the fill
//! path and the remedies depend on it and never on the strategy operations above them.

use std::future::Future;
use std::sync::Arc;

use super::backend::Backend;
use super::error::StrategyError;
use crate::counters::Counter;
use crate::store::User;

/// How a strategy answers a miss. Strategies are zero-sized and `Copy`, so background
/// work can take its own copy.
pub trait RowSource: Copy + Default + Send + Sync + 'static {
    /// Fill the cache on a miss only if nothing is cached yet (NX): a write that cached a
    /// newer row in the meantime wins.
    const FILL_IF_ABSENT: bool = false;
    /// Refresh a hit in the background when little of its TTL remains (refresh-ahead).
    const REFRESHES_AHEAD: bool = false;
    /// Writes invalidate by the `set_invalidation` knob, and misses may take leases
    /// (cache-aside).
    const USES_INVALIDATION: bool = false;

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
}
