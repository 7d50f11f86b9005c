//! The near cache: an L1 of user rows inside each server process, in front of Redis (L2),
//! as services keep with Caffeine or moka. `set_near_cache` picks how L1 learns that a row
//! changed: `ttl` never (an entry lives `near_ttl_ms`, the bound on its staleness);
//! `tracking` through Redis' client-side caching (`link`: an `invalidate` push for every key
//! this server read, when anyone writes it); `bcast` the same for every write to `user:*`.
//! Admissions pass the fill-vs-invalidation `guard` (`set_near_guard`); while the link is
//! down or silent L1 is flushed and not used.
//!
//! Files: `l1` (the store), `guard` (tickets), `link` (the tracking connection).

mod guard;
mod l1;
mod link;

use bytes::Bytes;
use redis::PushInfo;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use guard::Ticket;

use crate::counters::{Counter, Counters};
use crate::knobs::{Knobs, NearMode, Settings};
use guard::Generations;
use l1::L1;
use link::{Link, Pushed};

/// One server's L1 and its invalidation link.
pub struct NearCache {
    l1: L1,
    generations: Generations,
    link: Link,
    counters: Arc<Counters>,
    /// On a Redis Cluster the tracking modes keep L1 unused (one node only).
    cluster: bool,
}

impl NearCache {
    pub fn new(counters: Arc<Counters>, cluster: bool) -> Self {
        Self {
            l1: L1::new(Settings::default().near_capacity),
            generations: Generations::default(),
            link: Link::default(),
            counters,
            cluster,
        }
    }

    /// Keep the invalidation link up (in the tracking modes) until `stop`; `url` is the
    /// Redis the servers reach.
    pub fn spawn_link(
        self: &Arc<Self>,
        tasks: &tokio_util::task::TaskTracker,
        url: String,
        knobs: Arc<Knobs>,
        stop: CancellationToken,
    ) {
        tasks.spawn(link::run(self.clone(), url, knobs, stop));
    }

    /// May L1 answer and admit now? Not when off, nor in a tracking mode without its link.
    fn usable(&self, k: &Settings) -> bool {
        match k.near_cache {
            NearMode::Off => false,
            NearMode::Ttl => true,
            NearMode::Tracking | NearMode::Bcast => self.link.is_up(k.near_cache),
        }
    }

    /// The row of user `id` from L1, if it has one that is young enough.
    pub fn get(&self, id: i32, k: &Settings) -> Option<Bytes> {
        if !self.usable(k) {
            return None;
        }
        self.l1.set_capacity(k.near_capacity);
        self.l1.get(id, Duration::from_millis(k.near_ttl_ms))
    }

    /// Taken before a read of `id` is sent to Redis, for `admit`.
    pub fn ticket(&self, id: i32) -> Ticket {
        self.generations.ticket(id)
    }

    /// Admit the row Redis (or Postgres) gave for `id`. With the guard on, only if no
    /// invalidation of it and no flush arrived since `ticket` was taken: one that slips in
    /// while it is being admitted takes it out again.
    pub fn admit(&self, id: i32, ticket: Ticket, value: Bytes, k: &Settings) {
        if !self.usable(k) {
            return;
        }
        if k.near_guard && !self.generations.holds(id, ticket) {
            self.counters.record(Counter::NearGuardDrops);
            return;
        }
        let admitted = self.l1.insert(id, value);
        if k.near_guard && !self.generations.holds(id, ticket) {
            self.l1.remove_exact(id, admitted);
            self.counters.record(Counter::NearGuardDrops);
        } else {
            self.counters.record(Counter::NearFills);
        }
    }

    /// In `tracking` mode, a GET over the invalidation link itself, so Redis tracks the key
    /// for this server: `None` when the link is not up.
    pub async fn tracked_get(
        &self,
        key: &str,
        k: &Settings,
    ) -> Option<redis::RedisResult<Option<Bytes>>> {
        let mut conn = self
            .link
            .connection(NearMode::Tracking)
            .filter(|_| k.near_cache == NearMode::Tracking)?;
        let got: redis::RedisResult<Option<Vec<u8>>> =
            redis::cmd("GET").arg(key).query_async(&mut conn).await;
        Some(got.map(|v| v.map(Bytes::from)))
    }

    /// Drop everything (a FLUSHALL, the link lost or re-established, a lab's reset).
    pub fn flush(&self) {
        self.generations.flush();
        if !self.l1.is_empty() {
            self.l1.clear();
        }
        self.counters.record(Counter::NearFlushes);
    }

    /// A push from Redis, as it arrives.
    fn on_push(&self, push: PushInfo) {
        match link::read_push(&push) {
            Pushed::Invalidate(ids) => {
                for id in ids {
                    self.generations.invalidate(id);
                    self.l1.remove(id);
                    self.counters.record(Counter::NearInvalidations);
                }
            }
            Pushed::FlushAll => self.flush(),
            Pushed::LinkLost => {
                self.link.set(None);
                self.flush();
            }
            Pushed::Other => {}
        }
    }
}
