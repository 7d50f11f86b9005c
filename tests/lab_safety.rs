//! Running a stranger's lab is safe: attack labs run by the real `cachelab run` try to
//! break the next lab or escape the sandbox, and the lab after each finds the stack fresh.
//!
//! The numbers in test names and check names are the points of issue #7 ("Trust: honest
//! results, and a lab sandbox that holds"). The attacks live in tests/labs/attack*.rhai and
//! the fresh-state checks in tests/labs/fresh_after_attack.rhai, so a reader can run them
//! by hand: `cachelab run --timeout 3 tests/labs/attack.rhai tests/labs/fresh_after_attack.rhai`.

mod common;

use common::Labs;

use common::{assert_nothing_left, cachelab, private_tmpdir, Serve};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A lab file shipped with the tests.
fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/labs")
        .join(name)
}

/// What one `cachelab run` did: its exit code, its output, its JSON report and the most
/// memory its process held at once.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    report: Value,
    peak_rss_kib: i64,
}

impl Run {
    fn labs(&self) -> &[Value] {
        self.report["labs"].as_array().map_or(&[], Vec::as_slice)
    }

    /// The reports of every lab run from `file`, in order.
    fn labs_of(&self, file: &Path) -> Vec<&Value> {
        let file = file.to_str().unwrap();
        self.labs().iter().filter(|l| l["file"] == file).collect()
    }

    /// Exit code and output for a failure message (without the long config notes).
    fn context(&self) -> String {
        let stdout: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| !l.trim_start().starts_with("· redis config:"))
            .collect();
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            stdout.join("\n"),
            self.stderr
        )
    }
}

/// `cachelab run ARGS FILES` with TMPDIR=`tmp` and, if given, an open-file limit; its
/// peak memory is sampled from /proc while it runs.
fn run_in(tmp: &Path, nofile: Option<u64>, args: &[&str], files: &[&Path]) -> Run {
    use std::os::unix::process::CommandExt;
    let json = tempfile::NamedTempFile::new().unwrap();
    let mut command = cachelab();
    command
        .arg("run")
        .arg("--json")
        .arg(json.path())
        .args(args)
        .args(files)
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(limit) = nofile {
        // SAFETY: setrlimit is async-signal-safe; it only lowers the child's own limit.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().unwrap();
    let read_all = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = from.read_to_string(&mut text);
            text
        })
    };
    let out = read_all(Box::new(child.stdout.take().unwrap()));
    let err = read_all(Box::new(child.stderr.take().unwrap()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, pid) = (done.clone(), child.id());
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::SeqCst) {
                peak = peak.max(high_water_mark_kib(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let status = child.wait().unwrap();
    done.store(true, Ordering::SeqCst);
    let report = std::fs::read_to_string(json.path())
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        report,
        peak_rss_kib: sampler.join().unwrap(),
    }
}

/// The most resident memory process `pid` has had (VmHWM), 0 once it has exited.
fn high_water_mark_kib(pid: u32) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn run(args: &[&str], files: &[&Path]) -> Run {
    let tmp = private_tmpdir();
    run_in(tmp.path(), None, args, files)
}

fn checks(lab: &Value) -> Vec<(String, bool)> {
    lab["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "check")
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["pass"] == true,
            )
        })
        .collect()
}

