//! What a lab run found, as one model every format is drawn from: per lab its events
//! (checks, notes, tables, charts, load runs) in the order they happened, its time and
//! outcome, and the totals over labs and checks.

use serde::Serialize;

use super::charts::Chart;
use crate::exit::Verdict;
use crate::load::LoadRun;
use std::path::PathBuf;
use std::time::Duration;

/// Something that happened in a lab, in order.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// `check(name, condition)`.
    Check {
        name: String,
        pass: bool,
        /// The line of the lab file the check was made on.
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<usize>,
        /// What `check_eq`/`check_ge`/`check_le`/`check_between` saw and wanted (the name
        /// already ends with both, as the report prints them).
        #[serde(skip_serializing_if = "Option::is_none")]
        measured: Option<Measured>,
    },
    /// `note(text)`.
    Note { text: String },
    /// `table(title, rows)`.
    Table {
        title: String,
        columns: Vec<String>,
        rows: Vec<Vec<serde_json::Value>>,
    },
    /// `chart(title, opts)`.
    Chart(Chart),
    /// A `load()` or `stampede()` run.
    Load(Box<LoadRun>),
}

/// The value a comparing check saw and the bound it wanted (`"79"`, `">= 79"`,
/// `"between 10 and 20"`).
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub actual: serde_json::Value,
    pub expected: String,
}

/// Everything collected while a lab runs.
#[derive(Debug, Default, Clone)]
pub struct LabRecord {
    pub events: Vec<Event>,
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
    /// Ran past `--timeout` or a limit, or was interrupted.
    Stopped(String),
    /// Not run here, and why (a `// single-node:` lab on a Redis Cluster).
    Skipped(String),
}

/// Passed and failed counts.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    /// Labs not run here (never checks); left out of the JSON while there are none.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The report of one lab.
#[derive(Debug, Clone, Serialize)]
pub struct LabReport {
    pub file: PathBuf,
    pub title: String,
    /// The rest of the lab's header comment: what it shows and why.
    pub description: String,
    pub events: Vec<Event>,
    #[serde(rename = "duration_s", serialize_with = "as_secs")]
    pub duration: Duration,
    pub outcome: Outcome,
    pub passed: bool,
    /// Its checks; an assert that stopped the lab counts as a failed check.
    pub checks: Tally,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl LabReport {
    pub fn new(
        file: PathBuf,
        (title, description): (String, String),
        record: LabRecord,
        duration: Duration,
        outcome: Outcome,
    ) -> Self {
        let mut checks = Tally::default();
        for event in &record.events {
            if let Event::Check { pass, .. } = event {
                checks.total += 1;
                if *pass {
                    checks.passed += 1;
                } else {
                    checks.failed += 1;
                }
            }
        }
        if matches!(outcome, Outcome::AssertFailed(_)) {
            checks.total += 1;
            checks.failed += 1;
        }
        let passed = matches!(outcome, Outcome::Completed) && checks.failed == 0;
        Self {
            file,
            title,
            description,
            events: record.events,
            duration,
            outcome,
            passed,
            checks,
        }
    }

    /// A script error or a stop beyond the script's control: exit code 2.
    pub fn is_error(&self) -> bool {
        matches!(self.outcome, Outcome::ScriptError(_) | Outcome::Stopped(_))
    }

    /// Not run here: neither passed nor failed.
    pub fn is_skipped(&self) -> bool {
        matches!(self.outcome, Outcome::Skipped(_))
    }
}

/// The report of a whole run.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// Labs passed and failed (a lab that errored or was stopped failed).
    pub labs_summary: Tally,
    /// Checks over every lab.
    pub checks_summary: Tally,
    pub labs: Vec<LabReport>,
    /// Target mode: the app the labs ran against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetApp>,
}

/// The app of a target-mode run, and where its output went.
#[derive(Debug, Serialize)]
pub struct TargetApp {
    pub url: String,
    /// The file the app's stdout and stderr were written to (when cachelab started it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_log: Option<String>,
}

