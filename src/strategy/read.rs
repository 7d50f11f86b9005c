//! The one read path every strategy shares, with every remedy in it:
//!
//! 1. Look in the cache (with the remaining TTL in the same round trip when a remedy
//!    needs it: xfetch, swr, refresh-ahead). A tombstone is a cached 404; the write
//!    guard's marker of an invalidated row is a miss.
//! 2. A hit may still act: `swr` answers a stale entry at once and refreshes it in the
//!    background; `xfetch` may recompute early in the request; refresh-ahead refreshes a
//!    hit that has little TTL left in the background.
//! 3. A miss reaches Postgres as the protection mode says: directly (`none`, `xfetch`,
//!    `swr`), shared within the process (`singleflight`), or under a Redis lock (`lock`);
//!    then the fill path caches what it found.
//!
//! In front of all of it, the server's own near cache (L1, `set_near_cache`): a row it
//! holds is answered at once (X-Cache NEAR); a row read through Redis or Postgres is
//! admitted into it, past the fill-vs-invalidation guard. In `tracking` mode the Redis read
//! goes over the invalidation link, so Redis tracks the key for this server.
//!
//! Redis trouble never fails a read: the row comes from Postgres and the cache is left
//! alone.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use super::backend::Backend;
use super::cached::Cached;
use super::error::StrategyError;
use super::fill::{load_and_fill, swr_extension};
use super::remedies::{lock, refresh, singleflight, xfetch};
use super::source::RowSource;
use crate::cache::{user_key, Entry};
use crate::counters::Counter;
use crate::knobs::{NearMode, Protection, Settings};
use crate::xcache::XCache;

/// A read's answer: the user's JSON (`None`: no such user) and where it came from.
pub struct Fetched {
    pub user: Option<Bytes>,
    pub cache: XCache,
}

/// GET of user `id`: the near cache, else through Redis.
pub async fn read<S: RowSource>(s: S, b: Arc<Backend>, id: i32) -> Result<Fetched, StrategyError> {
    let k = b.knobs.get();
    let tracking = match k.near_cache {
        NearMode::Off => return Ok(through_redis(s, &b, id, &k, false).await?.0),
        NearMode::Tracking => true,
        NearMode::Ttl | NearMode::Bcast => false,
    };
    if let Some(user) = b.near.get(id, &k) {
        b.counters.record(XCache::Near.counter());
        tracing::debug!(strategy = b.name, "CACHE NEAR user:{id}");
        return Ok(Fetched {
            user: Some(user),
            cache: XCache::Near,
        });
    }
    let ticket = b.near.ticket(id);
    let (fetched, tracked) = through_redis(s, &b, id, &k, tracking).await?;
    let fresh = match fetched.cache {
        XCache::Hit | XCache::Miss | XCache::Coalesced => true,
        XCache::Stale | XCache::Near => false,
    };
    // In tracking mode only a key Redis tracks for this server may go into L1.
    if fresh && (tracked || !tracking) {
        if let Some(user) = &fetched.user {
            b.near.admit(id, ticket, user.clone(), &k);
        }
    }
    Ok(fetched)
}

