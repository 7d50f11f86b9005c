//! `cachelab serve`: the strategy servers over the stack until Ctrl-C, with the commands
//! that reach each piece printed for curl, hey, redis-cli and psql. A managed Redis or
//! Postgres that dies is started again (and that is said once).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cli::ServeArgs;
use crate::output::Printer;
use crate::services::Services;
use crate::stack::Stack;
use crate::strategy::StrategyKind;

pub async fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let last_offset = StrategyKind::ALL
        .iter()
        .map(|k| k.port_offset())
        .max()
        .unwrap_or(0)
        + 10 * (u16::from(args.instances) - 1);
    if args.port != 0 && args.port.checked_add(last_offset).is_none() {
        Printer::stderr().line(&format!(
            "error: --port {} leaves no room for the last strategy's port (P+{last_offset})",
            args.port
        ));
        return Ok(crate::exit::ERROR);
    }
    if !args.bind.is_loopback() {
        Printer::stderr().line(&format!(
            "warning: listening on {}: the HTTP API has no authentication, and anyone who can reach this address can read and change the users table",
            args.bind
        ));
    }
    let stack = Arc::new(Mutex::new(Stack::start(args.stack.stack_options())?));
    // The knob flags were checked against their ranges as clap parsed them.
    let mut options = args.stack.server_options(args.knobs.settings());
    options.bind = args.bind;
    options.port = args.port;
    // No lab injects faults into serve: the servers talk to Redis and Postgres directly.
    options.fault_proxies = false;
    options.instances = usize::from(args.instances);
    if !args.strategy.is_empty() {
        options.strategies = args.strategy.clone();
    }
    let services = Services::start(stack.clone(), &options).await?;
    let out = Printer::stdout();
    for server in &services.servers {
        out.line(&format!("{:<14} {}", server.name, server.url()));
    }
    // Instances 1.. after the first ones, whose lines stay as they were.
    for server in &services.servers {
        for instance in services.instances(server.name).iter().skip(1) {
            let name = format!("{}#{}", server.name, instance.index);
            out.line(&format!("{name:<14} {}", instance.url()));
        }
    }
    {
        let stack = stack.lock().unwrap_or_else(|p| p.into_inner());
        for (label, command) in stack.redis_cli_hints() {
            out.line(&format!("{label:<14} {command}"));
        }
        out.line(&format!("{:<14} {}", "postgres", stack.psql_hint()));
    }
    if let Some(first) = services.servers.first() {
        out.line(&format!(
            "try: curl -i {}/users/1    (Ctrl-C to stop)",
            first.url()
        ));
    }
    tokio::select! {
        _ = crate::shutdown::signalled() => {}
        _ = keep_alive(&services) => {}
    }
    // Servers first (write-behind flushes its queue), then the stack they use.
    services.shutdown().await;
    drop(stack);
    Ok(crate::exit::OK)
}

/// Start a managed Redis or Postgres again when it dies; never returns.
async fn keep_alive(services: &Services) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match services.with_processes(|stack| stack.revive()).await {
            Ok(revived) => {
                for what in revived {
                    tracing::warn!(
                        "the managed {what} had stopped; started it again on the same port"
                    );
                }
            }
            Err(e) => tracing::warn!("could not restart a managed server: {e:#}"),
        }
    }
}
