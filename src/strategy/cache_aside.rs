//! Cache-aside (lazy loading): the application owns the cache. Reads fill it on a miss;
//! writes go to Postgres and then invalidate the key, so the next read reloads it.

use bytes::Bytes;

use super::{evict_user, insert_row, to_json, update_row, Backend, Patch, Strategy};

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
        let Some(user) = update_row(b, Self::NAME, id, patch).await? else {
            return Ok(None);
        };
        evict_user(b, id).await;
        Ok(Some(to_json(&user)))
    }

    async fn create(&self, b: &Backend, name: &str, email: &str) -> anyhow::Result<Bytes> {
        let user = insert_row(b, Self::NAME, name, email).await?;
        Ok(to_json(&user))
    }
}
