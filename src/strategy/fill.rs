//! The fill path every read, refresh and write shares: load a row as the strategy says and
//! put it (or a tombstone) into the cache — with padding, TTL jitter, swr's stale window,
//! and the fill mode the caller chose (plain, NX, under a lease, replacing a refreshed
//! value, or under the write guard only over an older row). The remedies call down into
//! it; it knows nothing of the read path above it.

use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backend::Backend;
use super::error::StrategyError;
use super::remedies::{jitter, lease, tombstone};
use super::source::RowSource;
use crate::cache::keys::lease_key;
use crate::cache::user_key;
use crate::counters::Counter;
use crate::knobs::{Invalidation, Protection, Settings, WriteGuard};
use crate::store::User;

/// How a fill may write the cache.
#[derive(Debug, Clone)]
pub enum Fill {
    /// SET, overwriting whatever is there (under the write guard: only an older row).
    Always,
    /// SET NX: a value cached meanwhile (by a write) wins.
    IfAbsent,
    /// Only while this lease token is valid (`lease` invalidation).
    WithLease(String),
    /// Only if the cache still holds exactly this value (a background refresh).
    Replacing(Bytes),
}

/// The JSON the API returns for a user.
pub fn to_json(user: &User) -> Bytes {
    Bytes::from(serde_json::to_vec(user).expect("a user always serialises"))
}

/// Load user `id` as the strategy says (normally Postgres) and, when the cache is usable,
/// cache what was found: the row, or a tombstone for a missing user when negative caching
/// is on. `replacing`: a background refresh replaces only this exact cached value.
pub async fn load_and_fill<S: RowSource>(
    s: S,
    b: &Arc<Backend>,
    id: i32,
    cache_usable: bool,
    replacing: Option<Bytes>,
) -> Result<Option<Bytes>, StrategyError> {
    let k = b.knobs.get();
    let leased = cache_usable && S::USES_INVALIDATION && k.invalidation == Invalidation::Lease;
    let lease = if leased && replacing.is_none() {
        lease::take_lease(b, id, &k).await
    } else {
        None
    };
    let started = Instant::now();
    let user = s.load(b, id).await?;
    b.remedies.recompute_times.record(id, started.elapsed());
    let body = user.as_ref().map(to_json);
    if cache_usable {
        let fill = match (replacing, lease) {
            (Some(old), _) => Some(Fill::Replacing(old)),
            (None, Some(token)) => Some(Fill::WithLease(token)),
            // Another read holds the lease: it fills; this one must not.
            (None, None) if leased => None,
            (None, None) if S::FILL_IF_ABSENT => Some(Fill::IfAbsent),
            (None, None) => Some(Fill::Always),
        };
        if let Some(fill) = fill {
            match &user {
                Some(user) => cache_row(b, user, fill).await,
                None if k.negative_ttl_secs > 0 => cache_tombstone(b, id, fill).await,
                None => {}
            }
        }
    }
    Ok(body)
}

/// Cache `user`'s row as `fill` allows, counting what happened.
pub async fn cache_row(b: &Backend, user: &User, fill: Fill) {
    let k = b.knobs.get();
    let (value, ttl) = cached_row(&k, &to_json(user));
    let stamp = match k.write_guard {
        WriteGuard::Version => user.updated_at.as_deref(),
        WriteGuard::None => None,
    };
    put(b, user.id, &value, ttl, fill, stamp, Counter::CacheSets).await;
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

/// How much longer than the TTL an entry is kept: `stale_secs` under swr.
pub fn swr_extension(k: &Settings) -> Duration {
    match k.protection {
        Protection::Swr => Duration::from_secs(k.stale_secs),
        Protection::None | Protection::Singleflight | Protection::Lock | Protection::Xfetch => {
            Duration::ZERO
        }
    }
}

/// Cache a tombstone (a 404) for user `id` for the negative TTL; under the write guard
/// only where nothing is cached (a marker or a row says more than a read that found
/// nothing).
pub async fn cache_tombstone(b: &Backend, id: i32, fill: Fill) {
    let k = b.knobs.get();
    let ttl = Duration::from_secs(k.negative_ttl_secs);
    let fill = match (k.write_guard, fill) {
        (WriteGuard::Version, Fill::Always) => Fill::IfAbsent,
        (_, fill) => fill,
    };
    put(
        b,
        id,
        &tombstone::body(id),
        ttl,
        fill,
        None,
        Counter::Tombstones,
    )
    .await;
}

/// Write `value` for user `id` as `fill` says; with a `stamp` (the write guard), a plain
/// fill applies only over an older row or marker.
async fn put(
    b: &Backend,
    id: i32,
    value: &[u8],
    ttl: Duration,
    fill: Fill,
    stamp: Option<&str>,
    counter: Counter,
) {
    let key = user_key(id);
    let written = match (&fill, stamp) {
        (Fill::Always, Some(stamp)) => {
            let written = b.cache.set_if_newer(&key, value, stamp, ttl).await;
            if matches!(written, Ok(false)) {
                b.counters.record(Counter::GuardRefusals);
                tracing::debug!(strategy = b.name, "GUARD {key}: a newer row is cached");
            }
            written
        }
        (Fill::Always, None) => b.cache.set(&key, value, ttl, false).await,
        (Fill::IfAbsent, _) => b.cache.set(&key, value, ttl, true).await,
        (Fill::WithLease(token), _) => {
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
        (Fill::Replacing(old), _) => b.cache.replace(&key, old, value, ttl).await,
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
