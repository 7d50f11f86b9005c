//! Load from inside a lab, on the same engine as `cachelab load`.

use rhai::{Dynamic, Map};
use std::sync::Arc;
use std::time::Duration;

use super::{def, Registry};
use crate::lab::context::{self, LabContext, Pending};
use crate::lab::convert::{
    arg_array, arg_count, arg_int, arg_map, arg_num, arg_str, from_json, lab_error, LabResult,
};
use crate::lab::report::Event;
use crate::load::{self, KeyDist, Pace, Plan, Progress, Stop, Target};

/// The options `load()` understands.
const OPTIONS: &[&str] = &[
    "path",
    "paths",
    "n",
    "c",
    "method",
    "duration_ms",
    "rate",
    "keys",
    "zipf_s",
    "ids",
];

pub fn register(r: &mut Registry) {
    def!(r, "load", "load(opts: map) -> map",
        "hey-style load: opts path|paths, n, c, method, duration_ms, rate, keys (\"uniform\"/\"zipf\"), zipf_s, ids [first, last]; returns requests, ok, errors, rps, p50, p90, p99, p999, max (ms), status, hits, misses, db_reads.",
        |opts: Dynamic| -> LabResult<Map> {
            let opts = arg_map("load", "opts", &opts)?;
            context::with(|ctx| {
                let plan = plan_from(ctx, &opts)?;
                run_measured(ctx, plan, label_of(&opts))
            })
        });
    def!(r, "load", "load_async(opts: map) -> int",
        "Start load(opts) in the background and go on; load_wait(handle) gives its stats. It stops with the lab.",
        |opts: Dynamic| -> LabResult<i64> {
            let opts = arg_map("load_async", "opts", &opts)?;
            context::with(|ctx| {
                let plan = plan_from(ctx, &opts)?;
                let run = measured(ctx, plan)?;
                let task = ctx.runtime.spawn(run);
                Ok(ctx.park(Pending::Load(task, label_of(&opts))))
            })
        });
    def!(
        r,
        "load",
        "load_wait(handle: int) -> map",
        "Wait for a load started by load_async; returns the same stats as load().",
        |handle: Dynamic| -> LabResult<Map> {
            let handle = arg_int("load_wait", "handle", &handle)?;
            context::with(|ctx| {
                let pending = ctx.pending.borrow_mut().remove(&handle);
                let Some(Pending::Load(task, label)) = pending else {
                    return Err(lab_error(format!(
                        "load_wait: no load running with handle {handle}"
                    )));
                };
                let figures = ctx
                    .block_on(task)?
                    .map_err(|e| lab_error(format!("load_wait: the load failed: {e}")))?;
                Ok(finish(ctx, label, figures))
            })
        }
    );
    def!(r, "load", "stampede(path: string, n: int) -> map",
        "Open n connections, then release n GETs of path at once; returns the same stats as load().",
        |path: Dynamic, n: Dynamic| -> LabResult<Map> {
            let path = arg_str("stampede", "path", &path)?;
            let n = arg_count("stampede", "n", &n)?;
            if !(1..=10_000).contains(&n) {
                return Err(lab_error(format!("stampede: argument `n` must be 1..=10000, got {n}")));
            }
            context::with(|ctx| {
                let target = Target::parse(&ctx.url_for(&path)?).map_err(lab_error)?;
                run_measured(ctx, Plan::stampede(target, n), format!("stampede {path} × {n}"))
            })
        });
}

/// How a load is named in the report: its path(s).
fn label_of(opts: &Map) -> String {
    let paths = opts.get("path").or_else(|| opts.get("paths"));
    format!("load {}", paths.map(|p| p.to_string()).unwrap_or_default())
}

