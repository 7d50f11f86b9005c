//! The text report: per lab its title, then its checks (✓/✗), notes and tables in the
//! order they happened, its outcome and time; the run ends with one summary line.

use super::{Event, LabReport, Outcome, RunReport, TargetApp};
use crate::output::format_float;
use crate::output::{clean, Printer};

/// Print one lab's section of the report.
pub fn print_lab(out: &Printer, lab: &LabReport) {
    out.line(&format!(
        "{} {}  {}",
        out.bold(&clean(&lab.title)),
        out.dim(&format!("({})", lab.file.display())),
        out.dim(&format!("{:.2} s", lab.duration.as_secs_f64()))
    ));
    for event in &lab.events {
        match event {
            Event::Check {
                name, pass: true, ..
            } => out.line(&format!("  {} {name}", out.green("✓"))),
            Event::Check {
                name,
                pass: false,
                line,
                ..
            } => {
                let line = line.map(|l| format!(" (line {l})")).unwrap_or_default();
                out.line(&format!(
                    "  {} {}{}",
                    out.red("✗"),
                    clean(name),
                    out.dim(&line)
                ));
            }
            Event::Note { text } => {
                for (i, line) in clean(text).lines().enumerate() {
                    let lead = if i == 0 { "·" } else { " " };
                    out.line(&format!("  {} {line}", out.dim(lead)));
                }
            }
            Event::Table {
                title,
                columns,
                rows,
            } => print_table(out, title, columns, rows),
            Event::Chart(chart) => out.line(&format!(
                "  {} chart: {} ({} series; see --html)",
                out.dim("·"),
                clean(&chart.title),
                chart.series.len()
            )),
            Event::Load(run) => print_load(out, run),
        }
    }
    if lab.checks.total == 0 && matches!(lab.outcome, Outcome::Completed) {
        out.line(&format!(
            "  {} this lab made no checks: it passes, but it proves nothing",
            out.dim("·")
        ));
    }
    match &lab.outcome {
        Outcome::Completed => {}
        Outcome::AssertFailed(m) => out.line(&format!("  {} {}", out.red("✗"), clean(m))),
        Outcome::ScriptError(m) | Outcome::Stopped(m) => {
            out.line(&format!("  {} {}", out.red("error:"), clean(m)))
        }
        Outcome::Skipped(m) => out.line(&format!("  {} skipped: {m}", out.dim("·"))),
    }
    out.line("");
}

/// A load in one line (label, requests, hit ratio, p50, p99, Postgres reads, errors),
/// and what the lab did while it ran, one line each.
fn print_load(out: &Printer, run: &crate::load::LoadRun) {
    let db_reads = run
        .db_reads()
        .map(|n| format!(", Postgres reads {n}"))
        .unwrap_or_default();
    out.line(&format!(
        "  {} {}: {} requests, hit ratio {:.1}%, p50 {} ms, p99 {} ms{db_reads}, errors {}",
        out.dim("▸"),
        clean(&run.label),
        run.requests,
        run.hit_ratio * 100.0,
        format_float(run.p50_ms),
        format_float(run.p99_ms),
        run.errors
    ));
    for event in &run.events {
        out.line(&format!(
            "      {} {}",
            out.dim(&format!("at {} ms:", format_float(event.at_ms))),
            clean(&event.title())
        ));
    }
}

/// A table with aligned columns: numbers right-aligned, text left-aligned.
fn print_table(out: &Printer, title: &str, columns: &[String], rows: &[Vec<serde_json::Value>]) {
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => clean(s).replace('\n', " "),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => format_float(f),
            _ => n.to_string(),
        },
        serde_json::Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let cells: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(cell).collect()).collect();
    let columns: Vec<String> = columns
        .iter()
        .map(|c| clean(c).replace('\n', " "))
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    out.line(&format!("  {} {}", out.dim("▦"), out.bold(&clean(title))));
    let header: Vec<String> = columns
        .iter()
        .zip(&widths)
        .map(|(c, w)| format!("{c:<w$}"))
        .collect();
    out.line(&format!("    {}", out.dim(header.join("  ").trim_end())));
    for (row, raw) in cells.iter().zip(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(raw)
            .map(|((c, w), v)| {
                if v.is_number() {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        out.line(&format!("    {}", line.join("  ").trim_end()));
    }
}

/// Which app a target-mode run drives, and where its output goes.
pub fn target_line(target: &TargetApp) -> String {
    match &target.app_log {
        Some(log) => format!("target mode: {} (the app's output: {log})", target.url),
        None => format!("target mode: {}", target.url),
    }
}

/// The closing line over all labs and checks.
pub fn print_totals(out: &Printer, report: &RunReport) {
    if let Some(target) = &report.target {
        out.line(&target_line(target));
    }
    let text = report.summary_line();
    out.line(&if report.exit_code() == 0 {
        out.green(&text)
    } else {
        out.red(&text)
    });
}
