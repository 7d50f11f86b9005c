//! Issue #9's promises against the real stack: each fault kind through the servers' fault
//! proxies (what a request sees, and recovery within a second of healing), `/health`
//! naming what is down, and — through labs run by the real binary — process faults, a lab
//! that leaves faults on, outage logs said once, and the history checker end to end.
//!
//! The in-process tests share one managed stack and take turns (`serial`); the lab runs
//! start their own.

mod common;

use cachelab::counters::Counter;
use cachelab::services::Services;
use cachelab::stack::process_tree::signal_tree;
use cachelab::stack::proxy::Fault;
use common::{cachelab, get, serial, shared_stack, start_services, Answer, Run};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

async fn timed_get(url: &str) -> (Answer, Duration) {
    let started = Instant::now();
    let answer = get(url).await;
    (answer, started.elapsed())
}

/// The `p` quantile (0..1) of `took`.
fn quantile(took: &[Duration], p: f64) -> Duration {
    let mut sorted = took.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// How long until `url` answers 200 (with X-Cache `cache` unless it is empty), polling
/// every 20 ms; `None` if it does not within 3 s.
async fn time_until(url: &str, cache: &str) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let answer = get(url).await;
        if answer.status == 200 && (cache.is_empty() || answer.cache() == cache) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Recovery must come within 1 s of healing.
fn assert_recovered(what: &str, took: Option<Duration>) {
    match took {
        Some(took) => assert!(
            took <= Duration::from_secs(1),
            "{what}: recovered only after {took:?}"
        ),
        None => panic!("{what}: not recovered 3 s after healing"),
    }
}

fn faults(services: &Services) -> &cachelab::services::Faults {
    services.faults.as_ref().expect("fault proxies")
}

/// The fault proxy in front of the (single) Redis.
fn redis_proxy(services: &Services) -> &cachelab::stack::proxy::FaultProxy {
    &faults(services).redis[0].1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_slows_a_cache_hit_by_twice_its_ms_on_redis_and_an_uncached_read_on_postgres() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    let latency = Fault::Latency {
        ms: 50,
        jitter_ms: 0,
    };
    for (server, id) in services.servers.iter().zip(31..) {
        get(&format!("{}/users/{id}", server.url())).await;
    }
    redis_proxy(&services).set(latency);
    for (server, id) in services.servers.iter().zip(31..) {
        let url = format!("{}/users/{id}", server.url());
        let mut took = Vec::new();
        for _ in 0..3 {
            let (answer, t) = timed_get(&url).await;
            assert_eq!(
                (answer.status, answer.cache()),
                (200, "HIT"),
                "{}",
                server.name
            );
            took.push(t);
        }
        let (fastest, median) = (quantile(&took, 0.0), quantile(&took, 0.5));
        assert!(
            fastest >= Duration::from_millis(100),
            "{}: a hit through 50 ms of latency took {fastest:?}",
            server.name
        );
        assert!(
            median < Duration::from_millis(200),
            "{}: a hit is one Redis round trip, not two ({took:?})",
            server.name
        );
    }
    redis_proxy(&services).heal();
    for (server, id) in services.servers.iter().zip(31..) {
        let (answer, took) = timed_get(&format!("{}/users/{id}", server.url())).await;
        assert_eq!(answer.cache(), "HIT");
        assert!(
            took < Duration::from_millis(50),
            "{}: healed, {took:?}",
            server.name
        );
    }

    faults(&services).postgres.set(latency);
    for (server, id) in services.servers.iter().zip(41..) {
        let (answer, took) = timed_get(&format!("{}/users/{id}", server.url())).await;
        assert_eq!(
            (answer.status, answer.cache()),
            (200, "MISS"),
            "{}",
            server.name
        );
        assert!(
            took >= Duration::from_millis(100),
            "{}: an uncached read through 50 ms of Postgres latency took {took:?}",
            server.name
        );
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_reads_answer_from_postgres_fast_because_the_breaker_skips_redis() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    let ca = services.server("cache-aside").unwrap();
    for id in 1..=20 {
        get(&format!("{}/users/{id}", ca.url())).await;
    }
    let before = ca.backend.counters.snapshot();
    redis_proxy(&services).set(Fault::Down);
    let mut took = Vec::new();
    for i in 0..200 {
        let id = 1 + i % 20;
        let (answer, t) = timed_get(&format!("{}/users/{id}", ca.url())).await;
        assert_eq!(answer.status, 200, "read {i} during the outage: {answer:?}");
        assert_eq!(answer.json()["id"], id);
        took.push(t);
    }
    let p99 = quantile(&took, 0.99);
    let delta = ca.backend.counters.snapshot().since(&before);
    assert!(
        p99 < Duration::from_millis(50),
        "p99 of 200 reads with Redis down: {p99:?}"
    );
    assert!(
        delta.get(Counter::CacheBypassed) >= 190 && delta.get(Counter::CacheErrors) <= 5,
        "the breaker should skip Redis: {} skipped, {} failed",
        delta.get(Counter::CacheBypassed),
        delta.get(Counter::CacheErrors)
    );
    assert_eq!(delta.get(Counter::DbReads), 200);

    redis_proxy(&services).heal();
    let back = time_until(&format!("{}/users/1", ca.url()), "HIT").await;
    assert_recovered("hits after Redis came back", back);
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_redis_costs_reads_about_the_redis_timeout_once_then_they_are_fast() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    let ca = services.server("cache-aside").unwrap();
    for id in 1..=10 {
        get(&format!("{}/users/{id}", ca.url())).await;
    }
    redis_proxy(&services).set(Fault::Blackhole);
    let (first, took) = timed_get(&format!("{}/users/1", ca.url())).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert!(
        took < Duration::from_millis(1000),
        "the first read waits at most the 500 ms Redis timeout, then reads Postgres: {took:?}"
    );
    let mut took = Vec::new();
    for i in 0..50 {
        let id = 1 + i % 10;
        let (answer, t) = timed_get(&format!("{}/users/{id}", ca.url())).await;
        assert_eq!(answer.status, 200);
        took.push(t);
    }
    let p99 = quantile(&took, 0.99);
    assert!(
        p99 < Duration::from_millis(50),
        "later reads skip the silent Redis: p99 {p99:?} ({took:?})"
    );
    redis_proxy(&services).heal();
    let back = time_until(&format!("{}/users/2", ca.url()), "HIT").await;
    assert_recovered("hits after the blackhole healed", back);
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reset_of_open_connections_the_next_requests_succeed() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    let ca = services.server("cache-aside").unwrap();
    for id in 1..=5 {
        get(&format!("{}/users/{id}", ca.url())).await;
    }
    redis_proxy(&services).reset_connections();
    let reset_at = Instant::now();
    for id in 1..=5 {
        let answer = get(&format!("{}/users/{id}", ca.url())).await;
        assert_eq!(answer.status, 200, "after a Redis reset: {answer:?}");
    }
    let back = time_until(&format!("{}/users/1", ca.url()), "HIT").await;
    assert_recovered("hits after a Redis reset", back.map(|_| reset_at.elapsed()));

    faults(&services).postgres.reset_connections();
    for id in 100..110 {
        let answer = get(&format!("{}/users/{id}", ca.url())).await;
        assert_eq!(
            answer.status, 200,
            "an uncached read right after a Postgres reset: {answer:?}"
        );
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_uncached_reads_answer_503_naming_postgres_and_cached_ones_200_hit() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    for (server, id) in services.servers.iter().zip(51..) {
        get(&format!("{}/users/{id}", server.url())).await;
    }
    faults(&services).postgres.set(Fault::Down);
    for (server, id) in services.servers.iter().zip(51..) {
        let (uncached, took) = timed_get(&format!("{}/users/{}", server.url(), id + 10)).await;
        assert_eq!(uncached.status, 503, "{}: {uncached:?}", server.name);
        assert!(
            uncached.error().contains("postgres"),
            "{}",
            uncached.error()
        );
        assert!(
            took < Duration::from_secs(1),
            "{}: a refused connection fails fast ({took:?})",
            server.name
        );
        let cached = get(&format!("{}/users/{id}", server.url())).await;
        assert_eq!(
            (cached.status, cached.cache()),
            (200, "HIT"),
            "{}",
            server.name
        );
    }
    faults(&services).postgres.heal();
    for (server, id) in services.servers.iter().zip(71..) {
        let back = time_until(&format!("{}/users/{id}", server.url()), "").await;
        assert_recovered(
            &format!("{}: uncached reads after Postgres came back", server.name),
            back,
        );
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_postgres_answers_503_within_the_2s_bound_and_recovers_within_1s() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    for (server, id) in services.servers.iter().zip(81..) {
        get(&format!("{}/users/{id}", server.url())).await;
    }
    faults(&services).postgres.set(Fault::Blackhole);
    let reads: Vec<_> = services
        .servers
        .iter()
        .zip(91..)
        .map(|(server, id)| {
            let url = format!("{}/users/{id}", server.url());
            (
                server.name,
                tokio::spawn(async move { timed_get(&url).await }),
            )
        })
        .collect();
    for (name, read) in reads {
        let (answer, took) = read.await.unwrap();
        assert_eq!(answer.status, 503, "{name}: {answer:?}");
        assert!(answer.error().contains("postgres"), "{}", answer.error());
        assert!(
            took <= Duration::from_millis(3000),
            "{name}: a blackholed Postgres held the read {took:?} (bound 2 s)"
        );
    }
    for (server, id) in services.servers.iter().zip(81..) {
        let (cached, took) = timed_get(&format!("{}/users/{id}", server.url())).await;
        assert_eq!(
            (cached.status, cached.cache()),
            (200, "HIT"),
            "{}",
            server.name
        );
        assert!(
            took < Duration::from_millis(100),
            "{}: {took:?}",
            server.name
        );
    }
    faults(&services).postgres.heal();
    for (server, id) in services.servers.iter().zip(101..) {
        let back = time_until(&format!("{}/users/{id}", server.url()), "").await;
        assert_recovered(
            &format!("{}: after the blackhole healed", server.name),
            back,
        );
    }
    services.shutdown().await;
}

/// SIGCONTs a frozen process tree however the test ends.
struct Frozen(u32);

impl Frozen {
    fn new(pid: u32) -> Self {
        signal_tree(pid, libc::SIGSTOP);
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal_tree(self.0, libc::SIGCONT);
    }
}

/// /health answers 503 within 1 s with an error naming `down` (and not `up`).
async fn assert_unhealthy(base: &str, down: &str, up: &str) -> String {
    let (health, took) = timed_get(&format!("{base}/health")).await;
    assert_eq!(health.status, 503, "{down} is down: {health:?}");
    let error = health.error();
    assert!(error.contains(down) && !error.contains(up), "{error}");
    assert!(took < Duration::from_secs(1), "/health took {took:?}");
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_within_1s_naming_what_is_down_and_checks_the_users_table() {
    let _turn = serial().await;
    let stack = shared_stack();
    let services = start_services(stack.clone()).await;
    let base = services.servers[0].url();
    assert_eq!(get(&format!("{base}/health")).await.status, 200);

    redis_proxy(&services).set(Fault::Blackhole);
    assert_unhealthy(&base, "redis", "postgres").await;
    redis_proxy(&services).heal();
    assert_recovered(
        "/health after Redis healed",
        time_until(&format!("{base}/health"), "").await,
    );

    let pid = stack
        .lock()
        .unwrap()
        .managed_postgres()
        .unwrap()
        .pid()
        .expect("postgres runs");
    let frozen = Frozen::new(pid);
    assert_unhealthy(&base, "postgres", "redis").await;
    drop(frozen);
    assert_recovered(
        "/health after Postgres resumed",
        time_until(&format!("{base}/health"), "").await,
    );

    let (admin, conn) =
        tokio_postgres::connect(&services.stack.database_admin_url, tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    admin.batch_execute("DROP TABLE users").await.unwrap();
    let error = assert_unhealthy(&base, "postgres", "redis").await;
    assert!(
        error.contains("users"),
        "the missing table is named: {error}"
    );
    services
        .reset()
        .await
        .expect("the reset rebuilds the table");
    assert_eq!(get(&format!("{base}/health")).await.status, 200);
    services.shutdown().await;
}

fn lab(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/labs")
        .join(name)
}

/// `cachelab run ARGS LABS` in `cwd`, with extra environment.
fn run(args: &[&str], labs: &[PathBuf], env: &[(&str, &str)], cwd: &Path) -> Run {
    Run::of(
        cachelab()
            .arg("run")
            .args(args)
            .args(labs)
            .envs(env.iter().copied())
            .current_dir(cwd),
    )
}

fn assert_passed(r: &Run, labs: usize) {
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains(&format!("{labs} labs: {labs} passed, 0 failed"))
            || (labs == 1 && r.stdout.contains("1 lab: 1 passed, 0 failed")),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains('✗'), "{}", r.stdout);
}

#[test]
fn process_faults_in_a_lab_leave_reads_answering_and_recover_within_1s() {
    let cwd = tempfile::tempdir().unwrap();
    let r = run(
        &["--db-timeout-ms", "1000"],
        &[lab("process-faults.rhai")],
        &[],
        cwd.path(),
    );
    assert_passed(&r, 1);
}

#[test]
fn a_lab_that_ends_with_faults_on_leaves_the_next_lab_healed_and_healthy() {
    let cwd = tempfile::tempdir().unwrap();
    let r = run(
        &[],
        &[lab("faults-left-on.rhai"), lab("starts-healed.rhai")],
        &[],
        cwd.path(),
    );
    assert_passed(&r, 2);
}

#[test]
fn each_outage_is_logged_once_when_it_starts_and_once_when_it_ends() {
    let cwd = tempfile::tempdir().unwrap();
    let r = run(
        &[],
        &[lab("outage-logs.rhai")],
        &[("RUST_LOG", "cachelab=warn")],
        cwd.path(),
    );
    assert_passed(&r, 1);
    for phrase in [
        "Redis is down",
        "Redis is back",
        "Postgres is down",
        "Postgres is back",
    ] {
        let lines: Vec<_> = r.stderr.lines().filter(|l| l.contains(phrase)).collect();
        assert_eq!(
            lines.len(),
            1,
            "one \"{phrase}\" line for one outage with 100 reads in it:\n{}",
            r.stderr
        );
    }
    assert!(
        r.stderr.lines().count() <= 10,
        "an outage is not logged per request:\n{}",
        r.stderr
    );
}

#[test]
fn a_load_with_history_returns_consistency_and_save_history_writes_jepsen_lines_only_into_the_history_dir(
) {
    let cwd = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let r = run(
        &["--history-dir", dir_arg],
        &[lab("history.rhai")],
        &[],
        cwd.path(),
    );
    assert_passed(&r, 1);
    assert_eq!(common::entries(dir.path()), ["cache-aside.jsonl"]);
    assert!(
        common::entries(cwd.path()).is_empty(),
        "nothing written elsewhere"
    );
    let text = std::fs::read_to_string(dir.path().join("cache-aside.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 800, "an invoke and a completion per operation");
    for line in &lines {
        let fields: Vec<_> = line.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            fields.len(),
            6,
            "process, type, f, key, value, time: {line}"
        );
        assert!(line["process"].is_u64() && line["key"].is_u64() && line["time"].is_u64());
        assert!(["invoke", "ok", "fail", "info"].contains(&line["type"].as_str().unwrap()));
        assert!(["read", "write"].contains(&line["f"].as_str().unwrap()));
    }
    let invokes = lines.iter().filter(|l| l["type"] == "invoke").count();
    assert_eq!(invokes, 400);
    let times: Vec<u64> = lines.iter().map(|l| l["time"].as_u64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "lines in time order"
    );

    // Without --history-dir, or with a name that leaves it, nothing is written.
    let escape = cwd.path().join("escape.rhai");
    std::fs::write(
        &escape,
        "// Escapes\nload(#{path: \"/users/{id}\", ids: \"1..3\", n: 10, mix: #{get: 50, put: 50}, history: true});\nsave_history(\"../escaped.jsonl\");\n",
    )
    .unwrap();
    let r = run(
        &["--history-dir", dir_arg],
        std::slice::from_ref(&escape),
        &[],
        cwd.path(),
    );
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stdout.contains("plain file name"), "{}", r.stdout);
    let r = run(&[], &[escape], &[], cwd.path());
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stdout.contains("--history-dir"), "{}", r.stdout);
    assert_eq!(common::entries(dir.path()), ["cache-aside.jsonl"]);
    assert_eq!(common::entries(cwd.path()), ["escape.rhai"]);
    assert!(!dir.path().parent().unwrap().join("escaped.jsonl").exists());
}
