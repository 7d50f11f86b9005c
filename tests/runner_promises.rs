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
    let left = common::processes_mentioning(tmp.path());
    // Ended here, so a failing test leaves no frozen server on the machine.
    for pid in &left {
        // SAFETY: signalling processes the cachelab under test started and left behind.
        unsafe {
            libc::kill(*pid as i32, libc::SIGCONT);
            libc::kill(*pid as i32, libc::SIGKILL);
        }
    }
    assert!(
        left.is_empty(),
        "processes outlived cachelab: {left:?}\n{}",
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

// ---- 6: a lab cannot crash the run ----------------------------------------------------

#[test]
fn a_lab_that_nests_arrays_30000_deep_is_a_lab_error_and_the_next_lab_runs_and_the_reports_are_written(
) {
    let labs = Labs::new();
    let nests = labs.add(
        "1-nests.rhai",
        "// Nests arrays 30,000 deep\nlet a = []; for i in 0..30000 { a = [a]; }\ncheck(\"built\", true);\n",
    );
    let after = healthy(&labs, "2-after.rhai");
    let html = labs.dir.path().join("report.html");
    let r = run(
        &["--timeout", "5", "--html", html.to_str().unwrap()],
        &[nests, after],
    );
    assert_eq!(r.run.code, 2, "{}", r.context());
    let (kind, message) = r.outcome(0);
    assert_eq!(kind, "stopped", "{message}\n{}", r.context());
    assert!(r.passed(1), "the next lab runs: {}", r.context());
    let page = std::fs::read_to_string(&html).expect("the HTML report is written");
    assert!(page.contains("Nests arrays 30,000 deep"), "{page}");
}

#[test]
fn values_nested_thousands_deep_are_built_printed_compared_and_dropped_and_lab_functions_refuse_them_past_128_levels(
) {
    let labs = Labs::new();
    let arrays = labs.add(
        "1-arrays.rhai",
        r#"// Arrays 2,000 deep, printed and compared
let a = []; for i in 0..2000 { a = [a]; }
print(`${a}`.len());
check("a deep array equals itself", a == a);
"#,
    );
    let curried = labs.add(
        "2-curried.rhai",
        r#"// A function pointer curried 50,000 deep
let f = Fn("x"); for i in 0..50000 { f = Fn("x").curry(take(f)); }
check("the chain is built (and dropped with the lab)", true);
"#,
    );
    let noted = labs.add(
        "3-noted.rhai",
        "// A note of an array 200 deep\nlet a = []; for i in 0..200 { a = [a]; }\nnote(a);\n",
    );
    let compared = labs.add(
        "4-compared.rhai",
        "// assert_eq of an array 200 deep\nlet a = []; for i in 0..200 { a = [a]; }\nassert_eq(a, a, \"same\");\n",
    );
    let after = healthy(&labs, "5-after.rhai");
    let r = run(&[], &[arrays, curried, noted, compared, after]);
    assert_eq!(r.run.code, 2, "{}", r.context());
    assert!(r.passed(0), "{}", r.context());
    assert!(r.passed(1), "{}", r.context());
    for lab in [2, 3] {
        let (kind, message) = r.outcome(lab);
        assert_eq!(kind, "script_error", "{message}");
        assert!(
            message.contains("nests arrays or maps more than 128 levels deep"),
            "{message}"
        );
    }
    assert!(r.passed(4), "the next lab runs: {}", r.context());
}

// ---- 8: nothing a lab scheduled outlives it ------------------------------------------

#[test]
fn a_second_delete_or_a_shared_read_scheduled_by_one_lab_does_not_reach_the_next_lab() {
    let labs = Labs::new();
    let schedules_a_delete = labs.add(
        "1-schedules-a-delete.rhai",
        r#"// Schedules a second DEL of user:4 five seconds out
set_invalidation("double-delete");
set_double_delete_ms(5000);
check("the PUT is acknowledged", http_put("/users/4", #{name: "Scheduled"}).status == 200);
"#,
    );
    let keeps_its_key = labs.add(
        "2-keeps-its-key.rhai",
        r#"// Caches user:4 and finds it still cached 6 s later
check("the first read fills the cache", http_get("/users/4").cache == "MISS");
sleep(6000);
check("user:4 is still cached 6 s in (no DEL from the last lab)", redis_get("user:4") != ());
"#,
    );
    let leaves_a_slow_read = labs.add(
        "3-leaves-a-slow-read.rhai",
        r#"// Leaves a shared read of user:5 that fills the cache 6 s out
set_protection("singleflight");
set_db_delay(6000);
check("the PUT is acknowledged", http_put("/users/5", #{name: "From the last lab"}).status == 200);
http_get_async("/users/5");
sleep(300);
"#,
    );
    let sees_no_fill = labs.add(
        "4-sees-no-fill.rhai",
        r#"// Finds user:5 never filled by the last lab's read
sleep(7000);
check("user:5 is not cached (no fill from the last lab)", redis_get("user:5") == ());
"#,
    );
    let r = run(
        &[],
        &[
            schedules_a_delete,
            keeps_its_key,
            leaves_a_slow_read,
            sees_no_fill,
        ],
    );
    assert_eq!(r.run.code, 0, "{}", r.context());
}

// ---- 7: every lab starts with servers that work ----------------------------------------

#[test]
fn after_a_lab_stops_or_restarts_redis_the_next_labs_first_write_behind_put_is_acknowledged_and_its_reads_hit(
) {
    let labs = Labs::new();
    let stops = labs.add(
        "stops.rhai",
        "// Stops Redis and leaves it stopped\nredis_stop();\n",
    );
    let restarts = labs.add(
        "restarts.rhai",
        "// Restarts Redis 30 times\nfor i in 0..30 { redis_restart(); }\n",
    );
    let writes = labs.add(
        "writes.rhai",
        r#"// Writes through write-behind, then reads twice
use_strategy("write-behind");
let put = http_put("/users/3", #{name: "Fresh"});
check(`the first PUT is acknowledged (${put.status} ${put.body})`, put.status == 200);
let first = http_get("/users/7");
let second = http_get("/users/7");
check(`the reads are a MISS, then a HIT (${first.cache}, ${second.cache})`, first.cache == "MISS" && second.cache == "HIT");
"#,
    );
    // Each pair failed about one run in three before (the breaker opened on the stale
    // connection the reset left): ten pairs, and the restarts, fail reliably.
    let mut files = Vec::new();
    for _ in 0..10 {
        files.push(stops.clone());
        files.push(writes.clone());
    }
    files.push(restarts);
    files.push(writes.clone());
    let r = run(&[], &files);
    assert_eq!(r.run.code, 0, "{}", r.context());
}

#[test]
fn after_a_lab_pauses_and_stops_postgres_the_next_lab_runs_and_no_frozen_backend_outlives_cachelab()
{
    let labs = Labs::new();
    let pauses_and_stops = labs.add(
        "1-pauses-and-stops.rhai",
        "// Pauses Postgres for a minute, then stops it\npause(\"postgres\", 60000);\ndb_stop();\n",
    );
    let after = healthy(&labs, "2-after.rhai");
    let pauses_and_stops_redis = labs.add(
        "3-pauses-and-stops-redis.rhai",
        "// Pauses Redis for a minute, then stops it\npause(\"redis\", 60000);\nredis_stop();\n",
    );
    let after_redis = healthy(&labs, "4-after.rhai");
    let pauses_at_the_end = labs.add(
        "5-pauses-at-the-end.rhai",
        "// Ends with Postgres paused for ten minutes\npause(\"postgres\", 600000);\n",
    );
    // `run` also asserts that no process of the stack outlives cachelab.
    let r = run(
        &[],
        &[
            pauses_and_stops,
            after,
            pauses_and_stops_redis,
            after_redis,
            pauses_at_the_end,
        ],
    );
    assert_eq!(r.run.code, 0, "{}", r.context());
}

#[test]
fn a_pause_left_behind_by_one_lab_does_not_cut_short_a_pause_in_the_next() {
    let labs = Labs::new();
    let pauses = labs.add(
        "1-pauses.rhai",
        "// Pauses Postgres for 4 s and ends at once\npause(\"postgres\", 4000);\n",
    );
    let pauses_longer = labs.add(
        "2-pauses-longer.rhai",
        r#"// Pauses Postgres for a minute and reads an uncached user 5 s in
pause("postgres", 60000);
sleep(5000);
let r = http_get("/users/900");
check(`Postgres is still paused 5 s in: an uncached read is 503 (${r.status})`, r.status == 503);
"#,
    );
    let after = healthy(&labs, "3-after.rhai");
    let r = run(&[], &[pauses, pauses_longer, after]);
    assert_eq!(r.run.code, 0, "{}", r.context());
}

// ---- 9: stack changes return when the servers can use them -----------------------------

#[test]
fn right_after_a_redis_restart_start_or_heal_the_next_read_fills_the_cache_and_the_one_after_hits()
{
    let labs = Labs::new();
    let lab = labs.add(
        "stack-changes.rhai",
        r#"// The cache works as soon as a stack change returns
let missed = 0;
for i in 0..10 {
    redis_restart();
    let id = 10 + i;
    http_get(`/users/${id}`);
    if http_get(`/users/${id}`).cache != "HIT" { missed += 1; }
}
check(`after redis_restart() the second read hits (${missed} of 10 did not)`, missed == 0);
let missed = 0;
for i in 0..5 {
    redis_stop();
    redis_start();
    let id = 30 + i;
    http_get(`/users/${id}`);
    if http_get(`/users/${id}`).cache != "HIT" { missed += 1; }
}
check(`after redis_start() the second read hits (${missed} of 5 did not)`, missed == 0);
let failed = 0;
for i in 0..5 {
    db_stop();
    db_start();
    if http_put(`/users/${40 + i}`, #{name: "After the start"}).status != 200 { failed += 1; }
    if http_get(`/users/${50 + i}`).status != 200 { failed += 1; }
}
check(`after db_start() the next PUT and uncached read answer 200 (${failed} of 10 did not)`, failed == 0);
let missed = 0;
for i in 0..5 {
    fault("redis", "down");
    http_get("/users/1");
    heal();
    let id = 60 + i;
    http_get(`/users/${id}`);
    if http_get(`/users/${id}`).cache != "HIT" { missed += 1; }
}
check(`after heal() the second read hits (${missed} of 5 did not)`, missed == 0);
"#,
    );
    let r = run(&[], &[lab]);
    assert_eq!(r.run.code, 0, "{}", r.context());
}

// ---- Also: db_get on a frozen Postgres, save_history into a planted file ---------------

#[test]
fn db_get_on_a_paused_postgres_is_a_lab_error_within_the_servers_bound_not_a_wait_until_the_timeout(
) {
    let labs = Labs::new();
    let lab = labs.add(
        "1-db-get-paused.rhai",
        r#"// db_get while Postgres is paused
pause("postgres", 20000);
let error = "";
try { db_get(1); } catch (e) { error = `${e}`; }
check(`db_get fails naming the bound (${error})`, error.contains("db_get: Postgres did not answer within 2000 ms"));
"#,
    );
    let after = healthy(&labs, "2-after.rhai");
    let r = run(&["--timeout", "8"], &[lab, after]);
    assert_eq!(r.run.code, 0, "{}", r.context());
}

#[test]
fn save_history_refuses_a_symlink_or_a_fifo_planted_in_the_history_dir_and_writes_a_plain_file() {
    let labs = Labs::new();
    let history = labs.dir.path().join("history");
    std::fs::create_dir(&history).unwrap();
    let outside = labs.dir.path().join("outside.txt");
    std::fs::write(&outside, "keep me\n").unwrap();
    std::os::unix::fs::symlink(&outside, history.join("planted.jsonl")).unwrap();
    let fifo = std::ffi::CString::new(history.join("fifo.jsonl").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let lab = labs.add(
        "history.rhai",
        r#"// Saves a history over a planted symlink and a FIFO
load(#{path: "/users/{id}", ids: [1, 5], n: 20, c: 2, history: true});
for name in ["planted.jsonl", "fifo.jsonl"] {
    let error = "";
    try { save_history(name); } catch (e) { error = `${e}`; }
    check(`save_history(${name}) is refused (${error})`, error.contains("refusing"));
}
save_history("kept.jsonl");
"#,
    );
    let r = run(
        &[
            "--timeout",
            "10",
            "--history-dir",
            history.to_str().unwrap(),
        ],
        &[lab],
    );
    assert_eq!(r.run.code, 0, "{}", r.context());
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me\n");
    let kept = std::fs::read_to_string(history.join("kept.jsonl")).unwrap();
    assert!(kept.lines().count() >= 20, "{kept}");
}
