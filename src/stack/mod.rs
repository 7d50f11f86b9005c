//! Where Redis and PostgreSQL come from: managed (started here, thrown away on exit) or
//! external (URLs the user gives); Redis as one node or as a Redis Cluster. Everything
//! above this module sees only URLs, two permissions (whether Redis may be flushed and
//! whether the users table may be reloaded) and, for the fault proxies, the managed Redis'
//! Unix socket.

mod binaries;
pub mod child;
pub mod endpoint;
mod managed_cluster;
mod managed_postgres;
mod managed_redis;
mod ports;
pub mod process_tree;
pub mod proxy;
pub mod reaper;
pub mod roles;

pub use managed_cluster::{ClusterNodeInfo, ManagedCluster};
pub use managed_postgres::ManagedPostgres;
pub use managed_redis::ManagedRedis;

use endpoint::redact;

use anyhow::{bail, Context};

use std::path::{Path, PathBuf};

/// What the user asked for on the command line (or through the environment).
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// External Redis instead of a managed one.
    pub redis_url: Option<String>,
    /// A managed Redis Cluster of this many masters instead of a single node.
    pub redis_cluster: Option<usize>,
    /// An external Redis Cluster, by the URLs of some of its nodes.
    pub redis_cluster_urls: Vec<String>,
    /// External PostgreSQL instead of a managed one.
    pub database_url: Option<String>,
    /// On an external PostgreSQL, the role labs' SQL runs as (default: `database_url`'s).
    pub lab_database_url: Option<String>,
    /// Allow FLUSHALL and CONFIG SET on an external Redis.
    pub allow_flush: bool,
    /// Reload users.json into an external users table even when it holds rows.
    pub reset_data: bool,
}

/// The Redis the servers use.
pub enum RedisSource {
    Managed(ManagedRedis),
    External(String),
    /// A managed Redis Cluster.
    Cluster(ManagedCluster),
    /// An external Redis Cluster, by the URLs of some of its nodes.
    ExternalCluster(Vec<String>),
}

/// The PostgreSQL the servers use.
pub enum PostgresSource {
    Managed(ManagedPostgres),
    External(String),
}

/// Both data servers, wherever they come from. Dropping it ends the managed ones and
/// removes their temp dir (fields drop in declaration order: servers first, dir last).
pub struct Stack {
    pub redis: RedisSource,
    pub postgres: PostgresSource,
    options: StackOptions,
    /// Held for its `Drop`, which removes the temp dir after the servers above have ended.
    _dir: Option<StackDir>,
}

impl Stack {
    /// Start what must be managed and take the rest from the options.
    /// Call it from the main thread: children started there die with cachelab even if it is
    /// SIGKILLed.
    pub fn start(options: StackOptions) -> anyhow::Result<Self> {
        let redis_choices = [
            options.redis_url.is_some(),
            options.redis_cluster.is_some(),
            !options.redis_cluster_urls.is_empty(),
        ];
        if redis_choices.iter().filter(|chosen| **chosen).count() > 1 {
            bail!("--redis-url, --redis-cluster and --redis-cluster-url each choose a Redis: give only one of them");
        }
        let external_redis = options.redis_url.is_some() || !options.redis_cluster_urls.is_empty();
        let needs_dir = !external_redis || options.database_url.is_none();
        let dir = needs_dir.then(StackDir::create).transpose()?;
        let dir_path = || dir.as_ref().expect("created above").path();
        let redis = match (&options.redis_url, options.redis_cluster) {
            (Some(url), _) => RedisSource::External(url.clone()),
            (None, Some(masters)) => {
                RedisSource::Cluster(ManagedCluster::start(dir_path(), masters)?)
            }
            (None, None) if !options.redis_cluster_urls.is_empty() => {
                RedisSource::ExternalCluster(options.redis_cluster_urls.clone())
            }
            (None, None) => RedisSource::Managed(ManagedRedis::start(dir_path())?),
        };
        let postgres = match &options.database_url {
            Some(url) => PostgresSource::External(url.clone()),
            None => PostgresSource::Managed(ManagedPostgres::start(dir_path())?),
        };
        Ok(Self {
            redis,
            postgres,
            options,
            _dir: dir,
        })
    }

