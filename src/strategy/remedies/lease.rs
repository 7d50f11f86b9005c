//! The `lease` invalidation's read side (memcache leases, Nishtala et al., NSDI 2013): a
//! miss takes a lease token for the key before it reads Postgres, and its fill applies
//! only while the lease holds (see `fill`); a write revokes it (see `invalidation`).

use std::time::Duration;

use crate::cache::keys::lease_key;
use crate::knobs::Settings;
use crate::strategy::backend::Backend;

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
