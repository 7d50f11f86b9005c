//! The lab runner: each lab file runs from a fresh state, on a thread of its own, in a
//! sandboxed Rhai engine that has only the lab API; what it checked becomes its report.

pub mod api;
mod context;
mod convert;
pub mod redis_guard;
pub mod report;

use anyhow::Context;
use rhai::{Engine, EvalAltResult, Position};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use context::{Halt, LabContext};
use report::{LabRecord, LabReport, Outcome};

use crate::services::Services;

/// Operations a lab may run before it counts as a runaway.
pub const DEFAULT_MAX_OPERATIONS: u64 = 200_000_000;

/// How long and how much a lab may run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_operations: u64,
}

/// A Rhai engine with the standard library, the lab API and limits, and nothing else.
pub fn engine() -> (Engine, Vec<api::FnDoc>) {
    let mut engine = Engine::new();
    engine
        .set_max_operations(DEFAULT_MAX_OPERATIONS)
        .set_max_call_levels(64)
        .set_max_expr_depths(64, 64)
        .set_max_string_size(16 * 1024 * 1024)
        .set_max_array_size(1_000_000)
        .set_max_map_size(1_000_000);
    engine.disable_symbol("eval");
    let docs = api::register_all(&mut engine);
    (engine, docs)
}

/// The lab files named by `paths`: files as given, folders' `*.rhai` in name order.
pub fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
                .collect();
            found.sort();
            if found.is_empty() {
                anyhow::bail!("{} holds no *.rhai labs", path.display());
            }
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            anyhow::bail!("{}: no such lab file or folder", path.display());
        }
    }
    Ok(files)
}

/// The lab's title: its first comment line.
pub fn title_of(source: &str, file: &Path) -> String {
    source
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("//"))
        .map(|t| t.trim_start_matches(['/', '!']).trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| file.display().to_string())
}

/// Run one lab from a fresh state. Never fails: every problem becomes the lab's outcome.
pub async fn run_lab(services: &Arc<Services>, file: &Path, limits: Limits) -> LabReport {
    let timeout = limits.timeout;
    let started = Instant::now();
    let report = |title: String, record: LabRecord, outcome: Outcome| {
        LabReport::new(
            file.to_path_buf(),
            title,
            record,
            started.elapsed(),
            outcome,
        )
    };
    let source = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            let outcome = Outcome::ScriptError(format!("{}: cannot read: {e}", file.display()));
            return report(file.display().to_string(), LabRecord::default(), outcome);
        }
    };
    let title = title_of(&source, file);
    if let Err(e) = services.reset().await {
        let outcome = Outcome::ScriptError(format!("setting up the fresh state: {e:#}"));
        return report(title, LabRecord::default(), outcome);
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let file_owned = file.to_path_buf();
    let services = services.clone();
    let runtime = tokio::runtime::Handle::current();
    let deadline = Instant::now() + timeout;
    // The context is built on the lab thread and never leaves it.
    let spawned = std::thread::Builder::new()
        .name("lab".into())
        .spawn(move || {
            // Lab functions create timers and tasks: give this thread the runtime's context.
            let _runtime_context = runtime.enter();
            let ctx = Rc::new(LabContext::new(services, runtime.clone(), deadline));
            let run = std::panic::AssertUnwindSafe(|| {
                execute(&ctx, &file_owned, &source, limits.max_operations)
            });
            let outcome = std::panic::catch_unwind(run).unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Outcome::ScriptError(format!(
                    "{}: internal error (please report): {message}",
                    file_owned.display()
                ))
            });
            context::leave();
            let record = ctx.record.borrow().clone();
            let _ = done_tx.send((outcome, record));
        });
    if let Err(e) = spawned {
        let outcome = Outcome::ScriptError(format!("starting the lab thread: {e}"));
        return report(title, LabRecord::default(), outcome);
    }
    // Every blocking lab call is bounded by the deadline; the grace period covers the
    // unwinding after it.
    let (outcome, record) =
        match tokio::time::timeout(timeout + Duration::from_secs(10), done_rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => (
                Outcome::ScriptError(format!(
                    "{}: the lab thread ended without a result",
                    file.display()
                )),
                LabRecord::default(),
            ),
            Err(_) => (
                Outcome::Stopped(format!(
                    "{}: the lab did not stop after its --timeout",
                    file.display()
                )),
                LabRecord::default(),
            ),
        };
    report(title, record, outcome)
}

