//! A connection to Redis, whether one node or a Redis Cluster: a shared, multiplexed,
//! reconnecting connection to a single node, or a cluster's. Everything above this file
//! talks to it through redis' `ConnectionLike`, so the cache code does not care what kind
//! of Redis is behind it; the few things that must reach every node (SCAN, the per-lab
//! reset, INFO for labs) go through `masters` and `on_node`.
//!
//! On a cluster a call whose master is known (`to_node`, from the slot of its key) goes
//! over a connection of our own to that master, and follows a MOVED itself; only the
//! rest (keyless commands, an ASK redirect, calls before the slot map is known) goes
//! through the redis crate's cluster client. That client stops every request it carries
//! while it repairs its view of the cluster (a slot refresh, or reconnecting to every
//! node after one was not found), and retries a CLUSTERDOWN reply with back-off: one
//! master leaving or rejoining would stall the keys of every other master. A connection
//! per master costs one dead master's keys only.

use anyhow::Context;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, NodeAddress};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, ServerErrorKind, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::cluster::{node_url, parse_cluster_nodes, ClusterNode};
use crate::stack::endpoint::redact;
use crate::stack::RedisTarget;

/// A cheap-to-clone handle on a Redis connection.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConn),
}

/// A handle on a Redis Cluster: the redis crate's cluster client, our own connection to
/// each master, and (from `to_node`) the master this handle's calls go to.
#[derive(Clone)]
pub struct ClusterConn {
    /// Routes what has no master chosen: keyless commands to where the crate's routing
    /// table sends them (FLUSHALL and PING to every master, ...), keyed ones by slot,
    /// following MOVED and ASK.
    client: ClusterConnection,
    masters: Arc<Masters>,
    /// The master this handle's calls go to; a MOVED reply moves it to the new owner.
    node: Option<ConnectionManager>,
}

/// Our own connection to each master of a cluster, opened on first use and kept; each
/// reconnects by itself when its node comes back.
struct Masters {
    /// A URL of the cluster: a node's URL is this one with the node's address, so it keeps
    /// the credentials and options.
    like: String,
    /// A node's own `host:port` → the address to dial instead (its fault proxy).
    via: HashMap<String, SocketAddr>,
    timeout: Duration,
    open: RwLock<HashMap<String, ConnectionManager>>,
    /// A master answered MOVED: the slot map the calls are routed by is out of date.
    moved: AtomicBool,
}

/// How many MOVED replies one call follows before it gives up (each names a newer owner;
/// more than a few in a row means the slots are moving faster than we can follow).
const MAX_MOVES: usize = 3;

impl RedisConn {
    /// Connect lazily to `url`: a Redis that is down now fails only the calls that need
    /// it, and the connection comes back by itself when Redis does. Every call waits at
    /// most `timeout` for its answer.
    pub fn single(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self::Single(lazy_manager(url, timeout)?))
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
        let like = urls.first().cloned().unwrap_or_default();
        Ok(Self::Cluster(ClusterConn {
            client: conn,
            masters: Arc::new(Masters {
                like,
                via: via.clone(),
                timeout,
                open: RwLock::default(),
                moved: AtomicBool::new(false),
            }),
            node: None,
        }))
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

    /// This connection with its calls sent to the master at `addr` (`host:port` as the
    /// cluster names it) over our own connection to it; `None`, or a single Redis: as it
    /// is.
    pub fn to_node(&self, addr: Option<&str>) -> Self {
        match (self, addr) {
            (Self::Cluster(c), Some(addr)) => Self::Cluster(ClusterConn {
                node: c.masters.get(addr).ok(),
                ..c.clone()
            }),
            _ => self.clone(),
        }
    }

    /// Did a master answer MOVED since the last time this was asked? Then the slot map
    /// the caller routes by is out of date.
    pub fn take_moved(&self) -> bool {
        match self {
            Self::Single(_) => false,
            // Read first: every call asks, and a swap would make each one write the line.
            Self::Cluster(c) => {
                c.masters.moved.load(Ordering::Acquire)
                    && c.masters.moved.swap(false, Ordering::AcqRel)
            }
        }
    }

    /// Does the node at `addr` serve its keys? A single Redis (or `None`: whatever the
    /// connection reaches) serves when it answers PING. A cluster's master must also say
    /// `cluster_state:ok`: a master that rejoins answers PING at once but refuses its keys
    /// (CLUSTERDOWN) for about two more seconds, until the others have had a chance to
    /// reconfigure it.
    pub async fn serves(&mut self, addr: Option<&str>) -> RedisResult<()> {
        let Some(addr) = addr.filter(|_| self.is_cluster()) else {
            redis::cmd("PING").query_async::<String>(self).await?;
            return Ok(());
        };
        let mut info = redis::cmd("CLUSTER");
        info.arg("INFO");
        match self.on_node::<String>(Some(addr), &info).await {
            Ok(text) if text.contains("cluster_state:ok") => Ok(()),
            Ok(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Server(ServerErrorKind::ClusterDown),
                "the node does not serve its slots yet",
                addr.to_string(),
            ))),
            // Refused for good (an ACL without CLUSTER INFO): it answers, which is all PING
            // would have told. LOADING, TRYAGAIN and the like are worth waiting out.
            Err(e)
                if matches!(e.kind(), redis::ErrorKind::Server(_))
                    && matches!(e.retry_method(), redis::RetryMethod::NoRetry) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The cluster's nodes as one of them sees them (`CLUSTER NODES`); `None` on a single
    /// Redis.
    pub async fn cluster_nodes(&mut self) -> RedisResult<Option<Vec<ClusterNode>>> {
        let Self::Cluster(conn) = self else {
            return Ok(None);
        };
        let reply: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn.client)
            .await?;
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

