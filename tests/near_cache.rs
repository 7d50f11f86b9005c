//! Issue #16's promises for the near cache (an L1 in each server process in front of
//! Redis), against the real managed Redis and PostgreSQL: each mode's hits and staleness,
//! the fill-vs-invalidation guard off and on, a silent invalidation link, FLUSHALL, a Redis
//! restart, and capacity eviction.
//!
//! The tests share one managed stack and take turns (`serial`).

mod common;

use cachelab::counters::{Counter, CounterSnapshot};
use cachelab::knobs::{NearMode, WriteGuard};
use cachelab::services::Services;
use cachelab::stack::proxy::Fault;
use common::{eventually, get, redis_cmd, send, serial, shared_stack, start_services, Answer};
use hyper::Method;
use std::time::Duration;

fn url(services: &Services, strategy: &str, id: i32) -> String {
    format!("{}/users/{id}", services.server(strategy).unwrap().url())
}

fn name(answer: &Answer) -> String {
    answer.json()["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The cache-aside server's counters now.
fn cache_aside_counters(services: &Services) -> CounterSnapshot {
    services
        .server("cache-aside")
        .unwrap()
        .backend
        .counters
        .snapshot()
}

/// Reads of `id` on cache-aside until one is answered from L1 (at most 2 s).
async fn until_near(services: &Services, id: i32) -> bool {
    let at = url(services, "cache-aside", id);
    eventually(Duration::from_secs(2), || {
        let at = at.clone();
        async move { get(&at).await.cache() == "NEAR" }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_mode_answers_from_l1_and_its_staleness_ends_with_near_ttl() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| {
        k.near_cache = NearMode::Ttl;
        k.near_ttl_ms = 600;
    });
    let at = url(&services, "cache-aside", 11);
    assert_eq!(get(&at).await.cache(), "MISS");
    let near = get(&at).await;
    assert_eq!(
        near.cache(),
        "NEAR",
        "the second read comes from the server's L1"
    );
    // A write through another server is never seen by this L1 until its entry expires.
    let put = send(
        Method::PUT,
        &format!("{}?name=Changed", url(&services, "write-through", 11)),
        "",
    )
    .await;
    assert_eq!(put.status, 200);
    let stale = get(&at).await;
    assert_eq!(
        (stale.cache(), name(&stale).as_str()),
        ("NEAR", name(&near).as_str()),
        "ttl mode is stale"
    );
    let fresh = eventually(Duration::from_secs(2), || {
        let at = at.clone();
        async move { name(&get(&at).await) == "Changed" }
    })
    .await;
    assert!(
        fresh,
        "after near_ttl_ms the entry is gone and the new row is read"
    );
    let c = cache_aside_counters(&services);
    assert!(c.get(Counter::NearHits) >= 2);
    assert_eq!(
        c.get(Counter::NearFills),
        2,
        "one fill for the first read, one after the entry expired: {c:?}"
    );
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_mode_drops_an_l1_row_when_anyone_writes_its_key() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| k.near_cache = NearMode::Tracking);
    assert!(until_near(&services, 12).await, "the row reaches L1");
    let put = send(
        Method::PUT,
        &format!("{}?name=Elsewhere", url(&services, "write-through", 12)),
        "",
    )
    .await;
    assert_eq!(put.status, 200);
    let seen = eventually(Duration::from_millis(500), || {
        let at = url(&services, "cache-aside", 12);
        async move { name(&get(&at).await) == "Elsewhere" }
    })
    .await;
    assert!(seen, "the invalidation dropped the old row from L1");
    let c = cache_aside_counters(&services);
    assert!(c.get(Counter::NearInvalidations) >= 1, "{c:?}");
    assert!(
        until_near(&services, 12).await,
        "and the new row is cached near again"
    );
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcast_mode_is_told_of_every_write_to_user_keys() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| k.near_cache = NearMode::Bcast);
    assert!(until_near(&services, 13).await);
    let before = services
        .server("cache-aside")
        .unwrap()
        .backend
        .counters
        .get(Counter::NearInvalidations);
    // A key this server never read is announced too.
    let _: () = redis_cmd(&services.processes, &["SET", "user:999999", "x"]).await;
    let told = eventually(Duration::from_secs(1), || async {
        services
            .server("cache-aside")
            .unwrap()
            .backend
            .counters
            .get(Counter::NearInvalidations)
            > before
    })
    .await;
    assert!(told, "BCAST announces every write under user:");
    let put = send(
        Method::PUT,
        &format!("{}?name=Broadcast", url(&services, "write-through", 13)),
        "",
    )
    .await;
    assert_eq!(put.status, 200);
    let seen = eventually(Duration::from_millis(500), || {
        let at = url(&services, "cache-aside", 13);
        async move { name(&get(&at).await) == "Broadcast" }
    })
    .await;
    assert!(seen);
    services.shutdown().await;
}

/// A slow cache-aside read of user `id` (it read the old row) while a PUT commits; with
/// the write guard on, Redis keeps no old row, so what L1 holds afterwards is the near
/// cache's own doing: the old name (stale until near_ttl_ms), or nothing.
async fn l1_after_a_racing_fill(services: &Services, id: i32) -> Option<String> {
    let at = url(services, "cache-aside", id);
    // In L1 (so Redis tracks it for this server), then gone from L1 and Redis.
    assert!(until_near(services, id).await);
    services.knobs.update(|k| k.db_delay_ms = 400);
    let counters = &services.server("cache-aside").unwrap().backend.counters;
    let before = counters.get(Counter::NearInvalidations);
    let _: () = redis_cmd(&services.processes, &["DEL", &format!("user:{id}")]).await;
    let told = eventually(Duration::from_secs(1), || async {
        counters.get(Counter::NearInvalidations) > before
    })
    .await;
    assert!(told, "the DEL's invalidation reached the server");
    let slow_at = at.clone();
    let slow = tokio::spawn(async move { get(&slow_at).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    services.knobs.update(|k| k.db_delay_ms = 0);
    let put = send(Method::PUT, &format!("{at}?name=Raced{id}"), "").await;
    assert_eq!(put.status, 200);
    let slow = slow.await.unwrap();
    assert_eq!(slow.cache(), "MISS", "the slow read went to Postgres");
    assert_ne!(
        name(&slow),
        format!("Raced{id}"),
        "the slow read began first"
    );
    let after = get(&at).await;
    (after.cache() == "NEAR").then(|| name(&after))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_guard_a_fill_that_raced_an_invalidation_stays_stale_in_l1() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| {
        k.near_cache = NearMode::Tracking;
        k.write_guard = WriteGuard::Version;
        k.near_guard = false;
    });
    let stale = l1_after_a_racing_fill(&services, 14).await;
    assert!(
        stale.as_deref().is_some_and(|n| n != "Raced14"),
        "guard off: L1 kept the row the PUT replaced: {stale:?}"
    );
    services.knobs.update(|k| k.near_guard = true);
    let kept = l1_after_a_racing_fill(&services, 15).await;
    assert_eq!(kept, None, "guard on: the fill was not admitted");
    let c = cache_aside_counters(&services);
    assert!(c.get(Counter::NearGuardDrops) >= 1, "{c:?}");
    assert!(
        c.get(Counter::NearFills) >= 1,
        "guard off, the racing fill was put in L1: {c:?}"
    );
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_invalidation_link_empties_l1_within_the_heartbeat_and_reads_go_to_redis() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| {
        k.near_cache = NearMode::Tracking;
        k.near_heartbeat_ms = 100;
    });
    assert!(until_near(&services, 16).await);
    let faults = services.faults.as_ref().unwrap();
    let link = faults
        .near_links
        .as_ref()
        .expect("a single Redis has a link proxy");
    link.set(Fault::Blackhole);
    let bypassed = eventually(Duration::from_secs(1), || async {
        get(&url(&services, "cache-aside", 16)).await.cache() == "HIT"
    })
    .await;
    assert!(
        bypassed,
        "within the heartbeat L1 is dropped and Redis answers"
    );
    let c = cache_aside_counters(&services);
    assert!(c.get(Counter::NearFlushes) >= 1);
    link.heal();
    assert!(
        until_near(&services, 16).await,
        "once tracking is back, L1 is used again"
    );
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_shortened_while_the_link_is_up_applies_at_once() {
    // A lab that leaves tracking on with the default heartbeat, then one that sets 150 ms:
    // the link from the first must not go on waiting out the old 500 ms between PINGs.
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| {
        k.near_cache = NearMode::Tracking;
        k.near_heartbeat_ms = 2000;
    });
    assert!(until_near(&services, 18).await);
    services.knobs.update(|k| k.near_heartbeat_ms = 100);
    let link = services
        .faults
        .as_ref()
        .unwrap()
        .near_links
        .as_ref()
        .unwrap();
    // The new heartbeat ends the link within a knob check (20 ms) and makes a new one;
    // wait until L1 is in use again over it, then silence it.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(until_near(&services, 18).await);
    let flushes = cache_aside_counters(&services).get(Counter::NearFlushes);
    let silent_at = std::time::Instant::now();
    link.set(Fault::Blackhole);
    let bypassed = eventually(Duration::from_secs(3), || async {
        get(&url(&services, "cache-aside", 18)).await.cache() == "HIT"
    })
    .await;
    let took = silent_at.elapsed();
    link.heal();
    assert!(bypassed, "the silent link was never noticed");
    // Two 100 ms heartbeats and the 20 ms knob check; the old 2 s heartbeat would take
    // 2 s or more.
    assert!(
        took < Duration::from_millis(1000),
        "L1 dropped {took:?} after the link went silent, with a 100 ms heartbeat"
    );
    assert!(
        cache_aside_counters(&services).get(Counter::NearFlushes) > flushes,
        "the drop was a flush of L1"
    );
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushall_or_a_redis_restart_empties_every_l1() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| k.near_cache = NearMode::Tracking);
    assert!(until_near(&services, 17).await);
    let _: () = redis_cmd(&services.processes, &["FLUSHALL"]).await;
    let gone = eventually(Duration::from_millis(500), || async {
        get(&url(&services, "cache-aside", 17)).await.cache() != "NEAR"
    })
    .await;
    assert!(gone, "FLUSHALL's nil invalidation flushed L1");
    assert!(until_near(&services, 17).await);
    services
        .with_processes(|stack| {
            let redis = stack.managed_redis().expect("managed");
            redis.stop();
            redis.start_again()
        })
        .await
        .unwrap();
    let answer = get(&url(&services, "cache-aside", 17)).await;
    assert_ne!(
        answer.cache(),
        "NEAR",
        "a restarted Redis (empty) means an empty L1"
    );
    assert!(
        until_near(&services, 17).await,
        "tracking comes back by itself"
    );
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_holds_at_most_near_capacity_rows() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| {
        k.near_cache = NearMode::Ttl;
        k.near_capacity = 10;
    });
    for _pass in 0..2 {
        for id in 20..60 {
            assert_eq!(get(&url(&services, "cache-aside", id)).await.status, 200);
        }
    }
    let mut near = 0;
    for id in 20..60 {
        if get(&url(&services, "cache-aside", id)).await.cache() == "NEAR" {
            near += 1;
        }
    }
    assert!(near <= 12, "{near} of 40 rows answered from an L1 of 10");
    services.shutdown().await;
}
