//! The running system a command works with: the stack, the servers' Postgres pool and
//! Redis connection, the knobs, and the strategy servers. `serve` and `run` both build
//! one; `reset` puts it back into the fresh state every lab starts from.

use anyhow::Context;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cache::{Cache, RedisConn, DEFAULT_REDIS_TIMEOUT};
use crate::knobs::{Knobs, Settings};
use crate::server::{HttpLimits, StrategyServer};
use crate::stack::proxy::FaultProxy;
use crate::stack::{endpoint, Stack, StackInfo};
use crate::store::admin::Admin;
use crate::store::{Store, DEFAULT_DB_TIMEOUT};
use crate::strategy::{Backend, StrategyEntry, REGISTRY};

/// The stack, shared with the labs that stop and start its processes.
pub type SharedStack = Arc<Mutex<Stack>>;

/// How to host the servers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub bind: IpAddr,
    /// The first strategy's port; each strategy listens on it plus its registry offset.
    /// 0: any free ports.
    pub port: u16,
    /// Which strategies get a server.
    pub strategies: Vec<&'static StrategyEntry>,
    /// The knobs' starting values, which every lab's reset restores.
    pub knobs: Settings,
    pub http: HttpLimits,
    /// Bound on every Postgres call of the servers.
    pub db_timeout: Duration,
    /// Bound on every Redis call of the servers.
    pub redis_timeout: Duration,
    /// Put fault proxies between the servers and Redis/Postgres (labs inject faults).
    pub fault_proxies: bool,
}

impl ServerOptions {
    /// Every strategy on free loopback ports with default knobs (labs and tests).
    pub fn loopback(ttl_secs: u64) -> Self {
        Self {
            bind: [127, 0, 0, 1].into(),
            port: 0,
            strategies: REGISTRY.iter().collect(),
            knobs: Settings::with_ttl(ttl_secs),
            http: HttpLimits::default(),
            db_timeout: DEFAULT_DB_TIMEOUT,
            redis_timeout: DEFAULT_REDIS_TIMEOUT,
            fault_proxies: true,
        }
    }
}

/// Everything connected to a stack: clients, knobs and the strategy servers.
pub struct Services {
    pub store: Store,
    pub cache: Cache,
    pub knobs: Arc<Knobs>,
    pub servers: Vec<StrategyServer>,
    pub stack: StackInfo,
    /// The stack's processes, for process faults and for reviving them in a reset.
    pub processes: SharedStack,
    /// The fault proxies the servers reach Redis and Postgres through (labs only).
    pub faults: Option<Faults>,
    /// Every Redis setting as found at start, restored by `reset`.
    redis_config: Vec<(String, String)>,
}

/// One fault proxy per data store, in front of it for the servers.
pub struct Faults {
    pub redis: FaultProxy,
    pub postgres: FaultProxy,
}

impl Faults {
    async fn start(stack: &StackInfo) -> anyhow::Result<Self> {
        let redis_at = endpoint::authority(&stack.redis_url, 6379)
            .context("reading the Redis URL's host and port")?;
        let postgres_at = endpoint::authority(&stack.database_url, 5432)
            .context("reading the database URL's host and port")?;
        Ok(Self {
            redis: FaultProxy::start("redis", redis_at).await?,
            postgres: FaultProxy::start("postgres", postgres_at).await?,
        })
    }

    /// The proxy of a target named by a lab ("redis" or "postgres").
    pub fn target(&self, name: &str) -> Option<&FaultProxy> {
        match name {
            "redis" => Some(&self.redis),
            "postgres" => Some(&self.postgres),
            _ => None,
        }
    }

    /// Remove every fault.
    pub fn heal_all(&self) {
        self.redis.heal();
        self.postgres.heal();
    }
}

