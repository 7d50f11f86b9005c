//! The running system a command works with: the stack, the servers' Postgres pool and
//! Redis connection, the knobs, and the strategy servers. `serve` and `run` both build
//! one; `reset` puts it back into the fresh state every lab starts from.

mod instances;

pub use instances::{Instance, MAX_INSTANCES};

use anyhow::Context;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use crate::cache::{Cache, RedisConn, DEFAULT_REDIS_TIMEOUT};
use crate::knobs::{Knobs, Settings};
use crate::server::{HttpLimits, StrategyServer};
use crate::stack::proxy::observe::{KeyFilter, Observed, Observer, Protocol};
use crate::stack::proxy::{FaultProxy, Upstream};
use crate::stack::RedisTarget;
use crate::stack::{endpoint, Stack, StackInfo};
use crate::store::admin::Admin;
use crate::store::{Store, DEFAULT_DB_TIMEOUT};
use crate::strategy::StrategyKind;

/// The stack, shared with the labs that stop and start its processes.
pub type SharedStack = Arc<Mutex<Stack>>;

/// How long the servers may take to use Redis or Postgres again after a stack change (a
/// restart, a start, a heal, the per-lab reset) before that is an error naming what did
/// not come back.
pub const RECONNECT_BOUND: Duration = Duration::from_secs(3);

/// Which of the servers' connections must work again.
#[derive(Debug, Clone, Copy)]
pub struct Reconnect {
    pub redis: bool,
    pub postgres: bool,
}

impl Reconnect {
    pub const BOTH: Self = Self {
        redis: true,
        postgres: true,
    };
    pub const REDIS: Self = Self {
        redis: true,
        postgres: false,
    };
    pub const POSTGRES: Self = Self {
        redis: false,
        postgres: true,
    };
}

/// The Redis nodes running now, as far as a wait for the servers is concerned.
enum RunningRedis {
    /// Every node (or an external Redis, which is assumed to run).
    All,
    /// Some masters of a managed cluster (`host:port`), the others stopped by a lab.
    Only(Vec<String>),
    /// A managed Redis a lab stopped: nothing to reconnect to.
    None,
}

/// How to host the servers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub bind: IpAddr,
    /// The first strategy's port; each strategy listens on it plus its registry offset.
    /// 0: any free ports.
    pub port: u16,
    /// Which strategies get a server.
    pub strategies: Vec<StrategyKind>,
    /// The knobs' starting values, which every lab's reset restores.
    pub knobs: Settings,
    pub http: HttpLimits,
    /// Bound on every Postgres call of the servers.
    pub db_timeout: Duration,
    /// Bound on every Redis call of the servers.
    pub redis_timeout: Duration,
    /// Put fault proxies between the servers and Redis/Postgres (labs inject faults).
    pub fault_proxies: bool,
    /// Servers per strategy (1..=`MAX_INSTANCES`): each with its own L1 and counters.
    pub instances: usize,
    /// Target mode: the proxies also decode and count the traffic of the user's app,
    /// counting hits and misses for keys `is_cache_key` accepts.
    pub observe: Option<KeyFilter>,
}

impl ServerOptions {
    /// Every strategy on free loopback ports with default knobs (labs and tests).
    pub fn loopback(ttl_secs: u64) -> Self {
        Self {
            bind: [127, 0, 0, 1].into(),
            port: 0,
            strategies: StrategyKind::ALL.to_vec(),
            knobs: Settings::with_ttl(ttl_secs),
            http: HttpLimits::default(),
            db_timeout: DEFAULT_DB_TIMEOUT,
            redis_timeout: DEFAULT_REDIS_TIMEOUT,
            fault_proxies: true,
            instances: 1,
            observe: None,
        }
    }
}

/// Everything connected to a stack: clients, knobs and the strategy servers.
pub struct Services {
    pub store: Store,
    pub cache: Cache,
    pub knobs: Arc<Knobs>,
    /// Instance 0 of each strategy, in the order asked for.
    pub servers: Vec<StrategyServer>,
    /// Instances 1.. of each strategy (`--instances`, `set_instances`), by index.
    more: std::sync::Mutex<Vec<(usize, StrategyServer)>>,
    /// What starting another instance takes.
    launcher: instances::Launcher,
    strategies: Vec<StrategyKind>,
    pub stack: StackInfo,
    /// The bound on every Postgres call of the servers (`--db-timeout-ms`); a lab's
    /// `db_get` is bounded alike.
    pub db_timeout: Duration,
    /// The stack's processes, for process faults and for reviving them in a reset.
    pub processes: SharedStack,
    /// The fault proxies the servers reach Redis and Postgres through (labs only).
    pub faults: Option<Faults>,
    /// Target mode: what the proxies counted of the app's traffic since the last reset.
    pub observed: Option<Arc<Observed>>,
    /// Every Redis setting as found at start, restored by `reset`: one list per master of
    /// a cluster (by its `host:port`), one for the single node (`None`).
    redis_config: Vec<(Option<String>, RedisConfig)>,
}

