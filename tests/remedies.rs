//! Issue #8's promises against the real managed Redis and PostgreSQL: every protection mode
//! on every strategy, `lock` across two `cachelab serve` processes and past a holder that
//! died, no hang when Postgres is out, TTL jitter, tombstones, write-behind's queue and
//! flusher (including a clean Ctrl-C of `serve`), and `/metrics` naming every counter.
//!
//! The in-process tests share one managed stack and take turns (`serial`); each strategy
//! gets its own users so the four servers can be driven at once.

mod common;

use cachelab::counters::{Counter, CounterSnapshot};
use cachelab::knobs::Protection;
use cachelab::services::{ServerOptions, Services};
use cachelab::stack::proxy::Fault;
use common::{
    eventually, get, info, private_tmpdir, redis_at, send, serial, shared_stack, start_services,
    Answer, Serve,
};
use hyper::Method;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Every strategy, in registry order.
const STRATEGIES: [&str; 4] = [
    "cache-aside",
    "write-through",
    "write-behind",
    "refresh-ahead",
];

/// The write-behind queue as `redis-cli HGETALL` shows it.
const WB_QUEUE: &str = "{wb}:queue";

/// One answer and how long it took.
struct Timed {
    answer: Answer,
    took: Duration,
}

/// `n` GETs of `url` sent at once.
async fn burst(url: String, n: usize) -> Vec<Timed> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let answer = get(&url).await;
                Timed {
                    answer,
                    took: started.elapsed(),
                }
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.expect("a request task"));
    }
    answers
}

/// For every strategy at once, `n` GETs of its own user (`first_id` + its place in the
/// registry) sent at once: (strategy, user id, answers).
async fn bursts(
    services: &Services,
    first_id: i32,
    n: usize,
) -> Vec<(&'static str, i32, Vec<Timed>)> {
    let started: Vec<_> = services
        .servers
        .iter()
        .zip(first_id..)
        .map(|(server, id)| {
            let url = format!("{}/users/{id}", server.url());
            (server.name, id, tokio::spawn(burst(url, n)))
        })
        .collect();
    let mut all = Vec::new();
    for (name, id, task) in started {
        all.push((name, id, task.await.expect("a burst task")));
    }
    all
}

fn seed_name(id: i32) -> &'static str {
    &cachelab::seed::users()[id as usize - 1].name
}

/// How many answers carried each X-Cache value.
fn tally(answers: &[Timed]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in answers {
        *counts.entry(t.answer.cache().to_string()).or_default() += 1;
    }
    counts
}

/// Every answer is 200 with user `id` as users.json has it.
fn assert_seed_user(strategy: &str, id: i32, answers: &[Timed]) {
    for t in answers {
        assert_eq!(t.answer.status, 200, "{strategy} user {id}: {:?}", t.answer);
        let user = t.answer.json();
        assert_eq!(user["id"], id, "{strategy}");
        assert_eq!(user["name"], seed_name(id), "{strategy}: the right row");
    }
}

fn counters(services: &Services, strategy: &str) -> CounterSnapshot {
    services
        .server(strategy)
        .expect("a registered strategy")
        .backend
        .counters
        .snapshot()
}

/// A session on the stack's database as its owner (changes rows behind the servers' back).
async fn admin(services: &Services) -> tokio_postgres::Client {
    postgres_at(&services.stack.database_admin_url).await
}

async fn postgres_at(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("postgres");
    tokio::spawn(conn);
    client
}

/// The name Postgres holds for user `id` (`None`: no such row).
async fn db_name(db: &tokio_postgres::Client, id: i32) -> Option<String> {
    db.query_opt("SELECT name FROM users WHERE id = $1", &[&id])
        .await
        .expect("a query")
        .map(|row| row.get(0))
}

