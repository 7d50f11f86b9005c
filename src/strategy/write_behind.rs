//! Write-behind (write-back): a write goes to the cache first — the whole new row — and
//! into a queue in Redis (see `cache::wb_queue`: one entry per user, so later writes to
//! one user coalesce). A flusher applies the queue to Postgres in batches every
//! `flush_interval_ms`. Acknowledged writes live only in Redis until flushed: losing Redis
//! loses them (labs/write-behind.rhai shows it).
//!
//! No acknowledged write is lost to a race: a write is one atomic read-modify-write. It
//! reads its base (the queued write, else the cached row, else Postgres) and the user's
//! queue generation, merges, and commits only if no other write to that user was queued
//! in between (else it merges again). So a concurrent `PUT name` and `PUT email` both
//! survive, and a DELETE racing a PUT ends as their answers say. Each written row carries
//! an `updated_at` stamp that grows with every write of it; on one Redis node the row is
//! cached by the commit itself, on a cluster by a SET that applies only over an older
//! stamp, so the cache never goes back to an older write. A DELETE caches a tombstone
//! with its stamp (a racing PUT's cache write cannot bring the row back).
//!
//! A read never sees a queued change undone: a miss looks in the queue (and the batch
//! being flushed) before Postgres, and fills the cache only if nothing is cached (NX).
//!
//! The flusher never wedges: writes Postgres refuses, and entries that cannot be read,
//! go to the dead-letter hash `{wb}:rejected` (counted `wb_rejected`), the rest of the
//! batch lands; a batch is at most `wb_batch_max` writes.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::backend::Backend;
use super::cached::Cached;
use super::error::StrategyError;
use super::fill::{cached_row, row_ttl, to_json};
use super::ops::Strategy;
use super::remedies::tombstone;
use super::source::RowSource;
use super::write::Patch;
use crate::cache::user_key;
use crate::cache::wb_queue::{self, CachedRow, Committed, WbQueue};
use crate::counters::Counter;
use crate::store::{BatchWrite, User};

/// How long a clean shutdown keeps flushing what is queued.
const FINAL_FLUSH_BOUND: Duration = Duration::from_secs(5);

/// How many times a write merges again when other writes to its user keep being queued
/// first; past it the write is refused (503) rather than spinning.
const COMMIT_ATTEMPTS: u32 = 100;

/// The write-behind strategy.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteBehind;

/// A write waiting in the queue, as stored there (JSON, readable with redis-cli HGETALL).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Queued {
    /// A POST: inserted by the flush, never over an existing row.
    Insert {
        row: User,
    },
    /// A PUT (or several, coalesced): the row's fields replaced by the flush.
    Update {
        row: User,
    },
    Delete,
}

/// What a write asks for.
enum Change<'a> {
    Patch(Patch<'a>),
    Insert { name: &'a str, email: &'a str },
    Delete,
}

/// What a write found for its user before merging.
enum Base {
    /// The row as reads see it now, and how it would reach Postgres if queued.
    Row(User, Kind),
    Absent,
}

#[derive(Clone, Copy)]
enum Kind {
    Insert,
    Update,
}

impl RowSource for WriteBehind {
    const FILL_IF_ABSENT: bool = true;

    /// The queue first (a queued write is newer than Postgres), then Postgres.
    async fn load(self, b: &Arc<Backend>, id: i32) -> Result<Option<User>, StrategyError> {
        match WbQueue::new(&b.cache).snapshot(id, None).await {
            Ok(snapshot) => {
                count_moved_aside(b, snapshot.moved_aside);
                if let Some(queued) = snapshot.entry.as_deref().and_then(|e| parse(id, e)) {
                    return Ok(match queued {
                        Queued::Insert { row } | Queued::Update { row } => Some(row),
                        Queued::Delete => None,
                    });
                }
            }
            Err(e) => b.cache_failed("look in the queue", wb_queue::QUEUE, &e),
        }
        b.counters.record(Counter::DbReads);
        Ok(b.store.get_user(id, b.knobs.get().db_delay()).await?)
    }
}

impl Strategy for WriteBehind {
    const NAME: &'static str = "write-behind";
    const SUMMARY: &'static str =
        "reads: cache, else the write queue, else Postgres; writes: the cache and a queue in Redis, flushed to Postgres in batches every flush_interval_ms";

    async fn update(
        self,
        b: &Arc<Backend>,
        id: i32,
        patch: Patch<'_>,
    ) -> Result<Option<Bytes>, StrategyError> {
        Ok(match write(b, id, Change::Patch(patch)).await? {
            Some(Queued::Insert { row } | Queued::Update { row }) => Some(to_json(&row)),
            Some(Queued::Delete) | None => None,
        })
    }

