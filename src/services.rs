//! The running system a command works with: the stack, the shared Postgres pool and Redis
//! connection, the knobs, and the strategy servers. `serve` and `run` both build one;
//! `reset` puts it back into the fresh state every lab starts from.

use anyhow::Context;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::cache::Cache;
use crate::counters::Counters;
use crate::knobs::Knobs;
use crate::server::StrategyServer;
use crate::stack::StackInfo;
use crate::store::Store;
use crate::strategy::{Backend, CacheAside, Strategy, WriteThrough};

/// Which strategy servers to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    Both,
    CacheAside,
    WriteThrough,
}

/// How to host the servers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub bind: IpAddr,
    /// Port of the cache-aside server; write-through takes the next one. 0: any free ports.
    pub port: u16,
    pub which: Which,
    pub ttl: u64,
}

/// Redis settings a lab may change and the fresh state restores.
const RESTORED_REDIS_SETTINGS: [&str; 2] = ["maxmemory", "maxmemory-policy"];

/// Everything connected to a stack: clients, knobs and the strategy servers. The stack's
/// processes are owned by the caller, which ends them after `shutdown`.
pub struct Services {
    pub store: Store,
    pub cache: Cache,
    pub knobs: Arc<Knobs>,
    pub servers: Vec<StrategyServer>,
    /// The Redis settings found at start, restored by `reset`.
    redis_defaults: Vec<(String, String)>,
    pub stack: StackInfo,
}

impl Services {
    /// Connect to `stack`, load the schema and users, and start the servers.
    pub async fn start(stack: StackInfo, options: &ServerOptions) -> anyhow::Result<Self> {
        let store = Store::new(&stack.database_url)?;
        let cache = Cache::new(&stack.redis_url)?;
        store
            .apply_schema()
            .await
            .context("preparing the users table")?;
        if stack.may_reset_data || store.count_users().await? == 0 {
            store.reload_users().await?;
        }
        let redis_defaults = read_redis_settings(&cache)
            .await
            .context("reading the Redis configuration")?;
        let knobs = Arc::new(Knobs::new(options.ttl));
        let mut services = Self {
            store,
            cache,
            knobs,
            servers: Vec::new(),
            redis_defaults,
            stack,
        };
        let port_of = |offset: u16| {
            let port = if options.port == 0 {
                0
            } else {
                options.port + offset
            };
            SocketAddr::new(options.bind, port)
        };
        if options.which != Which::WriteThrough {
            services.add_server(CacheAside, port_of(0)).await?;
        }
        if options.which != Which::CacheAside {
            services.add_server(WriteThrough, port_of(1)).await?;
        }
        Ok(services)
    }

    async fn add_server<S: Strategy>(
        &mut self,
        strategy: S,
        addr: SocketAddr,
    ) -> anyhow::Result<()> {
        let backend = Arc::new(Backend {
            store: self.store.clone(),
            cache: self.cache.clone(),
            counters: Counters::default(),
            knobs: self.knobs.clone(),
        });
        self.servers
            .push(StrategyServer::start(strategy, backend, addr).await?);
        Ok(())
    }

    /// The server of a strategy, by name.
    pub fn server(&self, name: &str) -> Option<&StrategyServer> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The fresh state: Redis emptied with its starting configuration, the users table
    /// reloaded, knobs at defaults, counters at zero. On an external Redis without
    /// `--allow-flush` only cachelab's `user:*` keys are removed; on an external database
    /// without `--reset-data` the table is left as it is.
    pub async fn reset(&self) -> anyhow::Result<()> {
        let mut conn = self.cache.connection();
        if self.stack.may_flush_redis {
            redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;
            for (name, value) in &self.redis_defaults {
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg(name)
                    .arg(value)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query_async::<()>(&mut conn)
                .await?;
        } else {
            // Only cachelab's own keys: DEL them in batches.
            for keys in self.cache.scan_keys("user:*").await?.chunks(1000) {
                redis::cmd("DEL")
                    .arg(keys)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
        }
        if self.stack.may_reset_data {
            self.store.reload_users().await?;
        }
        self.knobs.reset();
        for server in &self.servers {
            server.backend.counters.reset();
        }
        Ok(())
    }

    /// Stop the servers, draining requests in flight.
    pub async fn shutdown(self) {
        for server in self.servers {
            server.shutdown().await;
        }
    }
}

async fn read_redis_settings(cache: &Cache) -> anyhow::Result<Vec<(String, String)>> {
    let mut conn = cache.connection();
    let mut settings = Vec::new();
    for name in RESTORED_REDIS_SETTINGS {
        let pair: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(&mut conn)
            .await?;
        if let [key, value] = pair.as_slice() {
            settings.push((key.clone(), value.clone()));
        }
    }
    Ok(settings)
}
