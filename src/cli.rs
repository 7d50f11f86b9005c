//! The command line: every flag of every subcommand, parsed in one place.

use clap::{Args, Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::knobs::{Settings, Value, KNOBS};
use crate::server::HttpLimits;
use crate::services::ServerOptions;
use crate::strategy::StrategyKind;

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
    /// Target mode: check a service of your own described by a target TOML.
    #[command(subcommand)]
    Target(TargetCommand),
}

/// What `cachelab target` does.
#[derive(Subcommand, Debug)]
pub enum TargetCommand {
    /// Start the proxies and the app, make one read and one write through the model, and
    /// print what each proxy saw (keys with hit or miss, statements).
    Check(TargetCheckArgs),
}

#[derive(Args, Debug)]
pub struct TargetCheckArgs {
    /// The target TOML ([app], [model], optional [redis] and [postgres]).
    pub file: PathBuf,
    #[command(flatten)]
    pub stack: StackArgs,
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

    /// Server options on free loopback ports for every strategy, with these limits, whose
    /// knobs start at (and every lab's reset restores) `knobs`.
    pub fn server_options(&self, knobs: Settings) -> ServerOptions {
        // `knobs` replaces the loopback defaults' knobs, the TTL given here included.
        let mut options = ServerOptions {
            knobs,
            ..ServerOptions::loopback(0)
        };
        options.db_timeout = Duration::from_millis(self.db_timeout_ms);
        options.redis_timeout = Duration::from_millis(self.redis_timeout_ms);
        options.http = HttpLimits {
            max_connections: self.max_connections as usize,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
        };
        options
    }
}

/// Every knob's flag (`--ttl`, `--protection`, `--lock-ttl-ms`, ...), one per entry of
/// `knobs::KNOBS`: the values the servers start with and every lab's reset restores.
///
/// Built with clap's builder API rather than derived: a derived field needs its help,
/// default and parser as literals in attributes, so each knob would be written out again
/// here. Built from the table, a flag's help, unit, range and default are the table's,
/// and its value parser is `Knob::check` — the check the lab setters run — so an
/// out-of-range value is clap's own error (exit 2) naming the flag and the range.
#[derive(Debug, Clone, Default)]
pub struct KnobArgs {
    settings: Settings,
}

impl KnobArgs {
    /// The knob settings these flags describe (the table's defaults where none is given).
    pub fn settings(&self) -> Settings {
        self.settings
    }
}

impl clap::FromArgMatches for KnobArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        for knob in KNOBS {
            let given = matches
                .try_get_one::<Value>(knob.field)
                .map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidValue, e))?;
            if let Some(value) = given {
                knob.put(&mut self.settings, *value)
                    .map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidValue, e))?;
            }
        }
        Ok(())
    }
}

impl Args for KnobArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        KNOBS.iter().fold(command, |command, knob| {
            command.arg(
                clap::Arg::new(knob.field)
                    .long(knob.flag.long)
                    .value_name(knob.flag.unit.value_name())
                    // `--ttl -5` is a value outside the range, not an unknown flag `-5`.
                    .allow_negative_numbers(true)
                    .help(knob.flag_help())
                    .value_parser(move |text: &str| knob.parse_flag(text)),
            )
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
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
    #[arg(long, value_parser = StrategyKind::parse)]
    pub strategy: Vec<StrategyKind>,
    /// Servers per strategy, each with its own near cache (L1) and counters: instance i
    /// of the strategy at registry position s listens on P + 10·i + s.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub instances: u8,
    /// Address to listen on (the API has no authentication: keep it on loopback).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    #[command(flatten)]
    pub knobs: KnobArgs,
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
    /// Target mode: run the labs against your own service, described by this TOML (only
    /// labs marked `// app:` run; see labs/app/).
    #[arg(long, value_name = "FILE.toml")]
    pub target: Option<PathBuf>,
    #[command(flatten)]
    pub knobs: KnobArgs,
    #[command(flatten)]
    pub stack: StackArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knobs::{Invalidation, Protection};
    use clap::CommandFactory;

    fn serve(args: &[&str]) -> Result<Settings, clap::Error> {
        let cli = Cli::try_parse_from(["cachelab", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(serve) => Ok(serve.knobs.settings()),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn serve_and_run_have_a_flag_for_every_knob_with_its_range_and_default_in_the_help() {
        let mut cli = Cli::command();
        for name in ["serve", "run"] {
            let command = cli.find_subcommand_mut(name).unwrap();
            for knob in KNOBS {
                let arg = command
                    .get_arguments()
                    .find(|a| a.get_long() == Some(knob.flag.long))
                    .unwrap_or_else(|| panic!("{name} has no --{}", knob.flag.long));
                let help = arg.get_help().unwrap().to_string();
                assert!(
                    help.contains(&knob.describe_range(knob.flag.unit)),
                    "--{}: {help}",
                    knob.flag.long
                );
            }
        }
    }

    #[test]
    fn knob_flags_set_their_fields_in_the_flags_unit_and_default_to_the_table() {
        assert_eq!(serve(&[]).unwrap(), Settings::default());
        let k = serve(&[
            "--ttl",
            "5",
            "--protection",
            "lock",
            "--invalidation",
            "lease",
            "--lease-ttl-ms",
            "250",
            "--wb-batch-max",
            "10",
            "--padding",
            "64",
            "--ttl-jitter",
            "12.5",
        ])
        .unwrap();
        assert_eq!(k.ttl_ms, 5000);
        assert_eq!(k.protection, Protection::Lock);
        assert_eq!(k.invalidation, Invalidation::Lease);
        assert_eq!(k.lease_ttl_ms, 250);
        assert_eq!(k.wb_batch_max, 10);
        assert_eq!(k.padding, 64);
        assert_eq!(k.ttl_jitter_percent, 12.5);
        assert_eq!(k.lock_ttl_ms, Settings::default().lock_ttl_ms);
    }

    #[test]
    fn a_knob_flag_outside_its_range_is_a_usage_error_naming_the_flag_and_the_range() {
        for (args, range) in [
            (["--ttl-jitter", "500"], "[0, 100] percent"),
            (["--lock-ttl-ms", "100000000"], "1..=60000 ms"),
            (["--ttl", "0"], "1..=31536000 s"),
            (["--refresh-ratio", "NaN"], "(0, 1)"),
            (["--wb-batch-max", "-1"], "1..=100000"),
            (["--protection", "mutex"], "singleflight"),
        ] {
            let err = serve(&args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            let text = err.to_string();
            assert!(
                text.contains(args[0]) && text.contains(range),
                "{args:?}: {text}"
            );
        }
    }
}
