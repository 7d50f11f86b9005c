//! Write-through: every write goes to Postgres and then straight into the cache, with the
//! whole row Postgres returned, so a read right after a write is a hit with the new value.
//! (The seed app cached a partial row on PUT; we cache what the database holds.)

use bytes::Bytes;

use super::{cache_user, insert_row, to_json, update_row, Backend, Patch, Strategy};

/// The write-through strategy.
pub struct WriteThrough;

impl Strategy for WriteThrough {
    const NAME: &'static str = "write-through";

    async fn update(
        &self,
        b: &Backend,
        id: i32,
        patch: Patch<'_>,
    ) -> anyhow::Result<Option<Bytes>> {
        let Some(user) = update_row(b, Self::NAME, id, patch).await? else {
            return Ok(None);
        };
        let body = to_json(&user);
        cache_user(b, &user, &body).await;
        Ok(Some(body))
    }

    async fn create(&self, b: &Backend, name: &str, email: &str) -> anyhow::Result<Bytes> {
        let user = insert_row(b, Self::NAME, name, email).await?;
        let body = to_json(&user);
        cache_user(b, &user, &body).await;
        Ok(body)
    }
}
