//! The command line: every flag of every subcommand, parsed in one place.

use clap::{Args, Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;

use crate::services::Which;

#[derive(Parser, Debug)]
#[command(
    name = "cachelab",
    version,
    about = "Run and assert on cache behaviour: cache-aside and write-through servers over real Redis and PostgreSQL, driven by Rhai lab scripts."
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
    /// Run both strategy servers over Redis and Postgres, for curl, hey and redis-cli.
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
    /// Use this PostgreSQL instead of starting one (e.g. postgres://user@127.0.0.1/db).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Let labs FLUSHALL and CONFIG SET an external Redis.
    #[arg(long)]
    pub allow_flush: bool,
    /// Reload users.json into an external users table even if it holds rows.
    #[arg(long)]
    pub reset_data: bool,
    /// Seconds a cache entry lives.
    #[arg(long, default_value_t = crate::knobs::DEFAULT_TTL_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub ttl: u64,
}

impl StackArgs {
    pub fn stack_options(&self) -> crate::stack::StackOptions {
        crate::stack::StackOptions {
            redis_url: self.redis_url.clone(),
            database_url: self.database_url.clone(),
            allow_flush: self.allow_flush,
            reset_data: self.reset_data,
        }
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Port of the cache-aside server; write-through listens on the next one (0: any free ports).
    #[arg(long, default_value_t = 8000, value_parser = clap::value_parser!(u16).range(0..65535))]
    pub port: u16,
    /// Which strategy servers to run.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    pub strategy: Which,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Lab files, or folders whose *.rhai files are run in name order.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Stop a lab that runs longer than this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Stop a lab after this many script operations (a runaway loop).
    #[arg(long, default_value_t = crate::lab::DEFAULT_MAX_OPERATIONS)]
    pub max_operations: u64,
    #[command(flatten)]
    pub stack: StackArgs,
}
