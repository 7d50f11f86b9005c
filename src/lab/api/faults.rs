//! Faults a lab injects into what the servers depend on: network faults through the fault
//! proxies the servers reach Redis and Postgres by (the lab's own calls go direct, so it
//! can look inside while the servers suffer), and process faults on the managed stack.
//! Every lab starts healed, with both processes running.
//!
//! On a Redis Cluster each master has a proxy and a process of its own: `"redis"` names
//! all of them, `"redis:0"`, `"redis:1"`, ... one (in `redis_nodes()` order).

use anyhow::Context;
use rhai::{Dynamic, Map};
use std::time::Duration;

use super::{def, Registry};
use crate::lab::context::{self, LabContext};
use crate::lab::convert::{arg_count, arg_map, arg_str, lab_error, LabResult};
use crate::services::Reconnect;
use crate::stack::proxy::kinds;
use crate::stack::Stack;

const TARGETS: &str =
    "\"redis\" (on a cluster also one node: \"redis:0\", \"redis:1\", ...) or \"postgres\"";

pub fn register(r: &mut Registry) {
    def!(r, "faults", "fault(target: string, kind: string)",
        "Inject a fault between the servers and \"redis\" (on a cluster every node; \"redis:0\" ... one) or \"postgres\": \"down\" (refuse new connections, cut open ones), \"blackhole\" (accept, never answer), \"reset\" (cut open connections once).",
        |target: Dynamic, kind: Dynamic| -> LabResult<()> {
            fault(&target, &kind, Map::new())
        });
    def!(r, "faults", "fault(target: string, kind: string, opts: map)",
        "The same with options: \"latency\" takes #{ms, jitter_ms}, added to data in both directions on open and new connections.",
        |target: Dynamic, kind: Dynamic, opts: Dynamic| -> LabResult<()> {
            let opts = arg_map("fault", "opts", &opts)?;
            fault(&target, &kind, opts)
        });
    def!(
        r,
        "faults",
        "heal(target: string)",
        "Remove the fault on \"redis\" (on a cluster every node; \"redis:0\" ... one) or \"postgres\".",
        |target: Dynamic| -> LabResult<()> {
            let target = arg_str("heal", "target", &target)?;
            context::with(|ctx| {
                for proxy in proxies(ctx, "heal", &target)? {
                    proxy.heal();
                }
                let what = if target == "postgres" { Reconnect::POSTGRES } else { Reconnect::REDIS };
                reconnected(ctx, "heal", what)
            })
        }
    );
    def!(
        r,
        "faults",
        "heal()",
        "Remove every fault.",
        || -> LabResult<()> {
            context::with(|ctx| {
                if let Some(faults) = &ctx.services.faults {
                    faults.heal_all();
                }
                reconnected(ctx, "heal", Reconnect::BOTH)
            })
        }
    );
    def!(r, "faults", "redis_restart()",
        "Stop and start the managed redis-server on the same port: the cache comes back empty, as after a crash without persistence. On a cluster, every node.",
        || -> LabResult<()> { redis_process(RedisAction::Restart, "redis_restart", None) });
    def!(r, "faults", "redis_restart(node: string)",
        "Restart one node of the managed cluster (\"redis:0\", \"redis:1\", ...): it rejoins with its slots but without its keys.",
        |node: Dynamic| -> LabResult<()> {
            let node = arg_str("redis_restart", "node", &node)?;
            redis_process(RedisAction::Restart, "redis_restart", Some(node))
        });
    def!(
        r,
        "faults",
        "redis_stop()",
        "Stop the managed redis-server (until redis_start() or the next lab). On a cluster, every node.",
        || -> LabResult<()> { redis_process(RedisAction::Stop, "redis_stop", None) }
    );
    def!(r, "faults", "redis_stop(node: string)",
        "Stop one node of the managed cluster (\"redis:0\", ...): its slots go unserved until redis_start(node) or the next lab; the other masters keep serving theirs.",
        |node: Dynamic| -> LabResult<()> {
            let node = arg_str("redis_stop", "node", &node)?;
            redis_process(RedisAction::Stop, "redis_stop", Some(node))
        });
    def!(
        r,
        "faults",
        "redis_start()",
        "Start the managed redis-server again on its port (empty). On a cluster, every stopped node, and wait until the cluster is healthy.",
        || -> LabResult<()> { redis_process(RedisAction::Start, "redis_start", None) }
    );
    def!(r, "faults", "redis_start(node: string)",
        "Start one stopped node of the managed cluster again and wait until the cluster is healthy.",
        |node: Dynamic| -> LabResult<()> {
            let node = arg_str("redis_start", "node", &node)?;
            redis_process(RedisAction::Start, "redis_start", Some(node))
        });
    def!(
        r,
        "faults",
        "db_stop()",
        "Stop the managed postgres (fast shutdown), until db_start() or the next lab.",
        || -> LabResult<()> {
            process(
                Store::Postgres,
                |stack| {
                    stack
                        .managed_postgres()
                        .context("the managed Postgres is not part of this stack")?
                        .stop();
                    Ok(())
                },
                "db_stop",
            )
        }
    );
    def!(
        r,
        "faults",
        "db_start()",
        "Start the managed postgres again on its port, with its data.",
        || -> LabResult<()> {
            process(
                Store::Postgres,
                |stack| {
                    stack
                        .managed_postgres()
                        .context("the managed Postgres is not part of this stack")?
                        .start_again()
                },
                "db_start",
            )?;
            context::with(|ctx| reconnected(ctx, "db_start", Reconnect::POSTGRES))
        }
    );
    def!(r, "faults", "pause(target: string, ms: int)",
        "Freeze the managed \"redis\" (on a cluster every node; \"redis:0\" ... one) or \"postgres\" process (SIGSTOP) for ms, then resume it (SIGCONT); returns at once.",
        |target: Dynamic, ms: Dynamic| -> LabResult<()> {
            let target = arg_str("pause", "target", &target)?;
            let ms = arg_count("pause", "ms", &ms)?;
            context::with(|ctx| pause(ctx, &target, Duration::from_millis(ms)))
        });
}

