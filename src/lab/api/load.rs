//! Load from inside a lab, on the same engine as `cachelab load`: `load()`, `stampede()`,
//! `load_async()`/`load_wait()`, and `save_history()`. A load belongs to its lab: it stops
//! when the lab ends, however it ends.
//!
//! Options that cannot mean what they say are refused with a lab error naming the option,
//! never quietly replaced: `n`, `c` or `duration_ms` of 0, a `rate` that is not a positive
//! finite number or would run past the lab's deadline, `zipf_s` outside (0, 10], `ids`
//! the users table cannot hold.

use rhai::{Dynamic, EvalAltResult, Map};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use super::{def, Registry};
use crate::counters::{Counter, CounterSnapshot};
use crate::lab::context::{self, LabContext, Pending};
use crate::lab::convert::{
    arg_count, arg_int, arg_map, arg_str, from_json, lab_error, to_json, LabResult,
};
use crate::load::{self, KeyDist, Mix, Pace, Plan, Progress, Stop, Target, MAX_ZIPF_S};
use crate::report::Event;

/// The options `load()` understands; anything else is an error naming these.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadOptions {
    path: Option<String>,
    paths: Option<Vec<String>>,
    n: Option<u64>,
    c: Option<u64>,
    method: Option<String>,
    duration_ms: Option<u64>,
    rate: Option<f64>,
    keys: Option<String>,
    zipf_s: Option<f64>,
    ids: Option<Ids>,
    seed: Option<u64>,
    mix: Option<MixOption>,
    history: Option<bool>,
    interval_ms: Option<u64>,
    trace: Option<bool>,
    label: Option<String>,
    instances: Option<String>,
}

/// `ids: [1, 1000]` or `ids: "1..1000"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Ids {
    Pair([u64; 2]),
    Text(String),
}

/// `mix: #{get: 90, put: 10}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MixOption {
    #[serde(default)]
    get: u32,
    #[serde(default)]
    put: u32,
}

const OPTIONS: &str = "path, paths, n, c, method, duration_ms, rate, keys, zipf_s, ids, seed, mix, history, interval_ms, trace, label, instances";

pub fn register(r: &mut Registry) {
    def!(r, "load", "load(opts: map) -> map",
        "hey-style load: opts path|paths, n, c, method, duration_ms, rate, keys (\"uniform\", \"zipf\", \"zipf:1.1\", \"sequential\"), zipf_s, ids ([first, last] or \"1..1000\"), seed, mix (#{get: 90, put: 10}), history, interval_ms, trace, label (names the run in the reports), instances (\"all\": workers round-robin over the strategy's instances); returns label, requests, ok, errors, rps, p50, p90, p99, p999, max (ms), status, cache, seed, timeline, the servers' counter deltas (hits, misses, db_reads, ...), hit_ratio (hits ÷ (hits + misses)), consistency with history, ids with trace.",
        |opts: Dynamic| -> LabResult<Map> {
            context::with(|ctx| {
                let (plan, label) = plan_from(ctx, "load", &opts)?;
                let run = measured(ctx, plan)?;
                let figures = ctx.block_on(run)?;
                Ok(finish(ctx, label, figures))
            })
        });
    def!(r, "load", "load_async(opts: map) -> int",
        "Start load(opts) in the background and go on; load_wait(handle) gives its stats. It stops with the lab.",
        |opts: Dynamic| -> LabResult<i64> {
            context::with(|ctx| {
                let (plan, label) = plan_from(ctx, "load_async", &opts)?;
                let run = measured(ctx, plan)?;
                let task = ctx.runtime.spawn(run);
                Ok(ctx.park(Pending::Load(task, label)))
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
                let mut plan = Plan::stampede(target, n);
                plan.cancel = ctx.cancel.child_token();
                plan.same_process_server = true;
                plan.check().map_err(|e| lab_error(format!("stampede: {e}")))?;
                let run = measured(ctx, plan)?;
                let figures = ctx.block_on(run)?;
                Ok(finish(ctx, format!("stampede {path} × {n}"), figures))
            })
        });
    def!(r, "load", "save_history(name: string)",
        "Write the last load's history (history: true) as Jepsen-style JSON lines to name in --history-dir (refused without it).",
        |name: Dynamic| -> LabResult<()> {
            let name = arg_str("save_history", "name", &name)?;
            context::with(|ctx| ctx.save_history(&name))
        });
}

/// The ids a load may ask for: those the `users` table's `SERIAL` id column can hold. The
/// servers answer 400 to any other id, so a load over them would measure nothing; ids
/// inside it that no user has are fine (`labs/penetration.rhai` loads 5001..5100 on
/// purpose), so the bound is the column's, not the rows loaded.
const ID_RANGE: RangeInclusive<u64> = 1..=i32::MAX as u64;

