//! The HTML pages: a lab run's report (`cachelab run --html`) and a single load run
//! (`cachelab load --html`). The run's page opens with the same summary line as the text
//! report, what failed (each item linking to the failing check) and a table of labs. Each
//! lab then tells its story first: verdict, description, the tables and charts its author
//! drew, its checks and notes, and only then its loads, one row each in a compact table
//! with their detail folded.

use std::fmt::Write;
use std::time::SystemTime;

use super::page::{self, escape};
use super::{loads, Event, LabReport, Outcome, RunReport};
use crate::load::LoadRun;

/// Size a lab's own `chart()` is drawn at (CSS fits it to narrower pages).
const LAB_CHART_SIZE: (u32, u32) = (880, 380);

/// The page of a whole run.
pub fn run_page(report: &RunReport) -> String {
    let mut body = String::new();
    let _ = writeln!(body, "<h1>cachelab lab report</h1>");
    let _ = writeln!(body, "<p class=\"subtitle\">{}</p>", escape(&written()));
    let verdict = if report.exit_code() == 0 {
        "pass"
    } else {
        "fail"
    };
    let _ = writeln!(
        body,
        "<p class=\"totals {verdict}\" id=\"summary\">{}</p>",
        escape(&report.summary_line())
    );
    if let Some(target) = &report.target {
        let log = match &target.app_log {
            Some(log) => format!("; its output: <code>{}</code>", escape(log)),
            None => String::new(),
        };
        let _ = writeln!(
            body,
            "<p class=\"subtitle\" id=\"target\">Target mode: the app at <code>{}</code>{log}</p>",
            escape(&target.url)
        );
    }
    body.push_str(&failures(report));
    body.push_str(&labs_table(report));
    for (index, lab) in report.labs.iter().enumerate() {
        body.push_str(&lab_section(index, lab));
    }
    page::document(&format!("cachelab · {}", report.summary_line()), &body)
}

/// The page of one `cachelab load` run.
pub fn load_page(run: &LoadRun) -> String {
    let mut body = String::new();
    let _ = writeln!(body, "<h1>cachelab load</h1>");
    let _ = writeln!(body, "<p class=\"subtitle\">{}</p>", escape(&written()));
    if run.cancelled {
        let _ = writeln!(
            body,
            "<p class=\"outcome\">Stopped early: interrupted before the planned end.</p>"
        );
    }
    body.push_str(&loads::cli_load(run));
    page::document(&format!("cachelab load · {}", run.label), &body)
}

/// When the page was written, for whoever reads it later.
fn written() -> String {
    format!(
        "written {}",
        humantime::format_rfc3339_seconds(SystemTime::now())
    )
}

/// One row per lab: whether it passed, its title (a link to its section), file, checks
/// and time.
fn labs_table(report: &RunReport) -> String {
    let mut html = String::from(
        "<div class=\"scroll\">\n<table class=\"labs\">\n<thead><tr><th></th><th>lab</th><th>file</th>\
         <th class=\"num\">checks</th><th class=\"num\">passed</th><th class=\"num\">failed</th>\
         <th class=\"num\">time</th></tr></thead>\n<tbody>\n",
    );
    for (index, lab) in report.labs.iter().enumerate() {
        let (class, mark) = if lab.passed {
            ("pass", "✓")
        } else {
            ("fail", "✗")
        };
        let _ = writeln!(
            html,
            "<tr class=\"{class}\"><td class=\"mark\">{mark}</td><td><a href=\"#{}\">{}</a></td>\
             <td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{:.2} s</td></tr>",
            anchor(index),
            escape(&lab.title),
            escape(&lab.file.display().to_string()),
            lab.checks.total,
            lab.checks.passed,
            lab.checks.failed,
            lab.duration.as_secs_f64()
        );
    }
    html.push_str("</tbody>\n</table>\n</div>\n");
    html
}

