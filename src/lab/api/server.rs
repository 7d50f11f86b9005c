//! The strategy servers' counters and knobs.

use rhai::{Dynamic, Map};

use super::{def, Registry};
use crate::knobs::Protection;
use crate::lab::context::{self, LabContext};
use crate::lab::convert::{arg_count, arg_str, lab_error, LabResult};

pub fn register(r: &mut Registry) {
    def!(r, "server", "stats() -> map",
        "The current strategy's counters: hits, misses, db_reads, db_writes, cache_sets, cache_dels, cache_errors.",
        || -> LabResult<Map> {
            context::with(|ctx| {
                let name = ctx.strategy.borrow().clone();
                stats_of(ctx, &name)
            })
        });
    def!(
        r,
        "server",
        "stats(name: string) -> map",
        "The counters of the named strategy's server.",
        |name: Dynamic| -> LabResult<Map> {
            let name = arg_str("stats", "name", &name)?;
            context::with(|ctx| stats_of(ctx, &name))
        }
    );
    def!(
        r,
        "server",
        "set_ttl(secs: int)",
        "TTL of cache entries written from now on (both servers; default 60).",
        |secs: Dynamic| -> LabResult<()> {
            let secs = arg_count("set_ttl", "secs", &secs)?;
            if secs == 0 {
                return Err(lab_error("set_ttl: argument `secs` must be at least 1"));
            }
            context::with(|ctx| {
                ctx.services.knobs.set_ttl(secs);
                Ok(())
            })
        }
    );
    def!(r, "server", "set_db_delay(ms: int)",
        "Make every Postgres read a slow query: it takes ms longer and answers with the row as it was when it began.",
        |ms: Dynamic| -> LabResult<()> {
            let ms = arg_count("set_db_delay", "ms", &ms)?;
            context::with(|ctx| {
                ctx.services.knobs.set_db_delay(ms);
                Ok(())
            })
        });
    def!(r, "server", "set_padding(bytes: int)",
        "Append this many bytes of filler (JSON whitespace) to every cached value, to fill Redis fast.",
        |bytes: Dynamic| -> LabResult<()> {
            let bytes = arg_count("set_padding", "bytes", &bytes)?;
            if bytes > 16 * 1024 * 1024 {
                return Err(lab_error("set_padding: argument `bytes` must be at most 16 MiB"));
            }
            context::with(|ctx| {
                ctx.services.knobs.set_padding(bytes as usize);
                Ok(())
            })
        });
    def!(r, "server", "set_protection(mode: string)",
        "Stampede protection on cache misses; \"none\" (every miss reads Postgres) is the only mode so far.",
        |mode: Dynamic| -> LabResult<()> {
            let mode = arg_str("set_protection", "mode", &mode)?;
            let mode = Protection::parse(&mode).map_err(|e| lab_error(format!("set_protection: {e}")))?;
            context::with(|ctx| {
                ctx.services.knobs.set_protection(mode);
                Ok(())
            })
        });
}

fn stats_of(ctx: &LabContext, name: &str) -> LabResult<Map> {
    let server = ctx.services.server(name).ok_or_else(|| {
        lab_error(format!(
            "stats: argument `name` must be \"cache-aside\" or \"write-through\", got {name:?}"
        ))
    })?;
    Ok(server
        .backend
        .counters
        .snapshot()
        .fields()
        .iter()
        .map(|(k, v)| ((*k).into(), Dynamic::from(*v as i64)))
        .collect())
}
