//! Target mode against a real service: the small cache-aside Python app in tests/apps/
//! (naive, and with a Redis fallback), started by cachelab through `[app] command`, over
//! the managed Redis and Postgres or the machine's own. Needs the apps' venv: run
//! tests/apps/setup.sh once (CI does, in .ci/run).

mod common;

use std::path::{Path, PathBuf};

use common::{cachelab, private_tmpdir, Run};

fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps")
}

/// The venv's python, or a failure saying how to make it.
fn python() -> PathBuf {
    let python = apps_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "the target-mode tests need the Python apps' venv: run tests/apps/setup.sh (missing {})",
        python.display()
    );
    python
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A target TOML for the test app in `dir` (named `name`), with `extra` env entries and
/// sections appended.
fn target_file(dir: &Path, name: &str, env_extra: &str, sections: &str) -> PathBuf {
    let port = free_port();
    let text = format!(
        r#"[app]
url = "http://127.0.0.1:{port}"
command = "{python} app.py --port {port}"
dir = "{apps}"
env = {{ REDIS_URL = "{{redis_url}}", DATABASE_URL = "{{database_url}}", APP_TTL = "60"{env_extra} }}
ready = "/users/1"

[model]
read = "GET /users/{{id}}"
write = "PUT /users/{{id}}?name={{value}}"
value = "/name"
ids = "1..1000"
cache_key = "user:{{id}}"
{sections}"#,
        python = python().display(),
        apps = apps_dir().display(),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn target(args: &[&str], tmp: &Path) -> Run {
    Run::of(cachelab().env("TMPDIR", tmp).args(args))
}

/// The pid `target check` printed for the app.
fn app_pid(stdout: &str) -> u32 {
    let at = stdout.find("(pid ").expect("the app's pid in the output") + 5;
    stdout[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn target_check_shows_each_request_through_both_proxies_and_ends_the_app() {
    let tmp = private_tmpdir();
    let file = target_file(tmp.path(), "app.toml", "", "");
    let run = target(&["target", "check", file.to_str().unwrap()], tmp.path());
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let out = &run.stdout;
    // The first read of a cold cache misses, reads Postgres and fills the key with its TTL.
    let read = &out[out.find("read       GET /users/1").expect(out)..out.find("write").unwrap()];
    assert!(read.contains("GET user:1 -> miss"), "{read}");
    assert!(read.contains("SET user:1 EX 60"), "{read}");
    assert!(
        read.contains("SELECT id, name, email FROM users WHERE id = 1"),
        "{read}"
    );
    assert!(read.contains("misses 1, cache_sets 1"), "{read}");
    // The write updates the row and deletes the key; the read back misses and sees it.
    let write = &out[out.find("write").unwrap()..out.find("read back").unwrap()];
    assert!(write.contains("DEL user:1"), "{write}");
    assert!(write.contains("UPDATE users SET name"), "{write}");
    assert!(write.contains("db_writes 1"), "{write}");
    assert!(
        out.contains("ok: the read back returned the written value"),
        "{out}"
    );
    // The proxies, not the upstreams, are what the app was given.
    assert!(out.contains("redis      proxy 127.0.0.1:"), "{out}");
    // The managed Redis is reached on its Unix socket, which costs the hop less kernel time.
    assert!(out.contains(".sock (managed)"), "{out}");
    let pid = app_pid(out);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the app (pid {pid}) still runs after target check"
    );
}

#[test]
fn the_labs_for_apps_tell_the_naive_app_from_the_one_with_a_redis_fallback() {
    let tmp = private_tmpdir();
    let labs = Path::new(env!("CARGO_MANIFEST_DIR")).join("labs/app");
    let naive = target_file(tmp.path(), "naive.toml", "", "");
    let fallback = target_file(
        tmp.path(),
        "fallback.toml",
        r#", APP_REDIS_FALLBACK = "1""#,
        "",
    );
    let run_with = |file: &Path| {
        target(
            &[
                "run",
                labs.to_str().unwrap(),
                "--target",
                file.to_str().unwrap(),
            ],
            tmp.path(),
        )
    };
    let naive = run_with(&naive);
    let fallback = run_with(&fallback);
    assert_eq!(naive.code, 1, "{}\n{}", naive.stdout, naive.stderr);
    let outage = "no read failed while Redis was down";
    let slow = "every read answered 200 while Redis was slow";
    for check in [outage, slow] {
        assert!(
            naive.stdout.contains(&format!("✗ {check}")),
            "{}",
            naive.stdout
        );
        assert!(
            fallback.stdout.contains(&format!("✓ {check}")),
            "{}",
            fallback.stdout
        );
    }
    // The naive app's failure comes with the numbers: its 500s.
    assert!(naive.stdout.contains("answered 500"), "{}", naive.stdout);
    // ... and the report says where the app's own output is, to read next to it.
    let log = naive
        .stdout
        .lines()
        .find_map(|l| l.split("(the app's output: ").nth(1))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no app log named in:\n{}", naive.stdout));
    let logged = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        logged.contains("listening on 127.0.0.1:"),
        "{log}: {logged}"
    );
    // What both apps do alike gets the same verdict: neither protects a cold key, both
    // recover after Postgres returns and set a TTL.
    for run in [&naive, &fallback] {
        assert!(
            run.stdout
                .contains("✗ a cold key costs Postgres about one read"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("✓ after Postgres came back"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains("✓ the service caches user:1 with a TTL (60 s"),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn a_mistake_in_the_target_file_is_a_setup_error_naming_its_line() {
    let tmp = private_tmpdir();
    let file = target_file(tmp.path(), "app.toml", "", "");
    let text = std::fs::read_to_string(&file).unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        text.replace("value = \"/name\"", "value = \"/name\"\nvalues = 1"),
    )
    .unwrap();
    let run = target(
        &["run", "labs/app", "--target", bad.to_str().unwrap()],
        tmp.path(),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("bad.toml:12: unknown field `values`"),
        "{}",
        run.stderr
    );
    let pointer = tmp.path().join("pointer.toml");
    std::fs::write(&pointer, text.replace("\"/name\"", "\"name\"")).unwrap();
    let run = target(&["target", "check", pointer.to_str().unwrap()], tmp.path());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("pointer.toml:11: model.value"),
        "{}",
        run.stderr
    );
    let port = free_port();
    let unreachable = target_file(
        tmp.path(),
        "unreachable.toml",
        "",
        &format!("\n[redis]\nurl = \"redis://127.0.0.1:{port}/0\"\n"),
    );
    let run = target(
        &["target", "check", unreachable.to_str().unwrap()],
        tmp.path(),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "unreachable.toml:16: redis.url: cannot reach 127.0.0.1:{port}"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn an_app_that_exits_before_it_is_ready_is_a_setup_error_with_its_log() {
    let tmp = private_tmpdir();
    let file = target_file(tmp.path(), "app.toml", "", "");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("app.py --port", "no-such-app.py --port"),
    )
    .unwrap();
    let run = target(&["target", "check", file.to_str().unwrap()], tmp.path());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("the app exited before it was ready"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("no-such-app.py"), "{}", run.stderr);
}

#[test]
fn an_external_redis_and_postgres_are_reached_through_the_proxies() {
    let tmp = private_tmpdir();
    let database = format!("cachelab_target_{}", std::process::id());
    let psql = |db: &str, sql: &str| {
        let out = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qAtc", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let admin = |sql: &str| {
        psql("postgres", sql);
    };
    admin(&format!("CREATE DATABASE {database}"));
    // The app's database is set up as its owner would: cachelab must not touch its tables.
    psql(&database, include_str!("../schema.sql"));
    psql(
        &database,
        "INSERT INTO users (id, name, email) VALUES (1, 'Ada', 'ada@example.com')",
    );
    let sections = format!(
        "\n[redis]\nurl = \"redis://127.0.0.1:6379/13\"\n[postgres]\nurl = \"postgres://postgres@127.0.0.1:5432/{database}\"\n"
    );
    let file = target_file(tmp.path(), "app.toml", "", &sections);
    let run = target(&["target", "check", file.to_str().unwrap()], tmp.path());
    let rows = psql(&database, "SELECT count(*) FROM users");
    admin(&format!("DROP DATABASE {database} WITH (FORCE)"));
    assert_eq!(
        rows, "1",
        "cachelab loaded users into the app's own database"
    );
    let _ = std::process::Command::new("redis-cli")
        .args(["-n", "13", "DEL", "user:1"])
        .status();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("-> 127.0.0.1:6379 (yours)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("-> 127.0.0.1:5432 (yours)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("GET user:1 -> miss"), "{}", run.stdout);
    assert!(
        run.stdout.contains("UPDATE users SET name"),
        "{}",
        run.stdout
    );
}

#[test]
fn in_target_mode_a_lab_gets_the_model_and_a_slow_database_but_not_our_servers_knobs() {
    let tmp = private_tmpdir();
    let file = target_file(tmp.path(), "app.toml", "", "");
    let labs = tempfile::tempdir().unwrap();
    let slow = labs.path().join("a-slow-db.rhai");
    std::fs::write(
        &slow,
        r#"// Slow database
// app: a test lab
set_db_delay(300);
let r = app_read(500);
check(`an uncached read waits for the held query (${r.ms} ms)`, r.status == 200 && r.ms >= 300.0);
set_db_delay(0);
let w = app_write(500, "written by the lab");
check("a write through the model is read back", app_read(500).value == "written by the lab");
check("stats() counts what the app did", stats().db_writes == 1 && stats().cache_dels == 1);
"#,
    )
    .unwrap();
    let knob = labs.path().join("b-knob.rhai");
    std::fs::write(&knob, "// A knob\n// app: a test lab\nset_ttl(5);\n").unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("labs/stampede.rhai");
    let run = target(
        &[
            "run",
            slow.to_str().unwrap(),
            knob.to_str().unwrap(),
            shipped.to_str().unwrap(),
            "--target",
            file.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let out = &run.stdout;
    assert!(
        out.contains("✓ an uncached read waits for the held query"),
        "{out}"
    );
    assert!(
        out.contains("✓ a write through the model is read back"),
        "{out}"
    );
    assert!(out.contains("✓ stats() counts what the app did"), "{out}");
    assert!(
        out.contains("set_ttl: a knob of cachelab's own servers, not available in target mode"),
        "{out}"
    );
    assert!(
        out.contains(
            "needs cachelab's own servers; target mode (--target) runs the labs marked `// app:`"
        ),
        "{out}"
    );
}

/// Pids whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn ctrl_c_during_a_target_mode_lab_ends_the_app_with_the_stack() {
    use std::io::{BufRead, BufReader};
    let tmp = private_tmpdir();
    let file = target_file(tmp.path(), "app.toml", "", "");
    let text = std::fs::read_to_string(&file).unwrap();
    let port = text
        .split("--port ")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let labs = tempfile::tempdir().unwrap();
    let lab = labs.path().join("long.rhai");
    std::fs::write(
        &lab,
        "// Long\n// app: a test lab\nprint(\"started\");\nsleep(60000);\n",
    )
    .unwrap();
    let mut child = cachelab()
        .args([
            "run",
            lab.to_str().unwrap(),
            "--target",
            file.to_str().unwrap(),
        ])
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
    let needle = format!("app.py --port {port}");
    assert!(
        !processes_with(&needle).is_empty(),
        "the app is not running"
    );
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    assert_eq!(child.wait().unwrap().code(), Some(2));
    assert_eq!(
        processes_with(&needle),
        Vec::<u32>::new(),
        "the app outlived cachelab"
    );
}
