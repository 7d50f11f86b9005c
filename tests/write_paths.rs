//! Issue #20's promises for the write paths, against the real managed Redis and
//! PostgreSQL: no acknowledged write is lost under concurrent requests (write-behind's
//! read-modify-write is atomic), write-behind's flusher never wedges (dead letters, moved
//! aside keys, bounded batches), a POST never overwrites a row, and Postgres errors come in
//! two classes (unavailable: 503; rejected: 409 or 500) counted once per failed request.
//!
//! The tests share one managed stack and take turns (`serial`).

mod common;

use cachelab::counters::Counter;
use cachelab::knobs::Protection;
use cachelab::services::Services;
use cachelab::stack::proxy::Fault;
use common::{eventually, get, redis_cmd, send, serial, shared_stack, start_services};
use hyper::Method;
use std::time::Duration;

const WB_QUEUE: &str = "{wb}:queue";
const WB_FLUSHING: &str = "{wb}:flushing";
const WB_REJECTED: &str = "{wb}:rejected";

/// A session on the database as its owner (tests only: schema changes, forged rows).
async fn admin(services: &Services) -> tokio_postgres::Client {
    let (client, conn) =
        tokio_postgres::connect(&services.stack.database_admin_url, tokio_postgres::NoTls)
            .await
            .expect("postgres");
    tokio::spawn(conn);
    client
}

/// The row of `id` in Postgres as (name, email), or `None`.
async fn db_row(db: &tokio_postgres::Client, id: i32) -> Option<(String, String)> {
    db.query_opt("SELECT name, email FROM users WHERE id = $1", &[&id])
        .await
        .expect("select")
        .map(|r| (r.get(0), r.get(1)))
}

