//! A connection to Redis, whether one node or a Redis Cluster: a shared, multiplexed,
//! reconnecting connection to a single node, or the redis crate's cluster client, which
//! routes each command to the master owning its key's slot. Everything above this file
//! talks to it through redis' `ConnectionLike`, so the cache code does not care what kind
//! of Redis is behind it; the few things that must reach every node (SCAN, the per-lab
//! reset, INFO for labs) go through `nodes` and `on_node`.

use anyhow::Context;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, NodeAddress};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::cluster::{parse_cluster_nodes, ClusterNode};
use crate::stack::endpoint::redact;
use crate::stack::RedisTarget;

/// A cheap-to-clone handle on a Redis connection.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    /// Commands go to the master that owns their key's slot; keyless ones where the redis
    /// crate's routing table sends them (FLUSHALL and PING to every master, ...).
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Connect lazily to `url`: a Redis that is down now fails only the calls that need
    /// it, and the connection comes back by itself when Redis does. Every call waits at
    /// most `timeout` for its answer.
    pub fn single(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .with_context(|| format!("parsing Redis URL {}", redact(url)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .context("creating the Redis connection manager")?;
        Ok(Self::Single(conn))
    }

    /// Connect to the cluster that `urls` belong to. Every call, retries and redirects
    /// included, waits at most `timeout`. `via` maps a node's own `host:port` (as
    /// `CLUSTER SLOTS` names it) to the address to dial instead — a fault proxy in front of
    /// it — while redirects keep naming the node itself.
    pub async fn cluster(
        urls: &[String],
        timeout: Duration,
        via: &HashMap<String, SocketAddr>,
    ) -> anyhow::Result<Self> {
        let mut builder = ClusterClient::builder(urls.iter().map(String::as_str))
            .connection_timeout(timeout)
            .response_timeout(timeout)
            // A MOVED or ASK reply costs a retry; a dead node's calls should fail within
            // `timeout`, not wait out the default back-off of more than a second.
            .retries(3)
            .min_retry_wait(5)
            .max_retry_wait(100);
        if !via.is_empty() {
            let map = via
                .iter()
                .filter_map(|(node, proxy)| {
                    let (host, port) = node.rsplit_once(':')?;
                    let port = port.parse().ok()?;
                    let to = NodeAddress::new(proxy.ip().to_string(), proxy.port());
                    Some((NodeAddress::new(host.to_string(), port), to))
                })
                .collect();
            builder = builder.node_address_map(map);
        }
        let shown: Vec<String> = urls.iter().map(|u| redact(u)).collect();
        let client = builder
            .build()
            .with_context(|| format!("parsing Redis Cluster URLs {}", shown.join(" ")))?;
        let conn = client
            .get_async_connection()
            .await
            .with_context(|| format!("connecting to the Redis Cluster at {}", shown.join(" ")))?;
        Ok(Self::Cluster(conn))
    }

    /// A connection of its own to `target` (not the servers'): what a lab or a reset does
    /// to a connection cannot reach theirs. Calls wait at most 5 s.
    pub async fn direct(target: &RedisTarget) -> anyhow::Result<Self> {
        match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())
                    .with_context(|| format!("parsing Redis URL {}", redact(url)))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(5)))
                    .set_number_of_retries(1);
                let conn = ConnectionManager::new_with_config(client, config)
                    .await
                    .with_context(|| format!("connecting to Redis at {}", redact(url)))?;
                Ok(Self::Single(conn))
            }
            RedisTarget::Cluster(urls) => {
                Self::cluster(urls, Duration::from_secs(5), &HashMap::new()).await
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The cluster's nodes as one of them sees them (`CLUSTER NODES`); `None` on a single
    /// Redis.
    pub async fn cluster_nodes(&mut self) -> RedisResult<Option<Vec<ClusterNode>>> {
        let Self::Cluster(conn) = self else {
            return Ok(None);
        };
        let reply: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
        Ok(Some(parse_cluster_nodes(&reply)))
    }

    /// The addresses of the masters (cluster), or `None` for the single node: where a
    /// command that must reach every node's data goes.
    pub async fn masters(&mut self) -> RedisResult<Vec<Option<String>>> {
        Ok(match self.cluster_nodes().await? {
            None => vec![None],
            Some(nodes) => nodes
                .into_iter()
                .filter(|n| n.role == "master")
                .map(|n| Some(n.addr))
                .collect(),
        })
    }

    /// Run `cmd` on the node at `addr` (`host:port` as the cluster names it), or on the
    /// single node when `addr` is `None`.
    pub async fn on_node<T: redis::FromRedisValue>(
        &mut self,
        addr: Option<&str>,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        match (self, addr) {
            (Self::Cluster(conn), Some(addr)) => {
                let (host, port) = split_addr(addr)?;
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.to_string(),
                    port,
                });
                let value = conn.route_command(cmd.clone(), routing).await?;
                Ok(redis::from_redis_value(value)?)
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }

    /// Every key matching a glob `pattern` on every master, sorted and without duplicates
    /// (SCAN, so a large keyspace does not block Redis the way KEYS would).
    pub async fn scan_keys(&mut self, pattern: &str) -> RedisResult<Vec<String>> {
        let mut keys = Vec::new();
        for master in self.masters().await? {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, batch): (u64, Vec<String>) =
                    self.on_node(master.as_deref(), &scan).await?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

fn split_addr(addr: &str) -> RedisResult<(&str, u16)> {
    addr.rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse().ok()?)))
        .ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "not a host:port node address",
                addr.to_string(),
            ))
        })
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
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
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
