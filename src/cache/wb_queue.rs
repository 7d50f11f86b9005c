//! Write-behind's queue in Redis, the layout write-behind owns: `{wb}:queue` (a hash, user
//! id → the latest queued write, so later writes to one user coalesce), `{wb}:flushing`
//! (the batch the flusher is applying), `{wb}:generation` (user id → how many writes were
//! queued for it and the stamp of the last, `7|2026-12-05T02:27:03.123456`: a write
//! commits only if no other write to that user was queued since it read its base, and a
//! cached row older than the last queued write is not a base), and `{wb}:rejected` (dead letters: writes Postgres refused or that
//! could not be read, with why). Every key carries the `{wb}` hash tag, so on a Redis
//! Cluster they share one slot and one script can use them all.
//!
//! A write is a compare-and-set: `snapshot` reads the queued entry and the generation in
//! one round trip, the caller merges, and `commit` queues the result only if the
//! generation is unchanged — on one Redis node together with the cached row, in the same
//! script. Keys of the wrong type (a lab's `SET {wb}:queue x`) are renamed aside
//! (`{wb}:malformed:...`) and counted, never retried forever.

use bytes::Bytes;
use std::sync::LazyLock;
use std::time::Duration;

use super::{Cache, CacheError};

pub const QUEUE: &str = "{wb}:queue";
pub const FLUSHING: &str = "{wb}:flushing";
pub const GENERATION: &str = "{wb}:generation";
pub const REJECTED: &str = "{wb}:rejected";

/// Rename each of KEYS[1..n] that is not a hash aside; the count is in `moved`.
const MOVE_ASIDE: &str = "local moved = 0 \
    for i = 1, #KEYS do \
      local key = KEYS[i] \
      if string.sub(key, 1, 5) == '{wb}:' then \
        local t = redis.call('TYPE', key).ok \
        if t ~= 'hash' and t ~= 'none' then \
          local now = redis.call('TIME') \
          redis.call('RENAME', key, '{wb}:malformed:' .. string.sub(key, 6) .. ':' .. now[1] .. now[2]) \
          moved = moved + 1 \
        end \
      end \
    end ";

/// KEYS: queue, flushing, generation[, the user's cache key]. ARGV: id. Returns the
/// newest queued entry (or nil), the generation, how many keys were moved aside, the
/// cached value (or nil), the last write's stamp, and 1 when the entry is still in the
/// queue (0: in the batch being flushed).
static SNAPSHOT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{MOVE_ASIDE} \
         local entry = redis.call('HGET', KEYS[1], ARGV[1]) \
         local in_queue = 1 \
         if not entry then entry = redis.call('HGET', KEYS[2], ARGV[1]); in_queue = 0 end \
         local last = redis.call('HGET', KEYS[3], ARGV[1]) or '0|' \
         local generation, stamp = string.match(last, '^(%d+)|(.*)$') \
         local cached = false \
         if KEYS[4] then cached = redis.call('GET', KEYS[4]) end \
         return {{entry, tonumber(generation or '0'), moved, cached, stamp or '', in_queue}}"
    ))
});

/// KEYS: queue, generation[, the user's cache key]. ARGV: id, expected generation, entry,
/// the write's stamp, 1 if the entry must still be in the queue (a merge into a queued
/// insert, which stays an insert only while the flusher has not taken it)[, cached value,
/// TTL in ms]. Queues the entry (and caches the value) only if the generation is still
/// the expected one (and the queued entry still there, when asked). Returns {1, 1 if it
/// replaced a queued entry, moved} or {0, the generation now, moved}.
static COMMIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{MOVE_ASIDE} \
         local last = redis.call('HGET', KEYS[2], ARGV[1]) or '0|' \
         local generation = tonumber(string.match(last, '^(%d+)') or '0') \
         if generation ~= tonumber(ARGV[2]) then return {{0, generation, moved}} end \
         if ARGV[5] == '1' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then \
           return {{0, generation, moved}} \
         end \
         local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) \
         redis.call('HSET', KEYS[2], ARGV[1], (generation + 1) .. '|' .. ARGV[4]) \
         if KEYS[3] then redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[7]) end \
         return {{1, 1 - added, moved}}"
    ))
});

