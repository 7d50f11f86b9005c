//! Refresh-ahead: a hit whose remaining TTL has fallen below `refresh_ratio` × TTL is
//! answered at once and refreshed from Postgres in the background (one refresh per key at
//! a time), so a hot key is reloaded before it expires and its readers never wait on
//! Postgres. Its remaining TTL comes with the value, in the same round trip. Writes work
//! as in cache-aside.

use super::ops::Strategy;
use super::source::RowSource;

/// The refresh-ahead strategy.
#[derive(Debug, Clone, Copy, Default)]
pub struct RefreshAhead;

impl RowSource for RefreshAhead {
    const REFRESHES_AHEAD: bool = true;
    const USES_INVALIDATION: bool = true;
}

impl Strategy for RefreshAhead {
    const NAME: &'static str = "refresh-ahead";
    const SUMMARY: &'static str =
        "as cache-aside, and a hit with less than refresh_ratio of its TTL left is refreshed in the background";
}
