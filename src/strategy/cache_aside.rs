//! Cache-aside (lazy loading): the application owns the cache. Reads fill it on a miss;
//! writes go to Postgres and then invalidate the key as `set_invalidation` says (delete,
//! double-delete or lease), so the next read reloads it.

use super::ops::Strategy;
use super::source::RowSource;

/// The cache-aside strategy: every default of the traits.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheAside;

impl RowSource for CacheAside {
    const USES_INVALIDATION: bool = true;
}

impl Strategy for CacheAside {
    const NAME: &'static str = "cache-aside";
    const SUMMARY: &'static str =
        "reads: cache, else Postgres then SETEX; writes: Postgres, then invalidate the key (set_invalidation)";
}
