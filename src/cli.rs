//! The command line: every flag of every subcommand, parsed in one place.

use clap::{Args, Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::knobs::{Invalidation, Protection, Settings};
use crate::server::HttpLimits;
use crate::services::ServerOptions;
use crate::strategy::{registry, StrategyEntry};

#[derive(Parser, Debug)]
#[command(
    name = "cachelab",
    version,
    about = "Run and assert on cache behaviour: strategy servers (cache-aside, write-through, write-behind, refresh-ahead) over real Redis and PostgreSQL, driven by Rhai lab scripts."
)]
pub struct Cli {
    /// More logging (-v: debug, e.g. CACHE HIT / CACHE MISS per request). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run lab scripts (files or folders of *.rhai) and report what they checked.
    Run(RunArgs),
    /// Run the strategy servers over Redis and Postgres, for curl, hey and redis-cli.
    Serve(ServeArgs),
    /// Send HTTP load like hey: -n requests over -c connections, or for -z a duration.
    Load(crate::load::LoadArgs),
    /// List every function a lab can call, with its signature and a one-line doc.
    Api,
}

/// Where Redis and PostgreSQL come from.
#[derive(Args, Debug, Clone)]
pub struct StackArgs {
    /// Use this Redis instead of starting one (e.g. redis://127.0.0.1:6379/).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Start a throw-away Redis Cluster of N masters (N >= 3) instead of one redis-server.
    #[arg(long, value_name = "N")]
    pub redis_cluster: Option<usize>,
    /// Use this Redis Cluster (the URL of one of its nodes; repeatable, so any one that
    /// answers will do) instead of starting one.
    #[arg(long, value_name = "URL")]
    pub redis_cluster_url: Vec<String>,
    /// Use this PostgreSQL instead of starting one (e.g. postgres://user@127.0.0.1/db).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// On an external PostgreSQL, run labs' db_query/db_get as this (less privileged)
    /// role's URL; labs refuse to run SQL as a superuser.
    #[arg(long, env = "LAB_DATABASE_URL", hide_env_values = true)]
    pub lab_database_url: Option<String>,
    /// Let labs FLUSHALL, CONFIG SET and write any key of an external Redis.
    #[arg(long)]
    pub allow_flush: bool,
    /// Rebuild and reload an external users table (at start and before every lab).
    #[arg(long)]
    pub reset_data: bool,
    /// Seconds a cache entry lives.
    #[arg(long, default_value_t = crate::knobs::DEFAULT_TTL_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub ttl: u64,
    /// Bound on each Postgres call of the servers (pool wait, connect, statement), in ms.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub db_timeout_ms: u64,
    /// Bound on each Redis call of the servers, in ms.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub redis_timeout_ms: u64,
    /// Open HTTP connections per server at most; at the cap a newcomer makes the idlest
    /// connection close, and waits only while every connection is answering a request.
    #[arg(long, default_value_t = HttpLimits::default().max_connections as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Close a connection with no request under way for this many seconds (between
    /// requests, or still sending its first request head).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
}

impl StackArgs {
    pub fn stack_options(&self) -> crate::stack::StackOptions {
        crate::stack::StackOptions {
            redis_url: self.redis_url.clone(),
            redis_cluster: self.redis_cluster,
            redis_cluster_urls: self.redis_cluster_url.clone(),
            database_url: self.database_url.clone(),
            lab_database_url: self.lab_database_url.clone(),
            allow_flush: self.allow_flush,
            reset_data: self.reset_data,
        }
    }

    /// Server options on free loopback ports for every strategy, with these limits.
    pub fn server_options(&self) -> ServerOptions {
        let mut options = ServerOptions::loopback(self.ttl);
        options.db_timeout = Duration::from_millis(self.db_timeout_ms);
        options.redis_timeout = Duration::from_millis(self.redis_timeout_ms);
        options.http = HttpLimits {
            max_connections: self.max_connections as usize,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
        };
        options
    }
}