    /// The id comes from Postgres' sequence (one round trip); the row is queued. An id
    /// that is taken (a row inserted with an explicit id) is a 409: nothing is
    /// overwritten.
    async fn create(
        self,
        b: &Arc<Backend>,
        name: &str,
        email: &str,
    ) -> Result<Bytes, StrategyError> {
        let id = match b.store.reserve_user_id().await? {
            Ok(id) => id,
            Err(taken) => return Err(taken_id(taken)),
        };
        match write(b, id, Change::Insert { name, email }).await? {
            Some(Queued::Insert { row } | Queued::Update { row }) => Ok(to_json(&row)),
            Some(Queued::Delete) | None => Err(taken_id(id)),
        }
    }

    async fn delete(self, b: &Arc<Backend>, id: i32) -> Result<bool, StrategyError> {
        Ok(write(b, id, Change::Delete).await?.is_some())
    }

    fn start_background(self, b: &Arc<Backend>) {
        b.daemons.spawn(flusher(b.clone()));
    }
}

fn taken_id(id: i32) -> StrategyError {
    StrategyError::Conflict(format!(
        "user {id} already exists (a row was inserted with an explicit id); POST takes ids from the users sequence, try again"
    ))
}

/// One atomic read-modify-write of user `id`: the write it queued (and cached), or `None`
/// when there is no such user (for an insert: a write is queued for the id already).
async fn write(
    b: &Arc<Backend>,
    id: i32,
    change: Change<'_>,
) -> Result<Option<Queued>, StrategyError> {
    let queue = WbQueue::new(&b.cache);
    let key = user_key(id);
    let cluster = b.cache.is_cluster();
    for _ in 0..COMMIT_ATTEMPTS {
        // The queue and the cached row in one round trip on one node; side by side on a
        // cluster, where they live in different slots.
        let (snapshot, cached) = if cluster {
            let (snapshot, cached) = tokio::join!(queue.snapshot(id, None), b.cache.get(&key));
            let cached = cached.unwrap_or_else(|e| {
                b.cache_failed("GET", &key, &e);
                None
            });
            (snapshot, cached)
        } else {
            let snapshot = queue.snapshot(id, Some(&key)).await;
            let cached = snapshot.as_ref().ok().and_then(|s| s.cached.clone());
            (snapshot, cached)
        };
        let snapshot = snapshot.map_err(|e| {
            b.cache_failed("look in the queue", wb_queue::QUEUE, &e);
            StrategyError::Redis(e)
        })?;
        count_moved_aside(b, snapshot.moved_aside);
        // A queued insert the flusher has taken is being inserted: a write after it is
        // an update, and one merged into it stays an insert only while it is queued.
        let base = match snapshot.entry.as_deref().and_then(|e| parse(id, e)) {
            Some(Queued::Insert { row }) if snapshot.in_queue => Base::Row(row, Kind::Insert),
            Some(Queued::Insert { row } | Queued::Update { row }) => Base::Row(row, Kind::Update),
            Some(Queued::Delete) => Base::Absent,
            None if matches!(change, Change::Insert { .. }) => Base::Absent,
            None => unqueued_base(b, id, cached, &snapshot.last_stamp).await?,
        };
        let merges_an_insert = matches!(base, Base::Row(_, Kind::Insert));
        let (queued, cached, stamp) = match (&change, base) {
            (Change::Insert { .. }, Base::Row(..)) => return Ok(None),
            (Change::Patch(_) | Change::Delete, Base::Absent) => return Ok(None),
            (Change::Insert { name, email }, Base::Absent) => {
                let stamp = stamp_after(None);
                let row = User {
                    id,
                    name: name.to_string(),
                    email: email.to_string(),
                    updated_at: Some(stamp.clone()),
                };
                let body = to_json(&row);
                (Queued::Insert { row }, Caches::Row(body), stamp)
            }
            (Change::Patch(patch), Base::Row(mut row, kind)) => {
                if let Some(name) = patch.name {
                    row.name = name.to_string();
                }
                if let Some(email) = patch.email {
                    row.email = email.to_string();
                }
                let stamp = stamp_after(row.updated_at.as_deref());
                row.updated_at = Some(stamp.clone());
                let body = to_json(&row);
                let queued = match kind {
                    Kind::Insert => Queued::Insert { row },
                    Kind::Update => Queued::Update { row },
                };
                (queued, Caches::Row(body), stamp)
            }
            (Change::Delete, Base::Row(row, _)) => {
                let stamp = stamp_after(row.updated_at.as_deref());
                let tombstone = tombstone::stamped(id, &stamp);
                (Queued::Delete, Caches::Tombstone(tombstone), stamp)
            }
        };
        let entry = serde_json::to_vec(&queued).expect("a queued write serialises");
        let (value, ttl) = match &cached {
            Caches::Row(body) => cached_row(&b.knobs.get(), body),
            Caches::Tombstone(t) => (t.to_vec(), row_ttl(&b.knobs.get())),
        };
        // One Redis node: the row is cached by the commit itself. A cluster keeps the row
        // and the queue in different slots: the row follows, guarded by its stamp.
        let in_commit = (!cluster).then(|| CachedRow {
            key: &key,
            value: &value,
            ttl,
        });
        let committed = queue
            .commit(
                id,
                snapshot.generation,
                &entry,
                &stamp,
                merges_an_insert,
                in_commit,
            )
            .await
            .map_err(|e| {
                b.cache_failed("queue", wb_queue::QUEUE, &e);
                StrategyError::Redis(e)
            })?;
        match committed {
            Committed::Changed { moved_aside } => {
                count_moved_aside(b, moved_aside);
                tokio::task::yield_now().await;
            }
            Committed::Queued {
                replaced,
                moved_aside,
            } => {
                count_moved_aside(b, moved_aside);
                b.counters.record(Counter::WbQueued);
                if replaced {
                    b.counters.record(Counter::WbCoalesced);
                }
                if cluster {
                    match b.cache.set_if_newer(&key, &value, &stamp, ttl).await {
                        Ok(_) => b.counters.record(Counter::CacheSets),
                        Err(e) => b.cache_failed("SET", &key, &e),
                    }
                } else {
                    b.counters.record(Counter::CacheSets);
                }
                tracing::debug!(strategy = WriteBehind::NAME, "QUEUED user:{id}");
                return Ok(Some(queued));
            }
        }
    }
    Err(StrategyError::Contended(format!(
        "user {id} was written {COMMIT_ATTEMPTS} times by others while this write merged; try again"
    )))
}