/// Every failed check and every lab that stopped, up front, each linking to the check or
/// the error itself: what a reader of a red report looks for first.
fn failures(report: &RunReport) -> String {
    let mut items = String::new();
    for (index, lab) in report.labs.iter().enumerate() {
        let mut found = Vec::new();
        let mut check = 0;
        for event in &lab.events {
            if let Event::Check {
                name, pass, line, ..
            } = event
            {
                if !pass {
                    let line = line.map(|l| format!(" (line {l})")).unwrap_or_default();
                    found.push((check_anchor(index, check), format!("✗ {name}{line}")));
                }
                check += 1;
            }
        }
        let outcome = format!("{}-outcome", anchor(index));
        match &lab.outcome {
            Outcome::Completed | Outcome::Skipped(_) => {}
            Outcome::AssertFailed(m) => found.push((outcome, format!("✗ {m}"))),
            Outcome::ScriptError(m) | Outcome::Stopped(m) => {
                found.push((outcome, format!("error: {m}")))
            }
        }
        for (target, what) in found {
            let _ = writeln!(
                items,
                "<li>{}: <a href=\"#{target}\">{}</a></li>",
                escape(&lab.title),
                escape(&what)
            );
        }
    }
    if items.is_empty() {
        return String::new();
    }
    format!("<div class=\"failures\">\n<h3>What failed</h3>\n<ul>\n{items}</ul>\n</div>\n")
}

/// The id of a lab's `check`-th check (counting from 0).
fn check_anchor(lab: usize, check: usize) -> String {
    format!("{}-check-{}", anchor(lab), check + 1)
}

fn anchor(index: usize) -> String {
    format!("lab-{}", index + 1)
}

fn lab_section(index: usize, lab: &LabReport) -> String {
    let (class, badge) = match (lab.passed, lab.is_error()) {
        _ if lab.is_skipped() => ("skip", "SKIPPED"),
        (true, _) => ("pass", "PASSED"),
        (false, false) => ("fail", "FAILED"),
        (false, true) => ("fail", "ERROR"),
    };
    let mut html = String::new();
    let _ = writeln!(
        html,
        "<section class=\"lab {class}\" id=\"{}\">\n<header>\n\
         <h2><span class=\"badge {class}\">{badge}</span> {}</h2>",
        anchor(index),
        escape(&lab.title)
    );
    let _ = writeln!(
        html,
        "<p class=\"meta\"><span class=\"mono\">{}</span> · {:.2} s · {} checks: {} passed, {} failed</p>\n</header>",
        escape(&lab.file.display().to_string()),
        lab.duration.as_secs_f64(),
        lab.checks.total,
        lab.checks.passed,
        lab.checks.failed
    );
    html.push_str(&description(&lab.description));
    // What the author chose to show comes first.
    for event in &lab.events {
        if matches!(event, Event::Table { .. } | Event::Chart(_)) {
            html.push_str(&event_html(event));
        }
    }
    let mut checks_open = false;
    let mut check = 0;
    for event in &lab.events {
        let is_check = matches!(event, Event::Check { .. });
        if !is_check && !matches!(event, Event::Note { .. }) {
            continue;
        }
        if is_check && !checks_open {
            html.push_str("<ul class=\"checks\">\n");
        } else if !is_check && checks_open {
            html.push_str("</ul>\n");
        }
        checks_open = is_check;
        if is_check {
            html.push_str(&check_html(event, &check_anchor(index, check)));
            check += 1;
        } else {
            html.push_str(&event_html(event));
        }
    }
    if checks_open {
        html.push_str("</ul>\n");
    }
    let runs: Vec<&LoadRun> = lab
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Load(run) => Some(run.as_ref()),
            _ => None,
        })
        .collect();
    html.push_str(&loads::lab_loads(index, &runs));
    if lab.checks.total == 0 && matches!(lab.outcome, Outcome::Completed) {
        html.push_str(
            "<p class=\"note\">This lab made no checks: it passes, but it proves nothing.</p>\n",
        );
    }
    match &lab.outcome {
        Outcome::Completed => {}
        Outcome::Skipped(m) => {
            let _ = writeln!(html, "<p class=\"note\">skipped: {}</p>", escape(m));
        }
        Outcome::AssertFailed(m) => {
            let _ = writeln!(
                html,
                "<p class=\"outcome\" id=\"{}-outcome\">✗ {}</p>",
                anchor(index),
                escape(m)
            );
        }
        Outcome::ScriptError(m) | Outcome::Stopped(m) => {
            let _ = writeln!(
                html,
                "<p class=\"outcome mono\" id=\"{}-outcome\">error: {}</p>",
                anchor(index),
                escape(m)
            );
        }
    }
    html.push_str("</section>\n");
    html
}

