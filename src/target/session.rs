//! Target mode's setup and teardown around the running system: which Redis and Postgres
//! the stack uses (the file's, or cachelab's managed ones), the observing proxies in
//! front of them, and the app started on the proxies' addresses once they listen.

use std::path::Path;
use std::sync::Arc;

use super::app::{self, RunningApp};
use super::config::{SetupError, Target};
use super::placeholders::Values;
use crate::services::{ServerOptions, Services};
use crate::stack::proxy::observe::KeyFilter;
use crate::stack::{endpoint, RedisTarget, StackOptions};

/// The stack options for `target`: its `[redis]` and `[postgres]` as external servers
/// (Redis reset per lab only if the user allows it with the usual flags; the app's own
/// database never: cachelab neither creates, loads nor rebuilds tables in it), else the
/// managed ones.
pub fn stack_options(target: &Target, mut options: StackOptions) -> StackOptions {
    if target.redis_url.is_some() {
        options.redis_url = target.redis_url.clone();
        options.redis_cluster = None;
        options.redis_cluster_urls.clear();
    }
    if target.postgres_url.is_some() {
        options.database_url = target.postgres_url.clone();
        options.reset_data = false;
    }
    options
}

/// Server options for target mode: no strategy servers of our own, observing proxies
/// that count hits and misses for the model's cache keys.
pub fn server_options(target: &Target, mut options: ServerOptions) -> ServerOptions {
    let key = target.model.cache_key.clone();
    options.strategies.clear();
    options.fault_proxies = true;
    options.observe = Some(KeyFilter(Arc::new(move |k: &str| key.id_of(k).is_some())));
    options
}

/// The placeholders' values: the stack's URLs with the proxies' addresses in them.
pub fn values(services: &Services) -> Result<Values, SetupError> {
    let faults = services.faults.as_ref().ok_or_else(|| SetupError {
        place: "target mode".into(),
        message: "the proxies are not running".into(),
    })?;
    let redis_url = match &services.stack.redis {
        RedisTarget::Single(url) => url.clone(),
        RedisTarget::Cluster(urls) => urls[0].clone(),
    };
    let redis_at = faults.redis[0].1.addr();
    let pg_at = faults.postgres.addr();
    Ok(Values::new(
        &endpoint::with_authority(&redis_url, redis_at),
        redis_at,
        &endpoint::with_authority(&services.stack.database_url, pg_at),
        pg_at,
    ))
}

/// Start the app (if the file has a command) once the proxies listen and wait until it is
/// ready; its output goes to `log`.
pub async fn start_app(
    target: &Target,
    services: &Services,
    log: &Path,
) -> Result<RunningApp, SetupError> {
    let values = values(services)?;
    app::start(target, &values, log).await
}
