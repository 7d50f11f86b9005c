//! What a lab run found: per lab its checks, notes, time and outcome; printed as the
//! ✓/✗ report and written as JSON for `--json`.

use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

use crate::output::Printer;

/// One `check(name, condition)`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRecord {
    pub name: String,
    pub pass: bool,
    /// The line of the lab file the check was made on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// Checks and notes collected while a lab runs.
#[derive(Debug, Default, Clone)]
pub struct LabRecord {
    pub checks: Vec<CheckRecord>,
    pub notes: Vec<String>,
}

/// How a lab ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum Outcome {
    /// Ran to its end; passed if no check failed.
    Completed,
    /// An assert stopped it.
    AssertFailed(String),
    /// A parse or runtime error, with file:line:column.
    ScriptError(String),
    /// Ran past `--timeout` or was interrupted.
    Stopped(String),
}

/// The report of one lab.
#[derive(Debug, Clone, Serialize)]
pub struct LabReport {
    pub file: PathBuf,
    pub title: String,
    pub checks: Vec<CheckRecord>,
    pub notes: Vec<String>,
    #[serde(rename = "duration_secs", serialize_with = "as_secs")]
    pub duration: Duration,
    pub outcome: Outcome,
    pub passed: bool,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl LabReport {
    pub fn new(
        file: PathBuf,
        title: String,
        record: LabRecord,
        duration: Duration,
        outcome: Outcome,
    ) -> Self {
        let passed = matches!(outcome, Outcome::Completed) && record.checks.iter().all(|c| c.pass);
        Self {
            file,
            title,
            checks: record.checks,
            notes: record.notes,
            duration,
            outcome,
            passed,
        }
    }

    /// A script error or a stop beyond the script's control: exit code 2.
    pub fn is_error(&self) -> bool {
        matches!(self.outcome, Outcome::ScriptError(_) | Outcome::Stopped(_))
    }
}

/// The report of a whole run.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub labs: Vec<LabReport>,
    pub passed: usize,
    pub failed: usize,
}

impl RunReport {
    pub fn new(labs: Vec<LabReport>) -> Self {
        let checks = labs.iter().flat_map(|l| &l.checks);
        let passed = checks.clone().filter(|c| c.pass).count();
        // An assert that stopped a lab counts as a failed check too.
        let stopped = labs
            .iter()
            .filter(|l| matches!(l.outcome, Outcome::AssertFailed(_)))
            .count();
        let failed = checks.filter(|c| !c.pass).count() + stopped;
        Self {
            labs,
            passed,
            failed,
        }
    }

    /// 0 all passed, 1 a check or assert failed, 2 a script or set-up error.
    pub fn exit_code(&self) -> u8 {
        use crate::commands::exit;
        if self.labs.iter().any(LabReport::is_error) {
            exit::ERROR
        } else if self.labs.iter().all(|l| l.passed) {
            exit::OK
        } else {
            exit::FAILED
        }
    }
}

/// Print one lab's section of the report.
pub fn print_lab(out: &Printer, lab: &LabReport) {
    out.line(&format!(
        "{} {}  {}",
        out.bold(&lab.title),
        out.dim(&format!("({})", lab.file.display())),
        out.dim(&format!("{:.2} s", lab.duration.as_secs_f64()))
    ));
    for check in &lab.checks {
        if check.pass {
            out.line(&format!("  {} {}", out.green("✓"), check.name));
        } else {
            let line = check
                .line
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            out.line(&format!(
                "  {} {}{}",
                out.red("✗"),
                check.name,
                out.dim(&line)
            ));
        }
    }
    for note in &lab.notes {
        for (i, line) in note.lines().enumerate() {
            let lead = if i == 0 { "·" } else { " " };
            out.line(&format!("  {} {}", out.dim(lead), line));
        }
    }
    match &lab.outcome {
        Outcome::Completed => {}
        Outcome::AssertFailed(m) => out.line(&format!("  {} {}", out.red("✗"), m)),
        Outcome::ScriptError(m) | Outcome::Stopped(m) => {
            out.line(&format!("  {} {}", out.red("error:"), m))
        }
    }
    out.line("");
}

/// The closing line over all checks.
pub fn print_totals(out: &Printer, report: &RunReport) {
    let text = format!("{} passed, {} failed", report.passed, report.failed);
    out.line(&if report.exit_code() == 0 {
        out.green(&text)
    } else {
        out.red(&text)
    });
}