/// What `rate` must be, as a refusal says it.
const RATE_WANTED: &str = "a positive finite number of requests per second";

/// A refusal of one option, naming it, what it must be, and what it was.
fn refused(
    function: &str,
    option: &str,
    wanted: &str,
    got: impl std::fmt::Display,
) -> Box<EvalAltResult> {
    lab_error(format!(
        "{function}: option `{option}` must be {wanted}, got {got}"
    ))
}

/// Refuse NaN and infinities while they are still floats: converted to JSON they become
/// `null`, which would read as "not given" and run the load with a default instead.
fn refuse_non_finite(function: &str, opts: &Map) -> LabResult<()> {
    for (option, value) in opts {
        match value.as_float() {
            Ok(x) if !x.is_finite() => {
                let wanted = match option.as_str() {
                    "rate" => RATE_WANTED.to_string(),
                    "zipf_s" => format!("in (0, {MAX_ZIPF_S}]"),
                    _ => "a finite number".to_string(),
                };
                return Err(refused(function, option, &wanted, x));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuse the options that cannot mean what they say: no requests, no workers, no time,
/// no rate, a Zipf exponent outside (0, 10] or one that no `keys: "zipf"` reads.
fn refuse_senseless(function: &str, opts: &LoadOptions) -> LabResult<()> {
    for (option, given) in [
        ("n", opts.n),
        ("c", opts.c),
        ("duration_ms", opts.duration_ms),
    ] {
        if given == Some(0) {
            return Err(refused(function, option, "at least 1", 0));
        }
    }
    if let Some(rate) = opts.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(refused(function, "rate", RATE_WANTED, rate));
        }
    }
    if let Some(s) = opts.zipf_s {
        if !(s > 0.0 && s <= MAX_ZIPF_S) {
            return Err(refused(
                function,
                "zipf_s",
                &format!("in (0, {MAX_ZIPF_S}]"),
                s,
            ));
        }
        if opts.keys.as_deref() != Some("zipf") {
            return Err(lab_error(format!(
                "{function}: option `zipf_s` is the exponent of keys: \"zipf\"; give both (or keys: \"zipf:{s}\")"
            )));
        }
    }
    Ok(())
}

/// A plan from `load()`'s options, and the label the report gives the run.
fn plan_from(ctx: &LabContext, function: &str, opts: &Dynamic) -> LabResult<(Plan, String)> {
    let map = arg_map(function, "opts", opts)?;
    refuse_non_finite(function, &map)?;
    let json = to_json(&Dynamic::from(map));
    let opts: LoadOptions = serde_path_to_error::deserialize(json).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner().to_string();
        lab_error(match inner.strip_prefix("unknown field ") {
            Some(rest) => {
                let name = rest.split(',').next().unwrap_or(rest);
                format!("{function}: unknown option {name}; known: {OPTIONS}")
            }
            None => format!("{function}: option `{field}`: {inner}"),
        })
    })?;
    refuse_senseless(function, &opts)?;
    let fail = |m: String| lab_error(format!("{function}: {m}"));
    let paths: Vec<String> = match (&opts.path, &opts.paths) {
        (Some(p), None) => vec![p.clone()],
        (None, Some(ps)) if !ps.is_empty() => ps.clone(),
        (None, Some(_)) => return Err(fail("`paths` is empty".into())),
        _ => return Err(fail("give exactly one of `path` or `paths`".into())),
    };
    let label = match &opts.label {
        Some(label) if label.trim().is_empty() => return Err(fail("`label` is empty".into())),
        Some(label) => label.clone(),
        None => format!("{function} {}", paths.join(" ")),
    };
    let bases = match opts.instances.as_deref() {
        None => vec![None],
        Some("all") => {
            let name = ctx.strategy.borrow().clone();
            ctx.services
                .instances(&name)
                .iter()
                .map(|i| Some(i.url()))
                .collect()
        }
        Some(other) => {
            return Err(refused(
                function,
                "instances",
                "\"all\"",
                format!("{other:?}"),
            ))
        }
    };
    let mut targets = Vec::new();
    for base in &bases {
        for p in &paths {
            let url = match base {
                Some(base) if p.starts_with('/') => format!("{base}{p}"),
                _ => ctx.url_for(p)?,
            };
            targets.push(Target::parse(&url).map_err(lab_error)?);
        }
    }
    let mut plan = Plan::new(targets);
    plan.groups = bases.len();
    plan.cancel = ctx.cancel.child_token();
    plan.same_process_server = true;
    plan.concurrency = usize::try_from(opts.c.unwrap_or(10)).unwrap_or(usize::MAX);
    plan.stop = match opts.duration_ms {
        Some(ms) => Stop::Duration(Duration::from_millis(ms)),
        None => Stop::Requests(opts.n.unwrap_or(1000)),
    };
    if let Some(rate) = opts.rate {
        plan.pace = Pace::Total(rate);
    }
    if let Some(m) = &opts.method {
        plan.method = m
            .to_uppercase()
            .parse()
            .map_err(|_| fail(format!("`method` {m:?} is not an HTTP method")))?;
    }
    if let Some(keys) = &opts.keys {
        plan.keys = match (keys.as_str(), opts.zipf_s) {
            ("zipf", Some(s)) => KeyDist::Zipf(s),
            (other, _) => KeyDist::parse(other).map_err(fail)?,
        };
    }
    plan.ids = match &opts.ids {
        Some(Ids::Pair([first, last])) => (*first, *last),
        Some(Ids::Text(text)) => load::parse_ids(text).map_err(fail)?,
        None => (1, crate::seed::users().len() as u64),
    };
    let (first, last) = plan.ids;
    if !(ID_RANGE.contains(&first) && ID_RANGE.contains(&last) && first <= last) {
        return Err(refused(
            function,
            "ids",
            &format!(
                "first..last with first <= last, within {}..={} (the ids the users table holds)",
                ID_RANGE.start(),
                ID_RANGE.end()
            ),
            format!("{first}..{last}"),
        ));
    }
    let keyed = plan.targets.iter().any(Target::has_key);
    if (opts.keys.is_some() || opts.mix.is_some() || opts.trace == Some(true)) && !keyed {
        return Err(fail(
            "`keys`, `mix` and `trace` need a path with {id} in it, e.g. \"/users/{id}\"".into(),
        ));
    }
    if let Some(target) = &ctx.reach.target {
        // Target mode: a mix writes through the model, and reads' values are found where
        // model.value points.
        let write = target.model.write.clone();
        plan.app = Some(Arc::new(load::AppModel {
            write_method: write.method.parse().unwrap_or(hyper::Method::PUT),
            write_path: Box::new(move |id, value| write.path.fill(id, value)),
            value_pointer: target.model.value.clone(),
        }));
        if opts.ids.is_none() {
            plan.ids = (*target.model.ids.start(), *target.model.ids.end());
        }
    }
    plan.seed = opts.seed;
    plan.mix = opts.mix.map(|m| Mix {
        get: m.get,
        put: m.put,
    });
    if let Some(ms) = opts.interval_ms {
        plan.interval = Duration::from_millis(ms);
    }
    plan.record_keys = opts.trace.unwrap_or(false);
    if opts.history.unwrap_or(false) {
        plan.record_history = true;
        plan.initial_values = current_names(ctx, plan.ids)?;
    }
    plan.timeout = plan.timeout.min(ctx.remaining());
    plan.check().map_err(fail)?;
    refuse_past_deadline(function, &plan, ctx.remaining())?;
    Ok((plan, label))
}