/// The remedies and simulation knobs, settable from the command line for curl/hey users.
#[derive(Args, Debug, Clone)]
pub struct KnobArgs {
    /// Stampede protection: none, singleflight, lock, xfetch or swr.
    #[arg(long, value_parser = Protection::parse, default_value = "none")]
    pub protection: Protection,
    /// How cache-aside writes invalidate: delete, double-delete or lease.
    #[arg(long, value_parser = Invalidation::parse, default_value = "delete")]
    pub invalidation: Invalidation,
    /// Spread each TTL by up to ± this percentage (the avalanche remedy).
    #[arg(long, default_value_t = 0.0)]
    pub ttl_jitter: f64,
    /// Cache a 404 as a tombstone for this many seconds (0: off; the penetration remedy).
    #[arg(long, default_value_t = 0)]
    pub negative_ttl: u64,
    /// XFetch's beta (above 1 refreshes earlier).
    #[arg(long, default_value_t = 1.0)]
    pub xfetch_beta: f64,
    /// Under swr, how long past its TTL an entry may be served stale, in seconds.
    #[arg(long, default_value_t = 30)]
    pub stale_secs: u64,
    /// Under double-delete, the delay of the second DEL, in ms.
    #[arg(long, default_value_t = 500)]
    pub double_delete_ms: u64,
    /// Write-behind's flush interval, in ms.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_interval_ms: u64,
    /// Refresh-ahead refreshes a hit with less than this share of its TTL left.
    #[arg(long, default_value_t = 0.25)]
    pub refresh_ratio: f64,
    /// Under lock, how long a holder may hold a key's lock (waiters give up after it), in ms.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..))]
    pub lock_ttl_ms: u64,
    /// Simulate a slow query: each Postgres read takes this many ms longer.
    #[arg(long, default_value_t = 0)]
    pub db_delay_ms: u64,
}

impl KnobArgs {
    /// The knob settings these flags describe, or what is wrong with them.
    pub fn settings(&self, ttl_secs: u64) -> Result<Settings, String> {
        if !(0.0..=100.0).contains(&self.ttl_jitter) {
            return Err("--ttl-jitter must be a percentage from 0 to 100".into());
        }
        if !(self.refresh_ratio > 0.0 && self.refresh_ratio < 1.0) {
            return Err("--refresh-ratio must be between 0 and 1".into());
        }
        if !(self.xfetch_beta > 0.0 && self.xfetch_beta.is_finite()) {
            return Err("--xfetch-beta must be greater than 0".into());
        }
        let mut k = Settings::with_ttl(ttl_secs);
        k.protection = self.protection;
        k.invalidation = self.invalidation;
        k.ttl_jitter_percent = self.ttl_jitter;
        k.negative_ttl_secs = self.negative_ttl;
        k.xfetch_beta = self.xfetch_beta;
        k.stale_secs = self.stale_secs;
        k.double_delete_ms = self.double_delete_ms;
        k.flush_interval_ms = self.flush_interval_ms;
        k.refresh_ratio = self.refresh_ratio;
        k.lock_ttl_ms = self.lock_ttl_ms;
        k.db_delay_ms = self.db_delay_ms;
        Ok(k)
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Port of the first strategy; each strategy listens on this plus its place in the
    /// registry (cache-aside P, write-through P+1, write-behind P+2, refresh-ahead P+3).
    /// 0: any free ports.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Which strategy servers to run (repeatable; default: all).
    #[arg(long, value_parser = strategy_entry)]
    pub strategy: Vec<&'static StrategyEntry>,
    /// Address to listen on (the API has no authentication: keep it on loopback).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    #[command(flatten)]
    pub knobs: KnobArgs,
    #[command(flatten)]
    pub stack: StackArgs,
}

fn strategy_entry(name: &str) -> Result<&'static StrategyEntry, String> {
    registry::find(name).ok_or_else(|| {
        format!(
            "unknown strategy {name:?}; known: {}",
            registry::names().join(", ")
        )
    })
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Lab files, or folders whose *.rhai files are run in name order.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page (charts included) to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Stop a lab that runs longer than this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Stop a lab after this many script operations (a runaway loop).
    #[arg(long, default_value_t = crate::lab::DEFAULT_MAX_OPERATIONS)]
    pub max_operations: u64,
    /// Stop a lab whose data grows the process by more than this many MiB.
    #[arg(long, default_value_t = crate::lab::DEFAULT_MAX_MEMORY_MB)]
    pub max_memory_mb: u64,
    /// Let labs send HTTP requests to this host (host or host:port; repeatable). Labs
    /// reach only cachelab's own servers otherwise.
    #[arg(long)]
    pub allow_host: Vec<String>,
    /// Let labs' save_history(name) write Jepsen-style histories into this folder.
    #[arg(long)]
    pub history_dir: Option<PathBuf>,
    #[command(flatten)]
    pub stack: StackArgs,
}
