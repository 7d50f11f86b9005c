//! The model of the user's app in target mode (`--target`): a lab written for any app reads
//! and writes through these, never through paths of its own, so it runs unchanged against
//! every service the TOML describes. Outside target mode each is a lab error saying so.

use hyper::Method;
use rhai::{Array, Dynamic, Map};

use super::{def, Registry};
use crate::lab::context::{self, LabContext};
use crate::lab::convert::{arg_int, arg_str, from_json, lab_error, LabResult};
use crate::target::Target;

pub fn register(r: &mut Registry) {
    def!(
        r,
        "app",
        "app_ids() -> array",
        "Target mode: the model's ids as [first, last] (model.ids).",
        || -> LabResult<Array> {
            with_target("app_ids", |_, t| {
                Ok(vec![
                    Dynamic::from(*t.model.ids.start() as i64),
                    Dynamic::from(*t.model.ids.end() as i64),
                ])
            })
        }
    );
    def!(
        r,
        "app",
        "app_read_path() -> string",
        "Target mode: the read's path with {id} left in (model.read), for load(#{path: ...}).",
        || -> LabResult<String> {
            with_target("app_read_path", |_, t| Ok(t.model.read.path.pattern()))
        }
    );
    def!(
        r,
        "app",
        "app_cache_key(id: int) -> string",
        "Target mode: the Redis key the app caches id under (model.cache_key).",
        |id: Dynamic| -> LabResult<String> {
            let id = arg_int("app_cache_key", "id", &id)?;
            with_target("app_cache_key", |_, t| {
                Ok(t.model.cache_key.fill(id as u64, ""))
            })
        }
    );
    def!(r, "app", "app_read(id: int) -> map",
        "Target mode: read id through the app (model.read): #{status, body, ms, value}, value being what model.value points at (() if absent).",
        |id: Dynamic| -> LabResult<Map> {
            let id = arg_int("app_read", "id", &id)?;
            with_target("app_read", |ctx, t| {
                let path = t.model.read.path.fill(id as u64, "");
                exchange(ctx, t, "app_read", &t.model.read.method, &path)
            })
        });
    def!(
        r,
        "app",
        "app_write(id: int, value: string) -> map",
        "Target mode: write value to id through the app (model.write): #{status, body, ms, value}.",
        |id: Dynamic, value: Dynamic| -> LabResult<Map> {
            let id = arg_int("app_write", "id", &id)?;
            let value = arg_str("app_write", "value", &value)?;
            with_target("app_write", |ctx, t| {
                let path = t.model.write.path.fill(id as u64, &value);
                exchange(ctx, t, "app_write", &t.model.write.method, &path)
            })
        }
    );
}

/// The lab error of a function that needs cachelab's own servers, in target mode.
pub fn not_in_target_mode(function: &str) -> Box<rhai::EvalAltResult> {
    lab_error(format!(
        "{function}: a knob of cachelab's own servers, not available in target mode (--target): the app under test has its own settings"
    ))
}

/// Run `work` with the target, or fail naming target mode.
fn with_target<R>(
    function: &str,
    work: impl FnOnce(&LabContext, &Target) -> LabResult<R>,
) -> LabResult<R> {
    context::with(|ctx| {
        let target = ctx.reach.target.clone().ok_or_else(|| {
            lab_error(format!(
                "{function}: only in target mode (cachelab run LAB --target FILE.toml)"
            ))
        })?;
        work(ctx, &target)
    })
}

/// Send one request to the app; the answer as a lab map with the model's value added.
fn exchange(
    ctx: &LabContext,
    target: &Target,
    function: &'static str,
    method: &str,
    path: &str,
) -> LabResult<Map> {
    let method: Method = method
        .parse()
        .map_err(|_| lab_error(format!("{function}: bad method {method:?}")))?;
    let url = format!("{}{path}", target.url);
    let mut answer = ctx
        .block_on(super::http::send(&ctx.http, method, &url))?
        .map_err(lab_error)?;
    let value = answer
        .get("body")
        .and_then(|b| b.pointer(&target.model.value))
        .map(|v| match v {
            serde_json::Value::String(s) => serde_json::Value::String(s.clone()),
            serde_json::Value::Null => serde_json::Value::Null,
            other => serde_json::Value::String(other.to_string()),
        })
        .unwrap_or(serde_json::Value::Null);
    if let Some(map) = answer.as_object_mut() {
        map.insert("value".into(), value);
    }
    let map = from_json(&answer).cast::<Map>();
    ctx.remember_shape(function, &map);
    Ok(map)
}