/// Refuse a paced run of `n` requests that would still be sending when the lab's deadline
/// (`--timeout`) comes: it would only be cut off there, a lab error, after waiting for it
/// (a `rate: 1e-9` waited out the whole timeout). A `duration_ms` bounds a run by itself
/// and is left to end with the lab.
fn refuse_past_deadline(function: &str, plan: &Plan, left: Duration) -> LabResult<()> {
    if let (Pace::Total(rate), Stop::Requests(n)) = (plan.pace, plan.stop) {
        // The first request goes at once, the last (n - 1) / rate seconds later.
        let needs = n.saturating_sub(1) as f64 / rate;
        if needs > left.as_secs_f64() {
            return Err(lab_error(format!(
                "{function}: option `rate`: {n} requests at {rate} per second take {needs:.1} s, \
                 past the lab's deadline ({:.1} s left, --timeout); raise the rate, lower n, or \
                 give duration_ms",
                left.as_secs_f64()
            )));
        }
    }
    Ok(())
}

/// The names users have now, by id: what a history's reads start from.
fn current_names(ctx: &LabContext, (first, last): (u64, u64)) -> LabResult<HashMap<u64, String>> {
    let mut db = ctx.db.borrow_mut();
    let rows = ctx
        .block_on(db.query_json(
            "SELECT id, name FROM users WHERE id BETWEEN $1 AND $2",
            &[first.into(), last.into()],
        ))?
        .map_err(|e| lab_error(format!("load: reading the users before the run: {e:#}")))?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r["id"].as_u64()?, r["name"].as_str()?.to_string())))
        .collect())
}

/// What a measured run hands back: the figures, and the history to keep.
type Measured = (serde_json::Value, Vec<load::history::Op>);