    /// Run `cmd` on the node at `addr` (`host:port` as the cluster names it), over our
    /// own connection to it, or on the single node when `addr` is `None`.
    pub async fn on_node<T: redis::FromRedisValue>(
        &mut self,
        addr: Option<&str>,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        match (self, addr) {
            (Self::Cluster(conn), Some(addr)) => {
                let mut node = conn.masters.get(addr)?;
                cmd.query_async(&mut node).await
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

/// A reconnecting connection to `url` that connects on first use; calls wait at most
/// `timeout`, a reconnect is tried once more after a short back-off.
fn lazy_manager(url: &str, timeout: Duration) -> anyhow::Result<ConnectionManager> {
    let client =
        redis::Client::open(url).with_context(|| format!("parsing Redis URL {}", redact(url)))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_lazy_with_config(client, config)
        .context("creating the Redis connection manager")
}

impl Masters {
    /// Our connection to the master at `addr`, opened (lazily) on first use.
    fn get(&self, addr: &str) -> RedisResult<ConnectionManager> {
        let read = |open: &HashMap<String, ConnectionManager>| open.get(addr).cloned();
        if let Some(conn) = read(&self.open.read().unwrap_or_else(|p| p.into_inner())) {
            return Ok(conn);
        }
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = read(&open) {
            return Ok(conn);
        }
        let dial = match self.via.get(addr) {
            Some(proxy) => proxy.to_string(),
            None => addr.to_string(),
        };
        let conn = lazy_manager(&node_url(&self.like, &dial), self.timeout).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "cannot connect to a cluster node",
                format!("{addr}: {e:#}"),
            ))
        })?;
        open.insert(addr.to_string(), conn.clone());
        Ok(conn)
    }
}

/// Where a MOVED or ASK reply among `values` sends the call: the first one's kind and the
/// new owner's `host:port`.
fn redirect<'a>(values: impl IntoIterator<Item = &'a Value>) -> Option<(ServerErrorKind, &'a str)> {
    values.into_iter().find_map(|value| {
        let Value::ServerError(e) = value else {
            return None;
        };
        let kind = e
            .kind()
            .filter(|k| matches!(k, ServerErrorKind::Moved | ServerErrorKind::Ask))?;
        // "<slot> <host:port>"
        let addr = e.details()?.split_whitespace().nth(1)?;
        Some((kind, addr))
    })
}

impl ClusterConn {
    /// After a MOVED to `addr`: send this handle's calls there from now on. False when
    /// `addr` cannot be reached by a connection of ours (the cluster client takes over).
    fn follow(&mut self, addr: &str) -> bool {
        self.masters.moved.store(true, Ordering::Release);
        // ":port" (no host known to the node): only the cluster client can tell.
        if addr.starts_with(':') {
            return false;
        }
        match self.masters.get(addr) {
            Ok(conn) => {
                self.node = Some(conn);
                true
            }
            Err(_) => false,
        }
    }

    async fn command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        for _ in 0..MAX_MOVES {
            let Some(node) = self.node.as_mut() else {
                break;
            };
            let reply = node.req_packed_command(cmd).await?;
            match redirect([&reply]) {
                None => return Ok(reply),
                Some((ServerErrorKind::Moved, addr)) => {
                    let addr = addr.to_string();
                    if !self.follow(&addr) {
                        break;
                    }
                }
                // ASK: a slot half-way through a move; the cluster client sends ASKING.
                Some(_) => break,
            }
        }
        self.client.req_packed_command(cmd).await
    }

    async fn commands(
        &mut self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        for _ in 0..MAX_MOVES {
            let Some(node) = self.node.as_mut() else {
                break;
            };
            let replies = node.req_packed_commands(pipeline, offset, count).await?;
            match redirect(&replies) {
                None => return Ok(replies),
                Some((ServerErrorKind::Moved, addr)) => {
                    let addr = addr.to_string();
                    if !self.follow(&addr) {
                        break;
                    }
                }
                Some(_) => break,
            }
        }
        self.client
            .req_packed_commands(pipeline, offset, count)
            .await
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => Box::pin(c.command(cmd)),
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
            Self::Cluster(c) => Box::pin(c.commands(pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.client.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redirect;
    use redis::{parse_redis_value, ServerErrorKind, Value};

    fn reply(wire: &str) -> Value {
        parse_redis_value(wire.as_bytes()).unwrap()
    }

    #[test]
    fn a_moved_or_ask_reply_names_the_new_owner_and_other_replies_do_not() {
        let moved = reply("-MOVED 3999 127.0.0.1:6381\r\n");
        let ask = reply("-ASK 3999 10.0.0.2:7000\r\n");
        let down = reply("-CLUSTERDOWN The cluster is down\r\n");
        let ok = reply("+OK\r\n");
        assert_eq!(
            redirect([&moved]),
            Some((ServerErrorKind::Moved, "127.0.0.1:6381"))
        );
        assert_eq!(
            redirect([&ok, &ask]),
            Some((ServerErrorKind::Ask, "10.0.0.2:7000")),
            "a pipeline is redirected by its first redirected reply"
        );
        assert_eq!(redirect([&down, &ok]), None);
    }
}
