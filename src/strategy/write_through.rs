//! Write-through: every write goes to Postgres and then straight into the cache, with the
//! whole row Postgres returned, so a read right after a write is a hit with the new value.
//! (The seed app cached a partial row on PUT; we cache what the database holds.)

use bytes::Bytes;

use super::{cache_user, Backend, Strategy};
use crate::store::User;

/// The write-through strategy.
pub struct WriteThrough;

impl Strategy for WriteThrough {
    const NAME: &'static str = "write-through";

    /// SETEX the row Postgres returned.
    async fn after_update(&self, b: &Backend, user: &User, body: &Bytes) {
        cache_user(b, user, body).await;
    }

    /// SETEX the new row, so its first read is a hit.
    async fn after_create(&self, b: &Backend, user: &User, body: &Bytes) {
        cache_user(b, user, body).await;
    }
}
