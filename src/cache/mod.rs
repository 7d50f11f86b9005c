//! The Redis side of every strategy: rows under `user:{id}`, their locks and leases, and
//! write-behind's queue, over one shared, multiplexed, reconnecting connection (to one
//! node, or routed by key over a Redis Cluster: keys a script or pipeline uses together
//! share a hash slot, see `keys`).
//!
//! Write-behind's queue has a module of its own (`wb_queue`).
//!
//! Redis trouble is never fatal to a read: callers count it and fall back to Postgres.
//! An unreachable Redis opens a breaker (see `breaker`) so requests stop waiting on it;
//! error replies (OOM under noeviction) are logged once per burst, not per request.

mod breaker;
mod breakers;
pub mod cluster;
mod conn;
pub mod info;
pub mod keys;
pub mod near;
mod slots;
pub mod wb_queue;

pub use crate::stack::RedisTarget;
pub use cluster::ClusterNode;
pub use conn::RedisConn;
pub use keys::user_key;

use bytes::Bytes;
use redis::AsyncCommands;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use breaker::Breaker;
use breakers::{Breakers, Picked};

/// A quiet spell this long ends a burst of Redis error replies.
const BURST_GAP: Duration = Duration::from_secs(5);

/// How often `reconnect` asks a node that did not answer again.
const RECONNECT_EVERY: Duration = Duration::from_millis(10);

/// How long a Redis call may take unless `--redis-timeout` says otherwise.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a cache call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Redis was found unreachable; the call was skipped (breaker open).
    #[error("Redis is down (skipped)")]
    Skipped,
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

/// A cached value and how long it has left to live.
pub struct Entry {
    pub value: Bytes,
    /// Remaining time to live in milliseconds (-1: no expiry).
    pub pttl_ms: i64,
}

/// A handle on the Redis cache; cheap to clone.
#[derive(Clone)]
pub struct Cache {
    conn: RedisConn,
    shared: Arc<Shared>,
}

struct Shared {
    breakers: Breakers,
    burst: Mutex<ErrorBurst>,
}

/// When the current burst of error replies started and how many it has had.
#[derive(Default)]
struct ErrorBurst {
    last_error: Option<Instant>,
    count: u64,
}

/// Release a lock only if we still hold it (its value is our token).
static LOCK_RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) \
         else return 0 end",
    )
});

/// Fill a row only while our lease is valid (a write revokes it by deleting it).
static LEASE_FILL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[2]) == ARGV[1] then \
           redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]); redis.call('DEL', KEYS[2]); \
           return 1 \
         else return 0 end",
    )
});

/// Cache a value only if it is newer than the one cached: KEYS[1] the key; ARGV the value,
/// its stamp (ISO 8601 text, which compares in time order as text) and the TTL in ms. A
/// cached row (`updated_at`) or tombstone (`deleted_at`) stays if its stamp is at least as
/// new; the write guard's marker (`invalidated_at`, left by a write) stays if it is newer:
/// the row that write wrote may replace it. A missing, unreadable or unstamped value is
/// overwritten.
static SET_IF_NEWER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local cur = redis.call('GET', KEYS[1]) \
         if cur then \
           local ok, v = pcall(cjson.decode, cur) \
           if ok and type(v) == 'table' then \
             if type(v.invalidated_at) == 'string' then \
               if v.invalidated_at > ARGV[2] then return 0 end \
             else \
               local stamp = v.updated_at or v.deleted_at \
               if type(stamp) == 'string' and stamp >= ARGV[2] then return 0 end \
             end \
           end \
         end \
         redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) \
         return 1",
    )
});

/// Replace a value only if it is still exactly the one a refresh started from.
static REPLACE_IF_SAME: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
           redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]); return 1 \
         else return 0 end",
    )
});

impl Cache {
    /// A cache over `conn`.
    pub fn new(conn: RedisConn) -> Self {
        let breakers = if conn.is_cluster() {
            Breakers::cluster()
        } else {
            Breakers::single()
        };
        Self {
            conn,
            shared: Arc::new(Shared {
                breakers,
                burst: Default::default(),
            }),
        }
    }