/// Every setting of one Redis node, as `CONFIG GET *` lists them.
type RedisConfig = Vec<(String, String)>;

/// The fault target of the near caches' invalidation links alone.
pub const NEAR_LINKS: &str = "redis-tracking";

/// Fault proxies in front of the data stores, for the servers: one for Postgres, one for
/// a single Redis (and one for its near-cache invalidation links), one per master of a
/// Redis Cluster.
pub struct Faults {
    /// `"redis"` for a single node; `"redis:0"`, `"redis:1"`, ... for each master of a
    /// cluster, in `redis_nodes()` order.
    pub redis: Vec<(String, FaultProxy)>,
    /// The near caches' invalidation links to a single Redis (`"redis-tracking"`): a
    /// fault here silences the links alone, while the data connection still answers.
    pub near_links: Option<FaultProxy>,
    pub postgres: FaultProxy,
}

impl Faults {
    /// A proxy per data store (per master of a cluster, in front of each `masters`
    /// address).
    async fn start(
        stack: &StackInfo,
        masters: &[Option<String>],
        observe: Option<(Observer, Observer)>,
    ) -> anyhow::Result<Self> {
        let postgres_at = endpoint::authority(&stack.database_url, 5432)
            .context("reading the database URL's host and port")?;
        let mut redis = Vec::new();
        let mut near_links = None;
        if stack.redis_is_cluster() {
            for (i, master) in masters.iter().enumerate() {
                let addr = master
                    .clone()
                    .context("a cluster master without an address")?;
                // A handful per start of the servers: leaking the label is cheaper than
                // making every proxy log line allocate.
                let label: &'static str = Box::leak(format!("redis:{i}").into_boxed_str());
                redis.push((label.to_string(), FaultProxy::start(label, addr).await?));
            }
        } else {
            let redis_at = match &stack.redis_socket {
                Some(socket) => Upstream::Unix(socket.clone()),
                None => Upstream::Tcp(
                    endpoint::authority(&stack.redis_url, 6379)
                        .context("reading the Redis URL's host and port")?,
                ),
            };
            let proxy = match &observe {
                Some((redis, _)) => {
                    FaultProxy::start_observing("redis", redis_at.clone(), redis.clone()).await?
                }
                None => FaultProxy::start("redis", redis_at.clone()).await?,
            };
            redis.push(("redis".to_string(), proxy));
            near_links = Some(FaultProxy::start(NEAR_LINKS, redis_at).await?);
        }
        let postgres = match observe {
            Some((_, postgres)) => {
                FaultProxy::start_observing("postgres", postgres_at, postgres).await?
            }
            None => FaultProxy::start("postgres", postgres_at).await?,
        };
        Ok(Self {
            redis,
            near_links,
            postgres,
        })
    }

    /// The proxies of a target named by a lab: `"postgres"`, `"redis"` (every Redis
    /// proxy: on a cluster, all of its masters; the near caches' links too), one master,
    /// `"redis:N"`, or the near caches' invalidation links alone, `"redis-tracking"`.
    /// `None` for a name that is none of these.
    pub fn target(&self, name: &str) -> Option<Vec<&FaultProxy>> {
        match name {
            "postgres" => Some(vec![&self.postgres]),
            "redis" => Some(self.redis_proxies().collect()),
            NEAR_LINKS => self.near_links.as_ref().map(|p| vec![p]),
            _ => self
                .redis
                .iter()
                .find(|(label, _)| label == name)
                .map(|(_, p)| vec![p]),
        }
    }

    /// The names `target` accepts, for error messages.
    pub fn target_names(&self) -> Vec<String> {
        let mut names = vec!["\"redis\"".to_string(), "\"postgres\"".to_string()];
        if self.near_links.is_some() {
            names.push(format!(
                "\"{NEAR_LINKS}\" (the near caches' invalidation links)"
            ));
        }
        if self.redis.len() > 1 || self.redis[0].0 != "redis" {
            let (first, last) = (&self.redis[0].0, &self.redis[self.redis.len() - 1].0);
            names.push(format!("a cluster node \"{first}\" … \"{last}\""));
        }
        names
    }

