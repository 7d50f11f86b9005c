//! `cachelab run` as a user runs it: fresh state per lab, exit codes, error positions,
//! timeouts and limits, the JSON report, external-mode safety, `cachelab api`, every lab
//! function, and the shipped labs.

mod common;

use common::{run, Labs};

use common::{assert_nothing_left, cachelab, private_tmpdir};
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn each_lab_starts_from_redis_flushed_table_reloaded_knobs_default_and_counters_zero() {
    let labs = Labs::new();
    let dirty = labs.add(
        "1-dirty.rhai",
        r#"// Leaves a mess
        http_put("/users/1", #{name: "Changed"});
        http_post("/users", #{name: "Extra", email: "extra@example.com"});
        http_get("/users/2");
        set_ttl(5); set_db_delay(3000); set_padding(300);
        set_policy("allkeys-lru", 50000000);
        redis(["SET", "stray", "1"]);
        check("the mess is made", db_get(1).name == "Changed" && redis_keys("*").len() == 2);
        "#,
    );
    let fresh = labs.add(
        "2-fresh.rhai",
        r#"// Finds a fresh state
        check("the users table is reloaded", db_get(1).name == users()[0].name);
        check("rows added by the last lab are gone", db_query("SELECT count(*) AS n FROM users")[0].n == users().len());
        check("Redis is empty", redis_keys("*").len() == 0);
        check("counters are zero", stats().hits == 0 && stats().misses == 0 && stats("write-through").db_writes == 0 && stats("cache-aside").db_writes == 0);
        check("the eviction policy is back to noeviction", redis(["CONFIG", "GET", "maxmemory-policy"])[1] == "noeviction");
        check("maxmemory is back to 0", redis(["CONFIG", "GET", "maxmemory"])[1] == "0");
        let miss = http_get("/users/3");
        check("the db delay is back to 0 (not 3 s)", miss.ms < 1500.0);
        check("the TTL is back to 60", redis_ttl("user:3") > 55);
        check("padding is back to 0 (the cached row is ~110 bytes, not 300+)", redis(["STRLEN", "user:3"]) < 200);
        check("relative paths go to cache-aside again", miss.cache == "MISS" && stats("cache-aside").misses == 1);
        "#,
    );
    let r = run(&[], &[&dirty, &fresh]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("2 labs: 2 passed, 0 failed · 11 checks: 11 passed, 0 failed"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .lines()
            .last()
            .unwrap()
            .ends_with("11 checks: 11 passed, 0 failed"),
        "the last line sums up: {}",
        r.stdout
    );
}

#[test]
fn exit_codes_0_pass_1_check_or_assert_failed_2_script_error_and_a_failing_lab_does_not_stop_the_next(
) {
    let labs = Labs::new();
    let pass = labs.add("pass.rhai", "// Passes\ncheck(\"one is one\", 1 == 1);\n");
    let fail = labs.add(
        "fail.rhai",
        "// Fails a check\ncheck(\"two is three\", 2 == 3);\ncheck(\"still runs after a failed check\", true);\n",
    );
    let assert = labs.add(
        "assert.rhai",
        "// Stops at an assert\ncheck(\"before\", true);\nassert(1 > 2, \"one is not above two\");\ncheck(\"never reached\", true);\n",
    );
    let error = labs.add("error.rhai", "// Script error\nlet a = 1;\nhttp_get(5);\n");
    let parse = labs.add("parse.rhai", "// Parse error\nlet x = ;\n");

    let r = run(&[], &[&pass]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("✓ one is one"));

    let r = run(&[], &[&fail, &pass]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("✗ two is three (line 2)"), "{}", r.stdout);
    assert!(r.stdout.contains("✓ still runs after a failed check"));
    assert!(
        r.stdout.contains("✓ one is one"),
        "the next lab ran: {}",
        r.stdout
    );
    assert!(
        r.stdout
            .ends_with("2 labs: 1 passed, 1 failed · 3 checks: 2 passed, 1 failed\n"),
        "{}",
        r.stdout
    );

    let r = run(&[], &[&assert]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(!r.stdout.contains("never reached"), "{}", r.stdout);
    let at = format!(
        "assert failed at {}:3:1: one is not above two",
        assert.display()
    );
    assert!(r.stdout.contains(&at), "{at} in\n{}", r.stdout);

    let r = run(&[], &[&error, &pass]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    let at = format!(
        "{}:3:1: http_get: argument `path` must be a string, got int 5",
        error.display()
    );
    assert!(r.stdout.contains(&at), "{at} in\n{}", r.stdout);
    assert!(
        r.stdout.contains("✓ one is one"),
        "the next lab ran: {}",
        r.stdout
    );

    let r = run(&[], &[&parse]);
    assert_eq!(r.code, 2);
    assert!(
        r.stdout.contains(&format!("{}:2:9:", parse.display())),
        "{}",
        r.stdout
    );

    let r = run(&[], &[&fail, &error]);
    assert_eq!(r.code, 2, "a script error outranks a failed check");

    let r = run(&[], &[Path::new("/no/such/lab.rhai")]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no such lab file"), "{}", r.stderr);
}

#[test]
fn wrong_arguments_name_the_function_and_the_argument() {
    let labs = Labs::new();
    let cases = [
        (
            "stats(5);",
            "stats: argument `name` must be a string, got int 5",
        ),
        (
            "use_strategy(\"read-through\");",
            "use_strategy: argument `name` must be one of cache-aside, write-through, write-behind, refresh-ahead",
        ),
        (
            "set_policy(\"lru\");",
            "set_policy: argument `policy` must be one of noeviction, allkeys-lru",
        ),
        (
            "http_put(\"/users/1\", \"name=x\");",
            "http_put: argument `params` must be a map",
        ),
        (
            "load(#{pathz: \"/users/1\"});",
            "load: unknown option `pathz`",
        ),
        (
            "set_protection(\"mutex\");",
            "set_protection: unknown protection \"mutex\"; known: none, singleflight, lock, xfetch, swr",
        ),
        (
            "stampede(\"/users/1\", -3);",
            "stampede: argument `n` must be a non-negative integer",
        ),
        ("http_get(\"users/1\");", "must start with /"),
        (
            "db_query(\"SELEKT 1\");",
            "db_query: syntax error at or near \"SELEKT\"",
        ),
    ];
    for (call, message) in cases {
        let lab = labs.add("wrong.rhai", &format!("// Wrong argument\n{call}\n"));
        let r = run(&[], &[&lab]);
        assert_eq!(r.code, 2, "{call}: {}", r.stdout);
        let at = format!("{}:2:1: ", lab.display());
        assert!(
            r.stdout.contains(&at) && r.stdout.contains(message),
            "{call}: wanted {at}{message} in\n{}",
            r.stdout
        );
    }
}

#[test]
fn a_runaway_lab_is_stopped_by_timeout_or_operation_limit_and_the_stack_is_still_torn_down() {
    let labs = Labs::new();
    let spin = labs.add("spin.rhai", "// Spins\nlet n = 0;\nloop { n += 1; }\n");
    let nap = labs.add("nap.rhai", "// Sleeps too long\nsleep(60000);\n");
    let after = labs.add(
        "after.rhai",
        "// Runs after\ncheck(\"the next lab still runs\", true);\n",
    );
    let tmp = private_tmpdir();

    let started = Instant::now();
    let out = cachelab()
        .args(["run", "--timeout", "1"])
        .args([&spin, &nap, &after])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stdout.contains(&format!("{}:3:", spin.display()))
            && stdout.contains("ran past its --timeout"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{}:2:1: the lab ran past its --timeout",
            nap.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("✓ the next lab still runs"), "{stdout}");
    assert_nothing_left(tmp.path());

    let r = run(&["--max-operations", "10000"], &[&spin]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!("{}:3:", spin.display()))
            && r.stdout
                .contains("more than 10000 operations (--max-operations 10000)"),
        "{}",
        r.stdout
    );
}

#[test]
fn json_report_has_each_lab_with_file_title_checks_notes_and_duration() {
    let labs = Labs::new();
    let lab = labs.add(
        "report.rhai",
        "// Report shape\n// second line\ncheck(\"yes\", true);\ncheck(\"no\", false);\nnote(\"seen\");\n",
    );
    let json_path = labs.dir.path().join("report.json");
    let r = run(&["--json", json_path.to_str().unwrap()], &[&lab]);
    assert_eq!(r.code, 1);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let first = &report["labs"][0];
    assert_eq!(first["file"], lab.to_str().unwrap());
    assert_eq!(first["title"], "Report shape");
    assert_eq!(first["description"], "second line");
    let events = first["events"].as_array().unwrap();
    assert_eq!(events[0]["kind"], "check");
    assert_eq!(events[0]["name"], "yes");
    assert_eq!(events[0]["pass"], true);
    assert_eq!(events[1]["pass"], false);
    assert_eq!(events[1]["line"], 4);
    assert_eq!(
        (events[2]["kind"].as_str(), events[2]["text"].as_str()),
        (Some("note"), Some("seen"))
    );
    assert!(first["duration_s"].as_f64().unwrap() > 0.0);
    assert_eq!(first["passed"], false);
    assert_eq!(
        first["checks"],
        serde_json::json!({"total": 2, "passed": 1, "failed": 1})
    );
    assert_eq!(
        report["labs_summary"],
        serde_json::json!({"total": 1, "passed": 0, "failed": 1})
    );
    assert_eq!(
        report["checks_summary"],
        serde_json::json!({"total": 2, "passed": 1, "failed": 1})
    );
}

#[test]
fn comparing_checks_print_what_they_saw_and_wanted_and_wait_until_waits_on_a_condition() {
    let labs = Labs::new();
    let lab = labs.add(
        "compare.rhai",
        r#"// Comparing checks
        // check_eq and friends, wait_until, a labelled load
        let r = load(#{path: "/users/{id}", ids: "1..50", keys: "sequential", n: 100, c: 1, label: "two passes"});
        check_eq("every request was a hit or a miss", r.hits + r.misses, 100);
        check_eq("the second pass hit", r.hit_ratio, 0.5);
        check_ge("too many hits wanted", r.hits, 80);
        check_le("p50 under a second", r.p50, 1000);
        check_between("misses", r.misses, 40, 60);
        let polls = 0;
        let came = wait_until("polled three times", || { polls += 1; polls >= 3 }, 2000);
        check("wait_until returned true", came);
        wait_until("the impossible", || false, 50);
        check_eq("the label is in the result", r.label, "two passes");
        "#,
    );
    let json_path = labs.dir.path().join("compare.json");
    let r = run(&["--json", json_path.to_str().unwrap()], &[&lab]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("✗ too many hits wanted (50, want >= 80) (line 6)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("✓ the second pass hit (0.5, want 0.5)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("✓ misses (50, want 40 to 60)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("✗ the impossible (still false after 50 ms)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("· polled three times: after "),
        "{}",
        r.stdout
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let events = report["labs"][0]["events"].as_array().unwrap();
    let failed = events
        .iter()
        .find(|e| {
            e["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("too many hits")
        })
        .unwrap();
    assert_eq!(
        failed["measured"],
        serde_json::json!({"actual": 50, "expected": ">= 80"})
    );
    let load = events.iter().find(|e| e["kind"] == "load").unwrap();
    assert_eq!(load["label"], "two passes");
    assert_eq!(report["labs"][0]["checks"]["failed"], 2);
}

#[test]
fn every_lab_api_function_works_against_the_real_stack() {
    let tour = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/labs/api_tour.rhai");
    let r = run(&[], &[&tour]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("0 failed"), "{}", r.stdout);
    assert!(!r.stdout.contains("✗"), "{}", r.stdout);
}

#[test]
fn cachelab_api_lists_every_function_of_the_design_table_with_a_doc_line() {
    let out = cachelab().arg("api").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "use_strategy",
        "servers",
        "http_get",
        "http_put",
        "http_post",
        "http_delete",
        "load",
        "stampede",
        "stats",
        "set_ttl",
        "set_db_delay",
        "set_padding",
        "set_protection",
        "redis_info",
        "redis",
        "redis_get",
        "redis_ttl",
        "redis_keys",
        "set_policy",
        "flush",
        "db_get",
        "db_query",
        "users",
        "check",
        "assert",
        "assert_eq",
        "note",
        "sleep",
        "now_ms",
    ] {
        let signature = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name}(")));
        assert!(
            signature.is_some(),
            "{name} missing from cachelab api:\n{text}"
        );
    }
}

#[test]
fn external_redis_is_never_flushed_without_allow_flush_and_an_external_table_is_kept() {
    use cachelab::stack::{Stack, StackOptions};
    // A stack started here stands in for servers the user runs.
    let external = Stack::start(StackOptions::default()).unwrap();
    let (redis_url, db_url) = (external.redis_url(), external.database_url());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = cachelab::store::admin::Admin::connect(&db_url, false)
            .await
            .unwrap();
        admin.prepare(true).await.unwrap();
        let store =
            cachelab::store::Store::new(&db_url, std::time::Duration::from_secs(2)).unwrap();
        store
            .update_user(1, Some("Kept By User"), None)
            .await
            .unwrap();
        let _: () = common::redis_at(&redis_url, &["SET", "precious", "data"]).await;
    });
    let labs = Labs::new();
    let keeps = labs.add(
        "keeps.rhai",
        "// External data is kept\ncheck(\"the user's row is untouched\", db_get(1).name == \"Kept By User\");\ncheck(\"other keys are untouched\", redis_get(\"precious\") == \"data\");\n",
    );
    let flushes = labs.add("flushes.rhai", "// Tries to flush\nflush();\n");
    let policy = labs.add(
        "policy.rhai",
        "// Tries to set a policy\nset_policy(\"allkeys-lru\", 1000000);\n",
    );
    let ext = [
        "--redis-url",
        redis_url.as_str(),
        "--database-url",
        db_url.as_str(),
    ];

    let r = run(&ext, &[&keeps]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for lab in [&flushes, &policy] {
        let r = run(&ext, &[lab]);
        assert_eq!(r.code, 2, "{}", r.stdout);
        assert!(r.stdout.contains("--allow-flush"), "{}", r.stdout);
    }
    let still: Option<String> = rt.block_on(common::redis_at(&redis_url, &["GET", "precious"]));
    assert_eq!(still.as_deref(), Some("data"), "never a wipe");

    let mut with_flag = ext.to_vec();
    with_flag.push("--allow-flush");
    let r = run(&with_flag, &[&flushes]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let gone: Option<String> = rt.block_on(common::redis_at(&redis_url, &["GET", "precious"]));
    assert_eq!(gone, None, "--allow-flush lets flush() wipe it");
    drop(external);
}

#[test]
fn the_lab_example_in_the_readme_passes() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("## Writing a lab")
        .nth(1)
        .expect("README has a Writing a lab section");
    let example = section
        .split("```rust\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("an example block");
    let labs = Labs::new();
    let lab = labs.add("readme.rhai", example);
    let r = run(&[], &[&lab]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("TTL: a cached user expires"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .trim_end()
            .ends_with("1 lab: 1 passed, 0 failed · 5 checks: 5 passed, 0 failed"),
        "{}",
        r.stdout
    );
}

#[test]
fn ctrl_c_during_a_lab_stops_it_reports_interrupted_and_tears_the_stack_down() {
    use std::io::{BufRead, BufReader, Read};
    let labs = Labs::new();
    let lab = labs.add(
        "long.rhai",
        "// Long\nprint(\"started\");\nsleep(60000);\ncheck(\"never\", true);\n",
    );
    let next = labs.add(
        "next.rhai",
        "// Not reached\ncheck(\"not run after Ctrl-C\", true);\n",
    );
    let tmp = private_tmpdir();
    let mut child = cachelab()
        .arg("run")
        .args([&lab, &next])
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("started") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the lab never started"
        );
    }
    let started = Instant::now();
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(2), "{rest}");
    assert!(
        rest.contains(&format!("{}:3:1: interrupted", lab.display())),
        "{rest}"
    );
    assert!(!rest.contains("not run after Ctrl-C"), "{rest}");
    assert_nothing_left(tmp.path());
}