impl RunReport {
    pub fn new(labs: Vec<LabReport>) -> Self {
        let mut labs_summary = Tally::default();
        let mut checks_summary = Tally::default();
        for lab in &labs {
            labs_summary.total += 1;
            if lab.is_skipped() {
                labs_summary.skipped += 1;
            } else if lab.passed {
                labs_summary.passed += 1;
            } else {
                labs_summary.failed += 1;
            }
            checks_summary.total += lab.checks.total;
            checks_summary.passed += lab.checks.passed;
            checks_summary.failed += lab.checks.failed;
        }
        Self {
            labs_summary,
            checks_summary,
            labs,
            target: None,
        }
    }

    /// Passed, failed (a check or an assert), or an error (a script or set-up error, a stop).
    pub fn verdict(&self) -> Verdict {
        if self.labs.iter().any(LabReport::is_error) {
            Verdict::Error
        } else if self.labs.iter().all(|l| l.passed || l.is_skipped()) {
            Verdict::Passed
        } else {
            Verdict::Failed
        }
    }

    /// 0 all passed, 1 a check or assert failed, 2 a script or set-up error or a stop.
    pub fn exit_code(&self) -> u8 {
        self.verdict().code()
    }

    /// `3 labs: 2 passed, 1 failed · 80 checks: 79 passed, 1 failed` (`, 1 skipped` after
    /// the labs' counts when a lab was skipped).
    pub fn summary_line(&self) -> String {
        let plural = |n: usize, word: &str| {
            if n == 1 {
                format!("{n} {word}")
            } else {
                format!("{n} {word}s")
            }
        };
        let skipped = match self.labs_summary.skipped {
            0 => String::new(),
            n => format!(", {n} skipped"),
        };
        format!(
            "{}: {} passed, {} failed{skipped} · {}: {} passed, {} failed",
            plural(self.labs_summary.total, "lab"),
            self.labs_summary.passed,
            self.labs_summary.failed,
            plural(self.checks_summary.total, "check"),
            self.checks_summary.passed,
            self.checks_summary.failed,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::charts::{ChartKind, Series};

    fn lab(checks: &[bool], outcome: Outcome) -> LabReport {
        let record = LabRecord {
            events: checks
                .iter()
                .map(|pass| Event::Check {
                    name: "c".into(),
                    pass: *pass,
                    line: None,
                    measured: None,
                })
                .collect(),
        };
        LabReport::new(
            "x.rhai".into(),
            ("t".into(), String::new()),
            record,
            Duration::ZERO,
            outcome,
        )
    }

    #[test]
    fn an_errored_lab_counts_as_failed_even_when_its_checks_passed() {
        let report = RunReport::new(vec![
            lab(&[true, true], Outcome::Completed),
            lab(&[true; 11], Outcome::ScriptError("boom".into())),
            lab(&[], Outcome::ScriptError("typo".into())),
        ]);
        assert_eq!(
            report.summary_line(),
            "3 labs: 1 passed, 2 failed · 13 checks: 13 passed, 0 failed"
        );
        assert_eq!(report.exit_code(), 2);
    }

    #[test]
    fn a_chart_event_is_tagged_chart_once_in_json() {
        let mut chart = Chart::new(ChartKind::Bar, "t", "", "");
        chart.series.push(Series {
            name: "s".into(),
            points: vec![(0.0, 1.0)],
        });
        let event = Event::Chart(chart);
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(json.matches("\"kind\"").count(), 1, "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["kind"], "chart");
        assert_eq!(value["chart_kind"], "bar");
    }

    #[test]
    fn a_skipped_lab_is_neither_passed_nor_failed_and_does_not_fail_the_run() {
        let report = RunReport::new(vec![
            lab(&[true], Outcome::Completed),
            lab(&[], Outcome::Skipped("single-node only".into())),
        ]);
        assert_eq!(
            report.summary_line(),
            "2 labs: 1 passed, 0 failed, 1 skipped · 1 check: 1 passed, 0 failed"
        );
        assert_eq!(report.exit_code(), 0);
    }

    #[test]
    fn an_assert_is_a_failed_check_and_singular_words_read_right() {
        let report = RunReport::new(vec![lab(&[true], Outcome::AssertFailed("no".into()))]);
        assert_eq!(
            report.summary_line(),
            "1 lab: 0 passed, 1 failed · 2 checks: 1 passed, 1 failed"
        );
        assert_eq!(report.exit_code(), 1);
    }
}