    /// Where the servers' cluster client dials each master instead of the master itself.
    fn cluster_via(&self, masters: &[Option<String>]) -> HashMap<String, SocketAddr> {
        masters
            .iter()
            .zip(&self.redis)
            .filter_map(|(master, (_, proxy))| Some((master.clone()?, proxy.addr())))
            .collect()
    }

    /// Every Redis proxy: the masters' and the near caches' links.
    fn redis_proxies(&self) -> impl Iterator<Item = &FaultProxy> {
        self.redis.iter().map(|(_, p)| p).chain(&self.near_links)
    }

    /// Remove every fault.
    pub fn heal_all(&self) {
        for proxy in self.redis_proxies() {
            proxy.heal();
        }
        self.postgres.heal();
    }
}

impl Services {
    /// Connect to `processes`' stack, build the users table, and start the servers.
    pub async fn start(processes: SharedStack, options: &ServerOptions) -> anyhow::Result<Self> {
        let stack = processes.lock().unwrap_or_else(|p| p.into_inner()).info();
        // In target mode an external database is the app's: its tables are its own.
        let apps_database = options.observe.is_some() && !stack.postgres_managed;
        if !apps_database {
            Admin::connect(&stack.database_admin_url, stack.postgres_managed)
                .await?
                .prepare(stack.may_reset_data)
                .await
                .context("preparing the users table")?;
        }
        let mut direct = RedisConn::direct(&stack.redis).await?;
        let masters = direct
            .masters()
            .await
            .context("listing the Redis Cluster's masters")?;
        let observed = options
            .observe
            .as_ref()
            .map(|_| Arc::new(Observed::default()));
        let observers = options
            .observe
            .clone()
            .zip(observed.clone())
            .map(|(keys, observed)| {
                let redis = Observer {
                    protocol: Protocol::Redis {
                        is_cache_key: keys.0,
                    },
                    observed: observed.clone(),
                };
                let postgres = Observer {
                    protocol: Protocol::Postgres,
                    observed,
                };
                (redis, postgres)
            });
        if observers.is_some() && stack.redis_is_cluster() {
            anyhow::bail!("target mode needs a single Redis node, not a cluster");
        }
        let faults = if options.fault_proxies || observers.is_some() {
            Some(Faults::start(&stack, &masters, observers).await?)
        } else {
            None
        };
        // The servers reach the stores through the proxies; labs and resets go direct.
        let db_url = match &faults {
            Some(f) => endpoint::with_authority(&stack.database_url, f.postgres.addr()),
            None => stack.database_url.clone(),
        };
        let store = Store::new(&db_url, options.db_timeout)?;
        let conn = match &stack.redis {
            RedisTarget::Single(url) => {
                let url = match &faults {
                    Some(f) => endpoint::with_authority(url, f.redis[0].1.addr()),
                    None => url.clone(),
                };
                RedisConn::single(&url, options.redis_timeout)?
            }
            RedisTarget::Cluster(urls) => {
                let via = faults
                    .as_ref()
                    .map(|f| f.cluster_via(&masters))
                    .unwrap_or_default();
                RedisConn::cluster(urls, options.redis_timeout, &via).await?
            }
        };
        // Where the near caches' invalidation links dial: one Redis node (on a cluster the
        // tracking modes keep L1 unused).
        let near_url = match &stack.redis {
            RedisTarget::Single(url) => match faults.as_ref().and_then(|f| f.near_links.as_ref()) {
                Some(proxy) => endpoint::with_authority(url, proxy.addr()),
                None => url.clone(),
            },
            RedisTarget::Cluster(urls) => urls[0].clone(),
        };
        let cache = Cache::new(conn);
        // On a cluster: which master serves which slot, so one dead master is skipped alone.
        cache.learn_slots().await;
        let mut redis_config = Vec::new();
        for master in masters {
            let config = read_redis_config(&mut direct, master.as_deref())
                .await
                .context("reading the Redis configuration")?;
            redis_config.push((master, config));
        }
        let knobs = Arc::new(Knobs::new(options.knobs));
        let launcher = instances::Launcher {
            store: store.clone(),
            cache: cache.clone(),
            knobs: knobs.clone(),
            bind: options.bind,
            port: options.port,
            http: options.http,
            near_url,
        };
        let mut servers = Vec::new();
        for &kind in &options.strategies {
            servers.push(launcher.start(kind, 0).await?);
        }
        let services = Self {
            store,
            cache,
            knobs,
            servers,
            more: Default::default(),
            launcher,
            strategies: options.strategies.clone(),
            stack,
            processes,
            faults,
            observed,
            redis_config,
            db_timeout: options.db_timeout,
        };
        services.set_instances(options.instances).await?;
        Ok(services)
    }