fn fault(target: &Dynamic, kind: &Dynamic, opts: Map) -> LabResult<()> {
    let target = arg_str("fault", "target", target)?;
    let kind = arg_str("fault", "kind", kind)?;
    let entry = kinds::find(&kind).ok_or_else(|| {
        lab_error(format!(
            "fault: argument `kind` must be {}, got {kind:?}",
            kinds::names()
        ))
    })?;
    let mut numbers = std::collections::HashMap::new();
    for (key, value) in &opts {
        if !entry.options.contains(&key.as_str()) {
            return Err(lab_error(if entry.options.is_empty() {
                format!("fault: {kind:?} takes no options")
            } else {
                format!(
                    "fault: unknown option `{key}`; {kind:?} takes {}",
                    entry.options.join(" and ")
                )
            }));
        }
        numbers.insert(
            key.to_string(),
            arg_count("fault", &format!("opts.{key}"), value)?,
        );
    }
    let read = |key: &str| numbers.get(key).copied().unwrap_or(0);
    let action = (entry.action)(&read).map_err(|e| lab_error(format!("fault: {e}")))?;
    context::with(|ctx| {
        for proxy in proxies(ctx, "fault", &target)? {
            action.apply(proxy);
        }
        Ok(())
    })
}

/// The proxies a target names: one, or on a cluster every master's for `"redis"`.
fn proxies<'a>(
    ctx: &'a LabContext,
    function: &str,
    target: &str,
) -> LabResult<Vec<&'a crate::stack::proxy::FaultProxy>> {
    let faults = ctx
        .services
        .faults
        .as_ref()
        .ok_or_else(|| lab_error(format!("{function}: this stack has no fault proxies")))?;
    faults.target(target).ok_or_else(|| {
        lab_error(format!(
            "{function}: argument `target` must be {}, got {target:?}",
            faults.target_names().join(", ")
        ))
    })
}

/// What a Redis process fault does.
#[derive(Debug, Clone, Copy)]
enum RedisAction {
    Restart,
    Stop,
    Start,
}

/// Run a process fault on the managed Redis: the single node, every node of a cluster
/// (`node` is `None` or `"redis"`), or one (`"redis:N"`). A restart or a start returns
/// once the servers use Redis again.
fn redis_process(
    action: RedisAction,
    function: &'static str,
    node: Option<String>,
) -> LabResult<()> {
    act_on_redis(action, function, node)?;
    match action {
        RedisAction::Restart | RedisAction::Start => context::with(|ctx| {
            // The lab's own connection went down with the server: open another next time.
            ctx.renew_redis();
            reconnected(ctx, function, Reconnect::REDIS)
        }),
        RedisAction::Stop => Ok(()),
    }
}

/// Wait (at most `RECONNECT_BOUND`) until the servers use the stores in `what` again —
/// their next request gets the cache, not a breaker opened on a dead connection — else a
/// lab error naming what did not come back. A store this lab froze with `pause()` is not
/// waited for: nothing can reach it until it is continued.
fn reconnected(ctx: &LabContext, function: &str, what: Reconnect) -> LabResult<()> {
    let what = Reconnect {
        redis: what.redis && !ctx.is_frozen("redis"),
        postgres: what.postgres && !ctx.is_frozen("postgres"),
    };
    ctx.block_on(ctx.services.reconnect_servers(what))?
        .map_err(|e| lab_error(format!("{function}: {e:#}")))
}

