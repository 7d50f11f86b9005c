//! The one read path every strategy shares, with every remedy in it:
//!
//! 1. Look in the cache (with the remaining TTL in the same round trip when a remedy
//!    needs it: xfetch, swr, refresh-ahead). A tombstone is a cached 404.
//! 2. A hit may still act: `swr` answers a stale entry at once and refreshes it in the
//!    background; `xfetch` may recompute early in the request; refresh-ahead refreshes a
//!    hit that has little TTL left in the background.
//! 3. A miss reaches Postgres as the protection mode says: directly (`none`, `xfetch`,
//!    `swr`), shared within the process (`singleflight`), or under a Redis lock (`lock`);
//!    then the row is cached (with jitter, padding, a lease, or NX as the knobs and the
//!    strategy say), or a tombstone when the user does not exist and negative caching
//!    is on.
//!
//! Redis trouble never fails a read: the row comes from Postgres and the cache is left
//! alone.

use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::remedies::{invalidation, lock, refresh, singleflight, tombstone, xfetch};
use super::write::{cache_row, cache_tombstone, Fill};
use super::{to_json, Backend, Fetched, Strategy, StrategyError, XCache};
use crate::cache::{user_key, Entry};
use crate::counters::Counter;
use crate::knobs::{Invalidation, Protection, Settings};

/// GET of user `id` through the cache.
pub async fn read<S: Strategy>(s: S, b: Arc<Backend>, id: i32) -> Result<Fetched, StrategyError> {
    let k = b.knobs.get();
    let key = user_key(id);
    let wants_ttl =
        matches!(k.protection, Protection::Xfetch | Protection::Swr) || S::REFRESHES_AHEAD;
    let looked = if wants_ttl {
        b.cache.get_with_ttl(&key).await
    } else {
        b.cache
            .get(&key)
            .await
            .map(|v| v.map(|value| Entry { value, pttl_ms: -1 }))
    };
    // An early recompute replaces only the value it recomputed (never a newer write).
    let mut recomputing = None;
    let cache_usable = match looked {
        Ok(Some(entry)) => match on_hit(s, &b, id, &k, entry) {
            Ok(fetched) => {
                b.counters.record(fetched.cache.counter());
                tracing::debug!(strategy = S::NAME, "CACHE {} {key}", fetched.cache.as_str());
                return Ok(fetched);
            }
            Err(RecomputeNow(old)) => {
                b.counters.record(Counter::EarlyRefreshes);
                recomputing = Some(old);
                true
            }
        },
        Ok(None) => true,
        Err(e) => {
            b.cache_failed("GET", &key, &e);
            false
        }
    };
    let (user, cache) = match k.protection {
        Protection::Singleflight if cache_usable => {
            let wait = Duration::from_millis(k.lock_ttl_ms);
            singleflight::read(s, &b, id, wait).await
        }
        Protection::Lock if cache_usable => lock::read(s, &b, id, &k).await,
        _ => (
            load_and_fill(s, &b, id, cache_usable, recomputing).await,
            XCache::Miss,
        ),
    };
    b.counters.record(cache.counter());
    tracing::debug!(strategy = S::NAME, "CACHE {} {key}", cache.as_str());
    Ok(Fetched { user: user?, cache })
}

/// A hit that must be recomputed in the request (xfetch), with the value it replaces.
struct RecomputeNow(Bytes);

/// What a hit answers, or that it must be recomputed now.
fn on_hit<S: Strategy>(
    s: S,
    b: &Arc<Backend>,
    id: i32,
    k: &Settings,
    entry: Entry,
) -> Result<Fetched, RecomputeNow> {
    if tombstone::is_tombstone(&entry.value) {
        return Ok(Fetched {
            user: None,
            cache: XCache::Hit,
        });
    }
    let pttl = entry.pttl_ms;
    match k.protection {
        Protection::Swr if pttl >= 0 && pttl <= (k.stale_secs * 1000) as i64 => {
            refresh::spawn(s, b, id, entry.value.clone());
            return Ok(Fetched {
                user: Some(entry.value),
                cache: XCache::Stale,
            });
        }
        Protection::Xfetch => {
            let delta = b.remedies.recompute_times.get(id).unwrap_or_default();
            if xfetch::recompute_early(delta, k.xfetch_beta, pttl, xfetch::draw()) {
                return Err(RecomputeNow(entry.value));
            }
        }
        _ => {}
    }
    if S::REFRESHES_AHEAD && pttl >= 0 {
        let fresh_ms = k.ttl_ms as f64 * k.refresh_ratio;
        let left_fresh = pttl - (swr_extension(k).as_millis() as i64);
        if (left_fresh as f64) < fresh_ms {
            refresh::spawn(s, b, id, entry.value.clone());
        }
    }
    Ok(Fetched {
        user: Some(entry.value),
        cache: XCache::Hit,
    })
}

/// How much longer than the TTL an entry is kept: `stale_secs` under swr.
pub fn swr_extension(k: &Settings) -> Duration {
    if k.protection == Protection::Swr {
        Duration::from_secs(k.stale_secs)
    } else {
        Duration::ZERO
    }
}

/// Load user `id` as the strategy says (normally Postgres) and, when the cache is usable,
/// cache what was found: the row, or a tombstone for a missing user when negative caching
/// is on. `replacing`: a background refresh replaces only this exact cached value.
pub async fn load_and_fill<S: Strategy>(
    s: S,
    b: &Arc<Backend>,
    id: i32,
    cache_usable: bool,
    replacing: Option<Bytes>,
) -> Result<Option<Bytes>, StrategyError> {
    let k = b.knobs.get();
    let leased = cache_usable && S::USES_INVALIDATION && k.invalidation == Invalidation::Lease;
    let lease = if leased && replacing.is_none() {
        invalidation::take_lease(b, id, &k).await
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
            match (&user, &body) {
                (Some(user), Some(body)) => cache_row(b, user.id, body, fill).await,
                _ if k.negative_ttl_secs > 0 => cache_tombstone(b, id, fill).await,
                _ => {}
            }
        }
    }
    Ok(body)
}