/// GET of user `id` through Redis with every remedy; with `tracking`, looked up over the
/// near cache's invalidation link when it is up (and no remedy needs the TTL): the answer,
/// and whether Redis now tracks the key for this server.
async fn through_redis<S: RowSource>(
    s: S,
    b: &Arc<Backend>,
    id: i32,
    k: &Settings,
    tracking: bool,
) -> Result<(Fetched, bool), StrategyError> {
    let b = b.clone();
    let k = *k;
    let key = user_key(id);
    let wants_ttl = S::REFRESHES_AHEAD
        || match k.protection {
            Protection::Xfetch | Protection::Swr => true,
            Protection::None | Protection::Singleflight | Protection::Lock => false,
        };
    let tracked_lookup = match tracking && !wants_ttl {
        true => b.near.tracked_get(&key, &k).await,
        false => None,
    };
    let tracked = matches!(tracked_lookup, Some(Ok(_)));
    let looked = match tracked_lookup {
        Some(Ok(value)) => Ok(value.map(|value| Entry { value, pttl_ms: -1 })),
        Some(Err(_)) | None if wants_ttl => b.cache.get_with_ttl(&key).await,
        Some(Err(_)) | None => b
            .cache
            .get(&key)
            .await
            .map(|v| v.map(|value| Entry { value, pttl_ms: -1 })),
    };
    // An early recompute replaces only the value it recomputed (never a newer write).
    let mut recomputing = None;
    let cache_usable = match looked {
        Ok(Some(entry)) => match on_hit(s, &b, id, &k, entry) {
            Answer::Fetched(fetched) => {
                b.counters.record(fetched.cache.counter());
                tracing::debug!(strategy = b.name, "CACHE {} {key}", fetched.cache.as_str());
                return Ok((fetched, tracked));
            }
            Answer::RecomputeNow(old) => {
                b.counters.record(Counter::EarlyRefreshes);
                recomputing = Some(old);
                true
            }
            Answer::Missed => true,
        },
        Ok(None) => true,
        Err(e) => {
            b.cache_failed("GET", &key, &e);
            false
        }
    };
    let direct = |recomputing| load_and_fill(s, &b, id, cache_usable, recomputing);
    // Without the cache there is nothing to share a read through.
    let (user, cache) = match k.protection {
        Protection::Singleflight if cache_usable => {
            let wait = Duration::from_millis(k.lock_ttl_ms);
            singleflight::read(s, &b, id, wait).await
        }
        Protection::Lock if cache_usable => lock::read(s, &b, id, &k).await,
        Protection::Singleflight | Protection::Lock => (direct(None).await, XCache::Miss),
        Protection::None | Protection::Xfetch | Protection::Swr => {
            (direct(recomputing).await, XCache::Miss)
        }
    };
    b.counters.record(cache.counter());
    tracing::debug!(strategy = b.name, "CACHE {} {key}", cache.as_str());
    Ok((Fetched { user: user?, cache }, tracked))
}

/// What a cached entry means for the read.
enum Answer {
    /// Answered from the cache.
    Fetched(Fetched),
    /// A hit that must be recomputed in the request (xfetch), with the value it replaces.
    RecomputeNow(Bytes),
    /// Not an answer: the write guard's marker of an invalidated row.
    Missed,
}

/// What a cached entry answers.
fn on_hit<S: RowSource>(s: S, b: &Arc<Backend>, id: i32, k: &Settings, entry: Entry) -> Answer {
    match Cached::of(&entry.value) {
        Cached::Tombstone => {
            return Answer::Fetched(Fetched {
                user: None,
                cache: XCache::Hit,
            })
        }
        Cached::Invalidated => return Answer::Missed,
        Cached::Row => {}
    }
    let pttl = entry.pttl_ms;
    match k.protection {
        Protection::Swr if pttl >= 0 && pttl <= (k.stale_secs * 1000) as i64 => {
            refresh::spawn(s, b, id, entry.value.clone());
            return Answer::Fetched(Fetched {
                user: Some(entry.value),
                cache: XCache::Stale,
            });
        }
        Protection::Xfetch => {
            let delta = b.remedies.recompute_times.get(id).unwrap_or_default();
            if xfetch::recompute_early(delta, k.xfetch_beta, pttl, xfetch::draw()) {
                return Answer::RecomputeNow(entry.value);
            }
        }
        Protection::Swr | Protection::None | Protection::Singleflight | Protection::Lock => {}
    }
    if S::REFRESHES_AHEAD && pttl >= 0 {
        let fresh_ms = k.ttl_ms as f64 * k.refresh_ratio;
        let left_fresh = pttl - (swr_extension(k).as_millis() as i64);
        if (left_fresh as f64) < fresh_ms {
            refresh::spawn(s, b, id, entry.value.clone());
        }
    }
    Answer::Fetched(Fetched {
        user: Some(entry.value),
        cache: XCache::Hit,
    })
}
