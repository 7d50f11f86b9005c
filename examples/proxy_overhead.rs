//! The observing proxies alone, for `benches/proxy_overhead.sh`: an observing Redis proxy
//! and an observing Postgres proxy in front of the upstreams given as arguments
//! (`host:port` each, or `unix:PATH` for a Unix socket). It prints where they listen, runs
//! until its stdin closes, and then prints what they counted — so the script can compare
//! redis-benchmark and pgbench direct and through them, as target mode runs them
//! (`--plain`: the labs' fault proxies instead, without decoding, on the worker pool).

use std::sync::Arc;

use cachelab::stack::proxy::observe::{Observed, Observer, Protocol};
use cachelab::stack::proxy::{FaultProxy, Upstream};
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (redis_at, pg_at, plain) = match args.as_slice() {
        [r, p] => (r, p, false),
        [r, p, flag] if flag == "--plain" => (r, p, true),
        _ => anyhow::bail!(
            "usage: proxy_overhead REDIS_HOST:PORT|unix:PATH POSTGRES_HOST:PORT|unix:PATH [--plain]"
        ),
    };
    let (redis_at, pg_at) = (upstream(redis_at), upstream(pg_at));
    let observed = Arc::new(Observed::default());
    let redis = Observer {
        protocol: Protocol::Redis {
            is_cache_key: Arc::new(|key: &str| key.starts_with("key:")),
        },
        observed: observed.clone(),
    };
    let postgres = Observer {
        protocol: Protocol::Postgres,
        observed: observed.clone(),
    };
    // --plain: the labs' fault proxies, to tell the two kinds apart.
    let (redis, postgres) = if plain {
        (
            FaultProxy::start("redis", redis_at).await?,
            FaultProxy::start("postgres", pg_at).await?,
        )
    } else {
        (
            FaultProxy::start_observing("redis", redis_at, redis).await?,
            FaultProxy::start_observing("postgres", pg_at, postgres).await?,
        )
    };
    println!("redis {}", redis.addr());
    println!("postgres {}", postgres.addr());
    let mut rest = Vec::new();
    tokio::io::stdin().read_to_end(&mut rest).await?;
    for (name, value) in observed.snapshot() {
        println!("{name} {value}");
    }
    Ok(())
}

fn upstream(arg: &str) -> Upstream {
    match arg.strip_prefix("unix:") {
        Some(path) => Upstream::Unix(path.into()),
        None => Upstream::Tcp(arg.to_string()),
    }
}