    /// What the servers and labs need to know of this stack.
    pub fn info(&self) -> StackInfo {
        let (database_url, database_lab_url) = match &self.postgres {
            PostgresSource::Managed(p) => (p.url_as(roles::APP_ROLE), p.url_as(roles::LAB_ROLE)),
            PostgresSource::External(url) => (
                url.clone(),
                self.options
                    .lab_database_url
                    .clone()
                    .unwrap_or_else(|| url.clone()),
            ),
        };
        StackInfo {
            redis_url: self.redis_url(),
            redis_socket: match &self.redis {
                RedisSource::Managed(r) => r.socket(),
                _ => None,
            },
            redis: self.redis_target(),
            database_url,
            database_admin_url: self.database_url(),
            database_lab_url,
            redis_managed: matches!(
                self.redis,
                RedisSource::Managed(_) | RedisSource::Cluster(_)
            ),
            postgres_managed: matches!(self.postgres, PostgresSource::Managed(_)),
            may_flush_redis: self.may_flush_redis(),
            may_reset_data: self.may_reset_data(),
        }
    }

    /// Start every managed process that is not running (crashed, or stopped by a lab);
    /// returns what was started.
    pub fn revive(&mut self) -> anyhow::Result<Vec<&'static str>> {
        let mut revived = Vec::new();
        match &mut self.redis {
            RedisSource::Managed(r) => {
                if !r.is_running() {
                    r.start_again()?;
                    revived.push("redis");
                }
            }
            RedisSource::Cluster(c) => {
                if c.revive()? {
                    revived.push("redis cluster node");
                }
            }
            RedisSource::External(_) | RedisSource::ExternalCluster(_) => {}
        }
        if let PostgresSource::Managed(p) = &mut self.postgres {
            if !p.is_running() {
                p.start_again()?;
                revived.push("postgres");
            }
        }
        Ok(revived)
    }

    /// SIGCONT every managed process (a pause that outlived its lab).
    pub fn resume_all(&self) {
        let mut pids = match &self.redis {
            RedisSource::Managed(r) => vec![r.pid()],
            RedisSource::Cluster(c) => c.pids(),
            RedisSource::External(_) | RedisSource::ExternalCluster(_) => Vec::new(),
        };
        pids.push(match &self.postgres {
            PostgresSource::Managed(p) => p.pid(),
            PostgresSource::External(_) => None,
        });
        for pid in pids.into_iter().flatten() {
            process_tree::signal_tree(pid, libc::SIGCONT);
        }
    }

    /// The URL of the Redis (on a cluster: of its first node).
    pub fn redis_url(&self) -> String {
        match self.redis_target() {
            RedisTarget::Single(url) => url,
            RedisTarget::Cluster(urls) => urls[0].clone(),
        }
    }

    /// Where the Redis is, for a client of its own: one node, or a cluster's nodes.
    pub fn redis_target(&self) -> RedisTarget {
        match &self.redis {
            RedisSource::Managed(r) => RedisTarget::Single(r.url()),
            RedisSource::External(url) => RedisTarget::Single(url.clone()),
            RedisSource::Cluster(c) => RedisTarget::Cluster(c.urls()),
            RedisSource::ExternalCluster(urls) => RedisTarget::Cluster(urls.clone()),
        }
    }

    pub fn database_url(&self) -> String {
        match &self.postgres {
            PostgresSource::Managed(p) => p.url(),
            PostgresSource::External(url) => url.clone(),
        }
    }

    /// May labs FLUSHALL and CONFIG SET this Redis?
    pub fn may_flush_redis(&self) -> bool {
        matches!(
            self.redis,
            RedisSource::Managed(_) | RedisSource::Cluster(_)
        ) || self.options.allow_flush
    }

    /// May the users table be truncated and reloaded from users.json?
    pub fn may_reset_data(&self) -> bool {
        matches!(self.postgres, PostgresSource::Managed(_)) || self.options.reset_data
    }

    /// The managed Redis, for tests that crash it.
    pub fn managed_redis(&mut self) -> Option<&mut ManagedRedis> {
        match &mut self.redis {
            RedisSource::Managed(r) => Some(r),
            _ => None,
        }
    }

    /// The managed Redis Cluster, for labs and tests that crash one of its nodes.
    pub fn managed_cluster(&mut self) -> Option<&mut ManagedCluster> {
        match &mut self.redis {
            RedisSource::Cluster(c) => Some(c),
            _ => None,
        }
    }

    /// The managed PostgreSQL, for tests that stop and restart it.
    pub fn managed_postgres(&mut self) -> Option<&mut ManagedPostgres> {
        match &mut self.postgres {
            PostgresSource::Managed(p) => Some(p),
            PostgresSource::External(_) => None,
        }
    }

    /// The redis-cli commands that reach this Redis (password hidden), each with a label:
    /// `redis` for one node, `redis:0`, `redis:1`, ... for each node of a cluster (with
    /// `-c`, so redis-cli follows the cluster's redirects).
    pub fn redis_cli_hints(&self) -> Vec<(String, String)> {
        let cluster_hints = |commands: Vec<String>| {
            commands
                .into_iter()
                .enumerate()
                .map(|(i, command)| (format!("redis:{i}"), command))
                .collect()
        };
        match &self.redis {
            RedisSource::Managed(r) => vec![("redis".into(), format!("redis-cli -p {}", r.port()))],
            RedisSource::External(url) => {
                vec![("redis".into(), format!("redis-cli -u {}", redact(url)))]
            }
            RedisSource::Cluster(c) => cluster_hints(
                c.nodes()
                    .iter()
                    .map(|n| format!("redis-cli -c -p {}", n.port))
                    .collect(),
            ),
            RedisSource::ExternalCluster(urls) => cluster_hints(
                urls.iter()
                    .map(|u| format!("redis-cli -c -u {}", redact(u)))
                    .collect(),
            ),
        }
    }

    /// The psql command that reaches this PostgreSQL (password hidden).
    pub fn psql_hint(&self) -> String {
        format!("psql {}", redact(&self.database_url()))
    }
}

