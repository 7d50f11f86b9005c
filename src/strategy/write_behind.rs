//! Write-behind (write-back): a write goes to the cache first — the whole new row, SETEX —
//! and into a queue in Redis (`{wb}:queue`, a hash: user id → the latest queued write, so
//! later writes to one user coalesce). A flusher applies the queue to Postgres in one
//! transaction every `flush_interval_ms`. Acknowledged writes live only in Redis until
//! flushed: losing Redis loses them (labs/write-behind.rhai shows it).
//!
//! A read never sees a queued change undone: a miss looks in the queue (and the batch
//! being flushed) before Postgres, and fills the cache only if nothing is cached (NX), so
//! a read that loaded the old row cannot overwrite the row a write just cached.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::remedies::{invalidation, tombstone};
use super::write::{cache_row, Fill};
use super::{to_json, Backend, Patch, Strategy, StrategyError};
use crate::cache::user_key;
use crate::counters::Counter;
use crate::store::{BatchWrite, User};

/// How long a clean shutdown keeps flushing what is queued.
const FINAL_FLUSH_BOUND: Duration = Duration::from_secs(5);

/// The write-behind strategy.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteBehind;

/// A write waiting in the queue, as stored there (JSON, readable with redis-cli HGETALL).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Queued {
    Upsert { row: User },
    Delete,
}

impl Strategy for WriteBehind {
    const NAME: &'static str = "write-behind";
    const SUMMARY: &'static str =
        "reads: cache, else the write queue, else Postgres; writes: the cache and a queue in Redis, flushed to Postgres in batches every flush_interval_ms";
    const FILL_IF_ABSENT: bool = true;

    /// The queue first (a queued write is newer than Postgres), then Postgres.
    async fn load(self, b: &Arc<Backend>, id: i32) -> Result<Option<User>, StrategyError> {
        match b.cache.wb_pending(id).await {
            Ok(Some(entry)) => {
                if let Some(queued) = parse(id, &entry) {
                    return Ok(match queued {
                        Queued::Upsert { row } => Some(row),
                        Queued::Delete => None,
                    });
                }
            }
            Ok(None) => {}
            Err(e) => b.cache_failed("HGET", crate::cache::keys::WB_QUEUE, &e),
        }
        b.counters.record(Counter::DbReads);
        Ok(b.store.get_user(id, b.knobs.get().db_delay()).await?)
    }

    async fn update(
        self,
        b: &Arc<Backend>,
        id: i32,
        patch: Patch<'_>,
    ) -> Result<Option<Bytes>, StrategyError> {
        let Some(mut row) = current(self, b, id).await? else {
            return Ok(None);
        };
        if let Some(name) = patch.name {
            row.name = name.to_string();
        }
        if let Some(email) = patch.email {
            row.email = email.to_string();
        }
        row.updated_at = Some(now());
        Ok(Some(queue_and_cache(b, row).await?))
    }

    /// The id comes from Postgres' sequence (one round trip); the row is queued.
    async fn create(
        self,
        b: &Arc<Backend>,
        name: &str,
        email: &str,
    ) -> Result<Bytes, StrategyError> {
        let id = b.store.next_user_id().await?;
        let row = User {
            id,
            name: name.to_string(),
            email: email.to_string(),
            updated_at: Some(now()),
        };
        queue_and_cache(b, row).await
    }

    async fn delete(self, b: &Arc<Backend>, id: i32) -> Result<bool, StrategyError> {
        if current(self, b, id).await?.is_none() {
            return Ok(false);
        }
        enqueue(b, id, &Queued::Delete).await?;
        invalidation::evict(b, id).await;
        tracing::debug!(strategy = Self::NAME, "QUEUED DELETE user:{id}");
        Ok(true)
    }

    fn start_background(self, b: &Arc<Backend>) {
        b.daemons.spawn(flusher(b.clone()));
    }
}

/// The row as a read would see it now: the cache, else the queue, else Postgres.
async fn current(s: WriteBehind, b: &Arc<Backend>, id: i32) -> Result<Option<User>, StrategyError> {
    let key = user_key(id);
    match b.cache.get(&key).await {
        Ok(Some(value)) if tombstone::is_tombstone(&value) => return Ok(None),
        Ok(Some(value)) => {
            if let Ok(row) = serde_json::from_slice::<User>(&value) {
                return Ok(Some(row));
            }
        }
        Ok(None) => {}
        Err(e) => b.cache_failed("GET", &key, &e),
    }
    s.load(b, id).await
}

