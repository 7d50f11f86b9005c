//! Write-through: every write goes to Postgres and then straight into the cache, with the
//! whole row Postgres returned, so a read right after a write is a hit with the new value.
//! (The seed app cached a partial row on PUT; we cache what the database holds.)

use std::sync::Arc;

use super::backend::Backend;
use super::fill::{cache_row, Fill};
use super::ops::Strategy;
use super::source::RowSource;
use crate::store::User;

/// The write-through strategy.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteThrough;

impl RowSource for WriteThrough {}

impl Strategy for WriteThrough {
    const NAME: &'static str = "write-through";
    const SUMMARY: &'static str =
        "reads: cache, else Postgres then SETEX; writes: Postgres (RETURNING *), then SETEX the whole row";

    /// SETEX the row Postgres returned (under the write guard: only over an older row).
    async fn after_update(self, b: &Arc<Backend>, user: &User) {
        cache_row(b, user, Fill::Always).await;
    }

    /// SETEX the new row, so its first read is a hit (and no tombstone hides it).
    async fn after_create(self, b: &Arc<Backend>, user: &User) {
        cache_row(b, user, Fill::Always).await;
    }
}