/// Where a Redis is: one node's URL, or a cluster's node URLs (any one that answers will
/// do; a client learns the rest from `CLUSTER SLOTS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

/// Where the stack's servers are and what labs may do to them.
#[derive(Debug, Clone)]
pub struct StackInfo {
    /// The Redis's URL (on a cluster: its first node's).
    pub redis_url: String,
    /// The managed single Redis' Unix socket: the fault proxies reach it there.
    pub redis_socket: Option<PathBuf>,
    /// Where the Redis is: one node, or every node of a cluster the stack knows of.
    pub redis: RedisTarget,
    /// The URL the strategy servers use (the table's owner on a managed stack).
    pub database_url: String,
    /// The URL set-up and the per-lab reset use (the superuser on a managed stack).
    pub database_admin_url: String,
    /// The URL labs' `db_query`/`db_get` use (rows of `users` only on a managed stack).
    pub database_lab_url: String,
    pub redis_managed: bool,
    pub postgres_managed: bool,
    /// FLUSHALL and CONFIG SET allowed (managed, or `--allow-flush`).
    pub may_flush_redis: bool,
    /// The users table may be truncated and reloaded (managed, or `--reset-data`).
    pub may_reset_data: bool,
}

impl StackInfo {
    /// Is the Redis a cluster (managed or external)?
    pub fn redis_is_cluster(&self) -> bool {
        matches!(self.redis, RedisTarget::Cluster(_))
    }
}

/// The temp dir of a managed stack, removed when dropped (or by the reaper at exit).
struct StackDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl StackDir {
    fn create() -> anyhow::Result<Self> {
        sweep_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in(scratch_dir())
            .context("creating the stack's temp dir")?;
        let path = dir.path().to_path_buf();
        reaper::track_dir(path.clone());
        Ok(Self {
            dir: Some(dir),
            path,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StackDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
        reaper::untrack_dir(&self.path);
    }
}

/// Where throw-away server data goes: `$TMPDIR` when set; otherwise `/dev/shm` (memory:
/// a disposable cluster with fsync off gains nothing from a disk, and starts faster on a
/// busy one); otherwise `/tmp`.
pub fn scratch_dir() -> PathBuf {
    if std::env::var_os("TMPDIR").is_some_and(|t| !t.is_empty()) {
        return std::env::temp_dir();
    }
    let shm = Path::new("/dev/shm");
    let writable = tempfile::Builder::new()
        .prefix(".cachelab-probe-")
        .tempfile_in(shm)
        .is_ok();
    if shm.is_dir() && writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Stack dirs are named `cachelab-<pid>-<random>` so a later start can tell whose they are.
const DIR_PREFIX: &str = "cachelab-";

/// Remove stack dirs left by a cachelab that was SIGKILLed (its pid no longer runs).
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(scratch_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            tracing::info!(
                "removing {} left by a cachelab that was killed",
                entry.path().display()
            );
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