/// `redis_process` without the wait.
fn act_on_redis(
    action: RedisAction,
    function: &'static str,
    node: Option<String>,
) -> LabResult<()> {
    let (cluster, count) =
        context::with(|ctx| Ok((ctx.services.stack.redis_is_cluster(), node_count(ctx))))?;
    let node = node.filter(|n| n != "redis");
    if !cluster {
        if let Some(node) = node {
            return Err(lab_error(format!(
                "{function}: {node:?} names a cluster node, but this Redis is a single node; call {function}() without it"
            )));
        }
        return process(
            Store::Redis,
            move |stack| {
                let redis = stack
                    .managed_redis()
                    .context("the managed single-node Redis is not part of this stack")?;
                match action {
                    RedisAction::Restart => {
                        redis.stop();
                        redis.start_again()
                    }
                    RedisAction::Stop => {
                        redis.stop();
                        Ok(())
                    }
                    RedisAction::Start => redis.start_again(),
                }
            },
            function,
        );
    }
    let only = match node {
        None => None,
        Some(name) => Some(node_index(&name, count).ok_or_else(|| {
            lab_error(format!(
                "{function}: argument `node` must be \"redis:0\" … \"redis:{}\" (or \"redis\" for every node), got {name:?}",
                count.saturating_sub(1)
            ))
        })?),
    };
    process(
        Store::Redis,
        move |stack| {
            let cluster = stack
                .managed_cluster()
                .context("the managed Redis Cluster is not part of this stack")?;
            let chosen: Vec<usize> = match only {
                Some(i) => vec![i],
                None => (0..cluster.nodes().len()).collect(),
            };
            if matches!(action, RedisAction::Restart | RedisAction::Stop) {
                for &i in &chosen {
                    cluster.stop_node(i);
                }
            }
            if matches!(action, RedisAction::Restart | RedisAction::Start) {
                match only {
                    Some(i) if !cluster.is_running(i) => cluster.start_node(i)?,
                    Some(_) => {}
                    None => {
                        cluster.revive()?;
                    }
                }
            }
            Ok(())
        },
        function,
    )
}

/// How many masters the stack's Redis has (1 for a single node).
fn node_count(ctx: &LabContext) -> usize {
    match &ctx.services.stack.redis {
        crate::cache::RedisTarget::Single(_) => 1,
        crate::cache::RedisTarget::Cluster(urls) => ctx
            .services
            .faults
            .as_ref()
            .map_or(urls.len(), |f| f.redis.len()),
    }
}

/// `"redis:N"` as an index below `count`.
fn node_index(name: &str, count: usize) -> Option<usize> {
    let i: usize = name.strip_prefix("redis:")?.parse().ok()?;
    (i < count).then_some(i)
}

/// Which data store a process fault acts on.
#[derive(Debug, Clone, Copy)]
enum Store {
    Redis,
    Postgres,
}

/// Run a process fault on the managed `store`.
fn process(
    store: Store,
    work: impl FnOnce(&mut Stack) -> anyhow::Result<()> + Send + 'static,
    function: &'static str,
) -> LabResult<()> {
    context::with(|ctx| {
        let managed = match store {
            Store::Redis => ctx.services.stack.redis_managed,
            Store::Postgres => ctx.services.stack.postgres_managed,
        };
        if !managed {
            return Err(lab_error(format!(
                "{function}: needs the managed stack (this one is external)"
            )));
        }
        ctx.block_on(ctx.services.with_processes(work))?
            .map_err(|e| lab_error(format!("{function}: {e:#}")))
    })
}

fn pause(ctx: &LabContext, target: &str, pause_for: Duration) -> LabResult<()> {
    let cluster = ctx.services.stack.redis_is_cluster();
    let node = match target {
        "redis" | "postgres" => None,
        _ if cluster => Some(node_index(target, node_count(ctx)).ok_or_else(|| {
            lab_error(format!(
                "pause: argument `target` must be {TARGETS}, got {target:?}"
            ))
        })?),
        _ => {
            return Err(lab_error(format!(
                "pause: argument `target` must be {TARGETS}, got {target:?}"
            )))
        }
    };
    let is_postgres = target == "postgres";
    let managed = if is_postgres {
        ctx.services.stack.postgres_managed
    } else {
        ctx.services.stack.redis_managed
    };
    if !managed {
        return Err(lab_error(format!(
            "pause: needs the managed stack ({target} is external)"
        )));
    }
    let pids = ctx
        .block_on(ctx.services.with_processes(move |stack| {
            Ok(if is_postgres {
                vec![stack.managed_postgres().and_then(|p| p.pid())]
            } else if let Some(cluster) = stack.managed_cluster() {
                let pids = cluster.pids();
                match node {
                    Some(i) => vec![pids[i]],
                    None => pids,
                }
            } else {
                vec![stack.managed_redis().and_then(|r| r.pid())]
            })
        }))?
        .map_err(|e| lab_error(format!("pause: {e:#}")))?;
    let pids: Vec<u32> = pids
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| lab_error(format!("pause: the managed {target} is not running")))?;
    // The whole tree: postgres answers from backends, the postmaster's children. The
    // lab's end continues them, should it come first.
    ctx.freeze(target, pids, pause_for);
    Ok(())
}
