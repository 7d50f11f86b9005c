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
use crate::knobs::{Protection, Settings};
use crate::xcache::XCache;

/// A read's answer: the user's JSON (`None`: no such user) and where it came from.
pub struct Fetched {
    pub user: Option<Bytes>,
    pub cache: XCache,
}

/// GET of user `id` through the cache.
pub async fn read<S: RowSource>(s: S, b: Arc<Backend>, id: i32) -> Result<Fetched, StrategyError> {
    let k = b.knobs.get();
    let key = user_key(id);
    let wants_ttl = S::REFRESHES_AHEAD
        || match k.protection {
            Protection::Xfetch | Protection::Swr => true,
            Protection::None | Protection::Singleflight | Protection::Lock => false,
        };
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
            Answer::Fetched(fetched) => {
                b.counters.record(fetched.cache.counter());
                tracing::debug!(strategy = b.name, "CACHE {} {key}", fetched.cache.as_str());
                return Ok(fetched);
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
    Ok(Fetched { user: user?, cache })
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
