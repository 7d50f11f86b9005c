//! `cachelab serve` as a user runs it next to curl and redis-cli: the lines it prints, the
//! per-request debug log, one strategy at a time, and Redis errors logged once per burst.

mod common;

use common::{private_tmpdir, processes_mentioning, Serve};

fn http(method: &str, url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = rt.block_on(common::send(method.parse().unwrap(), url, ""));
    let cache = answer.cache().to_string();
    (answer.status, cache)
}

#[test]
fn verbose_serve_logs_cache_hit_miss_db_updated_and_cache_updated_per_request() {
    let tmp = private_tmpdir();
    let serve = Serve::start(tmp.path(), &["--port", "0", "-v"]);
    let ca = serve.url("cache-aside").expect("a cache-aside line");
    let wt = serve.url("write-through").expect("a write-through line");
    assert!(
        serve
            .lines
            .iter()
            .any(|l| l.starts_with("redis") && l.contains("redis-cli -p ")),
        "{:?}",
        serve.lines
    );
    assert!(
        serve
            .lines
            .iter()
            .any(|l| l.starts_with("postgres") && l.contains("psql postgres://")),
        "{:?}",
        serve.lines
    );
    assert_eq!(http("GET", &format!("{ca}/users/1")), (200, "MISS".into()));
    assert_eq!(http("GET", &format!("{ca}/users/1")), (200, "HIT".into()));
    assert_eq!(http("PUT", &format!("{wt}/users/2?name=Logged")).0, 200);
    let log = serve.stop();
    for line in [
        "CACHE MISS user:1",
        "CACHE HIT user:1",
        "DB UPDATED user:2",
        "CACHE UPDATED user:2",
    ] {
        assert!(log.contains(line), "{line} missing from the log:\n{log}");
    }
}

#[test]
fn one_strategy_at_a_time_on_its_own_port() {
    let tmp = private_tmpdir();
    let port = common::free_port_block();
    let serve = Serve::start(
        tmp.path(),
        &["--port", &port.to_string(), "--strategy", "write-through"],
    );
    assert_eq!(serve.url("cache-aside"), None);
    let wt = serve.url("write-through").unwrap();
    assert_eq!(
        wt,
        format!("http://127.0.0.1:{}", port + 1),
        "write-through keeps --port + 1"
    );
    assert_eq!(http("GET", &format!("{wt}/users/3")).0, 200);
    let log = serve.stop();
    assert!(
        !log.contains("CACHE"),
        "no per-request log without -v:\n{log}"
    );
}

#[test]
fn a_dead_redis_is_restarted_once_and_its_outage_logged_once_not_per_request() {
    let tmp = private_tmpdir();
    let serve = Serve::start(tmp.path(), &["--port", "0"]);
    let ca = serve.url("cache-aside").unwrap();
    let redis_pid = || {
        processes_mentioning(tmp.path()).into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "redis-server")
        })
    };
    let first = redis_pid().expect("the managed redis-server");
    // SAFETY: killing the redis-server our child started.
    unsafe {
        libc::kill(first as i32, libc::SIGKILL);
    }
    for id in 1..=50 {
        assert_eq!(
            http("GET", &format!("{ca}/users/{id}")).0,
            200,
            "reads answer from Postgres"
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while redis_pid().is_none_or(|pid| pid == first) {
        assert!(
            std::time::Instant::now() < deadline,
            "Redis was not restarted"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Back to caching: the same user twice is a hit once Redis answers again.
    let hit = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        http("GET", &format!("{ca}/users/7")).1 == "HIT"
    });
    assert!(hit, "the servers use the restarted Redis");
    let log = serve.stop();
    assert!(
        !log.contains('\x1b'),
        "no colour codes when stderr is not a terminal:\n{log}"
    );
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        count("redis had stopped; started it again"),
        1,
        "one restart line:\n{log}"
    );
    assert!(
        count("Redis is down") <= 1,
        "one outage line at most:\n{log}"
    );
    assert_eq!(
        count("Redis is down"),
        count("Redis is back"),
        "an outage that starts is seen to end:\n{log}"
    );
    assert!(log.lines().count() <= 4, "no line per request:\n{log}");
}

#[test]
fn bad_serve_arguments_exit_2_before_starting_anything() {
    for (args, words) in [
        (vec!["--port", "65535"], "leaves no room"),
        (vec!["--protection", "mutex"], "singleflight"),
        (vec!["--ttl-jitter", "150"], "--ttl-jitter"),
        (vec!["--ttl", "0"], "--ttl"),
        (vec!["--strategy", "read-through"], "read-through"),
        (vec!["--bind", "not-an-ip"], "--bind"),
    ] {
        let out = common::cachelab()
            .arg("serve")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(words),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
