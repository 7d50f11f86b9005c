//! The servers' connection to Redis: one shared, multiplexed, reconnecting connection to a
//! single node. Everything above this file talks to it through redis' `ConnectionLike`,
//! so the cache code does not care what kind of Redis is behind it.

use anyhow::Context;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::time::Duration;

/// A cheap-to-clone handle on the servers' Redis connection.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
}

impl RedisConn {
    /// Connect lazily to `url`: a Redis that is down now fails only the calls that need
    /// it, and the connection comes back by itself when Redis does. Every call waits at
    /// most `timeout` for its answer.
    pub fn single(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .with_context(|| format!("parsing Redis URL {}", crate::stack::redact(url)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .context("creating the Redis connection manager")?;
        Ok(Self::Single(conn))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
        }
    }
}
