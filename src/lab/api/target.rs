//! Which strategy server relative paths go to.

use rhai::{Dynamic, Map};

use super::{def, Registry};
use crate::lab::context;
use crate::lab::convert::{arg_str, lab_error, LabResult};

pub fn register(r: &mut Registry) {
    def!(
        r,
        "target",
        "use_strategy(name: string)",
        "Send relative paths to this strategy's server: \"cache-aside\", \"write-through\", \"write-behind\" or \"refresh-ahead\".",
        |name: Dynamic| -> LabResult<()> {
            let name = arg_str("use_strategy", "name", &name)?;
            context::with(|ctx| {
                if ctx.reach.target.is_some() {
                    return Err(super::app::not_in_target_mode("use_strategy"));
                }
                if ctx.services.server(&name).is_none() {
                    let known: Vec<&str> = ctx.services.servers.iter().map(|s| s.name).collect();
                    return Err(lab_error(format!(
                        "use_strategy: argument `name` must be one of {}, got {name:?}",
                        known.join(", ")
                    )));
                }
                *ctx.strategy.borrow_mut() = name;
                Ok(())
            })
        }
    );
    def!(
        r,
        "target",
        "servers() -> map",
        "Each strategy's base URL, e.g. #{\"cache-aside\": \"http://127.0.0.1:41234\"}.",
        || -> LabResult<Map> {
            context::with(|ctx| {
                Ok(ctx
                    .services
                    .servers
                    .iter()
                    .map(|s| (s.name.into(), Dynamic::from(s.url())))
                    .collect())
            })
        }
    );
}