fn notes(lab: &Value) -> Vec<String> {
    lab["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "note")
        .filter_map(|e| e["text"].as_str().map(str::to_string))
        .collect()
}

/// The lab's outcome: its kind (`completed`, `stopped`, ...) and message.
fn outcome(lab: &Value) -> (String, String) {
    (
        lab["outcome"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        lab["outcome"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Names of the failed checks of `lab` whose names start with `prefix`.
fn failed(lab: &Value, prefix: &str) -> Vec<String> {
    checks(lab)
        .into_iter()
        .filter(|(name, pass)| name.starts_with(prefix) && !pass)
        .map(|(name, _)| name)
        .collect()
}

// ---- The attack suite: every attack lab, each followed by a fresh lab ------------------

/// The labs that attack, in the order they run. Each is followed by fresh_after_attack.
/// The lab that tries everything comes last, so what it breaks for good cannot hide what
/// the single-attack labs do.
const ATTACKS: [&str; 6] = [
    "attack_blpop.rhai",
    "attack_client_reply_off.rhai",
    "attack_pg_sleep.rhai",
    "attack_long_load.rhai",
    "attack_processes.rhai",
    "attack.rhai",
];
/// The attack labs that run until --timeout stops them.
const BLOCKING: [&str; 4] = [
    "attack_blpop.rhai",
    "attack_client_reply_off.rhai",
    "attack_pg_sleep.rhai",
    "attack_long_load.rhai",
];

/// One `cachelab run --timeout 3` of: a fresh lab (the baseline), then each attack lab
/// followed by a fresh lab. Run once and shared by the tests below, each of which reads
/// what its point of the issue needs.
fn attack_suite() -> &'static (Run, Vec<String>) {
    static SUITE: OnceLock<(Run, Vec<String>)> = OnceLock::new();
    SUITE.get_or_init(|| {
        let tmp = private_tmpdir();
        let fresh = shipped("fresh_after_attack.rhai");
        let mut files = vec![fresh.clone()];
        for attack in ATTACKS {
            files.push(shipped(attack));
            files.push(fresh.clone());
        }
        let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let run = run_in(tmp.path(), None, &["--timeout", "3"], &files);
        let left: Vec<String> = common::processes_mentioning(tmp.path())
            .iter()
            .map(|pid| format!("process {pid}"))
            .chain(common::entries(tmp.path()))
            .collect();
        (run, left)
    })
}

/// The fresh labs of the suite after each attack, with the attack they followed.
fn fresh_after_each_attack(run: &Run) -> Vec<(&'static str, &Value)> {
    let fresh = run.labs_of(&shipped("fresh_after_attack.rhai"));
    assert_eq!(
        fresh.len(),
        ATTACKS.len() + 1,
        "a fresh lab before and after every attack:\n{}",
        run.context()
    );
    ATTACKS
        .iter()
        .copied()
        .zip(fresh[1..].iter().copied())
        .collect()
}

/// Every check of the fresh labs whose name starts with `prefix` passed after every attack.
fn assert_fresh_holds(prefix: &str) {
    let (run, _) = attack_suite();
    let baseline = run.labs_of(&shipped("fresh_after_attack.rhai"))[0];
    assert!(
        failed(baseline, "").is_empty(),
        "the fresh lab must pass before any attack: {:?}\n{}",
        failed(baseline, ""),
        run.context()
    );
    let broken: Vec<String> = fresh_after_each_attack(run)
        .into_iter()
        .flat_map(|(attack, lab)| {
            failed(lab, prefix)
                .into_iter()
                .map(move |name| format!("after {attack}: ✗ {name}"))
        })
        .collect();
    assert!(
        broken.is_empty(),
        "the lab after an attack did not find a fresh stack:\n{}\n\n{}",
        broken.join("\n"),
        run.context()
    );
}

/// Every check of attack.rhai whose name starts with `prefix` passed (the attack was
/// refused as it should be).
fn assert_attack_refused(prefix: &str) {
    let (run, _) = attack_suite();
    let attack = run.labs_of(&shipped("attack.rhai"));
    assert_eq!(attack.len(), 1, "{}", run.context());
    let through = failed(attack[0], prefix);
    assert!(
        !checks(attack[0]).is_empty() && through.is_empty(),
        "attacks that were not refused:\n{}\n\n{}",
        through.join("\n"),
        run.context()
    );
}

#[test]
fn a_lab_that_tries_every_attack_leaves_the_next_lab_a_fresh_stack() {
    let (run, left) = attack_suite();
    let attack = run.labs_of(&shipped("attack.rhai"))[0];
    assert_eq!(
        outcome(attack).0,
        "completed",
        "the attack lab runs to its end (each attack caught): {:?}\n{}",
        outcome(attack),
        run.context()
    );
    assert_attack_refused("");
    assert_fresh_holds("");
    for (attack, lab) in fresh_after_each_attack(run) {
        assert_eq!(
            lab["passed"],
            true,
            "the lab after {attack} passed: {:?}\n{}",
            outcome(lab),
            run.context()
        );
    }
    // The blocking attacks are ended by --timeout, and by nothing else.
    for attack in BLOCKING {
        let lab = run.labs_of(&shipped(attack))[0];
        let (kind, message) = outcome(lab);
        assert!(
            kind == "stopped" && message.contains("ran past its --timeout"),
            "{attack}: {kind} {message}"
        );
        assert!(
            lab["duration_s"].as_f64().unwrap() < 6.0,
            "{attack} stopped soon after its 3 s: {}",
            lab["duration_s"]
        );
    }
    assert_eq!(run.code, 2, "stopped labs make the run exit 2");
    assert!(
        run.stdout
            .trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("13 labs: 9 passed, 4 failed"),
        "{}",
        run.context()
    );
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn point_8_a_labs_redis_connection_blocked_silenced_subscribed_or_in_another_db_does_not_reach_the_next_lab(
) {
    assert_fresh_holds("8:");
}

#[test]
fn point_9_the_reset_restores_every_redis_setting_and_rebuilds_postgres_whatever_the_lab_did() {
    assert_fresh_holds("9:");
    let (run, _) = attack_suite();
    let config = |lab: &Value| {
        notes(lab)
            .into_iter()
            .find(|n| n.starts_with("redis config: "))
            .unwrap_or_else(|| panic!("no redis config note:\n{}", run.context()))
    };
    let fresh = run.labs_of(&shipped("fresh_after_attack.rhai"));
    let before = config(fresh[0]);
    for (attack, lab) in fresh_after_each_attack(run) {
        let after = config(lab);
        let changed: Vec<&str> = after
            .split(' ')
            .filter(|setting| !before.split(' ').any(|b| b == *setting))
            .collect();
        assert!(
            changed.is_empty(),
            "after {attack}, Redis settings differ from the start: {changed:?}"
        );
    }
}

#[test]
fn point_10_a_labs_loads_stop_with_it_and_the_next_lab_sees_no_foreign_request() {
    assert_fresh_holds("10:");
}

#[test]
fn point_10_loads_that_together_exhaust_file_descriptors_stop_with_the_lab_and_the_next_lab_runs() {
    let tmp = private_tmpdir();
    let attack = shipped("attack_fd_exhaustion.rhai");
    let fresh = shipped("fresh_after_attack.rhai");
    let r = run_in(
        tmp.path(),
        Some(4096),
        &["--timeout", "3"],
        &[&attack, &fresh],
    );
    assert!(
        !r.labs().is_empty(),
        "no report was written:\n{}",
        r.context()
    );
    let lab = &r.labs()[0];
    let (kind, message) = outcome(lab);
    assert!(
        kind == "stopped" && message.contains("ran past its --timeout"),
        "{kind}: {message}\n{}",
        r.context()
    );
    assert!(
        lab["duration_s"].as_f64().unwrap_or(f64::MAX) < 6.0,
        "the lab and its loads stop at the 3 s --timeout, not when the loads end: it ran {} s\n{}",
        lab["duration_s"],
        r.context()
    );
    let next = &r.labs()[1];
    assert!(
        next["passed"] == true,
        "the next lab finds the servers accepting and files to open: {:?} {:?}\n{}",
        outcome(next),
        failed(next, ""),
        r.context()
    );
}

#[test]
fn point_10_a_load_that_would_exhaust_file_descriptors_is_refused_naming_ulimit() {
    let labs = Labs::new();
    let lab = labs.add(
        "fds.rhai",
        "// Asks for 100,000 connections\nload(#{c: 100000, n: 100000, path: \"/users/1\"});\n",
    );
    let after = labs.add(
        "after.rhai",
        "// Runs after\ncheck(\"the next lab's requests are answered\", load(#{c: 50, n: 200, path: \"/users/1\"}).ok == 200);\n",
    );
    let r = run(&[], &[&lab, &after]);
    assert_eq!(r.code, 2, "{}", r.context());
    let (kind, message) = outcome(&r.labs()[0]);
    assert_eq!(kind, "script_error", "{message}");
    assert!(
        message.contains("100000 connections") && message.contains("ulimit -n"),
        "{message}"
    );
    assert_eq!(r.labs()[1]["passed"], true, "{}", r.context());
}

#[test]
fn point_12_a_labs_postgres_role_may_only_read_and_change_rows_of_users() {
    assert_attack_refused("12:");
}

#[test]
fn point_13_redis_commands_that_break_or_expose_the_stack_are_refused_naming_the_command() {
    assert_attack_refused("13:");
    assert_fresh_holds("13:");
}

#[test]
fn point_15_absolute_urls_outside_the_stack_are_refused_naming_allow_host() {
    assert_attack_refused("15:");
}

// ---- 11: memory ------------------------------------------------------------------------

/// The peak memory of a run whose lab holds nothing: what the limits below add to.
fn baseline_peak_kib() -> i64 {
    static PEAK: OnceLock<i64> = OnceLock::new();
    *PEAK.get_or_init(|| {
        let labs = Labs::new();
        let lab = labs.add("small.rhai", "// Holds nothing\ncheck(\"runs\", true);\n");
        let r = run(&["--max-memory-mb", "64"], &[&lab]);
        assert_eq!(r.code, 0, "{}", r.context());
        r.peak_rss_kib
    })
}

const CAP_MIB: i64 = 64;
/// How a lab stopped by the memory cap is told.
const MEMORY_MESSAGE: &str = "more than 64 MiB (--max-memory-mb)";
/// What a lab may overshoot the cap by before it is stopped: one 16 MiB string (Rhai's
/// limit) being copied, and allocator slack.
const SLACK_MIB: i64 = 64;

/// Run `source` as a lab under `--max-memory-mb 64`, followed by a lab that must pass;
/// assert it was stopped with a message containing one of `messages` and that the process
/// stayed within the cap.
fn assert_stopped_within_the_cap(source: &str, messages: &[&str]) {
    let labs = Labs::new();
    let lab = labs.add("grows.rhai", source);
    let after = labs.add(
        "after.rhai",
        "// Runs after\ncheck(\"the next lab runs\", http_get(\"/users/1\").status == 200);\n",
    );
    let r = run(&["--max-memory-mb", &CAP_MIB.to_string()], &[&lab, &after]);
    let (kind, message) = outcome(&r.labs()[0]);
    assert!(
        kind != "completed" && messages.iter().any(|m| message.contains(m)),
        "the lab is stopped with a message containing one of {messages:?}; got {kind}: {message}\n{}",
        r.context()
    );
    assert_eq!(r.labs()[1]["passed"], true, "{}", r.context());
    let grown_mib = (r.peak_rss_kib - baseline_peak_kib()) / 1024;
    assert!(
        grown_mib <= CAP_MIB + SLACK_MIB,
        "with --max-memory-mb {CAP_MIB} the process grew by {grown_mib} MiB before the lab was stopped (peak {} MiB, {} MiB for a lab that holds nothing)",
        r.peak_rss_kib / 1024,
        baseline_peak_kib() / 1024
    );
}

#[test]
fn point_11_a_lab_that_builds_a_huge_map_is_stopped_with_a_clear_error_and_the_next_lab_runs() {
    assert_stopped_within_the_cap(
        r#"// 200,000 users of 10 KB each: 2 GB if nothing stops it
let row = "x";
row.pad(10000, 'x');
let cached = #{};
for i in 0..200000 {
    cached[`user:${i}`] = row + i;
}
"#,
        &[MEMORY_MESSAGE],
    );
}

#[test]
fn point_11_the_memory_cap_holds_however_few_operations_a_lab_grows_in() {
    // Forty 8 MB strings take a couple of hundred operations: the lab must be stopped
    // near the cap, not when an operation count comes round.
    assert_stopped_within_the_cap(
        r#"// 320 MB in a few hundred operations
let big = "x";
big.pad(8000000, 'x');
let kept = #{};
for i in 0..40 {
    kept[`copy ${i}`] = big + i;
}
let n = 0;
while n < 100000 { n += 1; }
"#,
        &[MEMORY_MESSAGE],
    );
}

#[test]
fn point_11_one_query_returning_a_huge_result_is_stopped_within_the_cap() {
    assert_stopped_within_the_cap(
        r#"// 300,000 rows of 100 bytes in one db_query
let rows = db_query("SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 300000) g");
check("never reached with a 64 MiB cap", rows.len() == 300000);
"#,
        &["--max-memory-mb", "too large", "too many rows"],
    );
}

// ---- 14: an external stack without --allow-flush / --reset-data -------------------------

/// A stack started here stands in for servers the user runs, with the users table built
/// and `users.json` loaded.
fn external_stack() -> (cachelab::stack::Stack, tokio::runtime::Runtime) {
    use cachelab::stack::{Stack, StackOptions};
    let external = Stack::start(StackOptions::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        cachelab::store::admin::Admin::connect(&external.database_url(), false)
            .await
            .unwrap()
            .prepare(true)
            .await
            .unwrap();
    });
    (external, rt)
}

async fn sql_one(url: &str, sql: &str) -> String {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client.query_one(sql, &[]).await.unwrap();
    row.get::<_, String>(0)
}

#[test]
fn point_14_an_external_redis_without_allow_flush_keeps_every_key_user_and_script_of_its_owner() {
    let (external, rt) = external_stack();
    let redis_url = external.redis_url();
    let db5 = format!("{}/5", redis_url.trim_end_matches('/'));
    let owners_script: String = rt.block_on(async {
        let _: () = common::redis_at(&redis_url, &["SET", "precious", "data"]).await;
        let _: () = common::redis_at(&db5, &["SET", "precious-in-5", "data"]).await;
        let _: String = common::redis_at(
            &redis_url,
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=owners\nredis.register_function('owners', function() return 1 end)",
            ],
        )
        .await;
        common::redis_at(&redis_url, &["SCRIPT", "LOAD", "return 'owners'"]).await
    });
    let labs = Labs::new();
    let lab = labs.add(
        "external.rhai",
        r#"// Tries to wipe or take over someone else's Redis
fn refused(words, name) {
    try {
        redis(words);
        check(`14: ${name} is refused`, false);
    } catch (e) {
        check(`14: ${name} is refused, naming it and --allow-flush`, `${e}`.contains(name) && (`${e}`.contains("--allow-flush") || `${e}`.contains("refused: it would")));
    }
}
refused(["EVAL", "return redis.call('FLUSHALL')", "0"], "EVAL");
refused(["ACL", "SETUSER", "evil", "on", ">pw", "+@all"], "ACL SETUSER");
refused(["SELECT", "5"], "SELECT");
refused(["UNLINK", "precious"], "UNLINK");
refused(["DEL", "user:1", "precious"], "DEL");
refused(["SET", "precious", "gone"], "SET");
refused(["FUNCTION", "FLUSH"], "FUNCTION FLUSH");
refused(["SCRIPT", "FLUSH"], "SCRIPT FLUSH");
refused(["BGSAVE"], "BGSAVE");
refused(["FLUSHALL"], "FLUSHALL");
refused(["FLUSHDB"], "FLUSHDB");
refused(["SWAPDB", "0", "5"], "SWAPDB");
refused(["MOVE", "user:1", "5"], "MOVE");
refused(["CONFIG", "SET", "maxmemory", "1"], "CONFIG SET");
refused(["CLIENT", "KILL", "TYPE", "normal"], "CLIENT KILL");
try { flush(); check("14: flush() is refused", false); } catch (e) { check("14: flush() is refused, naming --allow-flush", `${e}`.contains("--allow-flush")); }
try { set_policy("allkeys-lru", "1mb"); check("14: set_policy() is refused", false); } catch (e) { check("14: set_policy() is refused, naming --allow-flush", `${e}`.contains("--allow-flush")); }
check("14: reads and user:* writes still work", redis(["SET", "user:1", "x"]) == "OK" && redis_get("precious") == "data");
"#,
    );
    let r = run(
        &[
            "--redis-url",
            &redis_url,
            "--database-url",
            &external.database_url(),
        ],
        &[&lab],
    );
    let through = failed(&r.labs()[0], "");
    assert!(
        r.code == 0 && through.is_empty(),
        "not refused: {through:?}\n{}",
        r.context()
    );
    rt.block_on(async {
        let kept: Option<String> = common::redis_at(&redis_url, &["GET", "precious"]).await;
        assert_eq!(kept.as_deref(), Some("data"));
        let kept: Option<String> = common::redis_at(&db5, &["GET", "precious-in-5"]).await;
        assert_eq!(kept.as_deref(), Some("data"));
        let users: Vec<String> = common::redis_at(&redis_url, &["ACL", "USERS"]).await;
        assert_eq!(users, ["default"]);
        let scripts: Vec<i64> =
            common::redis_at(&redis_url, &["SCRIPT", "EXISTS", &owners_script]).await;
        assert_eq!(scripts, [1], "the owner's script is still loaded");
        let functions: Vec<redis::Value> =
            common::redis_at(&redis_url, &["FUNCTION", "LIST"]).await;
        assert_eq!(functions.len(), 1, "the owner's function is still loaded");
    });
    drop(external);
}

#[test]
fn point_14_an_external_postgres_without_reset_data_is_read_only_to_labs_and_keeps_its_machine_safe(
) {
    let (external, rt) = external_stack();
    let db_url = external.database_url();
    rt.block_on(async {
        let store = cachelab::store::Store::new(&db_url, Duration::from_secs(2)).unwrap();
        store
            .update_user(1, Some("Kept By User"), None)
            .await
            .unwrap();
    });
    // Postgres runs as another OS user: the marker folder must be writable by it.
    let marker_dir = private_tmpdir();
    let marker = marker_dir.path().join("ran");
    let labs = Labs::new();
    let lab = labs.add(
        "external_db.rhai",
        &format!(
            r#"// Tries to change, or escape through, someone else's database
fn refused(sql) {{
    try {{
        db_query(sql);
        check(`14: refused: ${{sql}}`, false);
    }} catch (e) {{
        check(`14: refused: ${{sql}}`, true);
    }}
}}
refused("TRUNCATE users");
refused("DROP TABLE users");
refused("UPDATE users SET name = 'Pwned'");
refused("DELETE FROM users");
refused("CREATE TABLE evil (a int)");
refused("SELECT lo_from_bytea(0, convert_to('written', 'UTF8'))");
refused("COPY (SELECT 1) TO PROGRAM 'touch {marker}'");
refused("SELECT pg_read_file('/etc/passwd')");
refused("SELECT pg_ls_dir('/')");
check("14: db_get (cachelab's own statement) still reads", db_get(1).name == "Kept By User");
// The URL's role is a superuser: no SQL of the lab's own runs as it, even a read.
try {{
    db_query("SELECT count(*) AS n FROM users");
    check("14: a lab's own SQL is refused as a superuser, naming --lab-database-url", false);
}} catch (e) {{
    check("14: a lab's own SQL is refused as a superuser, naming --lab-database-url", `${{e}}`.contains("--lab-database-url"));
}}
"#,
            marker = marker.display()
        ),
    );
    let r = run(
        &[
            "--redis-url",
            &external.redis_url(),
            "--database-url",
            &db_url,
        ],
        &[&lab],
    );
    let through = failed(&r.labs()[0], "");
    let ran_a_program = marker.exists();
    let (name, rows, large_objects) = rt.block_on(async {
        (
            sql_one(&db_url, "SELECT name FROM users WHERE id = 1").await,
            sql_one(&db_url, "SELECT count(*)::text FROM users").await,
            sql_one(
                &db_url,
                "SELECT count(*)::text FROM pg_catalog.pg_largeobject_metadata",
            )
            .await,
        )
    });
    assert_eq!(
        (name.as_str(), rows.as_str()),
        ("Kept By User", "1000"),
        "the table is intact"
    );
    assert!(
        !ran_a_program,
        "a lab ran a shell command on the database server (COPY ... TO PROGRAM)"
    );
    assert_eq!(large_objects, "0", "a lab wrote a large object");
    assert!(
        r.code == 0 && through.is_empty(),
        "not refused on an external database without --reset-data: {through:?}\n{}",
        r.context()
    );
    drop(external);
}

// ---- 15: reach -------------------------------------------------------------------------

/// A tiny HTTP server on loopback answering `{"ok":true}` to every request; counts them.
fn tiny_http_server() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let body = br#"{"ok":true}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    (port, seen)
}

#[test]
fn point_15_http_outside_the_stack_needs_allow_host_for_that_host() {
    let (port, seen) = tiny_http_server();
    let labs = Labs::new();
    let lab = labs.add(
        "reach.rhai",
        &format!(
            "// Reaches a host outside the stack\nlet r = http_get(\"http://127.0.0.1:{port}/hello\");\ncheck(\"the allowed host answered\", r.status == 200 && r.body.ok == true);\n"
        ),
    );
    let r = run(&[], &[&lab]);
    let (kind, message) = outcome(&r.labs()[0]);
    assert_eq!(kind, "script_error", "{}", r.context());
    assert!(
        message.contains(&format!("--allow-host 127.0.0.1:{port}")),
        "the refusal names the flag that allows it: {message}"
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "no connection without --allow-host"
    );
    let r = run(&["--allow-host", "example.com"], &[&lab]);
    assert_eq!(r.code, 2, "another host allowed does not allow this one");
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    for allowed in [format!("127.0.0.1:{port}"), "127.0.0.1".to_string()] {
        let r = run(&["--allow-host", &allowed], &[&lab]);
        assert_eq!(r.code, 0, "--allow-host {allowed}: {}", r.context());
    }
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[test]
fn point_15_imports_resolve_only_inside_the_labs_folder() {
    let labs = Labs::new();
    labs.add(
        "outside.rhai",
        "print(\"OUTSIDE MODULE RAN\");\nfn secret() { 42 }\n",
    );
    labs.add("lab/helper.rhai", "fn greet(name) { `hello ${name}` }\n");
    std::os::unix::fs::symlink(
        labs.dir.path().join("outside.rhai"),
        labs.dir.path().join("lab/link.rhai"),
    )
    .unwrap();
    let escapes = [
        ("parent.rhai", "../outside"),
        ("absolute.rhai", "/etc/passwd"),
        (
            "absolute_rhai.rhai",
            labs.dir.path().join("outside").to_str().unwrap(),
        ),
        ("symlink.rhai", "link"),
    ]
    .map(|(file, import)| {
        labs.add(
            &format!("lab/{file}"),
            &format!("// Imports {import}\nimport \"{import}\" as m;\ncheck(\"imported\", m::secret() == 42);\n"),
        )
    });
    let sibling = labs.add(
        "lab/sibling.rhai",
        "// Imports a sibling\nimport \"helper\" as h;\ncheck(\"a helper next to the lab works\", h::greet(\"lab\") == \"hello lab\");\n",
    );
    let mut files: Vec<&Path> = escapes.iter().map(PathBuf::as_path).collect();
    files.push(&sibling);
    let r = run(&[], &files);
    assert!(!r.stdout.contains("OUTSIDE MODULE RAN"), "{}", r.context());
    for (lab, file) in r.labs().iter().zip(&escapes) {
        let (kind, message) = outcome(lab);
        assert!(
            kind == "script_error"
                && message.contains("labs may import only .rhai files from their own folder"),
            "{}: {kind} {message}",
            file.display()
        );
    }
    assert_eq!(r.labs()[4]["passed"], true, "{}", r.context());
}

#[test]
fn point_15_save_history_writes_only_a_plain_file_name_inside_the_history_dir() {
    let labs = Labs::new();
    let history = labs.dir.path().join("history");
    std::fs::create_dir(&history).unwrap();
    let lab = labs.add(
        "history.rhai",
        r#"// Writes histories
load(#{path: "/users/{id}", ids: [1, 5], n: 20, c: 2, history: true});
for name in ["../escaped.jsonl", "/tmp/cachelab-escaped.jsonl", ".hidden.jsonl", "sub/escaped.jsonl", "escaped.sh"] {
    try {
        save_history(name);
        check(`15: save_history(${name}) is refused`, false);
    } catch (e) {
        check(`15: save_history(${name}) is refused`, true);
    }
}
save_history("kept.jsonl");
"#,
    );
    let r = run(&["--history-dir", history.to_str().unwrap()], &[&lab]);
    assert!(
        r.code == 0 && failed(&r.labs()[0], "").is_empty(),
        "{}",
        r.context()
    );
    assert_eq!(common::entries(&history), ["kept.jsonl"]);
    assert!(!labs.dir.path().join("escaped.jsonl").exists());
    assert!(!Path::new("/tmp/cachelab-escaped.jsonl").exists());
    let r = run(&[], &[&lab]);
    assert!(
        outcome(&r.labs()[0]).1.contains("--history-dir"),
        "without --history-dir nothing is written: {}",
        r.context()
    );
}

// ---- 16: serve -------------------------------------------------------------------------

#[test]
fn point_16_serve_on_a_non_loopback_address_warns_that_the_api_has_no_authentication() {
    let tmp = private_tmpdir();
    let serve = Serve::start(tmp.path(), &["--bind", "0.0.0.0", "--port", "0"]);
    let log = serve.stop();
    assert!(
        log.contains("warning") && log.contains("0.0.0.0") && log.contains("no authentication"),
        "{log}"
    );
    let serve = Serve::start(tmp.path(), &["--port", "0"]);
    let log = serve.stop();
    assert!(
        !log.contains("no authentication"),
        "no warning on loopback: {log}"
    );
    assert_nothing_left(tmp.path());
}