    /// Is this a Redis Cluster (where keys of different slots cannot share a script)?
    pub fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
    }

    /// Is Redis, or one of a cluster's masters, known to be down right now (a breaker
    /// open)?
    pub fn is_down(&self) -> bool {
        self.shared
            .breakers
            .all()
            .iter()
            .any(|p| p.breaker.is_open())
    }

    /// Make the servers' connection usable again after Redis restarted, came back or was
    /// healed: PING each node through the servers' own connection until it answers (the
    /// first PING on a stale connection fails, and the connection replaces it), then close
    /// that node's breaker, so the next request uses the cache instead of opening the
    /// breaker on the dead connection. On a cluster the slot map is read again first (a
    /// restarted node may serve other slots) and only the masters named in `only` are
    /// waited for (`None`: every one). Gives up at `deadline`, returning the nodes that
    /// did not answer ("Redis" for a single node).
    pub async fn reconnect(
        &self,
        deadline: tokio::time::Instant,
        only: Option<&[String]>,
    ) -> Result<(), Vec<String>> {
        if self.conn.is_cluster() {
            let _ = tokio::time::timeout_at(deadline, self.learn_slots()).await;
        }
        let mut missing = Vec::new();
        for picked in self.shared.breakers.all() {
            let waited_for = match (&picked.node, only) {
                (Some(node), Some(only)) => only.iter().any(|n| **n == **node),
                // The breaker standing for a whole cluster: PING reaches every master.
                (None, Some(_)) => false,
                (_, None) => true,
            };
            if !waited_for {
                continue;
            }
            loop {
                let answer = tokio::time::timeout_at(deadline, self.ping_node(&picked)).await;
                if let Ok(Ok(())) = answer {
                    picked.breaker.close();
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    missing.push(
                        picked.node.as_deref().map_or_else(
                            || "Redis".to_string(),
                            |node| format!("Redis node {node}"),
                        ),
                    );
                    break;
                }
                tokio::time::sleep(RECONNECT_EVERY).await;
            }
        }
        if !missing.is_empty() {
            return Err(missing);
        }
        // Every master waited for answers: calls with no key may go to the cluster again.
        for picked in self.shared.breakers.all() {
            if picked.node.is_none() {
                picked.breaker.close();
            }
        }
        Ok(())
    }

    /// Read which master serves which slot (a cluster; nothing to do on one Redis).
    pub async fn learn_slots(&self) {
        let mut conn = self.conn.clone();
        match conn.cluster_nodes().await {
            Ok(Some(nodes)) => self.shared.breakers.learned(&nodes),
            _ => self.shared.breakers.not_learned(),
        }
    }

    /// Run one call on `key` (`None`: a call with no key) through its breaker.
    async fn call<T, F, Fut>(&self, key: Option<&[u8]>, call: F) -> Result<T, CacheError>
    where
        F: FnOnce(RedisConn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match &self.shared.breakers {
            // The hot path of a single Redis: no slot, no clone of the breaker.
            Breakers::Single(breaker) => self.call_through(breaker, None, call).await,
            Breakers::Cluster(_) => {
                let picked = self.shared.breakers.pick(key);
                // No master found for the key: the slot map may not be known yet. A
                // master answered MOVED: a slot has moved since it was read.
                let learn = (picked.node.is_none() && self.shared.breakers.should_learn())
                    || (self.conn.take_moved() && self.shared.breakers.claim_refresh());
                if learn {
                    let cache = self.clone();
                    tokio::spawn(async move { cache.learn_slots().await });
                }
                self.call_through(&picked.breaker, picked.node.as_deref(), call)
                    .await
            }
        }
    }

    /// Run `call` unless `breaker` is open; tell the breaker how it went.
    async fn call_through<T, F, Fut>(
        &self,
        breaker: &Arc<Breaker>,
        node: Option<&str>,
        call: F,
    ) -> Result<T, CacheError>
    where
        F: FnOnce(RedisConn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if !breaker.allows() {
            return Err(CacheError::Skipped);
        }
        // On a cluster, straight to the key's master: see `conn`.
        match call(self.conn.to_node(node)).await {
            Ok(v) => {
                breaker.succeeded();
                Ok(v)
            }
            Err(e) => {
                if breaker::is_unreachable(&e) {
                    if breaker.unreachable(&e) {
                        self.start_probe(Picked {
                            breaker: breaker.clone(),
                            node: node.map(Arc::from),
                        });
                    }
                } else {
                    breaker.succeeded();
                }
                Err(CacheError::Redis(e))
            }
        }
    }

    /// Ask the node behind an open breaker in the background until it serves again, then
    /// close the breaker (and, on a cluster, read the slot map again).
    fn start_probe(&self, picked: Picked) {
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(breaker::PROBE_EVERY).await;
                let answer = cache.ping_node(&picked);
                if let Ok(Ok(_)) = tokio::time::timeout(breaker::PROBE_EVERY, answer).await {
                    picked.breaker.close();
                    if cache.shared.breakers.claim_refresh() {
                        cache.learn_slots().await;
                    }
                    return;
                }
            }
        });
    }

    /// Does the node a breaker stands for (or whatever the connection reaches) serve its
    /// keys again?
    async fn ping_node(&self, picked: &Picked) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        conn.serves(picked.node.as_deref()).await
    }

    /// The cached bytes of `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        self.call(Some(key.as_bytes()), |mut c| async move {
            let v: Option<Vec<u8>> = c.get(key).await?;
            Ok(v.map(Bytes::from))
        })
        .await
    }

    /// The cached bytes of `key` and its remaining TTL, in one round trip.
    pub async fn get_with_ttl(&self, key: &str) -> Result<Option<Entry>, CacheError> {
        self.call(Some(key.as_bytes()), |mut c| async move {
            let (value, pttl): (Option<Vec<u8>>, i64) =
                redis::pipe().get(key).pttl(key).query_async(&mut c).await?;
            Ok(value.map(|v| Entry {
                value: Bytes::from(v),
                pttl_ms: pttl,
            }))
        })
        .await
    }

    /// SET `key` to `value` for `ttl` (at least 1 ms). With `only_if_absent` (NX) an
    /// existing value wins; returns whether the value was written.
    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        only_if_absent: bool,
    ) -> Result<bool, CacheError> {
        let ms = (ttl.as_millis() as u64).max(1);
        self.call(Some(key.as_bytes()), |mut c| async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value).arg("PX").arg(ms);
            if only_if_absent {
                cmd.arg("NX");
            }
            let reply: Option<String> = cmd.query_async(&mut c).await?;
            Ok(reply.is_some())
        })
        .await
    }

    /// DEL `keys` (on a cluster they must share a slot).
    pub async fn del(&self, keys: &[&str]) -> Result<(), CacheError> {
        let first = keys.first().map(|k| k.as_bytes());
        self.call(first, |mut c| async move { c.del::<_, ()>(keys).await })
            .await
    }

    /// Try to take the lock `key` for `ttl`, holding `token`.
    pub async fn try_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        self.call(Some(key.as_bytes()), |mut c| async move {
            let reply: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg((ttl.as_millis() as u64).max(1))
                .query_async(&mut c)
                .await?;
            Ok(reply.is_some())
        })
        .await
    }

    /// Release the lock `key` if it still holds `token` (an expired lock someone else took
    /// since is left alone).
    pub async fn unlock(&self, key: &str, token: &str) -> Result<(), CacheError> {
        self.call(Some(key.as_bytes()), |mut c| async move {
            LOCK_RELEASE
                .key(key)
                .arg(token)
                .invoke_async::<i64>(&mut c)
                .await
                .map(drop)
        })
        .await
    }

    /// SET `key` to `value` only while `lease_key` still holds `token`; the lease is used
    /// up. Returns whether the value was written.
    pub async fn fill_with_lease(
        &self,
        key: &str,
        lease_key: &str,
        token: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        self.set_by_script(
            &LEASE_FILL,
            &[key, lease_key],
            &[token.as_bytes(), value],
            ttl,
        )
        .await
    }

    /// SET `key` to `value` unless the cached value carries a stamp at least as new as
    /// `stamp`; returns whether it wrote.
    pub async fn set_if_newer(
        &self,
        key: &str,
        value: &[u8],
        stamp: &str,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        self.set_by_script(&SET_IF_NEWER, &[key], &[value, stamp.as_bytes()], ttl)
            .await
    }

    /// SET `key` to `value` only if it still holds exactly `old`; returns whether it did.
    pub async fn replace(
        &self,
        key: &str,
        old: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        self.set_by_script(&REPLACE_IF_SAME, &[key], &[old, value], ttl)
            .await
    }

    /// Run a conditional SET script (`keys`, then `args` and the TTL in ms as its
    /// arguments); whether it wrote.
    async fn set_by_script(
        &self,
        script: &'static redis::Script,
        keys: &[&str],
        args: &[&[u8]],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let first = keys.first().map(|k| k.as_bytes());
        self.call(first, |mut c| async move {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(*key);
            }
            for arg in args {
                invocation.arg(*arg);
            }
            invocation.arg((ttl.as_millis() as u64).max(1));
            let done: i64 = invocation.invoke_async(&mut c).await?;
            Ok(done == 1)
        })
        .await
    }

    /// Every key matching a glob `pattern` on every master, sorted and without duplicates
    /// (SCAN, so a large keyspace does not block Redis the way KEYS would).
    pub async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>, CacheError> {
        self.call(None, |mut c| async move { c.scan_keys(pattern).await })
            .await
    }

    /// Does Redis answer PING? On a cluster every master must. (Bypasses the breaker:
    /// /health asks the real question.)
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }

    /// Log a failed Redis call: outages are logged by the breaker; error replies once per
    /// burst. The caller counts it.
    pub fn log_error(&self, op: &str, key: &str, err: &CacheError) {
        let CacheError::Redis(e) = err else { return };
        if breaker::is_unreachable(e) {
            return;
        }
        let mut burst = self.shared.burst.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let new_burst = burst
            .last_error
            .is_none_or(|t| now.duration_since(t) > BURST_GAP);
        if new_burst {
            if burst.count > 1 {
                tracing::info!(
                    "previous burst of Redis errors: {} failed calls",
                    burst.count
                );
            }
            tracing::warn!(
                "Redis {op} {key} failed: {e}; going on without the cache (further failures in this burst are counted in cache_errors, not logged)"
            );
            burst.count = 0;
        }
        burst.count += 1;
        burst.last_error = Some(now);
    }
}