/// The stamp a cached row or tombstone carries.
#[derive(Deserialize)]
struct Stamped {
    updated_at: Option<String>,
    deleted_at: Option<String>,
}

/// What a write caches: the row, or a tombstone for a DELETE.
enum Caches {
    Row(Bytes),
    Tombstone(Bytes),
}

/// The row as reads see it when nothing is queued for it: the `cached` value, unless it
/// is older than the last write queued for the user (`last_stamp`: a fill that raced a
/// flush, or on a cluster a write whose cache SET has not landed yet), else Postgres.
async fn unqueued_base(
    b: &Arc<Backend>,
    id: i32,
    cached: Option<Bytes>,
    last_stamp: &str,
) -> Result<Base, StrategyError> {
    if let Some(value) = cached {
        if let Ok(seen) = serde_json::from_slice::<Stamped>(&value) {
            let stamp = seen.updated_at.or(seen.deleted_at).unwrap_or_default();
            if *stamp >= *last_stamp {
                match Cached::of(&value) {
                    Cached::Tombstone => return Ok(Base::Absent),
                    Cached::Row => {
                        if let Ok(row) = serde_json::from_slice::<User>(&value) {
                            return Ok(Base::Row(row, Kind::Update));
                        }
                    }
                    Cached::Invalidated => {}
                }
            }
        }
    }
    b.counters.record(Counter::DbReads);
    Ok(match b.store.get_user(id, Duration::ZERO).await? {
        Some(row) => Base::Row(row, Kind::Update),
        None => Base::Absent,
    })
}

fn count_moved_aside(b: &Backend, moved: u64) {
    if moved > 0 {
        b.counters.add(Counter::WbRejected, moved);
        tracing::warn!(
            "write-behind: {moved} wrong-typed queue key(s) moved aside to {{wb}}:malformed:*"
        );
    }
}

fn parse(id: i32, entry: &[u8]) -> Option<Queued> {
    serde_json::from_slice(entry)
        .inspect_err(|e| tracing::debug!("write-behind: unreadable queue entry for user {id}: {e}"))
        .ok()
}

