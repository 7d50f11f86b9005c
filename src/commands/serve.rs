//! `cachelab serve`: the strategy servers over the stack until Ctrl-C, with the commands
//! that reach each piece printed for curl, hey, redis-cli and psql.

use crate::cli::ServeArgs;
use crate::output;
use crate::services::{ServerOptions, Services};
use crate::stack::Stack;

pub async fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let stack = Stack::start(args.stack.stack_options())?;
    let options = ServerOptions {
        bind: args.bind,
        port: args.port,
        which: args.strategy,
        ttl: args.stack.ttl,
    };
    let services = Services::start(stack.info(), &options).await?;
    let out = output::Printer::stdout();
    for server in &services.servers {
        out.line(&format!("{:<14} {}", server.name, server.url()));
    }
    out.line(&format!("{:<14} {}", "redis", stack.redis_cli_hint()));
    out.line(&format!("{:<14} {}", "postgres", stack.psql_hint()));
    if let Some(first) = services.servers.first() {
        out.line(&format!(
            "try: curl -i {}/users/1    (Ctrl-C to stop)",
            first.url()
        ));
    }
    crate::shutdown::signalled().await;
    // Servers first, then the stack they use.
    services.shutdown().await;
    drop(stack);
    Ok(super::exit::OK)
}