/// Wait until write-behind's queue and batch are empty (on a cluster too: both keys
/// live in the `{wb}` slot).
async fn flushed(services: &Services) -> bool {
    let redis = cachelab::cache::RedisConn::direct(&services.stack.redis)
        .await
        .expect("redis");
    eventually(Duration::from_secs(30), || {
        let mut redis = redis.clone();
        async move {
            let left: i64 = redis::cmd("EXISTS")
                .arg(WB_QUEUE)
                .arg(WB_FLUSHING)
                .query_async(&mut redis)
                .await
                .expect("EXISTS");
            left == 0
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_of_name_and_of_email_on_write_behind_both_survive_in_cache_and_postgres() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    name_and_email_race(&services).await;
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_and_a_put_racing_on_write_behind_leave_what_their_answers_say() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    delete_and_put_race(&services).await;
    services.shutdown().await;
}

/// On a cluster the cached row and the queue live in different slots, so the row is
/// cached after the commit, guarded by its stamp: the same races end the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_write_behind_races_lose_nothing_either() {
    let _turn = serial().await;
    let stack = tokio::task::spawn_blocking(|| {
        let options = cachelab::stack::StackOptions {
            redis_cluster: Some(3),
            ..Default::default()
        };
        std::sync::Arc::new(std::sync::Mutex::new(
            cachelab::stack::Stack::start(options).expect("a managed cluster"),
        ))
    })
    .await
    .unwrap();
    let services = start_services(stack).await;
    name_and_email_race(&services).await;
    delete_and_put_race(&services).await;
    services.shutdown().await;
}

/// 50 pairs of a `PUT name` and a `PUT email` to one user, sent together: both fields
/// are in the cache at once and in Postgres after the flush.
async fn name_and_email_race(services: &Services) {
    services.knobs.update(|k| k.flush_interval_ms = 20);
    let base = services.server("write-behind").unwrap().url();
    let ids: Vec<i32> = (101..151).collect();
    for &id in &ids {
        // Half of them cached first: the merge base is the cache for those, Postgres for
        // the others.
        if id % 2 == 0 {
            assert_eq!(get(&format!("{base}/users/{id}")).await.status, 200);
        }
    }
    let pairs: Vec<_> = ids
        .iter()
        .map(|&id| {
            let (name_url, email_url) = (
                format!("{base}/users/{id}?name=Name{id}"),
                format!("{base}/users/{id}?email=mail{id}@example.org"),
            );
            tokio::spawn(async move {
                let (a, b) = tokio::join!(
                    send(Method::PUT, &name_url, ""),
                    send(Method::PUT, &email_url, "")
                );
                (a.status, b.status)
            })
        })
        .collect();
    for pair in pairs {
        assert_eq!(pair.await.unwrap(), (200, 200));
    }
    let mut lost_in_cache = Vec::new();
    let mut redis = cachelab::cache::RedisConn::direct(&services.stack.redis)
        .await
        .expect("redis");
    for &id in &ids {
        let cached: Option<String> = redis::cmd("GET")
            .arg(format!("user:{id}"))
            .query_async(&mut redis)
            .await
            .expect("GET");
        let cached = cached.unwrap_or_default();
        if !(cached.contains(&format!("Name{id}")) && cached.contains(&format!("mail{id}@"))) {
            lost_in_cache.push((id, cached));
        }
    }
    assert!(
        lost_in_cache.is_empty(),
        "a field acknowledged with 200 is gone from the cache: {lost_in_cache:?}"
    );
    assert!(flushed(services).await, "the queue was flushed");
    let db = admin(services).await;
    let mut lost_in_db = Vec::new();
    for &id in &ids {
        let row = db_row(&db, id).await;
        if row != Some((format!("Name{id}"), format!("mail{id}@example.org"))) {
            lost_in_db.push((id, row));
        }
    }
    assert!(
        lost_in_db.is_empty(),
        "a field acknowledged with 200 is gone from Postgres: {lost_in_db:?}"
    );
}

/// 80 races of a PUT and a DELETE of one user: no row outlives its acknowledged DELETE.
async fn delete_and_put_race(services: &Services) {
    services.knobs.update(|k| k.flush_interval_ms = 20);
    let base = services.server("write-behind").unwrap().url();
    let ids: Vec<i32> = (201..281).collect();
    let races: Vec<_> = ids
        .iter()
        .map(|&id| {
            let (put_url, delete_url) = (
                format!("{base}/users/{id}?name=Raced{id}"),
                format!("{base}/users/{id}"),
            );
            tokio::spawn(async move {
                let (put, delete) = tokio::join!(
                    send(Method::PUT, &put_url, ""),
                    send(Method::DELETE, &delete_url, "")
                );
                (id, put.status, delete.status)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for race in races {
        outcomes.push(race.await.unwrap());
    }
    // Every DELETE finds the row (a PUT never removes it), so every race ends without
    // the row: a 200 PUT ordered before the 204 DELETE, or a PUT that found it gone (404).
    for &(id, put, delete) in &outcomes {
        assert_eq!(delete, 204, "user {id}");
        assert!(put == 200 || put == 404, "user {id}: PUT answered {put}");
    }
    let both = outcomes.iter().filter(|o| o.1 == 200).count();
    let mut resurrected = Vec::new();
    for &(id, _, _) in &outcomes {
        let read = get(&format!("{base}/users/{id}")).await;
        if read.status != 404 {
            resurrected.push((id, "read", read.status));
        }
    }
    assert!(flushed(services).await, "the queue was flushed");
    let db = admin(services).await;
    for &(id, _, _) in &outcomes {
        if db_row(&db, id).await.is_some() {
            resurrected.push((id, "postgres", 200));
        }
    }
    assert!(
        resurrected.is_empty(),
        "{both} races acknowledged both; rows that outlived their acknowledged DELETE: {resurrected:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_id_is_taken_is_a_409_and_overwrites_nothing_on_every_strategy() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| k.flush_interval_ms = 20);
    let db = admin(&services).await;
    for name in [
        "cache-aside",
        "write-through",
        "write-behind",
        "refresh-ahead",
    ] {
        let server = services.server(name).unwrap();
        // A lab inserted the sequence's next id explicitly, behind its back.
        let next: i64 = db
            .query_one(
                "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM users_id_seq",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let next = next as i32;
        db.execute(
            "INSERT INTO users (id, name, email) VALUES ($1, 'Explicit', 'explicit@example.org')",
            &[&next],
        )
        .await
        .unwrap();
        let before = server.backend.counters.snapshot();
        let post = send(
            Method::POST,
            &format!(
                "{}/users?name=Posted&email=posted@example.org",
                server.url()
            ),
            "",
        )
        .await;
        assert_eq!(post.status, 409, "{name}: {:?}", post.body);
        assert!(
            post.error().contains(&next.to_string())
                || post.error().contains("already exists")
                || post.error().contains("duplicate"),
            "{name}: {}",
            post.error()
        );
        assert!(flushed(&services).await);
        assert_eq!(
            db_row(&db, next).await,
            Some(("Explicit".into(), "explicit@example.org".into())),
            "{name}: the row inserted explicitly is untouched"
        );
        let delta = server.backend.counters.snapshot().since(&before);
        assert_eq!(
            delta.get(Counter::DbErrors),
            0,
            "{name}: a collision is not an outage"
        );
        // The next POST takes the next id and works.
        let again = send(
            Method::POST,
            &format!("{}/users?name=Next&email=next@example.org", server.url()),
            "",
        )
        .await;
        assert_eq!(again.status, 201, "{name}: {:?}", again.body);
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_postgres_rejects_is_a_500_with_its_message_not_an_outage() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    let db = admin(&services).await;
    db.batch_execute("ALTER TABLE users ADD CONSTRAINT no_forbidden CHECK (name <> 'Forbidden')")
        .await
        .unwrap();
    for name in ["cache-aside", "write-through"] {
        let server = services.server(name).unwrap();
        let before = server.backend.counters.snapshot();
        let put = send(
            Method::PUT,
            &format!("{}/users/31?name=Forbidden", server.url()),
            "",
        )
        .await;
        assert_eq!(put.status, 500, "{name}: {:?}", put.body);
        assert!(
            put.error().contains("no_forbidden"),
            "{name}: {}",
            put.error()
        );
        let delta = server.backend.counters.snapshot().since(&before);
        assert_eq!(
            (delta.get(Counter::DbErrors), delta.get(Counter::DbRejected)),
            (0, 1),
            "{name}"
        );
        assert!(
            !services.store.is_down(),
            "{name}: a rejection is not an outage"
        );
        // Postgres is fine: the next request works.
        assert_eq!(get(&format!("{}/users/31", server.url())).await.status, 200);
    }
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_outage_counts_one_db_error_per_failed_request_not_per_coalesced_waiter() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services
        .knobs
        .update(|k| k.protection = Protection::Singleflight);
    let faults = services.faults.as_ref().expect("labs' stack has proxies");
    // Slow, then down: twenty reads of one uncached user wait on one leader that fails.
    faults.postgres.set(Fault::Blackhole);
    let server = services.server("cache-aside").unwrap();
    let url = format!("{}/users/33", server.url());
    let reads: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in reads {
        statuses.push(r.await.unwrap());
    }
    faults.heal_all();
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    let c = server.backend.counters.snapshot();
    assert!(c.get(Counter::Coalesced) + c.get(Counter::Misses) >= 20 || statuses.len() == 20);
    assert_eq!(
        c.get(Counter::DbErrors),
        1,
        "one Postgres read failed (the leader's); its waiters do not count it again"
    );
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_without_redis_answers_503_counting_a_cache_error_not_a_db_error() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    let faults = services.faults.as_ref().expect("labs' stack has proxies");
    faults.redis[0].1.set(Fault::Down);
    let server = services.server("write-behind").unwrap();
    let put = send(
        Method::PUT,
        &format!("{}/users/34?name=Nowhere", server.url()),
        "",
    )
    .await;
    faults.heal_all();
    assert_eq!(put.status, 503, "{:?}", put.body);
    assert!(
        put.error().to_lowercase().contains("redis"),
        "{}",
        put.error()
    );
    let c = server.backend.counters.snapshot();
    assert_eq!(c.get(Counter::DbErrors), 0);
    assert!(c.get(Counter::CacheErrors) + c.get(Counter::CacheBypassed) >= 1);
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_write_postgres_rejects_is_dead_lettered_and_later_writes_still_flush() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| k.flush_interval_ms = 60_000);
    let server = services.server("write-behind").unwrap();
    let base = server.url();
    // A write Postgres will refuse, put in the queue by hand (as a lab can).
    let bad = r#"{"op":"update","row":{"id":35,"name":"Bad","email":"bad@example.org","updated_at":"not-a-date"}}"#;
    let _: i64 = redis_cmd(&services.processes, &["HSET", WB_QUEUE, "35", bad]).await;
    // An entry that is not a write at all.
    let _: i64 = redis_cmd(&services.processes, &["HSET", WB_QUEUE, "36", "{not json"]).await;
    let put = send(Method::PUT, &format!("{base}/users/37?name=Good"), "").await;
    assert_eq!(put.status, 200);
    services.knobs.update(|k| k.flush_interval_ms = 20);
    let db = admin(&services).await;
    let reached = eventually(Duration::from_secs(5), || async {
        db_row(&db, 37)
            .await
            .is_some_and(|(name, _)| name == "Good")
    })
    .await;
    assert!(
        reached,
        "a good write queued behind a bad one reached Postgres"
    );
    assert!(flushed(&services).await, "nothing stays queued");
    let rejected: std::collections::HashMap<String, String> =
        redis_cmd(&services.processes, &["HGETALL", WB_REJECTED]).await;
    let why35 = rejected
        .get("35")
        .expect("the rejected write is kept in {wb}:rejected");
    assert!(why35.contains("not-a-date"), "{why35}");
    assert!(why35.contains("Bad"), "the entry itself is kept: {why35}");
    assert!(
        rejected.contains_key("36"),
        "the unreadable entry is moved aside: {rejected:?}"
    );
    assert_eq!(server.backend.counters.get(Counter::WbRejected), 2);
    assert_ne!(db_row(&db, 35).await.map(|r| r.0).as_deref(), Some("Bad"));
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_typed_queue_keys_are_moved_aside_and_write_behind_goes_on() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| k.flush_interval_ms = 20);
    let server = services.server("write-behind").unwrap();
    let base = server.url();
    let _: () = redis_cmd(&services.processes, &["SET", WB_QUEUE, "garbage"]).await;
    let _: i64 = redis_cmd(&services.processes, &["RPUSH", WB_FLUSHING, "garbage"]).await;
    let put = send(Method::PUT, &format!("{base}/users/38?name=Despite"), "").await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let db = admin(&services).await;
    let reached = eventually(Duration::from_secs(5), || async {
        db_row(&db, 38)
            .await
            .is_some_and(|(name, _)| name == "Despite")
    })
    .await;
    assert!(
        reached,
        "the write reached Postgres despite the wrong-typed keys"
    );
    let aside: Vec<String> = redis_cmd(&services.processes, &["KEYS", "{wb}:malformed*"]).await;
    assert_eq!(aside.len(), 2, "both keys were moved aside: {aside:?}");
    assert!(server.backend.counters.get(Counter::WbRejected) >= 2);
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_300k_queued_writes_flushes_in_bounded_batches() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    services.knobs.update(|k| k.flush_interval_ms = 60_000);
    let server = services.server("write-behind").unwrap();
    let first = 100_001;
    let count = 300_000;
    {
        // Queued inserts, as 300k POSTs during a long Postgres outage would leave them.
        let client = redis::Client::open(services.stack.redis_url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for chunk in (first..first + count).collect::<Vec<i32>>().chunks(5000) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(WB_QUEUE);
            for id in chunk {
                cmd.arg(id).arg(format!(
                    r#"{{"op":"insert","row":{{"id":{id},"name":"Backlog {id}","email":"b{id}@example.org","updated_at":"2026-01-01T00:00:00"}}}}"#
                ));
            }
            let _: i64 = cmd.query_async(&mut conn).await.unwrap();
        }
    }
    services.knobs.update(|k| k.flush_interval_ms = 20);
    let db = admin(&services).await;
    let all_in = eventually(Duration::from_secs(120), || async {
        let n: i64 = db
            .query_one("SELECT count(*) FROM users WHERE id >= $1", &[&first])
            .await
            .unwrap()
            .get(0);
        n == i64::from(count)
    })
    .await;
    assert!(all_in, "every queued write reached Postgres");
    assert!(flushed(&services).await);
    let c = server.backend.counters.snapshot();
    assert_eq!(c.get(Counter::WbFlushed), count as u64);
    assert!(
        c.get(Counter::WbBatches) >= 300,
        "batches of at most 1000 writes: {} batches",
        c.get(Counter::WbBatches)
    );
    services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_right_after_a_post_is_applied_whether_or_not_the_flusher_took_the_insert() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    // Flushes as often as the flusher can: many a PUT lands while its POST's insert is
    // being applied.
    services.knobs.update(|k| k.flush_interval_ms = 1);
    let base = services.server("write-behind").unwrap().url();
    let pairs: Vec<_> = (0..8)
        .map(|worker| {
            let base = base.clone();
            tokio::spawn(async move {
                let mut written = Vec::new();
                for i in 0..40 {
                    let post = send(
                        Method::POST,
                        &format!("{base}/users?name=P{worker}x{i}&email=p{worker}x{i}@example.org"),
                        "",
                    )
                    .await;
                    assert_eq!(post.status, 201, "{:?}", post.body);
                    let id = post.json()["id"].as_i64().unwrap() as i32;
                    let put =
                        send(Method::PUT, &format!("{base}/users/{id}?name=Then{id}"), "").await;
                    assert_eq!(put.status, 200, "{:?}", put.body);
                    written.push(id);
                }
                written
            })
        })
        .collect();
    let mut ids = Vec::new();
    for p in pairs {
        ids.extend(p.await.unwrap());
    }
    assert!(flushed(&services).await);
    let rejected: std::collections::HashMap<String, String> =
        redis_cmd(&services.processes, &["HGETALL", WB_REJECTED]).await;
    assert!(rejected.is_empty(), "writes Postgres refused: {rejected:?}");
    let db = admin(&services).await;
    let mut wrong = Vec::new();
    for id in ids {
        let row = db_row(&db, id).await;
        if row.as_ref().map(|r| r.0.as_str()) != Some(format!("Then{id}").as_str()) {
            wrong.push((id, row));
        }
    }
    assert!(
        wrong.is_empty(),
        "rows without their acknowledged PUT: {wrong:?}"
    );
    services.shutdown().await;
}

/// The cached name of user `id` (`None`: nothing, a marker or a tombstone).
async fn cached_name(services: &Services, id: i32) -> Option<String> {
    let cached: Option<String> =
        redis_cmd(&services.processes, &["GET", &format!("user:{id}")]).await;
    let value: serde_json::Value = serde_json::from_str(&cached?).ok()?;
    value["name"].as_str().map(str::to_string)
}

/// Pairs of concurrent write-through PUTs to one user, with Postgres' answers jittered so
/// the later commit's SET can land first: how many users end with the older row cached.
async fn write_through_race(services: &Services) -> (usize, usize) {
    let faults = services.faults.as_ref().expect("labs' stack has proxies");
    faults.postgres.set(Fault::Latency {
        ms: 2,
        jitter_ms: 15,
    });
    let base = services.server("write-through").unwrap().url();
    let ids: Vec<i32> = (401..481).collect();
    let races: Vec<_> = ids
        .iter()
        .map(|&id| {
            let base = base.clone();
            tokio::spawn(async move {
                let (first, second) = (
                    format!("{base}/users/{id}?name=A{id}"),
                    format!("{base}/users/{id}?name=B{id}"),
                );
                let (a, b) = tokio::join!(
                    send(Method::PUT, &first, ""),
                    send(Method::PUT, &second, "")
                );
                assert_eq!((a.status, b.status), (200, 200));
            })
        })
        .collect();
    for race in races {
        race.await.unwrap();
    }
    faults.heal_all();
    let db = admin(services).await;
    let mut stale = 0;
    for &id in &ids {
        let in_db = db_row(&db, id).await.map(|r| r.0);
        let cached = cached_name(services, id).await;
        if cached.is_some() && cached != in_db {
            stale += 1;
        }
    }
    (stale, ids.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_write_through_puts_can_leave_the_older_row_cached_unless_the_write_guard_is_on() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    let (stale, of) = write_through_race(&services).await;
    assert!(
        stale > 0,
        "without the guard some of {of} raced users keep the older row cached (the race this guard is for)"
    );
    services.reset().await.unwrap();
    services
        .knobs
        .update(|k| k.write_guard = cachelab::knobs::WriteGuard::Version);
    let (stale, of) = write_through_race(&services).await;
    assert_eq!(
        stale, 0,
        "with the guard none of {of} raced users keeps an older row"
    );
    let refused = services
        .server("write-through")
        .unwrap()
        .backend
        .counters
        .get(Counter::GuardRefusals);
    assert!(refused > 0, "the guard refused the late, older SETs");
    services.shutdown().await;
}

/// A slow cache-aside read that loaded the old row, and a PUT that commits while it
/// waits: what the cache holds once the read has filled.
async fn fill_race(services: &Services, id: i32) -> Option<String> {
    let base = services.server("cache-aside").unwrap().url();
    services.knobs.update(|k| k.db_delay_ms = 400);
    let url = format!("{base}/users/{id}");
    let slow = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    services.knobs.update(|k| k.db_delay_ms = 0);
    let put = send(
        Method::PUT,
        &format!("{base}/users/{id}?name=Newer{id}"),
        "",
    )
    .await;
    assert_eq!(put.status, 200);
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 200);
    assert_ne!(
        slow.json()["name"],
        format!("Newer{id}"),
        "the read began first"
    );
    cached_name(services, id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_cache_aside_read_puts_the_old_row_back_unless_the_write_guard_is_on() {
    let _turn = serial().await;
    let services = start_services(shared_stack()).await;
    let old = fill_race(&services, 490).await;
    assert!(
        old.as_deref().is_some_and(|n| n != "Newer490"),
        "without the guard the slow read cached the row the PUT replaced: {old:?}"
    );
    services
        .knobs
        .update(|k| k.write_guard = cachelab::knobs::WriteGuard::Version);
    let kept = fill_race(&services, 491).await;
    assert_eq!(kept, None, "the PUT's marker kept the old row out");
    let base = services.server("cache-aside").unwrap().url();
    let read = get(&format!("{base}/users/491")).await;
    assert_eq!(
        (read.cache(), read.json()["name"].as_str()),
        ("MISS", Some("Newer491")),
        "the marker reads as a miss, and the new row fills"
    );
    let again = get(&format!("{base}/users/491")).await;
    assert_eq!(again.cache(), "HIT");
    services.shutdown().await;
}
