//! Failure behaviour against real servers: Redis crashes, Postgres stops and comes back,
//! Redis refuses writes when full. Each test owns its stack, since it breaks it.

mod common;

use cachelab::counters::Counter;
use cachelab::stack::{Stack, StackOptions};
use common::{get, redis_cmd, start_services};
use std::sync::{Arc, Mutex};

/// A managed stack of this test's own, shared with its services.
fn own_stack() -> cachelab::services::SharedStack {
    Arc::new(Mutex::new(Stack::start(StackOptions::default()).unwrap()))
}

#[tokio::test]
async fn when_redis_dies_gets_still_answer_from_postgres_and_count_cache_errors() {
    let stack = own_stack();
    let services = start_services(stack.clone()).await;
    let base = services.servers[0].url();
    assert_eq!(get(&format!("{base}/users/1")).await.cache(), "MISS");
    assert_eq!(get(&format!("{base}/users/1")).await.cache(), "HIT");

    stack.lock().unwrap().managed_redis().unwrap().kill();
    for id in [1, 2, 3] {
        let answer = get(&format!("{base}/users/{id}")).await;
        assert_eq!(answer.status, 200, "reads survive a dead Redis");
        assert_eq!(answer.cache(), "MISS");
        assert_eq!(answer.json()["id"], id);
    }
    let stats = services.servers[0].backend.counters.snapshot();
    assert!(
        stats.get(Counter::CacheErrors) + stats.get(Counter::CacheBypassed) >= 3,
        "{stats:?}"
    );
    let health = get(&format!("{base}/health")).await;
    assert_eq!(health.status, 503);
    assert!(health.error().contains("redis"), "{}", health.error());
    assert!(!health.error().contains("postgres"), "{}", health.error());
    services.shutdown().await;
}

#[tokio::test]
async fn when_postgres_stops_reads_of_uncached_users_answer_503_and_recover_when_it_returns() {
    let stack = own_stack();
    let services = start_services(stack.clone()).await;
    let base = services.servers[0].url();
    assert_eq!(get(&format!("{base}/users/1")).await.status, 200);

    stack.lock().unwrap().managed_postgres().unwrap().stop();
    let down = get(&format!("{base}/users/2")).await;
    assert_eq!(down.status, 503);
    assert!(down.error().contains("postgres"), "{}", down.error());
    let cached = get(&format!("{base}/users/1")).await;
    assert_eq!(
        (cached.status, cached.cache()),
        (200, "HIT"),
        "the cache still serves what it holds"
    );
    let put = common::send(hyper::Method::PUT, &format!("{base}/users/1?name=X"), "").await;
    assert_eq!(put.status, 503);
    let health = get(&format!("{base}/health")).await;
    assert_eq!(health.status, 503);
    assert!(health.error().contains("postgres"), "{}", health.error());

    stack
        .lock()
        .unwrap()
        .managed_postgres()
        .unwrap()
        .start_again()
        .unwrap();
    let back = get(&format!("{base}/users/2")).await;
    assert_eq!(
        back.status, 200,
        "the pool reconnects by itself: {:?}",
        back.body
    );
    assert_eq!(get(&format!("{base}/health")).await.status, 200);
    services.shutdown().await;
}

#[tokio::test]
async fn when_redis_is_full_under_noeviction_reads_answer_from_postgres_and_count_errors() {
    let info = own_stack();
    let services = start_services(info.clone()).await;
    let used: String = redis_cmd(&info, &["INFO", "memory"]).await;
    let used: u64 = used
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    let _: () = redis_cmd(&info, &["CONFIG", "SET", "maxmemory", &used.to_string()]).await;
    let _: () = redis_cmd(&info, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]).await;
    services.knobs.update(|k| k.padding = 100_000);
    let base = services.servers[1].url();
    for id in 1..=5 {
        let answer = get(&format!("{base}/users/{id}")).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["id"], id);
    }
    let stats = services.servers[1].backend.counters.snapshot();
    assert!(stats.get(Counter::CacheErrors) >= 1, "{stats:?}");
    assert_eq!(stats.get(Counter::DbReads), 5);
    services.shutdown().await;
}