async fn redis<T: redis::FromRedisValue>(services: &Services, args: &[&str]) -> T {
    redis_at(&services.stack.redis_url, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_protection_every_concurrent_cold_get_reads_postgres_on_every_strategy() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| k.db_delay_ms = 300);
    const N: usize = 20;
    for (name, id, answers) in bursts(&services, 101, N).await {
        assert_seed_user(name, id, &answers);
        let c = counters(&services, name);
        let reads = c.get(Counter::DbReads) as usize;
        assert!(
            (N - N / 5..=N).contains(&reads),
            "{name}: {N} concurrent cold GETs read Postgres {reads} times; without protection each should ({:?})",
            tally(&answers)
        );
        assert_eq!(tally(&answers).get("MISS"), Some(&reads), "{name}");
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn singleflight_and_lock_read_postgres_once_and_the_others_answer_coalesced_with_the_row() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    const N: usize = 30;
    for (mode, first_id) in [(Protection::Singleflight, 111), (Protection::Lock, 121)] {
        services.knobs.update(|k| {
            k.protection = mode;
            k.db_delay_ms = 800;
        });
        let before: Vec<_> = services
            .servers
            .iter()
            .map(|s| s.backend.counters.snapshot())
            .collect();
        for ((name, id, answers), before) in
            bursts(&services, first_id, N).await.iter().zip(&before)
        {
            let mode = mode.name();
            assert_seed_user(name, *id, answers);
            let delta = counters(&services, name).since(before);
            assert_eq!(
                delta.get(Counter::DbReads),
                1,
                "{mode} on {name}: {N} concurrent cold GETs must read Postgres exactly once ({:?})",
                tally(answers)
            );
            let expected = BTreeMap::from([("COALESCED".to_string(), N - 1), ("MISS".into(), 1)]);
            let took: Vec<_> = answers.iter().map(|t| t.took.as_millis()).collect();
            assert_eq!(
                tally(answers),
                expected,
                "{mode} on {name}: answers took {took:?} ms with an 800 ms query"
            );
            assert_eq!(
                delta.get(Counter::Coalesced),
                N as u64 - 1,
                "{mode} on {name}"
            );
            if mode == "lock" {
                assert_eq!(delta.get(Counter::LockWaits), N as u64 - 1, "{name}");
            }
        }
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfetch_recomputes_a_near_expiry_entry_early_so_it_never_expires_on_every_strategy() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    // δ ≈ 200 ms (the slow query) and β = 3: a hit with t ms left recomputes with
    // probability exp(-t / 600), so a 1 s entry is recomputed long before it expires.
    services.knobs.update(|k| {
        k.protection = Protection::Xfetch;
        k.ttl_ms = 1000;
        k.db_delay_ms = 200;
        k.xfetch_beta = 3.0;
    });
    let readers: Vec<_> = services
        .servers
        .iter()
        .zip(131..)
        .map(|(server, id)| {
            let url = format!("{}/users/{id}", server.url());
            let reader = tokio::spawn(async move {
                let mut answers = Vec::new();
                let until = Instant::now() + Duration::from_millis(2500);
                while Instant::now() < until {
                    let started = Instant::now();
                    let answer = get(&url).await;
                    answers.push(Timed {
                        answer,
                        took: started.elapsed(),
                    });
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                answers
            });
            (server.name, id, reader)
        })
        .collect();
    for (name, id, reader) in readers {
        let answers = reader.await.unwrap();
        assert_seed_user(name, id, &answers);
        let c = counters(&services, name);
        let (misses, early) = (c.get(Counter::Misses), c.get(Counter::EarlyRefreshes));
        assert!(
            early >= 2,
            "{name}: {early} early recomputes in 2.5 s of reads on a 1 s TTL ({:?})",
            tally(&answers)
        );
        assert_eq!(
            tally(&answers).get("MISS").copied().unwrap_or(0) as u64,
            misses,
            "{name}: each recompute answers X-Cache MISS"
        );
        assert_eq!(
            misses,
            early + 1,
            "{name}: every miss after the cold one must be an early recompute (the entry never expired): {misses} misses, {early} early recomputes, {} cache sets",
            c.get(Counter::CacheSets)
        );
    }

    // An early recompute must renew the entry: 5 s left of 10, δβ = 200 ms × 1000, so a
    // hit recomputes with probability exp(-5000 / 200000) ≈ 0.98.
    services.knobs.update(|k| {
        k.ttl_ms = 10_000;
        k.xfetch_beta = 1000.0;
    });
    for (server, id) in services.servers.iter().zip(136..) {
        let (name, url) = (server.name, format!("{}/users/{id}", server.url()));
        assert_eq!(get(&url).await.cache(), "MISS", "{name}: cold");
        let key = format!("user:{id}");
        let _: () = redis(&services, &["PEXPIRE", &key, "5000"]).await;
        let before = server.backend.counters.snapshot();
        let mut early = None;
        for _ in 0..5 {
            let answer = get(&url).await;
            assert_eq!(answer.status, 200);
            if answer.cache() == "MISS" {
                early = Some(answer);
                break;
            }
        }
        assert!(early.is_some(), "{name}: no early recompute in 5 hits");
        let delta = server.backend.counters.snapshot().since(&before);
        assert_eq!(delta.get(Counter::EarlyRefreshes), 1, "{name}");
        let pttl: i64 = redis(&services, &["PTTL", &key]).await;
        assert!(
            pttl > 9_000,
            "{name}: the early recompute read Postgres but left the entry to expire ({pttl} ms left of 10 s; {} cache sets)",
            delta.get(Counter::CacheSets)
        );
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swr_answers_a_stale_entry_at_once_refreshes_it_once_in_the_background_then_hits_the_new_row(
) {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| k.protection = Protection::Swr);
    let db = admin(&services).await;
    for (server, id) in services.servers.iter().zip(141..) {
        let cold = get(&format!("{}/users/{id}", server.url())).await;
        assert_eq!(
            (cold.status, cold.cache()),
            (200, "MISS"),
            "{}",
            server.name
        );
        db.execute(
            "UPDATE users SET name = $2 WHERE id = $1",
            &[&id, &format!("Renamed {id}")],
        )
        .await
        .unwrap();
        // 60 s fresh + 30 s stale: 20 s left is past the TTL, inside stale_secs.
        let _: () = redis(&services, &["PEXPIRE", &format!("user:{id}"), "20000"]).await;
    }
    services.knobs.update(|k| k.db_delay_ms = 600);
    for (name, id, answers) in bursts(&services, 141, 10).await {
        assert_seed_user(name, id, &answers);
        assert_eq!(
            tally(&answers),
            BTreeMap::from([("STALE".to_string(), 10)]),
            "{name}"
        );
        let slowest = answers.iter().map(|t| t.took).max().unwrap();
        assert!(
            slowest < Duration::from_millis(300),
            "{name}: a stale answer must not wait for the 600 ms query (slowest {slowest:?})"
        );
        assert_eq!(
            counters(&services, name).get(Counter::BackgroundRefreshes),
            1,
            "{name}: one background refresh for 10 stale hits"
        );
    }
    for (server, id) in services.servers.iter().zip(141..) {
        let url = format!("{}/users/{id}", server.url());
        let refreshed = eventually(Duration::from_secs(3), || async {
            let a = get(&url).await;
            a.cache() == "HIT" && a.json()["name"] == format!("Renamed {id}")
        })
        .await;
        assert!(
            refreshed,
            "{}: no HIT with the new row after the refresh",
            server.name
        );
        let pttl: i64 = redis(&services, &["PTTL", &format!("user:{id}")]).await;
        assert!(
            pttl > 80_000,
            "{}: refreshed for TTL + stale ({pttl} ms)",
            server.name
        );
        let c = counters(&services, server.name);
        assert_eq!(
            c.get(Counter::DbReads),
            2,
            "{}: the cold read and one refresh",
            server.name
        );
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_answers_a_hit_with_little_ttl_left_and_refreshes_each_key_once_in_the_background(
) {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    let ra = services.server("refresh-ahead").unwrap();
    let ca = services.server("cache-aside").unwrap();
    let db = admin(&services).await;
    let ids = [151, 152];
    for id in ids {
        for server in [ra, ca] {
            get(&format!("{}/users/{id}", server.url())).await;
        }
        let plenty = get(&format!("{}/users/{id}", ra.url())).await;
        assert_eq!(plenty.cache(), "HIT");
    }
    assert_eq!(
        ra.backend.counters.get(Counter::BackgroundRefreshes),
        0,
        "a hit with most of its TTL left is not refreshed"
    );
    for id in ids {
        db.execute(
            "UPDATE users SET name = $2 WHERE id = $1",
            &[&id, &format!("Ahead {id}")],
        )
        .await
        .unwrap();
        // 5 s of 60 left: below refresh_ratio (0.25) of the TTL.
        let _: () = redis(&services, &["PEXPIRE", &format!("user:{id}"), "5000"]).await;
    }
    services.knobs.update(|k| k.db_delay_ms = 500);
    let hits: Vec<_> = ids
        .iter()
        .map(|id| tokio::spawn(burst(format!("{}/users/{id}", ra.url()), 10)))
        .collect();
    for (task, id) in hits.into_iter().zip(ids) {
        let answers = task.await.unwrap();
        assert_seed_user("refresh-ahead", id, &answers);
        assert_eq!(tally(&answers), BTreeMap::from([("HIT".to_string(), 10)]));
        let slowest = answers.iter().map(|t| t.took).max().unwrap();
        assert!(
            slowest < Duration::from_millis(300),
            "the hits did not wait for the 500 ms refresh ({slowest:?})"
        );
    }
    assert_eq!(
        ra.backend.counters.get(Counter::BackgroundRefreshes),
        2,
        "one background refresh per key, not per hit"
    );
    for id in ids {
        let url = format!("{}/users/{id}", ra.url());
        let refreshed = eventually(Duration::from_secs(3), || async {
            let a = get(&url).await;
            a.cache() == "HIT" && a.json()["name"] == format!("Ahead {id}")
        })
        .await;
        assert!(refreshed, "user {id}: the refresh never replaced the row");
        let pttl: i64 = redis(&services, &["PTTL", &format!("user:{id}")]).await;
        assert!(
            pttl > 55_000,
            "user {id}: refreshed for a whole TTL ({pttl} ms)"
        );
    }
    assert_eq!(
        ra.backend.counters.get(Counter::DbReads),
        4,
        "2 cold reads, 2 refreshes"
    );
    let _: () = redis(&services, &["PEXPIRE", "user:151", "5000"]).await;
    let short = get(&format!("{}/users/151", ca.url())).await;
    assert_eq!(short.cache(), "HIT");
    assert_eq!(
        ca.backend.counters.get(Counter::BackgroundRefreshes),
        0,
        "cache-aside does not refresh ahead"
    );
    services.shutdown().await;
}

/// The sum over every strategy of a counter on a `serve` process's `/metrics`.
async fn metric_total(base: &str, counter: &str) -> u64 {
    let text = get(&format!("{base}/metrics")).await;
    let prefix = format!("cachelab_{counter}_total{{");
    String::from_utf8_lossy(&text.body)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_reads_postgres_once_across_two_serve_processes_on_one_redis_and_postgres() {
    let _turn = serial().await;
    // The shared managed stack stands in for the user's own Redis and Postgres.
    let stack = info(&shared_stack());
    let tmp = private_tmpdir();
    let args = [
        "--redis-url",
        &stack.redis_url,
        "--database-url",
        &stack.database_admin_url,
        "--allow-flush",
        "--reset-data",
        "--protection",
        "lock",
        "--db-delay-ms",
        "200",
        "--port",
        "0",
    ];
    let (a, b) = tokio::task::block_in_place(|| {
        (
            Serve::start(tmp.path(), &args),
            Serve::start(tmp.path(), &args),
        )
    });
    let _: () = redis_at(&stack.redis_url, &["FLUSHALL"]).await;
    // User 161 through cache-aside on both; user 162 through write-through on one and
    // write-behind on the other: one lock per user, whichever process and strategy.
    let plan = [
        (a.url("cache-aside").unwrap(), 161),
        (b.url("cache-aside").unwrap(), 161),
        (a.url("write-through").unwrap(), 162),
        (b.url("write-behind").unwrap(), 162),
    ];
    let tasks: Vec<_> = plan
        .iter()
        .map(|(base, id)| {
            (
                base,
                *id,
                tokio::spawn(burst(format!("{base}/users/{id}"), 15)),
            )
        })
        .collect();
    let mut misses = BTreeMap::new();
    for (base, id, task) in tasks {
        let answers = task.await.unwrap();
        assert_seed_user(base, id, &answers);
        *misses.entry(id).or_insert(0) += tally(&answers).get("MISS").copied().unwrap_or(0);
    }
    // Each strategy server's /metrics shows its own counters: sum over all eight.
    let bases: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|serve| STRATEGIES.map(|name| serve.url(name).unwrap()))
        .collect();
    let (mut reads, mut waits) = (0, 0);
    for base in &bases {
        reads += metric_total(base, "db_reads").await;
        waits += metric_total(base, "lock_waits").await;
    }
    let logs = tokio::task::block_in_place(|| (a.stop(), b.stop()));
    assert_eq!(
        reads, 2,
        "60 concurrent cold GETs of 2 users on two processes must read Postgres once per user (lock waits {waits}, misses {misses:?})\n{logs:?}"
    );
    assert_eq!(misses, BTreeMap::from([(161, 1), (162, 1)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_lock_holder_dies_waiters_read_postgres_themselves_after_the_lock_ttl() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| {
        k.protection = Protection::Lock;
        k.lock_ttl_ms = 1500;
    });
    // A holder that took each user's lock and died before filling the cache.
    for id in 5..9 {
        let lock = format!("lock:{{user:{id}}}");
        let _: () = redis(&services, &["SET", &lock, "x", "PX", "1500"]).await;
    }
    for (name, id, answers) in bursts(&services, 5, 5).await {
        assert_seed_user(name, id, &answers);
        for t in &answers {
            assert!(
                t.took >= Duration::from_millis(1200) && t.took <= Duration::from_millis(3500),
                "{name}: a waiter answered after {:?}; it should wait out the 1.5 s lock, then read",
                t.took
            );
        }
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_protection_mode_turns_a_postgres_outage_into_a_hang() {
    let _turn = serial().await;
    let mut options = ServerOptions::loopback(60);
    options.db_timeout = Duration::from_millis(500);
    let services = Services::start(shared_stack(), &options)
        .await
        .expect("the servers");
    services.reset().await.unwrap();
    let proxy = &services.faults.as_ref().unwrap().postgres;
    const LOCK_TTL_MS: u64 = 500;
    // A waiter waits at most the lock TTL, then its own bounded read (pool wait plus
    // statement): anything later is a hang.
    let bound = Duration::from_millis(LOCK_TTL_MS + 2 * 500 + 1000);
    let mut first_id = 171;
    for (outage, fault) in [("stopped", Fault::Down), ("blackholed", Fault::Blackhole)] {
        for mode in Protection::NAMES {
            services.knobs.update(|k| {
                k.protection = Protection::parse(mode).unwrap();
                k.lock_ttl_ms = LOCK_TTL_MS;
            });
            proxy.set(fault);
            for (name, id, answers) in bursts(&services, first_id, 5).await {
                for t in &answers {
                    assert_eq!(
                        t.answer.status, 503,
                        "{mode} on {name}, Postgres {outage}, user {id}: {:?}",
                        t.answer
                    );
                    assert!(
                        t.answer.error().contains("postgres"),
                        "{}",
                        t.answer.error()
                    );
                    assert!(
                        t.took <= bound,
                        "{mode} on {name}, Postgres {outage}: a 503 took {:?} (bound {bound:?})",
                        t.took
                    );
                }
            }
            proxy.heal();
            first_id += 4;
        }
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_jitter_spreads_the_ttls_of_fresh_entries_within_the_percentage() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| {
        k.ttl_ms = 100_000;
        k.ttl_jitter_percent = 20.0;
    });
    let mut fills = Vec::new();
    for (server, first) in services.servers.iter().zip((1..).step_by(50)) {
        for id in first..first + 50 {
            let url = format!("{}/users/{id}", server.url());
            fills.push((
                server.name,
                id,
                tokio::spawn(async move { get(&url).await }),
            ));
        }
    }
    let mut by_strategy: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let client = redis::Client::open(services.stack.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for (name, id, fill) in fills {
        assert_eq!(fill.await.unwrap().status, 200);
        let pttl: i64 = redis::cmd("PTTL")
            .arg(format!("user:{id}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        by_strategy.entry(name).or_default().push(pttl);
    }
    assert_eq!(by_strategy.len(), 4);
    for (name, pttls) in by_strategy {
        let (min, max) = (*pttls.iter().min().unwrap(), *pttls.iter().max().unwrap());
        // ±20% of 100 s, less the seconds the test itself took.
        assert!(
            min >= 78_000 && max <= 120_000,
            "{name}: TTLs {min}..{max} ms outside 100 s ± 20%: {pttls:?}"
        );
        assert!(
            min < 90_000 && max > 110_000,
            "{name}: 50 TTLs should spread to both sides: {min}..{max} ms"
        );
        let mut distinct = pttls.clone();
        distinct.sort();
        distinct.dedup();
        assert!(
            distinct.len() > 40,
            "{name}: TTLs are not spread: {pttls:?}"
        );
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_ttl_caches_a_404_as_a_tombstone_hit_and_a_post_creating_the_id_is_not_hidden() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    let ca = services.server("cache-aside").unwrap();
    for _ in 0..2 {
        let off = get(&format!("{}/users/5000", ca.url())).await;
        assert_eq!((off.status, off.cache()), (404, "MISS"));
    }
    assert_eq!(
        ca.backend.counters.get(Counter::DbReads),
        2,
        "negative caching is off by default: every 404 reads Postgres"
    );

    services.knobs.update(|k| k.negative_ttl_secs = 30);
    let next = cachelab::seed::users().len() as i32 + 1;
    for (server, id) in services.servers.iter().zip(next..) {
        let name = server.name;
        let url = format!("{}/users/{id}", server.url());
        let before = server.backend.counters.snapshot();
        let miss = get(&url).await;
        assert_eq!((miss.status, miss.cache()), (404, "MISS"), "{name}");
        let hit = get(&url).await;
        assert_eq!(
            (hit.status, hit.cache()),
            (404, "HIT"),
            "{name}: a tombstone hit"
        );
        assert_eq!(hit.body, miss.body, "{name}: the same 404 body");
        let delta = server.backend.counters.snapshot().since(&before);
        assert_eq!(delta.get(Counter::DbReads), 1, "{name}");
        assert_eq!(delta.get(Counter::Tombstones), 1, "{name}");
        let cached: String = redis(&services, &["GET", &format!("user:{id}")]).await;
        assert_eq!(
            cached.as_bytes(),
            &miss.body[..],
            "{name}: the tombstone is the 404 body"
        );
        let ttl: i64 = redis(&services, &["TTL", &format!("user:{id}")]).await;
        assert!((1..=30).contains(&ttl), "{name}: tombstone TTL {ttl}");

        let created = send(
            Method::POST,
            &format!(
                "{}/users?name=Created%20{id}&email=created{id}@example.com",
                server.url()
            ),
            "",
        )
        .await;
        assert_eq!(created.status, 201, "{name}");
        assert_eq!(
            created.json()["id"],
            id,
            "{name}: the POST takes the tombstoned id"
        );
        let after = get(&url).await;
        assert_eq!(
            after.status, 200,
            "{name}: the tombstone hides the user a POST created: {:?}",
            after
        );
        assert_eq!(after.json()["name"], format!("Created {id}"), "{name}");
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_queues_put_post_and_delete_in_redis_until_one_flush_applies_them() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| k.flush_interval_ms = 60_000);
    let wb = services.server("write-behind").unwrap();
    let base = wb.url();
    let db = admin(&services).await;

    let put = send(Method::PUT, &format!("{base}/users/20?name=Queued"), "").await;
    assert_eq!(put.status, 200);
    assert_eq!(put.json()["name"], "Queued");
    let queued: Option<String> = redis(&services, &["HGET", WB_QUEUE, "20"]).await;
    let queued = queued.expect("the PUT waits in {wb}:queue");
    assert!(queued.contains("Queued"), "{queued}");
    assert_eq!(
        db_name(&db, 20).await.as_deref(),
        Some(seed_name(20)),
        "Postgres lags"
    );

    let n = cachelab::seed::users().len() as i32;
    let post = send(
        Method::POST,
        &format!("{base}/users?name=Posted&email=posted@example.com"),
        "",
    )
    .await;
    assert_eq!(post.status, 201);
    assert_eq!(post.json()["id"], n + 1, "the id comes from the sequence");
    let queued: Option<String> = redis(&services, &["HGET", WB_QUEUE, &(n + 1).to_string()]).await;
    assert!(queued.is_some_and(|q| q.contains("Posted")));
    assert_eq!(db_name(&db, n + 1).await, None, "not in Postgres yet");
    let other = send(
        Method::POST,
        &format!(
            "{}/users?name=Elsewhere&email=elsewhere@example.com",
            services.server("cache-aside").unwrap().url()
        ),
        "",
    )
    .await;
    assert_eq!(
        other.json()["id"],
        n + 2,
        "the sequence moved on: no id is handed out twice"
    );

    let deleted = send(Method::DELETE, &format!("{base}/users/21"), "").await;
    assert_eq!(deleted.status, 204);
    let queued: Option<String> = redis(&services, &["HGET", WB_QUEUE, "21"]).await;
    assert!(queued.is_some_and(|q| q.contains("delete")));
    assert!(
        db_name(&db, 21).await.is_some(),
        "the row waits for the flush"
    );
    assert_eq!(get(&format!("{base}/users/21")).await.status, 404);
    let read = get(&format!("{base}/users/20")).await;
    assert_eq!(
        (read.cache(), read.json()["name"].as_str()),
        ("HIT", Some("Queued"))
    );
    let c = wb.backend.counters.snapshot();
    assert_eq!(
        (c.get(Counter::WbQueued), c.get(Counter::WbFlushed)),
        (3, 0)
    );

    services.knobs.update(|k| k.flush_interval_ms = 50);
    let flushed = eventually(Duration::from_secs(3), || async {
        let left: i64 = redis(&services, &["EXISTS", WB_QUEUE, "{wb}:flushing"]).await;
        left == 0 && wb.backend.counters.get(Counter::WbFlushed) == 3
    })
    .await;
    assert!(
        flushed,
        "the queue was not flushed: {:?}",
        wb.backend.counters.snapshot()
    );
    assert_eq!(db_name(&db, 20).await.as_deref(), Some("Queued"));
    assert_eq!(db_name(&db, n + 1).await.as_deref(), Some("Posted"));
    assert_eq!(db_name(&db, 21).await, None);
    let c = wb.backend.counters.snapshot();
    assert_eq!(
        c.get(Counter::WbBatches),
        1,
        "one transaction for the batch"
    );
    assert_eq!(c.get(Counter::DbWrites), 3);
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_behind_read_never_sees_a_queued_change_undone() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| k.flush_interval_ms = 60_000);
    let wb = services.server("write-behind").unwrap();
    let base = wb.url();
    let db = admin(&services).await;

    // The cached row goes (eviction, a crash of the key): the queue still answers.
    assert_eq!(
        send(Method::PUT, &format!("{base}/users/22?name=New"), "")
            .await
            .status,
        200
    );
    let _: () = redis(&services, &["DEL", "user:22"]).await;
    let before = wb.backend.counters.snapshot();
    let read = get(&format!("{base}/users/22")).await;
    assert_eq!(read.status, 200);
    assert_eq!(
        read.json()["name"],
        "New",
        "the queued PUT, not Postgres' old row"
    );
    let delta = wb.backend.counters.snapshot().since(&before);
    assert_eq!(delta.get(Counter::DbReads), 0, "answered from the queue");
    assert_eq!(db_name(&db, 22).await.as_deref(), Some(seed_name(22)));
    assert_eq!(get(&format!("{base}/users/22")).await.cache(), "HIT");

    assert_eq!(
        send(Method::DELETE, &format!("{base}/users/23"), "")
            .await
            .status,
        204
    );
    let _: () = redis(&services, &["DEL", "user:23"]).await;
    assert_eq!(
        get(&format!("{base}/users/23")).await.status,
        404,
        "a queued DELETE holds"
    );

    // A slow read that loaded the old row must not cache it over the row a PUT queued
    // while it ran.
    services.knobs.update(|k| k.db_delay_ms = 600);
    let slow_url = format!("{base}/users/24");
    let slow = tokio::spawn(async move { get(&slow_url).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    services.knobs.update(|k| k.db_delay_ms = 0);
    let put = send(Method::PUT, &format!("{base}/users/24?name=Newer"), "").await;
    assert_eq!(put.status, 200);
    let slow = slow.await.unwrap();
    assert_eq!(
        slow.json()["name"],
        seed_name(24),
        "the slow read began before the PUT"
    );
    let after = get(&format!("{base}/users/24")).await;
    assert_eq!(
        after.json()["name"],
        "Newer",
        "the slow read put the old row back over the queued PUT"
    );
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_coalesces_writes_to_one_user_into_one_postgres_write_and_the_last_wins() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| k.flush_interval_ms = 60_000);
    let wb = services.server("write-behind").unwrap();
    for i in 0..100 {
        let put = send(
            Method::PUT,
            &format!("{}/users/25?name=Name%20{i}", wb.url()),
            "",
        )
        .await;
        assert_eq!(put.status, 200);
    }
    let c = wb.backend.counters.snapshot();
    assert_eq!(
        (c.get(Counter::WbQueued), c.get(Counter::WbCoalesced)),
        (100, 99)
    );
    let len: i64 = redis(&services, &["HLEN", WB_QUEUE]).await;
    assert_eq!(len, 1, "one queue entry per user");
    services.knobs.update(|k| k.flush_interval_ms = 50);
    let db = admin(&services).await;
    let flushed = eventually(Duration::from_secs(3), || async {
        db_name(&db, 25).await.as_deref() == Some("Name 99")
    })
    .await;
    assert!(flushed, "the last write did not reach Postgres");
    let c = wb.backend.counters.snapshot();
    assert_eq!(
        (
            c.get(Counter::WbFlushed),
            c.get(Counter::WbBatches),
            c.get(Counter::DbWrites)
        ),
        (1, 1, 1),
        "100 PUTs to one user become one Postgres write"
    );
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_flushes_what_is_queued_when_the_servers_shut_down() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| k.flush_interval_ms = 60_000);
    let wb = services.server("write-behind").unwrap().url();
    let put = send(
        Method::PUT,
        &format!("{wb}/users/26?name=At%20Shutdown"),
        "",
    )
    .await;
    assert_eq!(put.status, 200);
    let db = admin(&services).await;
    assert_eq!(db_name(&db, 26).await.as_deref(), Some(seed_name(26)));
    let redis_url = services.stack.redis_url.clone();
    let started = Instant::now();
    services.shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert_eq!(db_name(&db, 26).await.as_deref(), Some("At Shutdown"));
    let left: i64 = redis_at(&redis_url, &["EXISTS", WB_QUEUE, "{wb}:flushing"]).await;
    assert_eq!(left, 0, "nothing left queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_ctrl_c_of_serve_flushes_the_writes_write_behind_queued() {
    let _turn = serial().await;
    let stack = info(&shared_stack());
    let tmp = private_tmpdir();
    let serve = tokio::task::block_in_place(|| {
        Serve::start(
            tmp.path(),
            &[
                "--redis-url",
                &stack.redis_url,
                "--database-url",
                &stack.database_admin_url,
                "--allow-flush",
                "--reset-data",
                "--flush-interval-ms",
                "60000",
                "--strategy",
                "write-behind",
                "--port",
                "0",
            ],
        )
    });
    let wb = serve.url("write-behind").unwrap();
    let put = send(Method::PUT, &format!("{wb}/users/27?name=Ctrl%20C"), "").await;
    assert_eq!(put.status, 200);
    let db = postgres_at(&stack.database_admin_url).await;
    assert_eq!(
        db_name(&db, 27).await.as_deref(),
        Some(seed_name(27)),
        "still queued"
    );
    let log = tokio::task::block_in_place(|| serve.stop());
    assert_eq!(
        db_name(&db, 27).await.as_deref(),
        Some("Ctrl C"),
        "the queued PUT was lost on Ctrl-C:\n{log}"
    );
    let left: i64 = redis_at(&stack.redis_url, &["HLEN", WB_QUEUE]).await;
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_shows_every_counter_for_every_strategy() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    for (server, id) in services.servers.iter().zip(28..) {
        get(&format!("{}/users/{id}", server.url())).await;
        get(&format!("{}/users/{id}", server.url())).await;
    }
    for server in &services.servers {
        let text = get(&format!("{}/metrics", server.url())).await;
        let text = String::from_utf8_lossy(&text.body).into_owned();
        for counter in Counter::ALL {
            let name = counter.name();
            let line = format!(
                "cachelab_{name}_total{{strategy=\"{}\"}} {}",
                server.name,
                server.backend.counters.get(*counter)
            );
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
            assert!(
                text.contains(&format!("# HELP cachelab_{name}_total ")),
                "{name} has no HELP line"
            );
        }
        assert!(text.contains(&format!(
            "cachelab_hits_total{{strategy=\"{}\"}} 1",
            server.name
        )));
    }
    services.shutdown().await;
}
