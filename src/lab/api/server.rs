//! The strategy servers' counters and knobs. Every knob setter (`set_ttl`, `set_ttl_ms`,
//! `set_lock_ttl`, ...) comes from the knob table in `knobs.rs`: one loop registers them
//! all, each with its range and default in its doc, and each refuses a value outside
//! its range with the same check the `serve`/`run` flags use.

use rhai::{Dynamic, Map};

use std::sync::LazyLock;

use super::{def, Registry};
use crate::knobs::{Input, Kind, Knob, Setter, KNOBS};
use crate::lab::context::{self, LabContext};
use crate::lab::convert::{arg_bool, arg_int, arg_num, arg_str, lab_error, LabResult};

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
        "The counters of the named strategy's servers, summed over its instances.",
        |name: Dynamic| -> LabResult<Map> {
            let name = arg_str("stats", "name", &name)?;
            context::with(|ctx| stats_of(ctx, &name))
        }
    );
    def!(
        r,
        "server",
        "stats(name: string, i: int) -> map",
        "The counters of instance i (0 first) of the named strategy (set_instances).",
        |name: Dynamic, i: Dynamic| -> LabResult<Map> {
            let name = arg_str("stats", "name", &name)?;
            let i = arg_int("stats", "i", &i)?;
            context::with(|ctx| stats_of_instance(ctx, &name, Some(i)))
        }
    );
    for entry in setters() {
        def!(
            r,
            "server",
            entry.signature.as_str(),
            entry.doc.as_str(),
            move |value: Dynamic| -> LabResult<()> { set_knob(entry, &value) }
        );
    }
}

/// One lab setter of a knob, with the signature and doc `cachelab api` shows for it.
struct SetterEntry {
    knob: &'static Knob,
    setter: &'static Setter,
    /// `set_ttl(secs: int)`
    signature: String,
    /// The knob's doc, its range in the setter's unit and its default.
    doc: String,
}

/// Every knob's setters, built once from `knobs::KNOBS` (the registry keeps `&'static
/// str`s, and a lab engine is built per lab).
fn setters() -> &'static [SetterEntry] {
    static SETTERS: LazyLock<Vec<SetterEntry>> = LazyLock::new(|| {
        KNOBS
            .iter()
            .flat_map(|knob| {
                knob.setters.iter().map(move |setter| SetterEntry {
                    knob,
                    setter,
                    signature: format!(
                        "{}({}: {})",
                        setter.name,
                        setter.arg,
                        knob.kind().lab_type()
                    ),
                    doc: knob.setter_doc(setter),
                })
            })
            .collect()
    });
    &SETTERS
}

/// Set a knob on every server from a lab's argument, refusing a value outside its range
/// with a message that names the range (in the setter's unit).
fn set_knob(entry: &SetterEntry, value: &Dynamic) -> LabResult<()> {
    let (name, arg) = (entry.setter.name, entry.setter.arg);
    let text;
    let input = match entry.knob.kind() {
        Kind::Whole => Input::Whole(arg_int(name, arg, value)?),
        Kind::Real => Input::Real(arg_num(name, arg, value)?),
        Kind::Switch => Input::Switch(arg_bool(name, arg, value)?),
        Kind::Name => {
            text = arg_str(name, arg, value)?;
            Input::Name(&text)
        }
    };
    let checked = entry
        .knob
        .check(entry.setter.unit, input)
        .map_err(|refusal| match entry.knob.kind() {
            Kind::Name => lab_error(format!("{name}: {refusal}")),
            Kind::Whole | Kind::Real | Kind::Switch => {
                lab_error(format!("{name}: argument `{arg}` {refusal}"))
            }
        })?;
    context::with(|ctx| {
        if ctx.reach.target.is_some() {
            // Target mode: the app has its own settings; only the slow database is ours
            // to make, as a hold in the Postgres proxy.
            return match (name, &ctx.services.faults) {
                ("set_db_delay", Some(faults)) => {
                    faults.postgres.set_hold(arg_int(name, arg, value)? as u64);
                    Ok(())
                }
                _ => Err(crate::lab::api::app::not_in_target_mode(name)),
            };
        }
        ctx.services
            .knobs
            .set(entry.knob, checked)
            .map_err(|e| lab_error(format!("{name}: {e}")))
    })
}

fn stats_of(ctx: &LabContext, name: &str) -> LabResult<Map> {
    stats_of_instance(ctx, name, None)
}

/// The counters of one instance of `name`, or of all of them summed (`None`).
fn stats_of_instance(ctx: &LabContext, name: &str, index: Option<i64>) -> LabResult<Map> {
    if let (Some(observed), Some(_)) = (&ctx.services.observed, &ctx.reach.target) {
        // Target mode: what the proxies counted of the app's traffic.
        let map: Map = observed
            .snapshot()
            .into_iter()
            .map(|(k, v)| (k.into(), Dynamic::from(v as i64)))
            .collect();
        ctx.remember_shape("stats", &map);
        return Ok(map);
    }
    ctx.services.server(name).ok_or_else(|| {
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
    let all = ctx.services.instances(name);
    let picked = match index {
        None => all,
        Some(i) => {
            let one = usize::try_from(i).ok().and_then(|i| all.get(i).cloned());
            vec![one.ok_or_else(|| {
                lab_error(format!(
                    "stats: argument `i` must be 0..{} ({name} runs {} instance(s)), got {i}",
                    all.len(),
                    all.len()
                ))
            })?]
        }
    };
    let snapshots: Vec<_> = picked
        .iter()
        .map(|i| i.backend.counters.snapshot())
        .collect();
    let map: Map = crate::counters::CounterSnapshot::sum(&snapshots)
        .fields()
        .map(|(k, v)| (k.into(), Dynamic::from(v as i64)))
        .collect();
    ctx.remember_shape("stats", &map);
    Ok(map)
}

#[cfg(test)]
mod tests {
    use crate::knobs::KNOBS;

    #[test]
    fn every_knob_setter_is_registered_with_its_range_and_default_in_its_doc() {
        let (_, docs) = crate::lab::engine();
        for knob in KNOBS {
            for setter in knob.setters {
                let doc = docs
                    .iter()
                    .find(|d| d.name() == setter.name)
                    .unwrap_or_else(|| panic!("{} is not registered", setter.name));
                assert_eq!(doc.group, "server");
                assert!(
                    doc.signature
                        .starts_with(&format!("{}({}: ", setter.name, setter.arg)),
                    "{}",
                    doc.signature
                );
                assert!(
                    doc.doc.contains(knob.doc())
                        && doc.doc.contains(&knob.describe_range(setter.unit))
                        && doc.doc.contains("default"),
                    "{}: {}",
                    setter.name,
                    doc.doc
                );
            }
        }
    }
}