/// A run of `plan` against the current strategy's server: its figures, its timeline with
/// the server's Postgres reads per interval, and the server's counter deltas over the
/// run, as JSON (so it can run on the runtime while the lab goes on).
fn measured(
    ctx: &LabContext,
    mut plan: Plan,
) -> LabResult<impl std::future::Future<Output = Measured> + Send + 'static> {
    if let (Some(observed), Some(_)) = (ctx.services.observed.clone(), &ctx.reach.target) {
        return Ok(futures_util::future::Either::Left(observed_run(
            plan, observed,
        )));
    }
    // Spread over the instances: their counters summed; else the current instance's.
    let backends: Vec<_> = if plan.groups > 1 {
        let strategy = ctx.strategy.borrow().clone();
        ctx.services
            .instances(&strategy)
            .into_iter()
            .map(|i| i.backend)
            .collect()
    } else {
        vec![ctx.current_instance()?.backend]
    };
    let sampled = backends.clone();
    plan.sampler = Some(Arc::new(move || {
        let db_reads: u64 = sampled
            .iter()
            .map(|b| b.counters.get(Counter::DbReads))
            .sum();
        BTreeMap::from([("db_reads".to_string(), db_reads as i64)])
    }));
    let snapshot = move || {
        let each: Vec<_> = backends.iter().map(|b| b.counters.snapshot()).collect();
        CounterSnapshot::sum(&each)
    };
    Ok(futures_util::future::Either::Right(async move {
        let before = snapshot();
        let summary = load::run(plan, Arc::new(Progress::default())).await;
        let delta = snapshot().since(&before);
        let mut figures = serde_json::to_value(summary.lab_figures()).unwrap_or_default();
        if let Some(map) = figures.as_object_mut() {
            for (name, value) in delta.fields() {
                map.insert(name.to_string(), value.into());
            }
            flatten_timeline(map);
            if !summary.keys.is_empty() {
                map.insert("ids".into(), summary.keys.clone().into());
            }
        }
        (figures, summary.history)
    }))
}

/// A run against the user's app (target mode): the counter deltas are what the proxies
/// observed of the app's traffic during the run.
async fn observed_run(
    mut plan: Plan,
    observed: Arc<crate::stack::proxy::observe::Observed>,
) -> Measured {
    let sampled = observed.clone();
    plan.sampler = Some(Arc::new(move || {
        BTreeMap::from([("db_reads".to_string(), sampled.get("db_reads") as i64)])
    }));
    let before = observed.snapshot();
    let summary = load::run(plan, Arc::new(Progress::default())).await;
    let after = observed.snapshot();
    let mut figures = serde_json::to_value(summary.lab_figures()).unwrap_or_default();
    if let Some(map) = figures.as_object_mut() {
        for ((name, now), (_, was)) in after.iter().zip(&before) {
            map.insert(name.to_string(), now.saturating_sub(*was).into());
        }
        flatten_timeline(map);
        if !summary.keys.is_empty() {
            map.insert("ids".into(), summary.keys.clone().into());
        }
    }
    (figures, summary.history)
}

/// Each timeline entry as the lab reads it: requests, ok, errors, hits, misses, stale,
/// coalesced, db_reads, p50, p99 — flat numbers instead of nested maps.
fn flatten_timeline(figures: &mut serde_json::Map<String, serde_json::Value>) {
    let Some(serde_json::Value::Array(entries)) = figures.get_mut("timeline") else {
        return;
    };
    for entry in entries.iter_mut() {
        let Some(fields) = entry.as_object_mut() else {
            continue;
        };
        let cache = fields.remove("cache").unwrap_or_default();
        for kind in crate::xcache::XCache::ALL {
            let n = cache
                .get(kind.as_str())
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            fields.insert(kind.counter().name().to_string(), n.into());
        }
        let samples = fields.remove("samples").unwrap_or_default();
        let db_reads = samples
            .get("db_reads")
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        fields.insert("db_reads".into(), db_reads.into());
        for (old, new) in [("p50_ms", "p50"), ("p99_ms", "p99")] {
            if let Some(v) = fields.remove(old) {
                fields.insert(new.into(), v);
            }
        }
    }
}

/// The figures as the lab's map; the run is recorded in the report (without its long
/// arrays) for the HTML charts, and its history kept for `save_history`.
fn finish(ctx: &LabContext, label: String, (mut figures, history): Measured) -> Map {
    if let Some(fields) = figures.as_object_mut() {
        let count = |k: &str| fields.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
        let (hits, misses) = (count("hits"), count("misses"));
        let ratio = if hits + misses > 0.0 {
            hits / (hits + misses)
        } else {
            0.0
        };
        fields.insert("hit_ratio".into(), serde_json::json!(ratio));
        fields.insert("label".into(), serde_json::json!(label));
    }
    let map = from_json(&figures).cast::<Map>();
    ctx.remember_shape("load", &map);
    let mut recorded = figures;
    if let Some(fields) = recorded.as_object_mut() {
        fields.remove("ids");
    }
    ctx.add(Event::Load {
        label,
        figures: recorded,
    });
    if !history.is_empty() {
        *ctx.last_history.borrow_mut() = history;
    }
    map
}
