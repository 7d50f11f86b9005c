//! `cachelab load`: parse hey's flags, run the engine with a progress bar on a terminal,
//! and print hey's report (or JSON), and with `--html` write a page of charts too. Ctrl-C
//! stops the run at once and still prints what it observed, as hey does.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::load::{self, LoadArgs, Progress, Stop};
use crate::output::Printer;

pub async fn load(args: LoadArgs) -> anyhow::Result<u8> {
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(message) => {
            Printer::stderr().line(&format!("error: {message}"));
            return Ok(crate::exit::ERROR);
        }
    };
    let progress = Arc::new(Progress::default());
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| progress_bar(plan.stop));
    let ticker = bar.clone().map(|bar| {
        let progress = progress.clone();
        tokio::spawn(async move {
            // Show nothing for runs shorter than a second.
            tokio::time::sleep(Duration::from_secs(1)).await;
            loop {
                bar.set_position(progress.done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let cancel = plan.cancel.clone();
    let run = load::run(plan, progress);
    tokio::pin!(run);
    let summary = tokio::select! {
        summary = &mut run => summary,
        _ = crate::shutdown::signalled() => {
            cancel.cancel();
            run.await
        }
    };
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let out = Printer::stdout();
    if args.json {
        out.line(&serde_json::to_string_pretty(&summary.cli_figures())?);
    } else {
        out.line(&load::print_text(&summary));
    }
    if let Some(path) = &args.history {
        let written = std::fs::File::create(path)
            .and_then(|file| load::history::write_jepsen(&summary.history, file));
        if let Err(e) = written {
            Printer::stderr().line(&format!("error: writing {}: {e}", path.display()));
            return Ok(crate::exit::ERROR);
        }
    }
    if let Some(path) = &args.html {
        let page = crate::report::html::load_page(&page_label(&args), &summary);
        if let Err(e) = std::fs::write(path, page) {
            Printer::stderr().line(&format!("error: writing {}: {e}", path.display()));
            return Ok(crate::exit::ERROR);
        }
    }
    Ok(crate::exit::OK)
}

/// What the page says was loaded: the method (or mix) and the targets. The scheme is left
/// out, so that the page names no URL: it links to nothing and fetches nothing.
fn page_label(args: &LoadArgs) -> String {
    let method = match (&args.mix, &args.method) {
        (Some(mix), _) => format!("mix get:{},put:{}", mix.get, mix.put),
        (None, Some(m)) => m.to_uppercase(),
        (None, None) => "GET".to_string(),
    };
    let targets: Vec<&str> = args
        .urls
        .iter()
        .map(|u| u.strip_prefix("http://").unwrap_or(u))
        .collect();
    format!("{method} {}", targets.join(" "))
}

fn progress_bar(stop: Stop) -> ProgressBar {
    let bar = match stop {
        Stop::Requests(n) => {
            ProgressBar::with_draw_target(Some(n), indicatif::ProgressDrawTarget::stderr())
        }
        Stop::Duration(_) => {
            ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr())
        }
    };
    let template = match stop {
        Stop::Requests(_) => "{bar:40} {pos}/{len} requests  {rate}  eta {eta}",
        Stop::Duration(_) => "{spinner} {pos} requests  {rate}  {elapsed}",
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} req/s", state.per_sec());
            },
        );
    bar.set_style(style);
    bar
}
