//! `cachelab run`: start the stack once, run each lab from a fresh state, print the
//! report (and write it as JSON and HTML), tear everything down, and exit 0 / 1 / 2.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cli::RunArgs;
use crate::lab;
use crate::output::Printer;
use crate::report;
use crate::services::Services;
use crate::stack::Stack;
use crate::target::{session, Target};

pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let out = Printer::stdout();
    let files = match lab::collect_files(&args.paths) {
        Ok(files) => files,
        Err(e) => {
            Printer::stderr().line(&format!("error: {e:#}"));
            return Ok(crate::exit::ERROR);
        }
    };
    let files = match &args.filter {
        None => files,
        Some(pattern) => {
            let chosen = lab::matching(&files, pattern);
            if chosen.is_empty() {
                Printer::stderr().line(&format!(
                    "error: no lab's file name or title contains {pattern:?} (`cachelab list` shows them)"
                ));
                return Ok(crate::exit::ERROR);
            }
            chosen
        }
    };
    if args.timeout == 0 {
        Printer::stderr().line("error: --timeout must be at least 1 second");
        return Ok(crate::exit::ERROR);
    }
    let target = match &args.target {
        Some(file) => match Target::load(file) {
            Ok(target) => Some(Arc::new(target)),
            Err(e) => {
                Printer::stderr().line(&format!("error: {e}"));
                return Ok(crate::exit::ERROR);
            }
        },
        None => None,
    };
    if let Some(target) = &target {
        if let Err(e) = target.check_upstreams().await {
            Printer::stderr().line(&format!("error: {e}"));
            return Ok(crate::exit::ERROR);
        }
    }
    let mut stack_options = args.stack.stack_options();
    let mut options = args.stack.server_options(args.knobs.settings());
    if let Some(target) = &target {
        stack_options = session::stack_options(target, stack_options);
        options = session::server_options(target, options);
    }
    let stack = Arc::new(Mutex::new(Stack::start(stack_options)?));
    let services = Arc::new(Services::start(stack.clone(), &options).await?);
    // Target mode: the app starts once the proxies listen, on the fresh state.
    let mut app = None;
    let mut target_app = None;
    if let Some(target) = &target {
        let started = match services.reset().await {
            Ok(()) => session::start_app(target, &services, &super::target::app_log())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("setting up the fresh state: {e:#}")),
        };
        match started {
            Ok(running) => {
                let described = report::TargetApp {
                    url: target.url.clone(),
                    app_log: running.pid().map(|_| running.log.display().to_string()),
                };
                Printer::stderr().line(&report::text::target_line(&described));
                target_app = Some(described);
                app = Some(running);
            }
            Err(e) => {
                Printer::stderr().line(&format!("error: {e}"));
                shutdown(services).await;
                return Ok(crate::exit::ERROR);
            }
        }
    }
    let limits = lab::Limits {
        timeout: Duration::from_secs(args.timeout),
        max_operations: args.max_operations,
        max_memory_mb: args.max_memory_mb,
        reach: lab::Reach {
            allowed_hosts: args.allow_host.clone(),
            history_dir: args.history_dir.clone(),
            target: target.clone(),
        },
    };
    let mut labs = Vec::new();
    for file in &files {
        if crate::shutdown::requested() {
            break;
        }
        let lab = lab::run_lab(&services, file, &limits).await;
        report::text::print_lab(&out, &lab);
        labs.push(lab);
    }
    // The last lab's loads may still be closing their sockets: room to write the reports.
    lab::wait_for_file_room().await;
    let mut run_report = report::RunReport::new(labs);
    run_report.target = target_app;
    report::text::print_totals(&out, &run_report);
    let mut code = run_report.exit_code();
    if let Some(path) = &args.json {
        let json = report::json::run(&run_report)?;
        if let Err(e) = std::fs::write(path, json) {
            Printer::stderr().line(&format!("error: writing {}: {e}", path.display()));
            code = crate::exit::ERROR;
        }
    }
    if let Some(path) = &args.html {
        if let Err(e) = std::fs::write(path, report::html::run_page(&run_report)) {
            Printer::stderr().line(&format!("error: writing {}: {e}", path.display()));
            code = crate::exit::ERROR;
        }
    }
    // The app first, then the servers, then the stack they use.
    if let Some(mut app) = app {
        app.stop();
    }
    shutdown(services).await;
    drop(stack);
    Ok(code)
}

async fn shutdown(services: Arc<Services>) {
    // Pending lab requests may still hold a reference for a moment.
    let mut services = services;
    for _ in 0..100 {
        match Arc::try_unwrap(services) {
            Ok(owned) => return owned.shutdown().await,
            Err(shared) => {
                services = shared;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    tracing::warn!("a lab thread still holds the services; the stack ends with the process");
}
