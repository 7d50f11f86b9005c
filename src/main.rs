//! cachelab: run and assert on cache behaviour. Parses the command line, sets up logging,
//! and hands over to one subcommand; its result is the exit code.

use cachelab::{cli, commands, output};
use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

use cachelab::exit;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Labs break Redis and Postgres on purpose; their report says what happened, so the
    // runner logs only errors unless asked for more.
    let quiet = matches!(cli.command, cli::Command::Run(_));
    init_logging(cli.verbose, quiet);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    // Commands run inside block_on on this (the main) thread, so the managed servers they
    // start get a parent-death signal tied to the whole process.
    let result = runtime.block_on(async {
        cachelab::shutdown::listen();
        match cli.command {
            cli::Command::Run(args) => commands::run::run(args).await,
            cli::Command::Serve(args) => commands::serve::serve(args).await,
            cli::Command::Load(args) => commands::load::load(args).await,
            cli::Command::Api => Ok(commands::api::api()),
            cli::Command::Target(cli::TargetCommand::Check(args)) => {
                commands::target::check(args).await
            }
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            output::Printer::stderr().line(&format!("error: {e:#}"));
            ExitCode::from(exit::ERROR)
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match verbose {
        0 if quiet => "cachelab=error",
        0 => "cachelab=warn",
        1 => "cachelab=debug",
        _ => "cachelab=trace,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .init();
}
