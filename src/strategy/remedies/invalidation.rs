//! How cache-aside writes invalidate (`set_invalidation`). `delete` DELs the key after the
//! Postgres write. `double-delete` DELs it again `double_delete_ms` later, to remove a
//! stale row a slower read put back in between. `lease` is the memcache-lease scheme
//! (Nishtala et al., NSDI 2013) on Redis: a miss takes a lease token for the key, its
//! fill is applied (by a script) only while that lease is valid, and a write revokes
//! outstanding leases by deleting them, so a slow read cannot put an old row back.
//!
//! Every write deletes the lease key along with the row (one DEL, one hash slot), so the
//! modes can be switched at any time.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::keys::{lease_key, user_key};
use crate::counters::Counter;
use crate::knobs::{Invalidation, Settings};
use crate::strategy::Backend;

/// After a write to user `id`: DEL the row (and revoke its lease); with `uses_knob` (a
/// cache-aside server) also follow the invalidation mode.
pub async fn after_write(b: Arc<Backend>, id: i32, uses_knob: bool) {
    evict(&b, id).await;
    let k = b.knobs.get();
    if uses_knob && k.invalidation == Invalidation::DoubleDelete {
        let later = b.clone();
        let delay = Duration::from_millis(k.double_delete_ms);
        let lab = b.lab_token();
        b.tasks.spawn(async move {
            tokio::select! {
                _ = lab.cancelled() => {}
                _ = tokio::time::sleep(delay) => evict(&later, id).await,
            }
        });
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

/// Take the lease for a miss of `id`: its token, or `None` when another read holds it or
/// Redis failed (then this read must not fill the cache).
pub async fn take_lease(b: &Backend, id: i32, k: &Settings) -> Option<String> {
    let token = format!("{:016x}", rand::random::<u64>());
    let ttl = Duration::from_millis(k.lease_ttl_ms.max(1));
    let lease = lease_key(id);
    match b.cache.try_lock(&lease, &token, ttl).await {
        Ok(true) => Some(token),
        Ok(false) => None,
        Err(e) => {
            b.cache_failed("SET NX", &lease, &e);
            None
        }
    }
}
