//! The write half every strategy shares: the Postgres write and the strategy's cache step
//! after it, and how a row (or a tombstone) is put into the cache — with padding, TTL
//! jitter, swr's stale window, and the fill mode the read path chose.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use super::read::swr_extension;
use super::remedies::{jitter, tombstone};
use super::{to_json, Backend, Strategy, StrategyError};
use crate::cache::keys::lease_key;
use crate::cache::user_key;
use crate::counters::Counter;
use crate::knobs::Settings;

/// How a fill may write the cache.
#[derive(Debug, Clone)]
pub enum Fill {
    /// SET, overwriting whatever is there.
    Always,
    /// SET NX: a value cached meanwhile (by a write) wins.
    IfAbsent,
    /// Only while this lease token is valid (`lease` invalidation).
    WithLease(String),
    /// Only if the cache still holds exactly this value (a background refresh).
    Replacing(Bytes),
}

/// Cache user `id`'s JSON `body` as `fill` allows, counting what happened.
pub async fn cache_row(b: &Backend, id: i32, body: &[u8], fill: Fill) {
    let (value, ttl) = cached_row(&b.knobs.get(), body);
    put(b, id, &value, ttl, fill, Counter::CacheSets).await;
}

/// The bytes a row is cached as and for how long: padding (trailing JSON whitespace, so
/// the value stays valid JSON), TTL jitter, and swr's stale window.
pub fn cached_row(k: &Settings, body: &[u8]) -> (Vec<u8>, Duration) {
    let mut value = Vec::with_capacity(body.len() + k.padding);
    value.extend_from_slice(body);
    value.resize(body.len() + k.padding, b' ');
    (value, row_ttl(k))
}

/// How long a row is cached: the TTL with jitter, plus swr's stale window.
pub fn row_ttl(k: &Settings) -> Duration {
    jitter::apply(Duration::from_millis(k.ttl_ms), k.ttl_jitter_percent) + swr_extension(k)
}

/// Cache a tombstone (a 404) for user `id` for the negative TTL.
pub async fn cache_tombstone(b: &Backend, id: i32, fill: Fill) {
    let k = b.knobs.get();
    let ttl = Duration::from_secs(k.negative_ttl_secs);
    put(b, id, &tombstone::body(id), ttl, fill, Counter::Tombstones).await;
}

async fn put(b: &Backend, id: i32, value: &[u8], ttl: Duration, fill: Fill, counter: Counter) {
    let key = user_key(id);
    let written = match &fill {
        Fill::Always => b.cache.set(&key, value, ttl, false).await,
        Fill::IfAbsent => b.cache.set(&key, value, ttl, true).await,
        Fill::WithLease(token) => {
            let written = b
                .cache
                .fill_with_lease(&key, &lease_key(id), token, value, ttl)
                .await;
            if matches!(written, Ok(false)) {
                b.counters.record(Counter::LeaseRejects);
                tracing::debug!(strategy = b.name, "LEASE REVOKED {key}: fill refused");
            }
            written
        }
        Fill::Replacing(old) => b.cache.replace(&key, old, value, ttl).await,
    };
    match written {
        Ok(true) => {
            b.counters.record(counter);
            tracing::debug!(strategy = b.name, "CACHE UPDATED {key} (ttl {ttl:?})");
        }
        Ok(false) => {}
        Err(e) => b.cache_failed("SET", &key, &e),
    }
}

/// PUT through Postgres, then the strategy's cache step.
pub async fn update<S: Strategy>(
    s: S,
    b: Arc<Backend>,
    id: i32,
    name: Option<&str>,
    email: Option<&str>,
) -> Result<Option<Bytes>, StrategyError> {
    let Some(user) = b.store.update_user(id, name, email).await? else {
        return Ok(None);
    };
    b.counters.record(Counter::DbWrites);
    tracing::debug!(strategy = S::NAME, "DB UPDATED user:{id}");
    let body = to_json(&user);
    s.after_update(&b, &user, &body).await;
    Ok(Some(body))
}

/// POST through Postgres, then the strategy's cache step.
pub async fn create<S: Strategy>(
    s: S,
    b: Arc<Backend>,
    name: &str,
    email: &str,
) -> Result<Bytes, StrategyError> {
    let user = b.store.insert_user(name, email).await?;
    b.counters.record(Counter::DbWrites);
    tracing::debug!(strategy = S::NAME, "DB INSERTED user:{}", user.id);
    let body = to_json(&user);
    s.after_create(&b, &user, &body).await;
    Ok(body)
}

/// DELETE through Postgres, then the strategy's cache step.
pub async fn delete<S: Strategy>(s: S, b: Arc<Backend>, id: i32) -> Result<bool, StrategyError> {
    let existed = b.store.delete_user(id).await?;
    if existed {
        b.counters.record(Counter::DbWrites);
        tracing::debug!(strategy = S::NAME, "DB DELETED user:{id}");
    }
    s.after_delete(&b, id).await;
    Ok(existed)
}