/// The snapshot script's reply, as listed on `SNAPSHOT`.
type SnapshotReply = (Option<Vec<u8>>, i64, u64, Option<Vec<u8>>, String, i64);

/// What the queue holds for one user when a write begins.
#[derive(Debug)]
pub struct Snapshot {
    /// The newest queued write (the queue's, else the batch being flushed).
    pub entry: Option<Bytes>,
    /// How many writes were queued for the user: the commit's expectation.
    pub generation: i64,
    /// Wrong-typed keys moved aside while looking.
    pub moved_aside: u64,
    /// The user's cached value, when it was asked for.
    pub cached: Option<Bytes>,
    /// The stamp of the last write queued for the user ("" if none): a cached row older
    /// than it is stale and no base for a merge.
    pub last_stamp: String,
    /// The entry is in the queue (not yet taken by the flusher).
    pub in_queue: bool,
}

/// How a commit ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Committed {
    /// Queued (and cached, when the value was given); `replaced`: a queued write to the
    /// same user was coalesced into this one.
    Queued { replaced: bool, moved_aside: u64 },
    /// Another write to the user was queued since the snapshot: merge again.
    Changed { moved_aside: u64 },
}

/// The row cached with a committed write, on one Redis node (in the commit's script).
pub struct CachedRow<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    pub ttl: Duration,
}

/// Write-behind's queue over the servers' cache connection (and its breaker).
pub struct WbQueue<'a> {
    cache: &'a Cache,
}

impl<'a> WbQueue<'a> {
    pub fn new(cache: &'a Cache) -> Self {
        Self { cache }
    }

    /// The queued write and generation of user `id`, in one round trip; with
    /// `cache_key` (one Redis node only: on a cluster it lives in another slot) its cached
    /// value too.
    pub async fn snapshot(&self, id: i32, cache_key: Option<&str>) -> Result<Snapshot, CacheError> {
        self.cache
            .call(Some(QUEUE.as_bytes()), |mut c| async move {
                let mut invocation = SNAPSHOT.prepare_invoke();
                invocation.key(QUEUE).key(FLUSHING).key(GENERATION).arg(id);
                if let Some(key) = cache_key {
                    invocation.key(key);
                }
                let (entry, generation, moved, cached, last_stamp, in_queue): SnapshotReply =
                    invocation.invoke_async(&mut c).await?;
                Ok(Snapshot {
                    entry: entry.map(Bytes::from),
                    generation,
                    moved_aside: moved,
                    cached: cached.map(Bytes::from),
                    last_stamp,
                    in_queue: in_queue == 1,
                })
            })
            .await
    }

    /// Queue `entry` (a write stamped `stamp`) for user `id` if its generation is still
    /// `expected` — and, with `still_queued`, the user's entry is still in the queue (the
    /// flusher has not taken it) —; with `cached` (one Redis node), cache the row in the
    /// same step.
    pub async fn commit(
        &self,
        id: i32,
        expected: i64,
        entry: &[u8],
        stamp: &str,
        still_queued: bool,
        cached: Option<CachedRow<'_>>,
    ) -> Result<Committed, CacheError> {
        self.cache
            .call(Some(QUEUE.as_bytes()), |mut c| async move {
                let mut invocation = COMMIT.prepare_invoke();
                invocation.key(QUEUE).key(GENERATION);
                invocation
                    .arg(id)
                    .arg(expected)
                    .arg(entry)
                    .arg(stamp)
                    .arg(if still_queued { "1" } else { "0" });
                if let Some(row) = &cached {
                    invocation
                        .key(row.key)
                        .arg(row.value)
                        .arg((row.ttl.as_millis() as u64).max(1));
                }
                let (done, detail, moved): (i64, i64, u64) =
                    invocation.invoke_async(&mut c).await?;
                Ok(if done == 1 {
                    Committed::Queued {
                        replaced: detail == 1,
                        moved_aside: moved,
                    }
                } else {
                    Committed::Changed { moved_aside: moved }
                })
            })
            .await
    }

