//! Several instances of each strategy server, for lessons that need more than one
//! process's L1: `set_instances(n)`, `instances(name)`, `use_instance(i)`. A write through
//! one instance and a read through another is how a stale near cache is seen.

use rhai::{Array, Dynamic};

use super::{def, Registry};
use crate::lab::context;
use crate::lab::convert::{arg_count, arg_str, lab_error, LabResult};
use crate::services::MAX_INSTANCES;

pub fn register(r: &mut Registry) {
    def!(
        r,
        "target",
        "set_instances(n: int)",
        "Run n (1..=4) servers per strategy, each with its own near cache (L1) and counters; new ones start empty. The next lab starts with 1 again.",
        |n: Dynamic| -> LabResult<()> {
            let n = arg_count("set_instances", "n", &n)?;
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if !(1..=MAX_INSTANCES).contains(&n) {
                return Err(lab_error(format!(
                    "set_instances: argument `n` must be 1..={MAX_INSTANCES}, got {n}"
                )));
            }
            context::with(|ctx| {
                ctx.block_on(ctx.services.set_instances(n))?
                    .map_err(|e| lab_error(format!("set_instances: {e:#}")))?;
                if ctx.instance.get() >= n {
                    ctx.instance.set(0);
                }
                Ok(())
            })
        }
    );
    def!(
        r,
        "target",
        "instances(name: string) -> array",
        "The base URLs of every instance of the named strategy, instance 0 first (servers() gives instance 0's).",
        |name: Dynamic| -> LabResult<Array> {
            let name = arg_str("instances", "name", &name)?;
            context::with(|ctx| {
                let all = ctx.services.instances(&name);
                if all.is_empty() {
                    return Err(lab_error(format!(
                        "instances: argument `name` must be a running strategy, got {name:?}"
                    )));
                }
                Ok(all.iter().map(|i| Dynamic::from(i.url())).collect())
            })
        }
    );
    def!(
        r,
        "target",
        "use_instance(i: int)",
        "Send relative paths to instance i (0 first) of the current strategy; use_strategy keeps it.",
        |i: Dynamic| -> LabResult<()> {
            let i = arg_count("use_instance", "i", &i)?;
            context::with(|ctx| {
                let n = ctx.services.instance_count();
                let i = usize::try_from(i).unwrap_or(usize::MAX);
                if i >= n {
                    return Err(lab_error(format!(
                        "use_instance: argument `i` must be 0..{n} (set_instances({n}) runs {n}), got {i}"
                    )));
                }
                ctx.instance.set(i);
                Ok(())
            })
        }
    );
}