fn plan_from(ctx: &LabContext, opts: &Map) -> LabResult<Plan> {
    if let Some(unknown) = opts.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
        return Err(lab_error(format!(
            "load: unknown option `{unknown}`; known: {}",
            OPTIONS.join(", ")
        )));
    }
    let paths: Vec<String> = match (opts.get("path"), opts.get("paths")) {
        (Some(p), None) => vec![arg_str("load", "opts.path", p)?],
        (None, Some(ps)) => arg_array("load", "opts.paths", ps)?
            .iter()
            .map(|p| arg_str("load", "opts.paths[]", p))
            .collect::<LabResult<_>>()?,
        _ => return Err(lab_error("load: give exactly one of `path` or `paths`")),
    };
    if paths.is_empty() {
        return Err(lab_error("load: `paths` is empty"));
    }
    let targets = paths
        .iter()
        .map(|p| Target::parse(&ctx.url_for(p)?).map_err(lab_error))
        .collect::<LabResult<Vec<_>>>()?;
    let mut plan = Plan::new(targets);
    let get_count = |key: &str, default: u64| -> LabResult<u64> {
        opts.get(key).map_or(Ok(default), |v| {
            arg_count("load", &format!("opts.{key}"), v)
        })
    };
    plan.concurrency = get_count("c", 10)?.clamp(1, 10_000) as usize;
    plan.stop = match opts.get("duration_ms") {
        Some(d) => Stop::Duration(Duration::from_millis(arg_count(
            "load",
            "opts.duration_ms",
            d,
        )?)),
        None => Stop::Requests(get_count("n", 1000)?.max(1)),
    };
    if let Some(rate) = opts.get("rate") {
        let rate = arg_num("load", "opts.rate", rate)?;
        if rate <= 0.0 {
            return Err(lab_error("load: `rate` must be greater than zero"));
        }
        plan.pace = Pace::Total(rate);
    }
    if let Some(m) = opts.get("method") {
        let m = arg_str("load", "opts.method", m)?;
        plan.method = m
            .to_uppercase()
            .parse()
            .map_err(|_| lab_error(format!("load: `method` {m:?} is not an HTTP method")))?;
    }
    if let Some(keys) = opts.get("keys") {
        plan.keys = match arg_str("load", "opts.keys", keys)?.as_str() {
            "uniform" => KeyDist::Uniform,
            "zipf" => {
                let s = opts
                    .get("zipf_s")
                    .map_or(Ok(1.0), |v| arg_num("load", "opts.zipf_s", v))?;
                if s <= 0.0 {
                    return Err(lab_error("load: `zipf_s` must be greater than zero"));
                }
                KeyDist::Zipf(s)
            }
            other => {
                return Err(lab_error(format!(
                    "load: `keys` must be \"uniform\" or \"zipf\", got {other:?}"
                )))
            }
        };
        if !plan.targets.iter().any(Target::has_key) {
            return Err(lab_error(
                "load: `keys` needs a path with {id} in it, e.g. \"/users/{id}\"",
            ));
        }
    }
    if let Some(ids) = opts.get("ids") {
        let ids = arg_array("load", "opts.ids", ids)?;
        let pair: Vec<u64> = ids
            .iter()
            .map(|v| arg_count("load", "opts.ids[]", v))
            .collect::<LabResult<_>>()?;
        match pair.as_slice() {
            [first, last] if *first >= 1 && last >= first => plan.ids = (*first, *last),
            _ => {
                return Err(lab_error(
                    "load: `ids` must be [first, last] with 1 <= first <= last",
                ))
            }
        }
    } else {
        plan.ids = (1, crate::seed::users().len() as u64);
    }
    Ok(plan)
}

/// A load run that measures `plan` against the current strategy's server: its figures
/// plus the server's counter deltas over the run, as JSON (so it can run on the runtime
/// while the lab goes on).
fn measured(
    ctx: &LabContext,
    mut plan: Plan,
) -> LabResult<impl std::future::Future<Output = serde_json::Value> + Send + 'static> {
    let strategy = ctx.strategy.borrow().clone();
    let server = ctx
        .services
        .server(&strategy)
        .ok_or_else(|| lab_error(format!("no {strategy} server is running")))?;
    let backend = server.backend.clone();
    plan.timeout = plan.timeout.min(ctx.remaining());
    Ok(async move {
        let before = backend.counters.snapshot();
        let summary = load::run(plan, Arc::new(Progress::default())).await;
        let delta = backend.counters.snapshot().since(&before);
        let mut figures = serde_json::to_value(summary.figures()).unwrap_or_default();
        if let Some(map) = figures.as_object_mut() {
            for (name, value) in delta.fields() {
                map.insert(name.to_string(), value.into());
            }
        }
        figures
    })
}

/// Run `plan` now and return its figures (and note it in the report).
fn run_measured(ctx: &LabContext, plan: Plan, label: String) -> LabResult<Map> {
    let run = measured(ctx, plan)?;
    let figures = ctx.block_on(run)?;
    Ok(finish(ctx, label, figures))
}

/// The figures as the lab's map, recorded in the report for its charts.
fn finish(ctx: &LabContext, label: String, figures: serde_json::Value) -> Map {
    let map = from_json(&figures).cast::<Map>();
    ctx.remember_shape("load", &map);
    ctx.add(Event::Load { label, figures });
    map
}