/// Compile and run the script on this (the lab's) thread.
fn execute(ctx: &Rc<LabContext>, file: &Path, source: &str, max_operations: u64) -> Outcome {
    let (mut engine, _) = engine();
    engine.set_max_operations(max_operations);
    let deadline = ctx.deadline;
    engine.on_progress(move |_| {
        (Instant::now() > deadline || crate::shutdown::requested()).then_some(rhai::Dynamic::UNIT)
    });
    let name = file.display().to_string();
    let print_name = name.clone();
    engine.on_print(move |text| println!("  [{print_name}] {text}"));
    engine.on_debug(move |text, _, pos| eprintln!("  debug {pos}: {text}"));
    let ast = match engine.compile(source) {
        Ok(ast) => ast,
        Err(e) => return Outcome::ScriptError(at(&name, e.position(), &e.err_type().to_string())),
    };
    context::enter(ctx.clone());
    let result = engine.run_ast(&ast);
    context::leave();
    for (_, task) in ctx.pending.borrow_mut().drain() {
        task.abort();
    }
    match result {
        Ok(()) => Outcome::Completed,
        Err(err) => {
            let halt = ctx.halt.borrow().clone();
            let (pos, message) = describe(*err);
            match (halt, message) {
                (Some(Halt::Assert(m)), _) => Outcome::AssertFailed(format!(
                    "assert failed at {}: {m}",
                    at(&name, pos, "").trim_end_matches(": ")
                )),
                (Some(Halt::Timeout), _) => {
                    Outcome::Stopped(at(&name, pos, "the lab ran past its --timeout"))
                }
                (Some(Halt::Interrupted), _) => Outcome::Stopped(at(&name, pos, "interrupted")),
                (None, TerminatedBy::Deadline) if crate::shutdown::requested() => {
                    Outcome::Stopped(at(&name, pos, "interrupted"))
                }
                (None, TerminatedBy::Deadline) => {
                    Outcome::Stopped(at(&name, pos, "the lab ran past its --timeout"))
                }
                (None, TerminatedBy::Error(m)) => Outcome::ScriptError(at(&name, pos, &m)),
            }
        }
    }
}

enum TerminatedBy {
    Deadline,
    Error(String),
}

/// The position that matters (where the script called in) and the innermost message.
fn describe(mut err: EvalAltResult) -> (Position, TerminatedBy) {
    let pos = err.take_position();
    let inner = match err {
        EvalAltResult::ErrorInFunctionCall(name, _, inner, _) => {
            let mut inner = *inner;
            let inner_pos = inner.take_position();
            let message = format!("in {name}: {inner}");
            // Errors inside a script-defined function point into it: prefer that spot.
            let pos = if inner_pos.is_none() { pos } else { inner_pos };
            return (pos, TerminatedBy::Error(message));
        }
        EvalAltResult::ErrorTerminated(..) => return (pos, TerminatedBy::Deadline),
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        other => other.to_string(),
    };
    (pos, TerminatedBy::Error(inner))
}

/// `file:line:column: message`.
fn at(file: &str, pos: Position, message: &str) -> String {
    match (pos.line(), pos.position()) {
        (Some(line), Some(column)) => format!("{file}:{line}:{column}: {message}"),
        (Some(line), None) => format!("{file}:{line}: {message}"),
        _ => format!("{file}: {message}"),
    }
}