/// Queue `row` and cache it; its JSON is the answer.
async fn queue_and_cache(b: &Arc<Backend>, row: User) -> Result<Bytes, StrategyError> {
    let id = row.id;
    let body = to_json(&row);
    enqueue(b, id, &Queued::Upsert { row }).await?;
    cache_row(b, id, &body, Fill::Always).await;
    tracing::debug!(strategy = WriteBehind::NAME, "QUEUED user:{id}");
    Ok(body)
}

/// Put a write in the queue. Without Redis a write cannot be acknowledged: 503.
async fn enqueue(b: &Backend, id: i32, queued: &Queued) -> Result<(), StrategyError> {
    let entry = serde_json::to_vec(queued).expect("a queued write serialises");
    let replaced = b.cache.wb_enqueue(id, &entry).await?;
    b.counters.record(Counter::WbQueued);
    if replaced {
        b.counters.record(Counter::WbCoalesced);
    }
    Ok(())
}

fn parse(id: i32, entry: &[u8]) -> Option<Queued> {
    serde_json::from_slice(entry)
        .inspect_err(|e| tracing::warn!("write-behind: unreadable queue entry for user {id}: {e}"))
        .ok()
}

/// Now, as Postgres writes a `TIMESTAMP` in JSON (UTC, microseconds, no zone).
fn now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now())
        .to_string()
        .trim_end_matches('Z')
        .to_string()
}

/// How often the flusher looks at its interval knob: a changed interval applies within
/// this, not after the old interval ran out.
const KNOB_CHECK: Duration = Duration::from_millis(20);

/// Apply the queue to Postgres every `flush_interval_ms` until the server stops, then
/// flush what is left (bounded) so a clean shutdown loses nothing.
async fn flusher(b: Arc<Backend>) {
    let mut last = tokio::time::Instant::now();
    loop {
        let interval = Duration::from_millis(b.knobs.get().flush_interval_ms.max(1));
        let due = last + interval;
        tokio::select! {
            _ = b.stop.cancelled() => break,
            _ = tokio::time::sleep_until(due.min(tokio::time::Instant::now() + KNOB_CHECK)) => {}
        }
        // The interval may have changed while this task slept.
        let interval = Duration::from_millis(b.knobs.get().flush_interval_ms.max(1));
        if tokio::time::Instant::now() >= last + interval {
            flush_once(&b).await;
            last = tokio::time::Instant::now();
        }
    }
    let give_up = tokio::time::Instant::now() + FINAL_FLUSH_BOUND;
    while tokio::time::Instant::now() < give_up {
        match flush_once(&b).await {
            Some(0) | None => break,
            Some(_) => {}
        }
    }
}

/// Flush one batch: `Some(rows written)`, or `None` when it failed (the batch stays in
/// Redis and is retried first next time).
async fn flush_once(b: &Backend) -> Option<usize> {
    let _quiet = b.quiet.lock().await;
    let batch = match b.cache.wb_take_batch().await {
        Ok(batch) => batch,
        Err(e) => {
            b.cache_failed("take batch", crate::cache::keys::WB_QUEUE, &e);
            return None;
        }
    };
    if batch.is_empty() {
        return Some(0);
    }
    let writes: Vec<BatchWrite> = batch
        .iter()
        .filter_map(|(id, entry)| {
            Some(match parse(*id, entry)? {
                Queued::Upsert { row } => BatchWrite::Upsert(row),
                Queued::Delete => BatchWrite::Delete(*id),
            })
        })
        .collect();
    if let Err(e) = b.store.apply_batch(&writes).await {
        tracing::debug!("write-behind: flushing {} writes failed: {e}", writes.len());
        b.counters.record(Counter::DbErrors);
        return None;
    }
    if let Err(e) = b.cache.wb_batch_done().await {
        b.cache_failed("DEL", crate::cache::keys::WB_FLUSHING, &e);
    }
    let n = writes.len() as u64;
    b.counters.add(Counter::WbFlushed, n);
    b.counters.add(Counter::DbWrites, n);
    b.counters.record(Counter::WbBatches);
    tracing::debug!(strategy = WriteBehind::NAME, "FLUSHED {n} writes in one transaction");
    Some(writes.len())
}
