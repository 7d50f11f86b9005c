//! What a cached value under `user:{id}` is: a row, a tombstone (a cached 404), or the
//! write guard's marker of an invalidated row (a miss). Every place that reads the cache
//! tells them apart here.

use super::remedies::{guard, tombstone};

/// A cached value, told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// A user's JSON row.
    Row,
    /// A cached 404.
    Tombstone,
    /// Invalidated by a write under the write guard: answered as a miss.
    Invalidated,
}

impl Cached {
    pub fn of(value: &[u8]) -> Self {
        if tombstone::is_tombstone(value) {
            Cached::Tombstone
        } else if guard::is_marker(value) {
            Cached::Invalidated
        } else {
            Cached::Row
        }
    }
}
