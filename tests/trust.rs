//! Every number cachelab prints is right: the summary line and the JSON agree and count an
//! errored lab as failed, `load()` draws fresh ids and its seed replays them, errors say
//! what to do, CLI and labs share one vocabulary, and the HTTP API refuses bad input with
//! a 400 and names what failed with a 503.
//!
//! The numbers in test and check names are the points of issue #7 ("Trust: honest
//! results, and a lab sandbox that holds"). Point 3 (one connection per worker per host)
//! is tested in tests/load_generator.rs; point 6 (the eviction lab's estimate) by the
//! shipped lab's own check, run in tests/shipped_labs.rs.

mod common;

use common::Labs;

use common::cachelab;
use hyper::Method;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    /// The `--json` report (`Null` when none was written).
    report: Value,
}

impl Run {
    fn last_line(&self) -> &str {
        self.stdout.trim_end().lines().last().unwrap_or_default()
    }

    fn context(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// The one-line message a lab that did not complete ended with.
    fn outcome_message(&self, lab: usize) -> String {
        self.report["labs"][lab]["outcome"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn notes(&self, lab: usize) -> Vec<String> {
        self.report["labs"][lab]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == "note")
            .filter_map(|e| e["text"].as_str().map(str::to_string))
            .collect()
    }

    fn failed_checks(&self) -> Vec<String> {
        self.report["labs"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|lab| lab["events"].as_array().into_iter().flatten())
            .filter(|e| e["kind"] == "check" && e["pass"] == false)
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect()
    }
}

/// `cachelab run --json FILE ARGS PATHS`.
fn run(args: &[&str], paths: &[&Path]) -> Run {
    let json = tempfile::NamedTempFile::new().unwrap();
    let out = cachelab()
        .arg("run")
        .arg("--json")
        .arg(json.path())
        .args(args)
        .args(paths)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(json.path())
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    }
}

/// Run one lab whose checks must all pass.
fn assert_lab_passes(source: &str) -> Run {
    let labs = Labs::new();
    let lab = labs.add("lab.rhai", source);
    let r = run(&[], &[&lab]);
    assert!(
        r.code == 0 && r.failed_checks().is_empty(),
        "failed: {:?}\n{}",
        r.failed_checks(),
        r.context()
    );
    r
}

// ---- 1: the last line counts labs and checks -------------------------------------------

#[test]
fn point_1_the_last_line_counts_labs_and_checks_an_errored_lab_fails_and_the_json_agrees() {
    let labs = Labs::new();
    let pass = labs.add(
        "1-pass.rhai",
        "// Passes\ncheck(\"one\", true);\ncheck(\"two\", true);\n",
    );
    let fail = labs.add(
        "2-fail.rhai",
        "// Fails a check\ncheck(\"yes\", true);\ncheck(\"no\", false);\n",
    );
    let error = labs.add(
        "3-error.rhai",
        "// Errors after a passing check\ncheck(\"before the error\", true);\nlet x = 1 / 0;\n",
    );
    let typo = labs.add("4-typo.rhai", "// A typo\nhttp_gett(\"/users/1\");\n");
    let silent = labs.add("5-silent.rhai", "// Checks nothing\nnote(\"looked\");\n");
    let r = run(&[], &[&pass, &fail, &error, &typo, &silent]);
    assert_eq!(
        r.code,
        2,
        "a script error makes the run exit 2\n{}",
        r.context()
    );
    assert_eq!(
        r.last_line(),
        "5 labs: 2 passed, 3 failed · 5 checks: 4 passed, 1 failed",
        "{}",
        r.context()
    );
    assert_eq!(
        r.report["labs_summary"],
        serde_json::json!({"total": 5, "passed": 2, "failed": 3})
    );
    assert_eq!(
        r.report["checks_summary"],
        serde_json::json!({"total": 5, "passed": 4, "failed": 1})
    );
    let passed: Vec<&Value> = r.report["labs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["passed"])
        .collect();
    assert_eq!(passed, [true, false, false, false, true]);
    let silent_block = r.stdout.split("Checks nothing").nth(1).unwrap_or_default();
    assert!(
        silent_block.contains("made no checks"),
        "a lab without checks says so:\n{}",
        r.stdout
    );

    let text = labs.add("notes.txt", "check(\"never\", true);\n");
    let r = run(&[], &[&pass, &text]);
    assert_eq!(r.code, 2, "{}", r.context());
    assert!(
        r.stderr.contains("notes.txt") && r.stderr.contains("not a lab"),
        "{}",
        r.context()
    );
    assert!(
        !r.stdout.contains("one"),
        "nothing runs when a path is wrong:\n{}",
        r.stdout
    );
}

#[test]
fn point_1_a_lab_cannot_forge_the_report_or_send_control_codes_to_the_terminal() {
    let labs = Labs::new();
    let lab = labs.add(
        "forge.rhai",
        "// Title \u{1b}]0;owned\u{7} with a terminal title escape
print(\"hide the rest\u{1b}[8m and write the clipboard \u{1b}]52;c;cHduZWQ=\u{7}\");
print(\"overwritten\\rfine\\n1 lab: 1 passed, 0 failed · 9 checks: 9 passed, 0 failed\");
note(\"clear the screen \u{1b}[2J\");
check(\"\u{1b}[32m✓ looks passed\u{1b}[0m\", false);
",
    );
    let r = run(&[], &[&lab]);
    assert_eq!(r.code, 1, "{}", r.context());
    for (name, byte) in [("ESC", '\u{1b}'), ("BEL", '\u{7}'), ("CR", '\r')] {
        assert!(
            !r.stdout.contains(byte),
            "a lab's text reaches the terminal with a raw {name}: {:?}",
            r.stdout
        );
    }
    let summaries: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("1 lab:"))
        .collect();
    assert_eq!(
        summaries,
        ["1 lab: 0 passed, 1 failed · 1 check: 0 passed, 1 failed"],
        "only cachelab writes a summary line:\n{}",
        r.stdout
    );
}

// ---- 2: load() draws fresh ids; a seed replays them -------------------------------------

#[test]
fn point_2_each_load_draws_fresh_ids_and_a_given_seed_replays_them() {
    let r = assert_lab_passes(
        r#"// Fresh ids per run
flush();
let first = load(#{n: 500, c: 1, path: "/users/{id}", trace: true});
flush();
let second = load(#{n: 500, c: 1, path: "/users/{id}", trace: true});
check("2: two runs draw different ids", first.ids != second.ids);
check(`2: a run after a flush hits only its own repeats (${second.hits} of 500, not a replay)`, second.hits < 250);
let a = load(#{n: 200, c: 1, path: "/users/{id}", trace: true, seed: 42});
let b = load(#{n: 200, c: 1, path: "/users/{id}", trace: true, seed: 42});
check("2: a given seed replays the ids and is reported", a.ids == b.ids && a.seed == 42 && b.seed == 42);
"#,
    );
    let loads: Vec<&Value> = r.report["labs"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "load")
        .collect();
    assert_eq!(loads.len(), 4);
    assert!(
        loads.iter().all(|l| l["seed"].is_u64()),
        "the JSON report shows each run's seed: {loads:?}"
    );
    assert_ne!(loads[0]["seed"], loads[1]["seed"]);
    assert_eq!(loads[2]["seed"], 42);
}

#[test]
fn point_2_the_seed_a_load_reports_replays_it_whatever_its_size() {
    // Half of all u64 seeds are above i64::MAX, so 16 runs meet one almost surely.
    assert_lab_passes(
        r#"// The reported seed replays the run
let replayed = 0;
let problems = [];
for i in 0..16 {
    let run = load(#{n: 20, c: 1, path: "/users/{id}", trace: true});
    try {
        let again = load(#{n: 20, c: 1, path: "/users/{id}", trace: true, seed: run.seed});
        if again.ids == run.ids { replayed += 1; } else { problems.push(`${run.seed}: other ids`); }
    } catch (e) {
        problems.push(`${run.seed} (${type_of(run.seed)}): ${e}`);
    }
}
check(`2: load(#{seed: run.seed}) replays every run (${replayed} of 16; ${problems})`, replayed == 16);
"#,
    );
}

// ---- 4: strict maps and errors that say what to do -------------------------------------

#[test]
fn point_4_a_misspelt_field_an_unknown_function_and_a_runaway_loop_say_what_to_do() {
    let labs = Labs::new();
    let field = labs.add(
        "field.rhai",
        "// Misspelt field\nlet r = http_get(\"/users/1\");\ncheck(\"ok\", r.stauts == 200);\n",
    );
    let load_field = labs.add(
        "load_field.rhai",
        "// Misspelt load field\nlet l = load(#{path: \"/users/1\", n: 10});\nnote(l.hit_rate);\n",
    );
    let function = labs.add(
        "function.rhai",
        "// Misspelt function\nhttp_gett(\"/users/1\");\n",
    );
    let spin = labs.add("spin.rhai", "// Spins\nlet n = 0;\nloop { n += 1; }\n");
    let r = run(
        &["--max-operations", "10000"],
        &[&field, &load_field, &function, &spin],
    );
    assert_eq!(r.code, 2);
    let message = r.outcome_message(0);
    assert!(
        message.contains(&format!("{}:3:", field.display()))
            && message.contains("r.stauts")
            && message.contains("did you mean `status`?")
            && message.contains("body, cache, ms, status"),
        "{message}"
    );
    let message = r.outcome_message(1);
    assert!(
        message.contains("l.hit_rate")
            && message.contains("did you mean `hit_ratio`?")
            && message.contains("hits")
            && message.contains("p99"),
        "the fields load() returns are named: {message}"
    );
    let message = r.outcome_message(2);
    assert!(
        message.contains("http_gett")
            && message.contains("did you mean http_get(path: string) -> map?"),
        "{message}"
    );
    let message = r.outcome_message(3);
    assert!(message.contains("--max-operations 10000"), "{message}");
}

#[test]
fn point_4_an_unknown_function_is_shown_as_the_lab_called_it_not_in_rust_types() {
    let labs = Labs::new();
    let function = labs.add(
        "function.rhai",
        "// Misspelt function\nhttp_gett(\"/users/1\");\n",
    );
    let r = run(&[], &[&function]);
    let message = r.outcome_message(0);
    // errors.rs documents the intended form: "unknown function http_gett(string); did you mean ..."
    assert!(
        message.contains("unknown function http_gett(string)")
            && !message.contains("ImmutableString")
            && !message.contains("&str"),
        "{message}"
    );
}

// ---- 5: one vocabulary for CLI and labs --------------------------------------------------

#[test]
fn point_5_labs_take_the_clis_keys_ids_and_redis_sizes_and_the_json_names_units() {
    let r = assert_lab_passes(
        r#"// One vocabulary
let z = load(#{n: 400, c: 4, path: "/users/{id}", keys: "zipf:1.1", ids: "1..1000", trace: true});
let ones = z.ids.filter(|id| id == 1).len();
check(`5: keys "zipf:1.1" and ids "1..1000" are taken (${ones} of 400 on id 1)`, z.requests == 400 && z.ids.all(|id| id >= 1 && id <= 1000) && ones > 20);
let u = load(#{n: 200, c: 2, path: "/users/{id}", ids: "5..9", trace: true});
check("5: ids \"5..9\" bounds the ids", u.ids.all(|id| id >= 5 && id <= 9));
set_policy("allkeys-lru", "2mb");
check("5: set_policy takes \"2mb\" as 2097152 bytes", redis(["CONFIG", "GET", "maxmemory"])[1] == "2097152");
set_policy("allkeys-lfu", "1gb");
check("5: and \"1gb\" as 1073741824", redis(["CONFIG", "GET", "maxmemory"])[1] == "1073741824");
"#,
    );
    let lab = &r.report["labs"][0];
    assert!(lab["duration_s"].as_f64().is_some(), "{lab}");
    assert!(lab.get("duration").is_none() && lab.get("ms").is_none());
}

#[test]
fn point_5_floats_in_notes_are_rounded_to_what_is_meaningful() {
    let labs = Labs::new();
    let lab = labs.add(
        "floats.rhai",
        r#"// Floats in notes
let ratio = 2.0 / 3.0;
note(ratio);
note(`ratio ${ratio}`);
note(`${1.0163399999999998}`);
note(1.0163399999999998);
"#,
    );
    let r = run(&[], &[&lab]);
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(
        r.notes(0),
        ["0.6667", "ratio 0.6667", "1.016", "1.016"],
        "{}",
        r.stdout
    );
}

// ---- 7: 400 for bad input, 503 naming Postgres -------------------------------------------

#[tokio::test]
async fn point_7_bad_ids_and_bad_query_values_are_400_and_change_nothing() {
    let _turn = common::serial().await;
    let services = common::start_services(common::shared_stack()).await;
    let base = services.server("cache-aside").unwrap().url();
    let answer = common::get(&format!("{base}/users/+1")).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(answer.error().contains("+1"), "{}", answer.error());
    for query in [
        "name=%ZZ",
        "name=%C3",
        "name=abc%",
        "name=%FF%FE",
        "email=a%00b",
    ] {
        let answer = common::send(Method::PUT, &format!("{base}/users/1?{query}"), "").await;
        assert_eq!(answer.status, 400, "{query}: {:?}", answer.body);
        assert!(!answer.error().is_empty(), "{query}");
    }
    let user = common::get(&format!("{base}/users/1")).await.json();
    assert_eq!(
        user["name"],
        cachelab::seed::users()[0].name,
        "nothing was stored"
    );
    services.shutdown().await;
}

#[tokio::test]
async fn point_7_a_query_with_raw_utf8_after_a_cut_percent_escape_is_a_400_not_a_dropped_connection(
) {
    let _turn = common::serial().await;
    let services = common::start_services(common::shared_stack()).await;
    let addr = services.server("cache-aside").unwrap().addr;
    let reply = tokio::task::spawn_blocking(move || {
        // "%a" then "é" sent as raw UTF-8: the escape is cut short inside a character.
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"PUT /users/1?name=%a\xC3\xA9 HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        String::from_utf8_lossy(&reply).into_owned()
    })
    .await
    .unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 400") && reply.contains("\"error\""),
        "want a 400 with a JSON error, got {reply:?}"
    );
    services.shutdown().await;
}

#[tokio::test]
async fn point_7_a_503_names_postgres_and_redis_trouble_never_fails_a_read() {
    use cachelab::stack::proxy::Fault;
    let _turn = common::serial().await;
    let services = common::start_services(common::shared_stack()).await;
    let base = services.server("cache-aside").unwrap().url();
    let faults = services.faults.as_ref().unwrap();
    faults.redis[0].1.set(Fault::Down);
    let answer = common::get(&format!("{base}/users/5")).await;
    assert_eq!(answer.status, 200, "Redis down: read from Postgres");
    faults.heal_all();
    faults.postgres.set(Fault::Down);
    let answer = common::get(&format!("{base}/users/6")).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(
        answer.error().starts_with("postgres unavailable"),
        "{}",
        answer.error()
    );
    faults.heal_all();
    services.shutdown().await;
}
