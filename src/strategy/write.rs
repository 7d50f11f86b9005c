//! The Postgres half of the writes most strategies share: the UPDATE, INSERT or DELETE,
//! counted and logged. What happens to the cache after it is each strategy's step (see
//! `ops`); write-behind does not come here at all.

use std::sync::Arc;

use super::backend::Backend;
use super::error::StrategyError;
use crate::counters::Counter;
use crate::store::User;

/// Fields a PUT may change.
pub struct Patch<'a> {
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
}

/// Change the given fields in Postgres: the row as it is now, or `None` if absent.
pub async fn update_row(
    b: &Arc<Backend>,
    id: i32,
    patch: &Patch<'_>,
) -> Result<Option<User>, StrategyError> {
    let user = b.store.update_user(id, patch.name, patch.email).await?;
    if user.is_some() {
        b.counters.record(Counter::DbWrites);
        tracing::debug!(strategy = b.name, "DB UPDATED user:{id}");
    }
    Ok(user)
}

/// Insert a user with the next id.
pub async fn insert_row(b: &Arc<Backend>, name: &str, email: &str) -> Result<User, StrategyError> {
    let user = b.store.insert_user(name, email).await?;
    b.counters.record(Counter::DbWrites);
    tracing::debug!(strategy = b.name, "DB INSERTED user:{}", user.id);
    Ok(user)
}

/// Delete a user: when it was there, the stamp of the delete (for the write guard).
pub async fn delete_row(b: &Arc<Backend>, id: i32) -> Result<Option<String>, StrategyError> {
    let deleted = b.store.delete_user(id).await?;
    if deleted.is_some() {
        b.counters.record(Counter::DbWrites);
        tracing::debug!(strategy = b.name, "DB DELETED user:{id}");
    }
    Ok(deleted)
}
