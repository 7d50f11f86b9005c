//! What the runner promises (DESIGN.md, "Correctness: the runner"), checked as a user
//! meets it, with `cachelab run` over the real managed stack: a lab cannot crash the run,
//! every lab starts with servers that work, nothing a lab scheduled outlives it, stack
//! changes return when the servers can use them, and a stopped lab is an error whatever
//! it does after.

mod common;

use common::{assert_nothing_left, cachelab, private_tmpdir, Labs, Run};
use serde_json::Value;
use std::path::PathBuf;

/// A finished `cachelab run` with its JSON report.
struct Report {
    run: Run,
    json: Value,
}

impl Report {
    /// Each lab's JSON report, in run order.
    fn labs(&self) -> &[Value] {
        self.json["labs"].as_array().map_or(&[], Vec::as_slice)
    }

    /// Lab `i`'s outcome kind (`completed`, `stopped`, `script_error`...) and message.
    fn outcome(&self, i: usize) -> (String, String) {
        let outcome = &self.labs()[i]["outcome"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        (text(&outcome["kind"]), text(&outcome["message"]))
    }

    fn passed(&self, i: usize) -> bool {
        self.labs()[i]["passed"] == true
    }

    /// Lab `i`'s checks as (name, passed).
    fn checks(&self, i: usize) -> Vec<(String, bool)> {
        self.labs()[i]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == "check")
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default().into(),
                    e["pass"] == true,
                )
            })
            .collect()
    }

    /// Everything a reader needs when an assertion fails.
    fn context(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.run.code,
            self.run.stdout,
            self.run
                .stderr
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        )
    }
}

/// `cachelab run ARGS FILES --json` in a TMPDIR of its own, which must be left empty and
/// with no process running under it when cachelab has exited.
fn run(args: &[&str], files: &[PathBuf]) -> Report {
    let tmp = private_tmpdir();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("report.json");
    let run = Run::of(
        cachelab()
            .arg("run")
            .args(args)
            .arg("--json")
            .arg(&json)
            .args(files)
            .env("TMPDIR", tmp.path()),
    );
    let json = std::fs::read_to_string(&json)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    let report = Report { run, json };
    assert!(
        common::processes_mentioning(tmp.path()).is_empty(),
        "processes outlived cachelab: {:?}\n{}",
        common::processes_mentioning(tmp.path()),
        report.context()
    );
    assert_nothing_left(tmp.path());
    report
}

/// A lab that must pass after the ones under test: the stack answers as it should.
fn healthy(labs: &Labs, name: &str) -> PathBuf {
    labs.add(
        name,
        r#"// Runs after
let r = http_get("/users/1");
check(`a read answers 200 (${r.status})`, r.status == 200);
check("Postgres answers the lab", db_get(1).id == 1);
"#,
    )
}

// ---- 10: a lab stopped by --timeout is an error, whatever it does after ----------------

#[test]
fn a_lab_stopped_by_its_timeout_is_an_error_even_when_it_catches_the_stop_and_checks_after() {
    let labs = Labs::new();
    let caught = labs.add(
        "1-caught.rhai",
        "// Catches its stop\ntry { sleep(1000000) } catch (e) { check(\"after the stop\", true) }\n",
    );
    let in_a_function = labs.add(
        "2-in-a-function.rhai",
        r#"// Catches its stop inside a function
fn wait() { sleep(1000000) }
let caught = false;
try { wait() } catch (e) { caught = true; }
check("the stop was caught", caught);
"#,
    );
    let after = healthy(&labs, "3-after.rhai");
    let r = run(&["--timeout", "2"], &[caught, in_a_function, after]);
    assert_eq!(r.run.code, 2, "{}", r.context());
    for lab in 0..2 {
        let (kind, message) = r.outcome(lab);
        assert_eq!(kind, "stopped", "lab {lab}: {message}\n{}", r.context());
        assert!(message.contains("--timeout"), "{message}");
        assert!(
            r.checks(lab).is_empty(),
            "no check made after the stop counts: {:?}",
            r.checks(lab)
        );
        assert!(!r.passed(lab));
    }
    assert!(r.passed(2), "the next lab runs: {}", r.context());
}