/// A stamp for a new write of a row last stamped `previous`: now, as Postgres writes a
/// `TIMESTAMP` in JSON (UTC, microseconds, no zone), and always after `previous`, so the
/// stamps of one row grow with every write even if the clock does not.
fn stamp_after(previous: Option<&str>) -> String {
    let now = SystemTime::now();
    let after = previous
        .and_then(|p| humantime::parse_rfc3339_weak(p).ok())
        .map(|p| p + Duration::from_micros(1));
    let at = match after {
        Some(after) if after > now => after,
        _ => now,
    };
    humantime::format_rfc3339_micros(at)
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

/// Flush the batch: `Some(writes settled)`, or `None` when Redis or Postgres failed (what
/// is left of the batch stays in Redis and is retried first next time).
async fn flush_once(b: &Backend) -> Option<usize> {
    let queue = WbQueue::new(&b.cache);
    {
        let _quiet = b.quiet.lock().await;
        match queue.start_batch().await {
            Ok(moved) => count_moved_aside(b, moved),
            Err(e) => {
                b.cache_failed("take batch", wb_queue::QUEUE, &e);
                return None;
            }
        }
    }
    let max = b.knobs.get().wb_batch_max as usize;
    let mut cursor = 0;
    let mut settled = 0;
    loop {
        // Each piece on its own: a lab's reset can come in between.
        let _quiet = b.quiet.lock().await;
        let (next, pairs) = match queue.batch_chunk(cursor, max).await {
            Ok(chunk) => chunk,
            Err(e) => {
                b.cache_failed("read batch", wb_queue::FLUSHING, &e);
                return None;
            }
        };
        for piece in pairs.chunks(max) {
            settled += flush_piece(b, &queue, piece).await?;
        }
        if next == 0 {
            return Some(settled);
        }
        cursor = next;
    }
}

/// Apply one piece of the batch in one transaction and settle it in Redis.
async fn flush_piece(b: &Backend, queue: &WbQueue<'_>, piece: &[(String, Bytes)]) -> Option<usize> {
    let mut writes = Vec::with_capacity(piece.len());
    let mut fields = Vec::with_capacity(piece.len());
    let mut rejected: Vec<(&str, String)> = Vec::new();
    for (field, entry) in piece {
        let write = field.parse::<i32>().ok().and_then(|id| {
            Some(match parse(id, entry)? {
                Queued::Insert { row } if row.id == id => BatchWrite::Insert(row),
                Queued::Update { row } if row.id == id => BatchWrite::Update(row),
                Queued::Delete => BatchWrite::Delete(id),
                Queued::Insert { .. } | Queued::Update { .. } => return None,
            })
        });
        match write {
            Some(write) => {
                writes.push(write);
                fields.push(field.as_str());
            }
            None => rejected.push((
                field,
                dead_letter(entry, "unreadable: not a queued write of this user"),
            )),
        }
    }
    let outcome = match b.store.apply_batch(&writes).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::debug!("write-behind: flushing {} writes failed: {e}", writes.len());
            b.counters.record(Counter::DbErrors);
            return None;
        }
    };
    let refused: std::collections::HashMap<i32, &str> = outcome
        .rejected
        .iter()
        .map(|(id, why)| (*id, why.as_str()))
        .collect();
    let mut done = Vec::with_capacity(fields.len());
    for (field, write) in fields.iter().zip(&writes) {
        match refused.get(&write.id()) {
            Some(why) => {
                let entry = &piece
                    .iter()
                    .find(|(f, _)| f == field)
                    .expect("from the piece")
                    .1;
                rejected.push((field, dead_letter(entry, why)));
            }
            None => done.push(*field),
        }
    }
    if !rejected.is_empty() {
        b.counters.add(Counter::WbRejected, rejected.len() as u64);
        tracing::warn!(
            "write-behind: {} queued write(s) could not be applied and were moved to {}: user {}: {}",
            rejected.len(),
            wb_queue::REJECTED,
            rejected[0].0,
            rejected[0].1
        );
    }
    if let Err(e) = queue.settle(&done, &rejected).await {
        // Applied but still in the batch: applying them again is harmless.
        b.cache_failed("settle batch", wb_queue::FLUSHING, &e);
        return None;
    }
    let n = outcome.applied as u64;
    b.counters.add(Counter::WbFlushed, n);
    b.counters.add(Counter::DbWrites, n);
    b.counters.record(Counter::WbBatches);
    tracing::debug!(
        strategy = WriteBehind::NAME,
        "FLUSHED {n} writes in one transaction"
    );
    Some(done.len() + rejected.len())
}

/// A dead letter: the queued entry as it was, and why it was not applied.
fn dead_letter(entry: &[u8], why: &str) -> String {
    serde_json::json!({
        "entry": String::from_utf8_lossy(entry),
        "error": why,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::stamp_after;

    #[test]
    fn stamps_of_one_row_grow_with_every_write_even_when_the_clock_does_not() {
        let future = "2999-01-01T00:00:00.5";
        assert_eq!(stamp_after(Some(future)), "2999-01-01T00:00:00.500001");
        let now = stamp_after(None);
        assert_eq!(now.len(), "2026-12-05T02:27:03.123456".len(), "{now}");
        assert!(*stamp_after(Some("2000-01-01T00:00:00")) > *"2000-01-01T00:00:00.000001");
        // Text order is time order, whatever the number of fraction digits.
        assert!(*"2026-01-01T00:00:00.2" > *"2026-01-01T00:00:00.12");
        assert!(*"2026-01-01T00:00:00" < *"2026-01-01T00:00:00.000001");
    }
}