    /// Run `n` instances of each strategy (1..=`MAX_INSTANCES`): instances past `n` are
    /// shut down, missing ones started with an empty L1 and zeroed counters.
    pub async fn set_instances(&self, n: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=MAX_INSTANCES).contains(&n),
            "instances must be 1..={MAX_INSTANCES}, got {n}"
        );
        let (gone, have) = {
            let mut more = self.more.lock().unwrap_or_else(|p| p.into_inner());
            let (gone, kept): (Vec<_>, Vec<_>) = more.drain(..).partition(|(i, _)| *i >= n);
            *more = kept;
            (gone, 1 + more.len() / self.strategies.len().max(1))
        };
        for (_, server) in gone {
            server.shutdown().await;
        }
        for index in have..n {
            for &kind in &self.strategies {
                let server = self.launcher.start(kind, index).await?;
                self.more
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((index, server));
            }
        }
        Ok(())
    }

    /// How many instances each strategy runs.
    pub fn instance_count(&self) -> usize {
        let more = self.more.lock().unwrap_or_else(|p| p.into_inner());
        1 + more.len() / self.strategies.len().max(1)
    }

    /// Every instance of the strategy `name`, instance 0 first (empty for no such server).
    pub fn instances(&self, name: &str) -> Vec<Instance> {
        let Some(first) = self.server(name) else {
            return Vec::new();
        };
        let mut all = vec![Instance {
            index: 0,
            addr: first.addr,
            backend: first.backend.clone(),
        }];
        let more = self.more.lock().unwrap_or_else(|p| p.into_inner());
        all.extend(
            more.iter()
                .filter(|(_, s)| s.name == name)
                .map(|(index, s)| Instance {
                    index: *index,
                    addr: s.addr,
                    backend: s.backend.clone(),
                }),
        );
        all.sort_by_key(|i| i.index);
        all
    }

    /// Every instance of every strategy.
    pub fn all_instances(&self) -> Vec<Instance> {
        self.servers
            .iter()
            .flat_map(|s| self.instances(s.name))
            .collect()
    }

    /// The server of a strategy, by name.
    pub fn server(&self, name: &str) -> Option<&StrategyServer> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The fresh state every lab starts from: no request of the last lab still running and
    /// its background work cancelled, managed processes running and resumed, Redis emptied with every
    /// setting as it was at start, the users table rebuilt from schema.sql and users.json,
    /// the servers' sessions renewed, knobs at defaults, counters at zero.
    ///
    /// On an external Redis without `--allow-flush` only cachelab's own keys are removed;
    /// on an external database without `--reset-data` the table is left as it is. A
    /// managed server that cannot be brought back by commands is restarted.
    pub async fn reset(&self) -> anyhow::Result<()> {
        // Every lab starts with one instance per strategy.
        self.set_instances(1).await?;
        // The last lab's background work is cancelled, not waited out: a second DEL due
        // in 5 s must not land in this lab.
        for server in &self.servers {
            server.backend.end_lab_scope();
        }
        for server in &self.servers {
            server.settle(Duration::from_secs(3)).await;
        }
        let mut quiet = Vec::new();
        for server in &self.servers {
            quiet.push(server.backend.quiet.lock().await);
        }
        if let Some(faults) = &self.faults {
            faults.heal_all();
        }
        // Continued before anything else: a frozen process cannot be flushed, stopped
        // cleanly or restarted.
        self.with_processes(|stack| {
            stack.resume_all();
            stack.revive()
        })
        .await?;
        if let Err(e) = self.reset_redis().await {
            if !self.stack.redis_managed {
                return Err(e);
            }
            tracing::info!("restarting the managed Redis: {e:#}");
            self.restart_redis().await?;
            self.reset_redis().await?;
        }
        if let Err(e) = self.reset_postgres().await {
            if !self.stack.postgres_managed {
                return Err(e);
            }
            tracing::info!("restarting the managed Postgres: {e:#}");
            self.restart_postgres().await?;
            self.reset_postgres().await?;
        }
        // The servers' own connections are tested last, through the connection and
        // breaker they use: a stale connection left by a restart is replaced now, not by
        // the lab's first request (which would open the breaker and skip the cache).
        if let Err(e) = self.reconnect_servers(Reconnect::BOTH).await {
            let managed = self.stack.redis_managed && self.stack.postgres_managed;
            if !managed {
                return Err(e);
            }
            tracing::info!("restarting the managed Redis and Postgres: {e:#}");
            self.restart_redis().await?;
            self.restart_postgres().await?;
            self.reset_redis().await?;
            self.reset_postgres().await?;
            self.reconnect_servers(Reconnect::BOTH)
                .await
                .context("after restarting Redis and Postgres")?;
        }
        self.knobs.reset();
        for server in &self.servers {
            server.backend.near.flush();
            server.backend.counters.reset();
        }
        // Target mode: the app's counts start at zero (the reset's own pings excluded),
        // and no query answer is held.
        if let (Some(faults), Some(observed)) = (&self.faults, &self.observed) {
            faults.postgres.set_hold(0);
            observed.reset();
        }
        drop(quiet);
        Ok(())
    }

    /// Wait (at most `RECONNECT_BOUND`) until the servers can use Redis and/or Postgres
    /// again: every running Redis node answers a PING through the servers' own connection
    /// (which closes its breaker), and a fresh session from the servers' Postgres pool
    /// answers a query. A managed process a lab stopped is not waited for. The error names
    /// what did not come back.
    pub async fn reconnect_servers(&self, what: Reconnect) -> anyhow::Result<()> {
        let deadline = Instant::now() + RECONNECT_BOUND;
        let mut missing = Vec::new();
        if what.redis {
            let only = match self.running_redis().await? {
                RunningRedis::All => Some(None),
                RunningRedis::Only(nodes) => Some(Some(nodes)),
                RunningRedis::None => None,
            };
            if let Some(only) = only {
                if let Err(nodes) = self.cache.reconnect(deadline, only.as_deref()).await {
                    missing.extend(nodes);
                }
            }
        }
        if what.postgres && self.postgres_runs().await? {
            // Idle sessions may have been cut by a restart: open fresh ones.
            self.store.renew_sessions();
            loop {
                match tokio::time::timeout_at(deadline, self.store.ping()).await {
                    Ok(Ok(())) => break,
                    _ if Instant::now() >= deadline => {
                        missing.push("Postgres".to_string());
                        break;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }
        if !missing.is_empty() {
            anyhow::bail!(
                "the servers could not reach {} again within {} s",
                missing.join(" and "),
                RECONNECT_BOUND.as_secs()
            );
        }
        Ok(())
    }

    /// Which Redis nodes are running (managed), or all (external).
    async fn running_redis(&self) -> anyhow::Result<RunningRedis> {
        if !self.stack.redis_managed {
            return Ok(RunningRedis::All);
        }
        self.with_processes(|stack| {
            if let Some(redis) = stack.managed_redis() {
                return Ok(if redis.is_running() {
                    RunningRedis::All
                } else {
                    RunningRedis::None
                });
            }
            let Some(cluster) = stack.managed_cluster() else {
                return Ok(RunningRedis::All);
            };
            let nodes = cluster.nodes();
            let running: Vec<String> = (0..nodes.len())
                .filter(|&i| cluster.is_running(i))
                .map(|i| format!("127.0.0.1:{}", nodes[i].port))
                .collect();
            Ok(match running.len() {
                0 => RunningRedis::None,
                n if n == nodes.len() => RunningRedis::All,
                _ => RunningRedis::Only(running),
            })
        })
        .await
    }

    /// Is Postgres running (managed), or assumed to (external)?
    async fn postgres_runs(&self) -> anyhow::Result<bool> {
        if !self.stack.postgres_managed {
            return Ok(true);
        }
        self.with_processes(|stack| Ok(stack.managed_postgres().is_some_and(|p| p.is_running())))
            .await
    }

    /// Stop and start the managed Redis (every node of a cluster).
    async fn restart_redis(&self) -> anyhow::Result<()> {
        self.with_processes(|stack| {
            if let Some(cluster) = stack.managed_cluster() {
                for i in 0..cluster.nodes().len() {
                    cluster.stop_node(i);
                }
                return cluster.revive().map(drop);
            }
            let redis = stack.managed_redis().context("no managed Redis")?;
            redis.stop();
            redis.start_again()
        })
        .await
    }

    /// Stop and start the managed Postgres.
    async fn restart_postgres(&self) -> anyhow::Result<()> {
        self.with_processes(|stack| {
            let pg = stack.managed_postgres().context("no managed Postgres")?;
            pg.stop();
            pg.start_again()
        })
        .await
    }

    /// Run blocking work on the stack's processes off the async threads.
    pub async fn with_processes<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Stack) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let processes = self.processes.clone();
        tokio::task::spawn_blocking(move || {
            work(&mut processes.lock().unwrap_or_else(|p| p.into_inner()))
        })
        .await
        .context("the process control thread failed")?
    }

    /// Empty Redis and restore its settings: on a cluster, every master.
    async fn reset_redis(&self) -> anyhow::Result<()> {
        let work = async {
            let mut conn = RedisConn::direct(&self.stack.redis).await?;
            if !self.stack.may_flush_redis {
                for pattern in crate::cache::keys::OWN_KEY_PATTERNS {
                    let keys = conn.scan_keys(pattern).await?;
                    // On a cluster the client splits a DEL by slot.
                    for chunk in keys.chunks(1000) {
                        redis::cmd("DEL")
                            .arg(chunk)
                            .query_async::<()>(&mut conn)
                            .await?;
                    }
                }
                return Ok(());
            }
            for master in conn.masters().await? {
                let node = master.as_deref();
                let on_node = |name: &str, arg: &str| {
                    let mut cmd = redis::cmd(name);
                    cmd.arg(arg);
                    cmd
                };
                conn.on_node::<()>(node, &redis::cmd("FLUSHALL")).await?;
                conn.on_node::<()>(node, &on_node("SCRIPT", "FLUSH"))
                    .await?;
                conn.on_node::<()>(node, &on_node("FUNCTION", "FLUSH"))
                    .await?;
                match self
                    .redis_config
                    .iter()
                    .find(|(addr, _)| addr.as_deref() == node)
                {
                    Some((_, wanted)) => restore_redis_config(&mut conn, node, wanted).await?,
                    None => tracing::warn!(
                        "Redis node {} joined after start: its settings are not restored",
                        node.unwrap_or("?")
                    ),
                }
                conn.on_node::<()>(node, &on_node("CONFIG", "RESETSTAT"))
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        };
        tokio::time::timeout(Duration::from_secs(5), work)
            .await
            .context("Redis did not answer the reset within 5 s")?
            .context("resetting Redis")
    }

    async fn reset_postgres(&self) -> anyhow::Result<()> {
        if !self.stack.may_reset_data {
            return Ok(());
        }
        let work = async {
            Admin::connect(&self.stack.database_admin_url, self.stack.postgres_managed)
                .await?
                .rebuild()
                .await
        };
        tokio::time::timeout(Duration::from_secs(10), work)
            .await
            .context("Postgres did not answer the reset within 10 s")?
            .context("resetting Postgres")
    }

    /// Stop the servers, draining requests in flight and their background work, then the
    /// fault proxies.
    pub async fn shutdown(self) {
        let more = std::mem::take(&mut *self.more.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, server) in more {
            server.shutdown().await;
        }
        for server in self.servers {
            server.shutdown().await;
        }
        if let Some(faults) = self.faults {
            for (_, proxy) in faults.redis {
                proxy.shutdown().await;
            }
            if let Some(proxy) = faults.near_links {
                proxy.shutdown().await;
            }
            faults.postgres.shutdown().await;
        }
    }
}

/// Every setting of the Redis node at `node` (the single node: `None`).
async fn read_redis_config(
    conn: &mut RedisConn,
    node: Option<&str>,
) -> anyhow::Result<RedisConfig> {
    let mut get = redis::cmd("CONFIG");
    get.arg("GET").arg("*");
    Ok(conn.on_node(node, &get).await?)
}

/// CONFIG SET every setting of `node` that differs from `wanted`. Settings Redis will not
/// set at run time are skipped (they cannot have been changed either).
async fn restore_redis_config(
    conn: &mut RedisConn,
    node: Option<&str>,
    wanted: &[(String, String)],
) -> anyhow::Result<()> {
    let now: HashMap<String, String> = read_redis_config(conn, node).await?.into_iter().collect();
    for (name, value) in wanted {
        if now.get(name) == Some(value) {
            continue;
        }
        let mut set = redis::cmd("CONFIG");
        set.arg("SET").arg(name).arg(value);
        if let Err(e) = conn.on_node::<()>(node, &set).await {
            tracing::debug!("restoring Redis setting {name}: {e}");
        }
    }
    Ok(())
}