/// The header comment's text, in paragraphs where it has blank lines; its own line
/// breaks are only the width of a source file, so they are not kept.
fn description(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let mut html = String::from("<div class=\"description\">\n");
    for paragraph in text.split("\n\n") {
        let joined: Vec<&str> = paragraph.lines().map(str::trim).collect();
        let joined = joined.join(" ");
        if !joined.trim().is_empty() {
            let _ = writeln!(html, "<p>{}</p>", escape(joined.trim()));
        }
    }
    html.push_str("</div>\n");
    html
}

/// A check as a list item with its id, for "What failed" to link to.
fn check_html(event: &Event, id: &str) -> String {
    let Event::Check {
        name, pass, line, ..
    } = event
    else {
        return String::new();
    };
    if *pass {
        return format!(
            "<li class=\"pass\" id=\"{id}\"><span class=\"mark\">✓</span> {}</li>\n",
            escape(name)
        );
    }
    let line = line
        .map(|l| format!(" <span class=\"line-no\">line {l}</span>"))
        .unwrap_or_default();
    format!(
        "<li class=\"fail\" id=\"{id}\"><span class=\"mark\">✗</span> {}{line}</li>\n",
        escape(name)
    )
}

/// A note, a table or a lab's chart; checks and loads have their own places.
fn event_html(event: &Event) -> String {
    match event {
        Event::Note { text } => format!("<p class=\"note\">{}</p>\n", escape(text)),
        Event::Table {
            title,
            columns,
            rows,
        } => format!(
            "<div class=\"block\">\n{}</div>\n",
            page::table(title, columns, rows)
        ),
        Event::Chart(spec) => format!(
            "<div class=\"block lab-chart\">\n{}</div>\n",
            page::chart(spec, LAB_CHART_SIZE)
        ),
        Event::Check { .. } | Event::Load(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{LabRecord, LabReport};
    use std::time::Duration;

    fn lab(title: &str, events: Vec<Event>, outcome: Outcome) -> LabReport {
        LabReport::new(
            format!("{title}.rhai").into(),
            (
                title.into(),
                "First line\nwraps here.\n\nSecond paragraph.".into(),
            ),
            LabRecord { events },
            Duration::from_millis(1500),
            outcome,
        )
    }

    #[test]
    fn an_errored_lab_is_marked_and_its_error_is_listed_first() {
        let report = RunReport::new(vec![
            lab(
                "fine",
                vec![Event::Check {
                    name: "ok".into(),
                    pass: true,
                    line: Some(2),
                    measured: None,
                }],
                Outcome::Completed,
            ),
            lab(
                "broken",
                Vec::new(),
                Outcome::ScriptError("broken.rhai:3:9: no such function".into()),
            ),
        ]);
        let page = run_page(&report);
        assert!(page.contains("<span class=\"badge fail\">ERROR</span> broken"));
        assert!(page.contains("<span class=\"badge pass\">PASSED</span> fine"));
        let failures = &page[page.find("What failed").expect("a failures list")..];
        assert!(failures.contains(
            "broken: <a href=\"#lab-2-outcome\">error: broken.rhai:3:9: no such function</a>"
        ));
        assert!(page.contains("<p>First line wraps here.</p>\n<p>Second paragraph.</p>"));
    }

    #[test]
    fn a_passing_run_lists_no_failures_and_a_lab_without_checks_says_it_proves_nothing() {
        let report = RunReport::new(vec![lab("empty", Vec::new(), Outcome::Completed)]);
        let page = run_page(&report);
        assert!(!page.contains("What failed"));
        assert!(page.contains("class=\"totals pass\""));
        assert!(page.contains("it passes, but it proves nothing"));
    }
}
