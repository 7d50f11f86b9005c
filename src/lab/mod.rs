//! The lab runner: each lab file runs from a fresh state, on a thread of its own, in a
//! sandboxed Rhai engine that has only the lab API; what it checked becomes its report.
//!
//! A lab is code from a stranger, so the engine is bounded on every axis: operations,
//! call depth, string/array/map sizes, the lab's wall clock and the memory it grows the
//! process by. Imports resolve only inside the lab's own folder.

pub mod api;
mod context;
mod convert;
mod errors;
mod frozen;
mod imports;
pub mod memory;
pub mod redis_guard;
mod thread;

use anyhow::Context;
use rhai::Engine;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::report::{LabRecord, LabReport, Outcome};
use context::{Halt, LabContext};

pub use context::Reach;

use crate::services::Services;

/// Operations a lab may run before it counts as a runaway.
pub const DEFAULT_MAX_OPERATIONS: u64 = 200_000_000;
/// MiB a lab may grow the process by.
pub const DEFAULT_MAX_MEMORY_MB: u64 = 512;

/// How long and how much a lab may run, and what it may reach.
#[derive(Debug, Clone)]
pub struct Limits {
    pub timeout: Duration,
    pub max_operations: u64,
    pub max_memory_mb: u64,
    pub reach: Reach,
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
        .set_max_map_size(100_000)
        .set_max_modules(16)
        // Reading a field a map lacks is an error, not a quiet `()`.
        .set_fail_on_invalid_map_property(true);
    engine.disable_symbol("eval");
    // No constant folding: it would print literal floats with Rhai's own formatting.
    engine.set_optimization_level(rhai::OptimizationLevel::None);
    // Imports are refused until the runner sets a resolver rooted at the lab's folder.
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    // Floats read as numbers, not as float noise, in notes and printed values.
    engine.register_fn("to_string", |f: f64| convert::format_float(f));
    engine.register_fn("to_debug", |f: f64| convert::format_float(f));
    let docs = api::register_all(&mut engine);
    (engine, docs)
}

/// The lab files named by `paths`: files as given (each must be a `.rhai` file), folders'
/// `*.rhai` in name order.
pub fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "rhai"))
                .collect();
            found.sort();
            if found.is_empty() {
                anyhow::bail!("{} holds no *.rhai labs", path.display());
            }
            files.extend(found);
        } else if path.is_file() {
            if path.extension().is_none_or(|x| x != "rhai") {
                anyhow::bail!("{}: not a lab (lab files end in .rhai)", path.display());
            }
            files.push(path.clone());
        } else {
            anyhow::bail!("{}: no such lab file or folder", path.display());
        }
    }
    Ok(files)
}

/// The lab's title (its first comment line) and description (the rest of its header
/// comment, up to the first line that is not a comment).
pub fn header_of(source: &str, file: &Path) -> (String, String) {
    let mut lines = source
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .map_while(|l| l.strip_prefix("//"))
        .map(|t| t.trim_start_matches(['/', '!']).trim());
    let title = lines
        .next()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| file.display().to_string());
    let description = lines
        .filter(|l| !l.starts_with(SINGLE_NODE))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string();
    (title, description)
}

/// The header line that keeps a lab off a Redis Cluster: `// single-node: <why>`.
const SINGLE_NODE: &str = "single-node:";

/// Why a lab runs on a single Redis only, when its header comment says so with a
/// `// single-node: <why>` line: `run` skips it on a cluster and prints the reason.
pub fn single_node_reason(source: &str) -> Option<String> {
    source
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .map_while(|l| l.strip_prefix("//"))
        .map(|t| t.trim_start_matches(['/', '!']).trim())
        .find_map(|t| t.strip_prefix(SINGLE_NODE))
        .map(|why| why.trim().to_string())
}

/// Run one lab from a fresh state. Never fails: every problem becomes the lab's outcome.
/// Is this a lab for target mode: `// app:` on its second line?
fn is_app_lab(source: &str) -> bool {
    source
        .lines()
        .nth(1)
        .is_some_and(|line| line.trim_start().starts_with("// app:"))
}

