//! The `lock` protection: one Postgres read per key across processes, through a Redis
//! lock (`SET lock:{user:ID} token NX PX ttl`, released only by its holder). The holder
//! reads and fills the cache; the others poll the cache until the value appears (X-Cache
//! COALESCED), take the lock if it was released without a value, or — once the lock's
//! TTL has passed without an answer (a holder that died) — read Postgres themselves.

use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::keys::{lock_key, user_key};
use crate::counters::Counter;
use crate::knobs::Settings;
use crate::strategy::backend::Backend;
use crate::strategy::cached::Cached;
use crate::strategy::error::StrategyError;
use crate::strategy::fill::load_and_fill;
use crate::strategy::source::RowSource;
use crate::xcache::XCache;

/// The first and the longest pause between two looks at the cache.
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const LONGEST_PAUSE: Duration = Duration::from_millis(20);

/// Answer a miss of `id` under the lock protection.
pub async fn read<S: RowSource>(
    s: S,
    b: &Arc<Backend>,
    id: i32,
    k: &Settings,
) -> (Result<Option<Bytes>, StrategyError>, XCache) {
    let (key, lock) = (user_key(id), lock_key(id));
    let token = format!("{:016x}", rand::random::<u64>());
    let ttl = Duration::from_millis(k.lock_ttl_ms.max(1));
    let give_up = Instant::now() + ttl;
    let mut pause = FIRST_PAUSE;
    let mut waited = false;
    loop {
        match b.cache.try_lock(&lock, &token, ttl).await {
            Ok(true) => {
                // A holder that filled and let go between our last look and now: its
                // value is there, and must not be read again.
                if waited {
                    if let Ok(Some(value)) = b.cache.get(&key).await {
                        if let Some(user) = filled(value) {
                            if let Err(e) = b.cache.unlock(&lock, &token).await {
                                b.cache_failed("unlock", &lock, &e);
                            }
                            return (Ok(user), XCache::Coalesced);
                        }
                    }
                }
                let outcome = load_and_fill(s, b, id, true, None).await;
                if let Err(e) = b.cache.unlock(&lock, &token).await {
                    b.cache_failed("unlock", &lock, &e);
                }
                return (outcome, XCache::Miss);
            }
            Ok(false) => {}
            Err(e) => {
                // No lock without Redis: read Postgres, and do not try to fill.
                b.cache_failed("SET NX", &lock, &e);
                return (load_and_fill(s, b, id, false, None).await, XCache::Miss);
            }
        }
        if !waited {
            waited = true;
            b.counters.record(Counter::LockWaits);
        }
        if Instant::now() >= give_up {
            return (load_and_fill(s, b, id, true, None).await, XCache::Miss);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
        match b.cache.get(&key).await {
            Ok(Some(value)) => {
                if let Some(user) = filled(value) {
                    return (Ok(user), XCache::Coalesced);
                }
            }
            Ok(None) => {}
            Err(e) => {
                b.cache_failed("GET", &key, &e);
                return (load_and_fill(s, b, id, false, None).await, XCache::Miss);
            }
        }
    }
}

/// What a cached value answers once the holder filled it: the row, or a tombstone's 404
/// (`Some(None)`); `None` for the write guard's marker, which is not a fill.
fn filled(value: Bytes) -> Option<Option<Bytes>> {
    match Cached::of(&value) {
        Cached::Row => Some(Some(value)),
        Cached::Tombstone => Some(None),
        Cached::Invalidated => None,
    }
}
