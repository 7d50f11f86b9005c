//! `cachelab target check FILE.toml`: the first thing a user runs in target mode. It
//! starts the proxies and the app, makes one read, one write and a read back through the
//! model, and prints what each proxy saw of each (keys with hit or miss, statements), so
//! the TOML and the counters can be trusted before any lab runs.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::cli::TargetCheckArgs;
use crate::knobs::Settings;
use crate::output::Printer;
use crate::services::Services;
use crate::stack::proxy::observe::{Observed, Seen};
use crate::stack::Stack;
use crate::target::{app, model, session, Target};

use crate::exit;

pub async fn check(args: TargetCheckArgs) -> anyhow::Result<u8> {
    let (out, err) = (Printer::stdout(), Printer::stderr());
    let target = match Target::load(&args.file) {
        Ok(target) => target,
        Err(e) => {
            err.line(&format!("error: {e}"));
            return Ok(exit::ERROR);
        }
    };
    if let Err(e) = target.check_upstreams().await {
        err.line(&format!("error: {e}"));
        return Ok(exit::ERROR);
    }
    let stack_options = session::stack_options(&target, args.stack.stack_options());
    let stack = Arc::new(Mutex::new(Stack::start(stack_options)?));
    let options = session::server_options(&target, args.stack.server_options(Settings::default()));
    let services = Services::start(stack.clone(), &options).await?;
    services.reset().await?;
    let log = app_log();
    let code = match session::start_app(&target, &services, &log).await {
        Ok(mut running) => {
            // The app's readiness poll may have filled the cache: start from empty.
            if let Err(e) = services.reset().await {
                err.line(&format!("error: resetting after the app started: {e:#}"));
            }
            print_setup(&out, &target, &services, &running);
            let code = exchanges(&out, &target, &services).await;
            running.stop();
            code
        }
        Err(e) => {
            err.line(&format!("error: {e}"));
            exit::ERROR
        }
    };
    services.shutdown().await;
    drop(stack);
    Ok(code)
}

/// Where the app's output goes: a file of its own per cachelab process.
pub fn app_log() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cachelab-app-{}.log", std::process::id()))
}

fn print_setup(out: &Printer, target: &Target, services: &Services, running: &app::RunningApp) {
    let pid = running
        .pid()
        .map_or("started by you".to_string(), |p| format!("pid {p}"));
    out.line(&format!(
        "app        {} ({pid}, log {})",
        target.url,
        running.log.display()
    ));
    if let Some(faults) = &services.faults {
        // The proxies' upstreams are addresses (`host:port`, or the managed Redis' Unix
        // socket), never URLs: no credentials to hide.
        let whose = |managed: bool| if managed { "managed" } else { "yours" };
        out.line(&format!(
            "redis      proxy {} -> {} ({})",
            faults.redis[0].1.addr(),
            faults.redis[0].1.upstream(),
            whose(services.stack.redis_managed)
        ));
        out.line(&format!(
            "postgres   proxy {} -> {} ({})",
            faults.postgres.addr(),
            faults.postgres.upstream(),
            whose(services.stack.postgres_managed)
        ));
    }
}

/// One read, one write, one read back; exit 0 when the app answered each and the read
/// back returned what was written.
async fn exchanges(out: &Printer, target: &Target, services: &Services) -> u8 {
    let Some(observed) = services.observed.clone() else {
        return exit::ERROR;
    };
    observed.keep_log(true);
    observed.take_log();
    let id = *target.model.ids.start();
    let written = format!("cachelab-check-{}", std::process::id());
    let m = &target.model;
    let steps = [
        ("read", m.read.method.clone(), m.read.path.fill(id, "")),
        (
            "write",
            m.write.method.clone(),
            m.write.path.fill(id, &written),
        ),
        ("read back", m.read.method.clone(), m.read.path.fill(id, "")),
    ];
    let mut code = exit::OK;
    let mut last_value = None;
    for (what, method, path) in steps {
        let before = observed.snapshot();
        let started = Instant::now();
        let answer = send(&method, &format!("{}{path}", target.url)).await;
        // The app's stores may answer a moment after the app does (a write-behind).
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        out.line("");
        match &answer {
            Ok((status, body)) => {
                let value = model::value_at(body, &m.value);
                out.line(&format!(
                    "{what:<10} {method} {path} -> {status} in {} ms{}",
                    started.elapsed().as_millis(),
                    value
                        .as_ref()
                        .map(|v| format!(", {} = {v:?}", m.value))
                        .unwrap_or_default()
                ));
                if *status >= 400 {
                    code = exit::FAILED;
                }
                last_value = value;
            }
            Err(e) => {
                out.line(&format!("{what:<10} {method} {path} -> {e}"));
                code = exit::FAILED;
            }
        }
        print_seen(out, &observed, &before);
    }
    out.line("");
    if last_value.as_deref() == Some(written.as_str()) {
        out.line(&format!(
            "ok: the read back returned the written value {written:?}"
        ));
    } else {
        out.line(&format!(
            "not ok: the read back returned {:?}, not the written {written:?} (check model.value and model.write)",
            last_value
        ));
        code = exit::FAILED;
    }
    code
}

fn print_seen(out: &Printer, observed: &Observed, before: &[(&'static str, u64)]) {
    let seen = observed.take_log();
    let (redis, sql): (Vec<_>, Vec<_>) = seen.iter().partition(|s| matches!(s, Seen::Redis(_)));
    let lines = |items: Vec<&Seen>| -> Vec<String> {
        items
            .into_iter()
            .map(|s| match s {
                Seen::Redis(t) | Seen::Sql(t) => t.clone(),
                Seen::SqlError(t) => format!("ERROR {t}"),
            })
            .collect()
    };
    for (label, items) in [("redis", lines(redis)), ("postgres", lines(sql))] {
        if items.is_empty() {
            let nothing = if label == "redis" {
                "(no command on a cache key)"
            } else {
                "(no statement)"
            };
            out.line(&format!("  {label:<9} {nothing}"));
        }
        for (i, item) in items.iter().enumerate() {
            let label = if i == 0 { label } else { "" };
            out.line(&format!("  {label:<9} {item}"));
        }
    }
    let counts: Vec<String> = observed
        .snapshot()
        .iter()
        .zip(before)
        .filter(|((_, now), (_, was))| now > was)
        .map(|((name, now), (_, was))| format!("{name} {}", now - was))
        .collect();
    out.line(&format!("  counted   {}", counts.join(", ")));
}

/// One request to the app: its status and body.
async fn send(method: &str, url: &str) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
}
