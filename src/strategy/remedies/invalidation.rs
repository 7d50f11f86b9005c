//! How cache-aside writes invalidate (`set_invalidation`). `delete` DELs the key after the
//! Postgres write. `double-delete` DELs it again `double_delete_ms` later, to remove a
//! stale row a slower read put back in between. `lease` is the memcache-lease scheme
//! (Nishtala et al., NSDI 2013) on Redis: a miss takes a lease token for the key, its
//! fill is applied (by a script) only while that lease is valid, and a write revokes
//! outstanding leases by deleting them, so a slow read cannot put an old row back.
//!
//! Every write deletes the lease key along with the row (one DEL, one hash slot), so the
//! modes can be switched at any time. Under the write guard (`set_write_guard("version")`)
//! the row is not deleted but replaced by a marker carrying the write's stamp (see
//! `guard`), so a slow read cannot put back a row older than the write.

use std::sync::Arc;
use std::time::Duration;

use super::guard;
use crate::cache::keys::{lease_key, user_key};
use crate::counters::Counter;
use crate::knobs::{Invalidation, WriteGuard};
use crate::strategy::backend::Backend;
use crate::strategy::fill::row_ttl;

/// After a write to user `id` (stamped `stamp`, when Postgres gave one): invalidate the
/// row and revoke its lease; with `uses_knob` (a cache-aside server) also follow the
/// invalidation mode.
pub async fn after_write(b: Arc<Backend>, id: i32, stamp: Option<&str>, uses_knob: bool) {
    let k = b.knobs.get();
    let marker = match (k.write_guard, stamp) {
        (WriteGuard::Version, Some(stamp)) => Some(stamp.to_string()),
        (WriteGuard::Version, None) | (WriteGuard::None, _) => None,
    };
    invalidate(&b, id, marker.as_deref()).await;
    if uses_knob && k.invalidation == Invalidation::DoubleDelete {
        let later = b.clone();
        let delay = Duration::from_millis(k.double_delete_ms);
        let lab = b.lab_token();
        b.tasks.spawn(async move {
            tokio::select! {
                _ = lab.cancelled() => {}
                _ = tokio::time::sleep(delay) => invalidate(&later, id, marker.as_deref()).await,
            }
        });
    }
}

/// Invalidate user `id`: DEL the row and its lease, or under the write guard leave a
/// marker of the write's `stamp` (only over an older row or marker) and DEL the lease.
async fn invalidate(b: &Backend, id: i32, stamp: Option<&str>) {
    let Some(stamp) = stamp else {
        return evict(b, id).await;
    };
    let key = user_key(id);
    let ttl = row_ttl(&b.knobs.get());
    match b
        .cache
        .set_if_newer(&key, &guard::marker(stamp), stamp, ttl)
        .await
    {
        Ok(_) => {
            b.counters.record(Counter::CacheDels);
            tracing::debug!(strategy = b.name, "CACHE INVALIDATED {key} at {stamp}");
        }
        Err(e) => b.cache_failed("SET marker", &key, &e),
    }
    let lease = lease_key(id);
    if let Err(e) = b.cache.del(&[&lease]).await {
        b.cache_failed("DEL", &lease, &e);
    }
}

/// DEL the row and its lease, counting success or failure.
pub async fn evict(b: &Backend, id: i32) {
    let (key, lease) = (user_key(id), lease_key(id));
    match b.cache.del(&[&key, &lease]).await {
        Ok(()) => {
            b.counters.record(Counter::CacheDels);
            tracing::debug!(strategy = b.name, "CACHE DELETED {key}");
        }
        Err(e) => b.cache_failed("DEL", &key, &e),
    }
}
