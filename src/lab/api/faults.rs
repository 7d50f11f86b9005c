//! Faults a lab injects into what the servers depend on: network faults through the fault
//! proxies the servers reach Redis and Postgres by (the lab's own calls go direct, so it
//! can look inside while the servers suffer), and process faults on the managed stack.
//! Every lab starts healed, with both processes running.

use rhai::{Dynamic, Map};
use std::time::Duration;

use super::{def, Registry};
use crate::lab::context::{self, LabContext};
use crate::lab::convert::{arg_count, arg_map, arg_str, lab_error, LabResult};
use crate::stack::child::signal_tree;
use crate::stack::proxy::Fault;
use crate::stack::Stack;

const TARGETS: &str = "\"redis\" or \"postgres\"";
const KINDS: &str = "\"latency\", \"down\", \"blackhole\" or \"reset\"";

pub fn register(r: &mut Registry) {
    def!(r, "faults", "fault(target: string, kind: string)",
        "Inject a fault between the servers and \"redis\" or \"postgres\": \"down\" (refuse new connections, cut open ones), \"blackhole\" (accept, never answer), \"reset\" (cut open connections once).",
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
        "Remove the fault on \"redis\" or \"postgres\".",
        |target: Dynamic| -> LabResult<()> {
            let target = arg_str("heal", "target", &target)?;
            context::with(|ctx| {
                proxy(ctx, "heal", &target)?.heal();
                Ok(())
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
                Ok(())
            })
        }
    );
    def!(r, "faults", "redis_restart()",
        "Stop and start the managed redis-server on the same port: the cache comes back empty, as after a crash without persistence.",
        || -> LabResult<()> {
            process(|stack| {
                let redis = stack.managed_redis().ok_or_else(|| anyhow::anyhow!("needs"))?;
                redis.stop();
                redis.start_again()
            }, "redis_restart")
        });
    def!(
        r,
        "faults",
        "redis_stop()",
        "Stop the managed redis-server (until redis_start() or the next lab).",
        || -> LabResult<()> {
            process(
                |stack| {
                    stack
                        .managed_redis()
                        .ok_or_else(|| anyhow::anyhow!("needs"))?
                        .stop();
                    Ok(())
                },
                "redis_stop",
            )
        }
    );
    def!(
        r,
        "faults",
        "redis_start()",
        "Start the managed redis-server again on its port (empty).",
        || -> LabResult<()> {
            process(
                |stack| {
                    stack
                        .managed_redis()
                        .ok_or_else(|| anyhow::anyhow!("needs"))?
                        .start_again()
                },
                "redis_start",
            )
        }
    );
    def!(
        r,
        "faults",
        "db_stop()",
        "Stop the managed postgres (fast shutdown), until db_start() or the next lab.",
        || -> LabResult<()> {
            process(
                |stack| {
                    stack
                        .managed_postgres()
                        .ok_or_else(|| anyhow::anyhow!("needs"))?
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
                |stack| {
                    stack
                        .managed_postgres()
                        .ok_or_else(|| anyhow::anyhow!("needs"))?
                        .start_again()
                },
                "db_start",
            )
        }
    );
    def!(r, "faults", "pause(target: string, ms: int)",
        "Freeze the managed \"redis\" or \"postgres\" process (SIGSTOP) for ms, then resume it (SIGCONT); returns at once.",
        |target: Dynamic, ms: Dynamic| -> LabResult<()> {
            let target = arg_str("pause", "target", &target)?;
            let ms = arg_count("pause", "ms", &ms)?;
            context::with(|ctx| pause(ctx, &target, Duration::from_millis(ms)))
        });
}

fn fault(target: &Dynamic, kind: &Dynamic, opts: Map) -> LabResult<()> {
    let target = arg_str("fault", "target", target)?;
    let kind = arg_str("fault", "kind", kind)?;
    let number = |key: &str| -> LabResult<u64> {
        opts.get(key)
            .map_or(Ok(0), |v| arg_count("fault", &format!("opts.{key}"), v))
    };
    if let Some(unknown) = opts
        .keys()
        .find(|k| !["ms", "jitter_ms"].contains(&k.as_str()))
    {
        return Err(lab_error(format!(
            "fault: unknown option `{unknown}`; \"latency\" takes ms and jitter_ms"
        )));
    }
    let fault = match kind.as_str() {
        "latency" => {
            let (ms, jitter_ms) = (number("ms")?, number("jitter_ms")?);
            if ms == 0 && jitter_ms == 0 {
                return Err(lab_error(
                    "fault: \"latency\" needs #{ms: ..., jitter_ms: ...}",
                ));
            }
            Some(Fault::Latency { ms, jitter_ms })
        }
        "down" => Some(Fault::Down),
        "blackhole" => Some(Fault::Blackhole),
        "reset" => None,
        other => {
            return Err(lab_error(format!(
                "fault: argument `kind` must be {KINDS}, got {other:?}"
            )))
        }
    };
    if !opts.is_empty() && kind != "latency" {
        return Err(lab_error(format!("fault: {kind:?} takes no options")));
    }
    context::with(|ctx| {
        let proxy = proxy(ctx, "fault", &target)?;
        match fault {
            Some(fault) => proxy.set(fault),
            None => proxy.reset_connections(),
        }
        Ok(())
    })
}

fn proxy<'a>(
    ctx: &'a LabContext,
    function: &str,
    target: &str,
) -> LabResult<&'a crate::stack::proxy::FaultProxy> {
    let faults = ctx
        .services
        .faults
        .as_ref()
        .ok_or_else(|| lab_error(format!("{function}: this stack has no fault proxies")))?;
    faults.target(target).ok_or_else(|| {
        lab_error(format!(
            "{function}: argument `target` must be {TARGETS}, got {target:?}"
        ))
    })
}

/// Run a process fault on the managed stack.
fn process(
    work: impl FnOnce(&mut Stack) -> anyhow::Result<()> + Send + 'static,
    function: &'static str,
) -> LabResult<()> {
    context::with(|ctx| {
        let managed = if function.starts_with("redis") {
            ctx.services.stack.redis_managed
        } else {
            ctx.services.stack.postgres_managed
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
    let managed = match target {
        "redis" => ctx.services.stack.redis_managed,
        "postgres" => ctx.services.stack.postgres_managed,
        other => {
            return Err(lab_error(format!(
                "pause: argument `target` must be {TARGETS}, got {other:?}"
            )))
        }
    };
    if !managed {
        return Err(lab_error(format!(
            "pause: needs the managed stack ({target} is external)"
        )));
    }
    let is_redis = target == "redis";
    let pid = ctx
        .block_on(ctx.services.with_processes(move |stack| {
            Ok(if is_redis {
                stack.managed_redis().and_then(|r| r.pid())
            } else {
                stack.managed_postgres().and_then(|p| p.pid())
            })
        }))?
        .map_err(|e| lab_error(format!("pause: {e:#}")))?
        .ok_or_else(|| lab_error(format!("pause: the managed {target} is not running")))?;
    // The whole tree: postgres answers from backends, the postmaster's children. The
    // reset continues them too, should the lab end first.
    signal_tree(pid, libc::SIGSTOP);
    ctx.runtime.spawn(async move {
        tokio::time::sleep(pause_for).await;
        signal_tree(pid, libc::SIGCONT);
    });
    Ok(())
}