pub async fn run_lab(services: &Arc<Services>, file: &Path, limits: &Limits) -> LabReport {
    let started = Instant::now();
    let report = |header: (String, String), record: LabRecord, outcome: Outcome| {
        LabReport::new(
            file.to_path_buf(),
            header,
            record,
            started.elapsed(),
            outcome,
        )
    };
    wait_for_file_room().await;
    let source = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            let outcome = Outcome::ScriptError(format!("{}: cannot read: {e}", file.display()));
            return report(
                (file.display().to_string(), String::new()),
                LabRecord::default(),
                outcome,
            );
        }
    };
    let header = header_of(&source, file);
    if services.stack.redis_is_cluster() {
        if let Some(why) = single_node_reason(&source) {
            let outcome = Outcome::Skipped(format!("single-node only on a Redis Cluster: {why}"));
            return report(header, LabRecord::default(), outcome);
        }
    }
    match (is_app_lab(&source), limits.reach.target.is_some()) {
        (false, true) => {
            let outcome = Outcome::Skipped(
                "needs cachelab's own servers; target mode (--target) runs the labs marked `// app:` (labs/app/)".into(),
            );
            return report(header, LabRecord::default(), outcome);
        }
        (true, false) => {
            let outcome = Outcome::Skipped(
                "a lab for your own service: run it with --target FILE.toml".into(),
            );
            return report(header, LabRecord::default(), outcome);
        }
        _ => {}
    }
    if let Err(e) = services.reset().await {
        let outcome = Outcome::ScriptError(format!("setting up the fresh state: {e:#}"));
        return report(header, LabRecord::default(), outcome);
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let file_owned = file.to_path_buf();
    let services = services.clone();
    let runtime = tokio::runtime::Handle::current();
    let deadline = Instant::now() + limits.timeout;
    let thread_limits = limits.clone();
    // The context is built on the lab thread and never leaves it.
    let spawned = thread::spawn(limits.max_memory_mb, move || {
        // Lab functions create timers and tasks: give this thread the runtime's context.
        let _runtime_context = runtime.enter();
        let folder = file_owned
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let ctx = Rc::new(LabContext::new(
            services,
            runtime.clone(),
            deadline,
            thread_limits.reach.clone(),
            folder,
        ));
        let run =
            std::panic::AssertUnwindSafe(|| execute(&ctx, &file_owned, &source, &thread_limits));
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
        ctx.close();
        let record = ctx.record.borrow().clone();
        let _ = done_tx.send((outcome, record));
    });
    if let Err(e) = spawned {
        let outcome = Outcome::ScriptError(format!("starting the lab thread: {e}"));
        return report(header, LabRecord::default(), outcome);
    }
    // Every blocking lab call is bounded by the deadline; the grace period covers the
    // unwinding after it.
    let (outcome, record) =
        match tokio::time::timeout(limits.timeout + Duration::from_secs(10), done_rx).await {
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
    report(header, record, outcome)
}

/// What stopped a lab from `on_progress`.
const MEMORY_TOKEN: &str = "memory";

/// Compile and run the script on this (the lab's) thread.
fn execute(ctx: &Rc<LabContext>, file: &Path, source: &str, limits: &Limits) -> Outcome {
    let (mut engine, docs) = engine();
    engine.set_max_operations(limits.max_operations);
    engine.set_module_resolver(imports::LabFolder::new(&ctx.folder));
    let deadline = ctx.deadline;
    let cap = limits.max_memory_mb.saturating_mul(1024 * 1024);
    memory::start_counting();
    engine.on_progress(move |ops| {
        if memory::counted() > cap {
            return Some(MEMORY_TOKEN.into());
        }
        // The clock costs more than the counter: look every 64 operations.
        if ops % 64 == 0 && (Instant::now() > deadline || crate::shutdown::requested()) {
            return Some(rhai::Dynamic::UNIT);
        }
        None
    });
    let name = file.display().to_string();
    let print_name = name.clone();
    // Every printed line carries the lab's name, control characters escaped: a lab cannot
    // forge report lines or send escape sequences to the terminal.
    engine.on_print(move |text| {
        let out = crate::output::Printer::stdout();
        for line in crate::output::clean(text).lines() {
            out.line(&format!("  [{print_name}] {line}"));
        }
    });
    engine.on_debug(move |text, _, pos| {
        let out = crate::output::Printer::stderr();
        for line in crate::output::clean(text).lines() {
            out.line(&format!("  debug {pos}: {line}"));
        }
    });
    let ast = match engine.compile(source) {
        Ok(ast) => ast,
        Err(e) => {
            return Outcome::ScriptError(errors::at(&name, e.position(), &e.err_type().to_string()))
        }
    };
    context::enter(ctx.clone());
    let result = engine.run_ast(&ast);
    context::leave();
    // The stop a lab function recorded decides, whatever the script did after it: a
    // lab that caught its stop did not pass.
    let halt = ctx.halt.borrow().clone();
    let explained = result.err().map(|err| {
        errors::explain(
            *err,
            &errors::Known {
                docs: &docs,
                shapes: &ctx.shapes.borrow(),
                source,
                limits,
            },
        )
    });
    let pos = explained.as_ref().map_or(rhai::Position::NONE, |e| e.pos);
    let at = |message: &str| errors::at(&name, pos, message);
    match (halt, explained.map(|e| e.kind)) {
        (Some(Halt::Assert(m)), _) => Outcome::AssertFailed(format!(
            "assert failed at {}: {m}",
            at("").trim_end_matches(": ")
        )),
        (Some(Halt::Timeout), _) => Outcome::Stopped(at("the lab ran past its --timeout")),
        (Some(Halt::Interrupted), _) => Outcome::Stopped(at("interrupted")),
        (None, None) => Outcome::Completed,
        (None, Some(errors::Kind::Terminated(token))) if token == MEMORY_TOKEN => {
            Outcome::Stopped(at(&format!(
                "the lab held more than {} MiB (--max-memory-mb); it was stopped",
                limits.max_memory_mb
            )))
        }
        (None, Some(errors::Kind::Terminated(_))) if crate::shutdown::requested() => {
            Outcome::Stopped(at("interrupted"))
        }
        (None, Some(errors::Kind::Terminated(_))) => {
            Outcome::Stopped(at("the lab ran past its --timeout"))
        }
        (None, Some(errors::Kind::Limit(m))) => Outcome::Stopped(at(&m)),
        (None, Some(errors::Kind::Error(m))) => Outcome::ScriptError(at(&m)),
    }
}

/// Wait (at most 5 s) until the process has room for files again: the last lab's loads
/// may have filled the descriptor table, and their sockets close only as their tasks end
/// and the servers see the other ends go.
pub async fn wait_for_file_room() {
    let limit = crate::load::open_file_limit();
    let room = |open: u64| open.saturating_mul(4) < limit.saturating_mul(3);
    let give_up = Instant::now() + Duration::from_secs(5);
    while !room(crate::load::open_files()) && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