impl Services {
    /// Connect to `processes`' stack, build the users table, and start the servers.
    pub async fn start(processes: SharedStack, options: &ServerOptions) -> anyhow::Result<Self> {
        let stack = processes.lock().unwrap_or_else(|p| p.into_inner()).info();
        Admin::connect(&stack.database_admin_url, stack.postgres_managed)
            .await?
            .prepare(stack.may_reset_data)
            .await
            .context("preparing the users table")?;
        let faults = if options.fault_proxies {
            Some(Faults::start(&stack).await?)
        } else {
            None
        };
        // The servers reach the stores through the proxies; labs and resets go direct.
        let (db_url, redis_url) = match &faults {
            Some(f) => (
                endpoint::with_authority(&stack.database_url, f.postgres.addr()),
                endpoint::with_authority(&stack.redis_url, f.redis.addr()),
            ),
            None => (stack.database_url.clone(), stack.redis_url.clone()),
        };
        let store = Store::new(&db_url, options.db_timeout)?;
        let cache = Cache::new(RedisConn::single(&redis_url, options.redis_timeout)?);
        let redis_config = read_redis_config(&stack.redis_url)
            .await
            .context("reading the Redis configuration")?;
        let knobs = Arc::new(Knobs::new(options.knobs));
        let mut servers = Vec::new();
        for entry in &options.strategies {
            let port = if options.port == 0 {
                0
            } else {
                options
                    .port
                    .checked_add(entry.port_offset)
                    .context("--port leaves no room for every strategy's port")?
            };
            let backend = Arc::new(Backend::new(
                entry.name,
                store.clone(),
                cache.clone(),
                knobs.clone(),
            ));
            let addr = SocketAddr::new(options.bind, port);
            servers.push((entry.start)(backend, addr, options.http).await?);
        }
        Ok(Self {
            store,
            cache,
            knobs,
            servers,
            stack,
            processes,
            faults,
            redis_config,
        })
    }

    /// The server of a strategy, by name.
    pub fn server(&self, name: &str) -> Option<&StrategyServer> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The fresh state every lab starts from: no request or background work of the last
    /// lab still running, managed processes running and resumed, Redis emptied with every
    /// setting as it was at start, the users table rebuilt from schema.sql and users.json,
    /// the servers' sessions renewed, knobs at defaults, counters at zero.
    ///
    /// On an external Redis without `--allow-flush` only cachelab's own keys are removed;
    /// on an external database without `--reset-data` the table is left as it is. A
    /// managed server that cannot be brought back by commands is restarted.
    pub async fn reset(&self) -> anyhow::Result<()> {
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
            self.with_processes(|stack| {
                let redis = stack.managed_redis().expect("managed");
                redis.stop();
                redis.start_again()
            })
            .await?;
            self.reset_redis().await?;
        }
        if let Err(e) = self.reset_postgres().await {
            if !self.stack.postgres_managed {
                return Err(e);
            }
            tracing::info!("restarting the managed Postgres: {e:#}");
            self.with_processes(|stack| {
                let pg = stack.managed_postgres().expect("managed");
                pg.stop();
                pg.start_again()
            })
            .await?;
            self.reset_postgres().await?;
        }
        self.store.renew_sessions();
        self.knobs.reset();
        for server in &self.servers {
            server.backend.counters.reset();
        }
        drop(quiet);
        Ok(())
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

    async fn reset_redis(&self) -> anyhow::Result<()> {
        let work = async {
            let mut conn = fresh_redis_connection(&self.stack.redis_url).await?;
            if !self.stack.may_flush_redis {
                for pattern in crate::cache::keys::OWN_KEY_PATTERNS {
                    let keys = crate::cache::scan_keys(&mut conn, pattern).await?;
                    for chunk in keys.chunks(1000) {
                        redis::cmd("DEL")
                            .arg(chunk)
                            .query_async::<()>(&mut conn)
                            .await?;
                    }
                }
                return Ok(());
            }
            redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;
            redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async::<()>(&mut conn)
                .await?;
            redis::cmd("FUNCTION")
                .arg("FLUSH")
                .query_async::<()>(&mut conn)
                .await?;
            restore_redis_config(&mut conn, &self.redis_config).await?;
            redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query_async::<()>(&mut conn)
                .await?;
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
        for server in self.servers {
            server.shutdown().await;
        }
        if let Some(faults) = self.faults {
            faults.redis.shutdown().await;
            faults.postgres.shutdown().await;
        }
    }
}

/// A connection of its own (not the servers'): what a lab did to a connection cannot
/// reach it.
pub async fn fresh_redis_connection(
    url: &str,
) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url)
        .with_context(|| format!("parsing Redis URL {}", crate::stack::redact(url)))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

async fn read_redis_config(url: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut conn = fresh_redis_connection(url).await?;
    let pairs: Vec<(String, String)> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query_async(&mut conn)
        .await?;
    Ok(pairs)
}

/// CONFIG SET every setting that differs from `wanted`. Settings Redis will not set at
/// run time are skipped (they cannot have been changed either).
async fn restore_redis_config(
    conn: &mut redis::aio::MultiplexedConnection,
    wanted: &[(String, String)],
) -> anyhow::Result<()> {
    let now: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query_async::<Vec<(String, String)>>(conn)
        .await?
        .into_iter()
        .collect();
    for (name, value) in wanted {
        if now.get(name) == Some(value) {
            continue;
        }
        let set: redis::RedisResult<()> = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async(conn)
            .await;
        if let Err(e) = set {
            tracing::debug!("restoring Redis setting {name}: {e}");
        }
    }
    Ok(())
}