    /// Make the next batch ready to flush: wrong-typed keys moved aside (counted), and,
    /// unless a batch is left over from a failed flush, the whole queue renamed into the
    /// batch (RENAMENX: atomic, and never over a leftover batch), so new writes start a
    /// fresh queue. No script: under `noeviction` with Redis full, a script may be
    /// refused, and RENAME and TYPE never are.
    pub async fn start_batch(&self) -> Result<u64, CacheError> {
        self.cache
            .call(Some(QUEUE.as_bytes()), |mut c| async move {
                let types: (String, String, String) = redis::pipe()
                    .cmd("TYPE")
                    .arg(QUEUE)
                    .cmd("TYPE")
                    .arg(FLUSHING)
                    .cmd("TYPE")
                    .arg(GENERATION)
                    .query_async(&mut c)
                    .await?;
                let mut moved = 0;
                for (key, kind) in [
                    (QUEUE, &types.0),
                    (FLUSHING, &types.1),
                    (GENERATION, &types.2),
                ] {
                    if kind != "hash" && kind != "none" {
                        let aside = format!(
                            "{{wb}}:malformed:{}:{}",
                            &key[5..],
                            std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap_or_default()
                                .as_micros()
                        );
                        let _: () = redis::cmd("RENAME")
                            .arg(key)
                            .arg(aside)
                            .query_async(&mut c)
                            .await?;
                        moved += 1;
                    }
                }
                // Nothing of the batch is left over: the queue becomes the batch.
                let queue_left = types.0 == "hash";
                let batch_left = types.1 == "hash";
                if queue_left && !batch_left {
                    let _: bool = redis::cmd("RENAMENX")
                        .arg(QUEUE)
                        .arg(FLUSHING)
                        .query_async(&mut c)
                        .await?;
                }
                Ok(moved)
            })
            .await
    }

    /// Up to about `max` writes of the batch from `cursor` (HSCAN: a large batch is read
    /// in bounded pieces); the next cursor is 0 when the scan is complete.
    pub async fn batch_chunk(
        &self,
        cursor: u64,
        max: usize,
    ) -> Result<(u64, Vec<(String, Bytes)>), CacheError> {
        self.cache
            .call(Some(FLUSHING.as_bytes()), |mut c| async move {
                let (next, pairs): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
                    .arg(FLUSHING)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(max)
                    .query_async(&mut c)
                    .await?;
                Ok((
                    next,
                    pairs
                        .into_iter()
                        .map(|(id, entry)| (id, Bytes::from(entry)))
                        .collect(),
                ))
            })
            .await
    }

    /// These writes of the batch are settled: applied to Postgres, or dead-lettered in
    /// `rejected` (field → why, with the entry), in one round trip.
    pub async fn settle(
        &self,
        done: &[&str],
        rejected: &[(&str, String)],
    ) -> Result<(), CacheError> {
        if done.is_empty() && rejected.is_empty() {
            return Ok(());
        }
        self.cache
            .call(Some(FLUSHING.as_bytes()), |mut c| async move {
                let mut pipe = redis::pipe();
                if !rejected.is_empty() {
                    let mut hset = redis::cmd("HSET");
                    hset.arg(REJECTED);
                    for (field, why) in rejected {
                        hset.arg(*field).arg(why.as_str());
                    }
                    pipe.add_command(hset).ignore();
                }
                let mut hdel = redis::cmd("HDEL");
                hdel.arg(FLUSHING);
                for field in done.iter().chain(rejected.iter().map(|(f, _)| f)) {
                    hdel.arg(*field);
                }
                pipe.add_command(hdel).ignore();
                pipe.query_async::<()>(&mut c).await
            })
            .await
    }

    /// The newest queued write for user `id` (the queue, else the batch being flushed),
    /// as a read looks for it.
    pub async fn pending(&self, id: i32) -> Result<Option<Bytes>, CacheError> {
        Ok(self.snapshot(id, None).await?.entry)
    }

    /// How many writes wait in the queue and the batch.
    pub async fn queued(&self) -> Result<u64, CacheError> {
        self.cache
            .call(Some(QUEUE.as_bytes()), |mut c| async move {
                let (a, b): (u64, u64) = redis::pipe()
                    .hlen(QUEUE)
                    .hlen(FLUSHING)
                    .query_async(&mut c)
                    .await?;
                Ok(a + b)
            })
            .await
    }
}
