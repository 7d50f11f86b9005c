//! Cache-aside (lazy loading): the application owns the cache. Reads fill it on a miss;
//! writes go to Postgres and then invalidate the key, so the next read reloads it.

use bytes::Bytes;

use super::{evict_user, to_json, Backend, Patch, Strategy};

/// The cache-aside strategy.
pub struct CacheAside;

impl Strategy for CacheAside {
    const NAME: &'static str = "cache-aside";

    async fn update(
        &self,
        b: &Backend,
        id: i32,
        patch: Patch<'_>,
    ) -> anyhow::Result<Option<Bytes>> {
        let Some(user) = b.store.update_user(id, patch.name, patch.email).await? else {
            return Ok(None);
        };
        b.counters.record_db_write();
        tracing::debug!(strategy = Self::NAME, "DB UPDATED user:{id}");
        evict_user(b, id).await;
        Ok(Some(to_json(&user)))
    }

    async fn create(&self, b: &Backend, name: &str, email: &str) -> anyhow::Result<Bytes> {
        let user = b.store.insert_user(name, email).await?;
        b.counters.record_db_write();
        tracing::debug!(strategy = Self::NAME, "DB INSERTED user:{}", user.id);
        Ok(to_json(&user))
    }
}
