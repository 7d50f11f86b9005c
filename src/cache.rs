//! The Redis side of both strategies: GET, SETEX and DEL of `user:{id}` keys over one
//! shared, multiplexed, reconnecting connection.
//!
//! Redis trouble is never fatal to a request: callers count it and fall back to Postgres.
//! It is logged once per burst (the first failure after a quiet spell), not per request.

use anyhow::Context;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A quiet spell this long ends a burst of Redis errors.
const BURST_GAP: Duration = Duration::from_secs(5);

/// The cache key of a user, as the seed apps named it.
pub fn user_key(id: i32) -> String {
    format!("user:{id}")
}

/// A handle on the Redis cache; cheap to clone.
#[derive(Clone)]
pub struct Cache {
    conn: ConnectionManager,
    burst: std::sync::Arc<Mutex<ErrorBurst>>,
}

/// When the current burst of errors started and how many it has had.
#[derive(Default)]
struct ErrorBurst {
    last_error: Option<Instant>,
    count: u64,
}

impl Cache {
    /// Connect lazily to `url`: a Redis that is down now fails only the calls that need it,
    /// and the connection comes back by itself when Redis does.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .with_context(|| format!("parsing Redis URL {}", crate::stack::redact(url)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .context("creating the Redis connection manager")?;
        Ok(Self {
            conn,
            burst: Default::default(),
        })
    }

    /// The underlying connection, for raw commands from labs.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The cached bytes of `key`, if any.
    pub async fn get(&self, key: &str) -> redis::RedisResult<Option<Bytes>> {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(value.map(Bytes::from))
    }

    /// SETEX `key` to `value` for `ttl_secs` seconds.
    pub async fn set_ex(&self, key: &str, value: &[u8], ttl_secs: u64) -> redis::RedisResult<()> {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("EX")
            .arg(ttl_secs.max(1))
            .query_async(&mut self.conn.clone())
            .await
    }

    /// DEL `key`.
    pub async fn del(&self, key: &str) -> redis::RedisResult<()> {
        redis::cmd("DEL")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
    }

    /// Every key matching a glob `pattern`, sorted and without duplicates (SCAN, so a large
    /// keyspace does not block Redis the way KEYS would).
    pub async fn scan_keys(&self, pattern: &str) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.conn.clone();
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Does Redis answer PING?
    pub async fn ping(&self) -> redis::RedisResult<()> {
        redis::cmd("PING").query_async(&mut self.conn.clone()).await
    }

    /// Log a failed Redis call once per burst; the caller counts it.
    pub fn log_error(&self, op: &str, key: &str, err: &redis::RedisError) {
        let mut burst = self.burst.lock().unwrap_or_else(|p| p.into_inner());
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
                "Redis {op} {key} failed: {err}; answering from Postgres (further failures in this burst are counted in cache_errors, not logged)"
            );
            burst.count = 0;
        }
        burst.count += 1;
        burst.last_error = Some(now);
    }
}
