//! The strategy servers' counters and knobs.

use rhai::{Dynamic, Map};

use super::{def, Registry};
use crate::knobs::{Invalidation, Protection};
use crate::lab::context::{self, LabContext};
use crate::lab::convert::{arg_count, arg_num, arg_str, lab_error, LabResult};

pub fn register(r: &mut Registry) {
    def!(r, "server", "stats() -> map",
        "The current strategy's counters: hits, misses, stale, coalesced, db_reads, db_writes, cache_sets, cache_errors, ... (cachelab api lists them all).",
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
        "TTL of cache entries written from now on (every server; default 60).",
        |secs: Dynamic| -> LabResult<()> {
            let secs = arg_count("set_ttl", "secs", &secs)?;
            if secs == 0 {
                return Err(lab_error("set_ttl: argument `secs` must be at least 1"));
            }
            set(|k| k.ttl_secs = secs)
        }
    );
    def!(r, "server", "set_db_delay(ms: int)",
        "Make every Postgres read a slow query: it takes ms longer and answers with the row as it was when it began.",
        |ms: Dynamic| -> LabResult<()> {
            let ms = arg_count("set_db_delay", "ms", &ms)?;
            set(|k| k.db_delay_ms = ms)
        });
    def!(r, "server", "set_padding(bytes: int)",
        "Append this many bytes of filler (JSON whitespace) to every cached value, to fill Redis fast.",
        |bytes: Dynamic| -> LabResult<()> {
            let bytes = arg_count("set_padding", "bytes", &bytes)?;
            if bytes > 16 * 1024 * 1024 {
                return Err(lab_error("set_padding: argument `bytes` must be at most 16 MiB"));
            }
            set(|k| k.padding = bytes as usize)
        });
    def!(r, "server", "set_protection(mode: string)",
        "How concurrent misses reach Postgres: \"none\", \"singleflight\", \"lock\", \"xfetch\" or \"swr\" (every strategy).",
        |mode: Dynamic| -> LabResult<()> {
            let mode = arg_str("set_protection", "mode", &mode)?;
            let mode = Protection::parse(&mode).map_err(|e| lab_error(format!("set_protection: {e}")))?;
            set(|k| k.protection = mode)
        });
    def!(
        r,
        "server",
        "set_invalidation(mode: string)",
        "How cache-aside writes invalidate: \"delete\", \"double-delete\" or \"lease\".",
        |mode: Dynamic| -> LabResult<()> {
            let mode = arg_str("set_invalidation", "mode", &mode)?;
            let mode = Invalidation::parse(&mode)
                .map_err(|e| lab_error(format!("set_invalidation: {e}")))?;
            set(|k| k.invalidation = mode)
        }
    );
    def!(r, "server", "set_ttl_jitter(percent: number)",
        "Each SETEX uses TTL × (1 ± u), u uniform in [0, percent/100]: the avalanche remedy (0 = off).",
        |percent: Dynamic| -> LabResult<()> {
            let percent = arg_num("set_ttl_jitter", "percent", &percent)?;
            if !(0.0..=100.0).contains(&percent) {
                return Err(lab_error(format!("set_ttl_jitter: argument `percent` must be 0..=100, got {percent}")));
            }
            set(|k| k.ttl_jitter_percent = percent)
        });
    def!(r, "server", "set_negative_ttl(secs: int)",
        "Cache a 404 as a tombstone for secs (0 = off): the penetration remedy. A tombstone hit is a 404 with X-Cache HIT.",
        |secs: Dynamic| -> LabResult<()> {
            let secs = arg_count("set_negative_ttl", "secs", &secs)?;
            set(|k| k.negative_ttl_secs = secs)
        });
    def!(
        r,
        "server",
        "set_xfetch_beta(beta: number)",
        "XFetch's β (default 1.0): above 1 recomputes earlier, below 1 later.",
        |beta: Dynamic| -> LabResult<()> {
            let beta = arg_num("set_xfetch_beta", "beta", &beta)?;
            if !(beta > 0.0 && beta.is_finite()) {
                return Err(lab_error(format!(
                    "set_xfetch_beta: argument `beta` must be greater than 0, got {beta}"
                )));
            }
            set(|k| k.xfetch_beta = beta)
        }
    );
    def!(r, "server", "set_stale_secs(secs: int)",
        "Under swr, how long past its TTL an entry may still be served stale while it is refreshed (default 30).",
        |secs: Dynamic| -> LabResult<()> {
            let secs = arg_count("set_stale_secs", "secs", &secs)?;
            set(|k| k.stale_secs = secs)
        });
    def!(
        r,
        "server",
        "set_double_delete_ms(ms: int)",
        "Under double-delete, the delay of the second DEL (default 500).",
        |ms: Dynamic| -> LabResult<()> {
            let ms = arg_count("set_double_delete_ms", "ms", &ms)?;
            set(|k| k.double_delete_ms = ms)
        }
    );
    def!(
        r,
        "server",
        "set_flush_interval(ms: int)",
        "Write-behind's batch interval (default 100).",
        |ms: Dynamic| -> LabResult<()> {
            let ms = arg_count("set_flush_interval", "ms", &ms)?;
            if ms == 0 {
                return Err(lab_error(
                    "set_flush_interval: argument `ms` must be at least 1",
                ));
            }
            set(|k| k.flush_interval_ms = ms)
        }
    );
    def!(
        r,
        "server",
        "set_refresh_ratio(ratio: number)",
        "Refresh-ahead refreshes a hit whose remaining TTL is below ratio × TTL (default 0.25).",
        |ratio: Dynamic| -> LabResult<()> {
            let ratio = arg_num("set_refresh_ratio", "ratio", &ratio)?;
            if !(ratio > 0.0 && ratio < 1.0) {
                return Err(lab_error(format!(
                    "set_refresh_ratio: argument `ratio` must be between 0 and 1, got {ratio}"
                )));
            }
            set(|k| k.refresh_ratio = ratio)
        }
    );
    def!(r, "server", "set_lock_ttl(ms: int)",
        "Under lock, how long a holder may hold a key's lock; waiters read Postgres themselves after it (default 3000).",
        |ms: Dynamic| -> LabResult<()> {
            let ms = arg_count("set_lock_ttl", "ms", &ms)?;
            if ms == 0 {
                return Err(lab_error("set_lock_ttl: argument `ms` must be at least 1"));
            }
            set(|k| k.lock_ttl_ms = ms)
        });
}

/// Turn the shared knobs.
fn set(change: impl Fn(&mut crate::knobs::Settings)) -> LabResult<()> {
    context::with(|ctx| {
        ctx.services.knobs.update(change);
        Ok(())
    })
}

fn stats_of(ctx: &LabContext, name: &str) -> LabResult<Map> {
    let server = ctx.services.server(name).ok_or_else(|| {
        lab_error(format!(
            "stats: argument `name` must be one of {}, got {name:?}",
            ctx.services
                .servers
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let map: Map = server
        .backend
        .counters
        .snapshot()
        .fields()
        .map(|(k, v)| (k.into(), Dynamic::from(v as i64)))
        .collect();
    ctx.remember_shape("stats", &map);
    Ok(map)
}
