//! Cache-aside (lazy loading): the application owns the cache. Reads fill it on a miss;
//! writes go to Postgres and then invalidate the key, so the next read reloads it.

use bytes::Bytes;

use super::{evict_user, Backend, Strategy};
use crate::store::User;

/// The cache-aside strategy.
pub struct CacheAside;

impl Strategy for CacheAside {
    const NAME: &'static str = "cache-aside";

    /// Delete the key: the next read misses and loads the new row.
    async fn after_update(&self, b: &Backend, user: &User, _body: &Bytes) {
        evict_user(b, user.id).await;
    }

    /// Nothing: the new user is cached when it is first read.
    async fn after_create(&self, _b: &Backend, _user: &User, _body: &Bytes) {}
}
