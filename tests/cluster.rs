//! cachelab on a Redis Cluster, as a user meets it: the managed cluster with every slot
//! assigned, every strategy and remedy reading and writing through the cluster, the lab
//! API (summed INFO, each node's figures, routing by key, flush and policy on every
//! master, faults on one node), a master killed mid-load, a master that leaves and
//! rejoins under load without slowing the others, a slot moved while the servers use it,
//! and `serve --redis-cluster 3` leaving nothing behind after SIGINT or SIGKILL. Every
//! test starts real redis-server nodes and a real postgres.

mod common;

use cachelab::cache::RedisTarget;
use cachelab::lab::{self, Limits, Reach};
use cachelab::load::{self, Interval, Pace, Plan, Progress, Stop, Target};
use cachelab::services::{Services, SharedStack};
use cachelab::stack::{Stack, StackOptions};
use common::{eventually, get, send, Serve};
use hyper::Method;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tests take turns: each starts a cluster and a postgres, and the machine is small.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Run an async test body in its turn, on a runtime of its own.
fn in_turn(body: impl std::future::Future<Output = ()>) {
    let _turn = serial();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(body);
}

/// A managed stack whose Redis is a 3-master cluster.
fn cluster_stack() -> SharedStack {
    let options = StackOptions {
        redis_cluster: Some(3),
        ..StackOptions::default()
    };
    Arc::new(Mutex::new(
        Stack::start(options).expect("starting a stack with a managed Redis Cluster"),
    ))
}

/// One command on one node, outside any cluster client.
async fn on_port<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> T {
    common::redis_at(&format!("redis://127.0.0.1:{port}/"), args).await
}

/// The ports of the cluster's masters, in start order.
fn ports(stack: &SharedStack) -> Vec<u16> {
    let mut stack = stack.lock().unwrap();
    let cluster = stack.managed_cluster().expect("a managed cluster");
    cluster.nodes().iter().map(|n| n.port).collect()
}

/// The index of the master that holds `key`'s slot.
async fn owner_of(stack: &SharedStack, key: &str) -> usize {
    let nodes = stack.lock().unwrap().managed_cluster().unwrap().nodes();
    let slot: u16 = on_port(nodes[0].port, &["CLUSTER", "KEYSLOT", key]).await;
    nodes.iter().position(|n| n.slots.contains(&slot)).unwrap()
}

/// For each master, a user id whose key lives there.
async fn one_user_per_node(stack: &SharedStack) -> Vec<i32> {
    let mut ids = vec![None; 3];
    for id in 1.. {
        let i = owner_of(stack, &format!("user:{id}")).await;
        ids[i].get_or_insert(id);
        if ids.iter().all(Option::is_some) {
            return ids.into_iter().map(Option::unwrap).collect();
        }
    }
    unreachable!()
}

#[test]
fn a_managed_cluster_has_every_slot_assigned_and_the_servers_spread_keys_over_every_master() {
    in_turn(async {
        let stack = cluster_stack();
        let services = common::start_services(stack.clone()).await;
        let RedisTarget::Cluster(urls) = &services.stack.redis else {
            panic!(
                "the stack reports a single Redis: {:?}",
                services.stack.redis
            );
        };
        assert_eq!(urls.len(), 3);
        for port in ports(&stack) {
            let info: String = on_port(port, &["CLUSTER", "INFO"]).await;
            assert!(info.contains("cluster_state:ok"), "{info}");
            assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
            assert!(info.contains("cluster_slots_ok:16384"), "{info}");
        }
        let base = services.server("cache-aside").unwrap().url();
        for id in 1..=30 {
            let answer = get(&format!("{base}/users/{id}")).await;
            assert_eq!((answer.status, answer.cache()), (200, "MISS"));
        }
        for id in 1..=30 {
            assert_eq!(get(&format!("{base}/users/{id}")).await.cache(), "HIT");
        }
        let mut total = 0;
        for port in ports(&stack) {
            let keys: usize = on_port(port, &["DBSIZE"]).await;
            assert!(keys > 0, "node {port} holds none of the 30 users");
            total += keys;
        }
        assert_eq!(
            total, 30,
            "each user cached once, on the node owning its slot"
        );
        services.shutdown().await;
    });
}

#[test]
fn every_strategy_reads_and_writes_through_the_cluster() {
    in_turn(async {
        let stack = cluster_stack();
        let services = common::start_services(stack.clone()).await;
        let ids = one_user_per_node(&stack).await;
        for server in &services.servers {
            let base = server.url();
            let name = server.name;
            for &id in &ids {
                let url = format!("{base}/users/{id}");
                let first = get(&url).await;
                assert_eq!(first.status, 200, "{name}: GET {id}");
                assert_eq!(get(&url).await.cache(), "HIT", "{name}: GET {id} again");
                let new_name = format!("{name} {id}");
                let put = send(
                    Method::PUT,
                    &format!("{url}?name={}", new_name.replace(' ', "+")),
                    "",
                )
                .await;
                assert_eq!(put.status, 200, "{name}: PUT {id}: {:?}", put.body);
                let after = get(&url).await;
                assert_eq!(
                    after.json()["name"],
                    new_name.as_str(),
                    "{name}: GET after PUT {id}"
                );
            }
            let created = send(
                Method::POST,
                &format!("{base}/users?name=Neu&email=neu.{name}@example.com"),
                "",
            )
            .await;
            assert_eq!(created.status, 201, "{name}: POST {:?}", created.body);
            let new_id = created.json()["id"].as_i64().unwrap();
            let gone = send(Method::DELETE, &format!("{base}/users/{new_id}"), "").await;
            assert_eq!(gone.status, 204, "{name}: DELETE");
            assert_eq!(
                get(&format!("{base}/users/{new_id}")).await.status,
                404,
                "{name}: GET after DELETE"
            );
            if name == "write-behind" {
                // Its queue reaches Postgres (before the next strategy writes the same
                // users): the flusher renamed and drained it on the node owning `{wb}`.
                let flushed = eventually(Duration::from_secs(5), || async {
                    common::sql_count(
                        &services,
                        "SELECT count(*) FROM users WHERE name LIKE 'write-behind %'",
                    )
                    .await
                        == 3
                })
                .await;
                assert!(flushed, "write-behind's queued writes reached Postgres");
            }
        }
        services.shutdown().await;
    });
}

/// What the lab API shows of a cluster; every remedy on it.
const CLUSTER_LAB: &str = r#"// Cluster tour: the lab API and every remedy on a 3-master Redis Cluster
let nodes = redis_nodes();
check("redis_nodes(): three masters, all up", nodes.len() == 3 && nodes.all(|n| n.role == "master" && n.up));
let slots = 0;
for n in nodes { for r in n.slots { slots += r[1] - r[0] + 1; } }
check("redis_nodes(): their slots cover all 16384", slots == 16384);
check("redis_nodes(): index, address and port", nodes[1].index == 1 && nodes[1].address == `127.0.0.1:${nodes[1].port}`);

for id in 1..=30 { http_get(`/users/${id}`); }
check("redis_keys() scans every master", redis_keys("user:*").len() == 30);
check("every master holds some users", redis_nodes().all(|n| n.keys > 0));
check("redis_info() sums the masters' keyspaces", redis_info("keyspace").db0.starts_with("keys=30,"));
check("redis_info() sums hits over the masters", redis_info("stats").keyspace_misses >= 30);
check("redis(...) is routed by its key", redis(["GET", "user:7"]) != () && redis(["TTL", "user:29"]) > 0);
check("redis(...) writes any key on its master", redis(["SET", "a", "1"]) == "OK" && redis(["SET", "b", "2"]) == "OK" && redis_get("a") == "1" && redis_get("b") == "2");
check("MSET over keys of several masters is split by the client", redis(["MSET", "a", "3", "b", "4"]) == "OK" && redis_get("b") == "4");
try {
    redis(["RENAME", "a", "b"]);
    check("a command over keys of two slots is refused", false);
} catch (e) {
    check("a command over keys of two slots is refused (CROSSSLOT)", `${e}`.to_upper().contains("CROSSSLOT"));
}
check("keys that share a hash tag share a slot", redis(["MSET", "{t}a", "1", "{t}b", "2"]) == "OK");

set_policy("allkeys-lru", "30mb");
let mem = redis_info("memory");
check("set_policy(): every master, and maxmemory is the cluster's total", mem.maxmemory_policy == "allkeys-lru" && mem.maxmemory == 30 * 1024 * 1024);
flush();
check("flush() empties every master", redis_keys("*").len() == 0 && redis_nodes().all(|n| n.keys == 0));

for strategy in ["cache-aside", "write-through", "write-behind", "refresh-ahead"] {
    use_strategy(strategy);
    for protection in ["none", "singleflight", "lock", "xfetch", "swr"] {
        set_protection(protection);
        flush();
        let s = stampede("/users/42", 20);
        check(`${strategy} ${protection}: a cold stampede answers every request`, s.ok == 20);
        check(`${strategy} ${protection}: and leaves the key cached`, redis_get("user:42") != ());
    }
}
set_protection("lock");
flush();
set_db_delay(100);
let locked = stampede("/users/43", 20);
check("lock: one Redis lock per key lets few reads reach Postgres", locked.ok == 20 && locked.db_reads <= 3);
set_db_delay(0);
set_protection("none");

use_strategy("cache-aside");
set_invalidation("lease");
http_get("/users/44");
let put = http_put("/users/44", #{name: "Leased"});
check("lease: a write revokes the lease and the next read fills the new row", put.status == 200 && http_get("/users/44").body.name == "Leased" && http_get("/users/44").cache == "HIT");
set_invalidation("delete");

set_negative_ttl(30);
http_get("/users/999999");
let tomb = http_get("/users/999999");
check("tombstones: a cached 404 is a HIT", tomb.status == 404 && tomb.cache == "HIT");
set_negative_ttl(0);

use_strategy("refresh-ahead");
set_ttl(2);
http_get("/users/45");
sleep(1700);
http_get("/users/45");
sleep(300);
check("refresh-ahead: a hit near expiry refreshes in the background", stats("refresh-ahead").background_refreshes >= 1 && redis_ttl("user:45") >= 1);
set_ttl(60);

use_strategy("write-behind");
http_put("/users/46", #{name: "Queued"});
sleep(400);
check("write-behind: the queued write reached Postgres", db_get(46).name == "Queued" && stats("write-behind").wb_flushed >= 1);

use_strategy("cache-aside");
flush();
fault("redis:0", "down");
let during = load(#{path: "/users/{id}", n: 300, c: 4, ids: [1, 300]});
check("fault(\"redis:0\", \"down\"): every read still answers", during.ok == 300);
check("... and the other masters still cache", redis_nodes().filter(|n| n.index != 0).all(|n| n.keys > 0));
check("... while node 0 gets nothing", redis_nodes()[0].keys == 0);
heal("redis:0");
sleep(500);
let after = load(#{path: "/users/{id}", n: 300, c: 4, ids: [1, 300]});
check("heal(\"redis:0\"): node 0 caches again", after.ok == 300 && redis_nodes()[0].keys > 0);
try {
    fault("redis:3", "down");
    check("a node that does not exist is refused", false);
} catch (e) {
    check("a node that does not exist is refused, naming the ones that do", `${e}`.contains("redis:0") && `${e}`.contains("redis:2"));
}
"#;

#[test]
fn the_lab_api_sums_routes_and_faults_per_node_on_a_cluster_and_every_remedy_works() {
    in_turn(async {
        let stack = cluster_stack();
        let services = Arc::new(common::start_services(stack.clone()).await);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cluster.rhai");
        std::fs::write(&file, CLUSTER_LAB).unwrap();
        let limits = Limits {
            timeout: Duration::from_secs(120),
            max_operations: lab::DEFAULT_MAX_OPERATIONS,
            max_memory_mb: lab::DEFAULT_MAX_MEMORY_MB,
            reach: Reach::default(),
        };
        let report = lab::run_lab(&services, &file, &limits).await;
        let failed: Vec<String> = report
            .events
            .iter()
            .filter_map(|e| match e {
                cachelab::report::Event::Check {
                    name, pass: false, ..
                } => Some(name.clone()),
                _ => None,
            })
            .collect();
        assert!(
            report.passed,
            "outcome {:?}, failed checks {failed:#?}",
            report.outcome
        );
        assert!(report.checks.total >= 40, "{:?}", report.checks);
    });
}

#[test]
fn a_master_killed_mid_load_costs_only_cache_hits_and_its_keys_cache_again_once_it_is_back() {
    in_turn(async {
        let stack = cluster_stack();
        let services = common::start_services(stack.clone()).await;
        let ids = one_user_per_node(&stack).await;
        let victim = 1;
        let base = services.server("cache-aside").unwrap().url();
        for &id in &ids {
            get(&format!("{base}/users/{id}")).await;
        }
        // Readers keep going while the master dies and comes back.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for &id in &ids {
            let (url, stop) = (format!("{base}/users/{id}"), stop.clone());
            readers.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let began = Instant::now();
                    let answer = get(&url).await;
                    answers.push((
                        answer.status,
                        answer.cache().to_string(),
                        began,
                        began.elapsed(),
                    ));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                answers
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let killed = stack.clone();
        let killed_at = Instant::now();
        tokio::task::spawn_blocking(move || {
            killed
                .lock()
                .unwrap()
                .managed_cluster()
                .unwrap()
                .kill_node(victim)
        })
        .await
        .unwrap();
        // While it is down its users are read from Postgres, the others still from the cache.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let down = get(&format!("{base}/users/{}", ids[victim])).await;
        assert_eq!(
            (down.status, down.cache()),
            (200, "MISS"),
            "{:?}",
            down.body
        );
        let other = get(&format!("{base}/users/{}", ids[0])).await;
        assert_eq!((other.status, other.cache()), (200, "HIT"));

        let revived = stack.clone();
        let revived_at = Instant::now();
        tokio::task::spawn_blocking(move || {
            revived
                .lock()
                .unwrap()
                .managed_cluster()
                .unwrap()
                .start_node(victim)
        })
        .await
        .unwrap()
        .expect("the node restarts");
        let url = format!("{base}/users/{}", ids[victim]);
        let recovered = eventually(Duration::from_secs(5), || async {
            get(&url).await.cache() == "HIT"
        })
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            recovered,
            "the restarted master caches its users again within 5 s"
        );
        for (i, reader) in readers.into_iter().enumerate() {
            let answers = reader.await.unwrap();
            assert!(answers.len() > 20, "{answers:?}");
            assert!(
                answers.iter().all(|(status, ..)| *status == 200),
                "every read answered: {answers:?}"
            );
            let worst = answers.iter().map(|a| a.3).max().unwrap_or_default();
            assert!(
                worst < Duration::from_secs(1),
                "no read waited on the dead node for long: {worst:?}"
            );
            if i == victim {
                // The dead master's breaker opens on its first failure: while it is down,
                // its users are read from Postgres at once instead of each waiting on the
                // cluster client's retries.
                let slow = answers
                    .iter()
                    .filter(|(_, _, began, took)| {
                        *began > killed_at
                            && *began < revived_at
                            && *took >= Duration::from_millis(25)
                    })
                    .count();
                assert!(
                    slow <= 3,
                    "reads of the dead master's user waited on it: {answers:?}"
                );
            } else {
                // The live masters' breakers stay closed: their users are hits throughout.
                assert!(
                    answers.iter().all(|(_, cache, ..)| cache == "HIT"),
                    "reads of a live master's user (reader {i}) left the cache: {answers:?}"
                );
            }
        }
        services.shutdown().await;
    });
}

/// Run `work` on the managed cluster off the async threads (it waits on processes).
async fn with_cluster<T: Send + 'static>(
    stack: &SharedStack,
    work: impl FnOnce(&mut cachelab::stack::ManagedCluster) -> T + Send + 'static,
) -> T {
    let stack = stack.clone();
    tokio::task::spawn_blocking(move || work(stack.lock().unwrap().managed_cluster().unwrap()))
        .await
        .unwrap()
}

/// A paced load of `urls` for `duration` at `rate` requests per second in all, from
/// 8 workers of its own (so one load's slow answers cannot delay the other's requests).
fn paced_load(
    urls: &[String],
    rate: f64,
    duration: Duration,
) -> tokio::task::JoinHandle<load::Summary> {
    let mut plan = Plan::new(urls.iter().map(|u| Target::parse(u).unwrap()).collect());
    plan.concurrency = 8;
    plan.pace = Pace::Total(rate);
    plan.stop = Stop::Duration(duration);
    plan.same_process_server = true;
    plan.check().unwrap();
    tokio::spawn(load::run(plan, Arc::new(Progress::default())))
}

/// Each interval as `start_ms: p99 ms (hits/misses)`, for a failure message.
fn shown(timeline: &[Interval]) -> String {
    timeline
        .iter()
        .map(|i| {
            let n = |k: &str| i.cache.get(k).copied().unwrap_or(0);
            format!(
                "{}: {:.1} ms ({}/{})",
                i.start_ms,
                i.p99_ms,
                n("HIT"),
                n("MISS")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn a_master_that_leaves_and_rejoins_under_load_slows_no_key_and_its_own_are_read_from_postgres_meanwhile(
) {
    in_turn(async {
        let stack = cluster_stack();
        let services = common::start_services(stack.clone()).await;
        let base = services.server("cache-aside").unwrap().url();
        let victim = 0;
        // 300 cached users, split by whether the victim holds them.
        let (mut own, mut others) = (Vec::new(), Vec::new());
        for id in 1..=300 {
            let url = format!("{base}/users/{id}");
            assert_eq!(get(&url).await.status, 200);
            if owner_of(&stack, &format!("user:{id}")).await == victim {
                own.push(url);
            } else {
                others.push(url);
            }
        }
        // 400 requests per second over the 300 users, in two loads by where they live.
        let share = own.len() as f64 / 300.0;
        let run_for = Duration::from_secs(6);
        let began = Instant::now();
        let own_run = paced_load(&own, 400.0 * share, run_for);
        let others_run = paced_load(&others, 400.0 * (1.0 - share), run_for);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let stopped_at = began.elapsed();
        with_cluster(&stack, move |c| c.stop_node(victim)).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Returns once the cluster is healthy again: Redis holds a rejoining master back
        // for about 2 s, during which it answers PING but refuses its keys (CLUSTERDOWN).
        with_cluster(&stack, move |c| c.start_node(victim))
            .await
            .expect("the victim restarts");
        let serving_at = began.elapsed();
        let (own, others) = (own_run.await.unwrap(), others_run.await.unwrap());

        for (name, run) in [("own", &own), ("others'", &others)] {
            let answered: u64 = run.tally.status.values().sum();
            assert!(
                run.tally.errors.is_empty() && run.tally.status.keys().all(|s| *s == 200),
                "every read of the {name} keys answered 200: {:?} {:?}",
                run.tally.status,
                run.tally.errors
            );
            assert!(answered > 500, "{name}: only {answered} requests");
        }
        // What a user notices: no 100 ms in which the slowest 1% of the live masters'
        // users waited long.
        assert!(
            others.timeline.iter().all(|i| i.p99_ms <= 50.0),
            "the live masters' keys kept their latency in every 100 ms (p99 <= 50 ms): {}",
            shown(&others.timeline)
        );
        // The victim's users are read from Postgres meanwhile, at Postgres' speed. The
        // middle of their per-interval p99s from the stop until it served again: a
        // Postgres read stalled by a busy machine for a few intervals does not move it,
        // waiting on the node (CLUSTERDOWN retried for its 2 s) does.
        let window = stopped_at.as_millis() as u64..serving_at.as_millis() as u64;
        let mut outage: Vec<f64> = own
            .timeline
            .iter()
            .filter(|i| window.contains(&i.start_ms) && window.contains(&(i.start_ms + 100)))
            .map(|i| i.p99_ms)
            .collect();
        outage.sort_by(f64::total_cmp);
        assert!(
            outage.len() >= 20 && outage[outage.len() / 2] <= 50.0,
            "the victim's keys did not wait on it while it was away or rejoining \
             ({window:?} ms: p99 per 100 ms typically <= 50 ms): {}",
            shown(&own.timeline)
        );
        assert!(
            others.tally.cache.keys().all(|k| k == "HIT"),
            "the live masters' keys were cache hits throughout: {}",
            shown(&others.timeline)
        );
        let n = |i: &Interval, k: &str| i.cache.get(k).copied().unwrap_or(0);
        assert!(
            own.timeline
                .iter()
                .any(|i| n(i, "MISS") > 0 && n(i, "HIT") == 0),
            "while the victim was away its keys were read from Postgres: {}",
            shown(&own.timeline)
        );
        let last = own.timeline.last().unwrap();
        assert!(
            n(last, "HIT") > 0,
            "once it served again its keys were cached again: {}",
            shown(&own.timeline)
        );
        services.shutdown().await;
    });
}

#[test]
fn a_slot_moved_to_another_master_is_followed_without_a_failed_request() {
    in_turn(async {
        let stack = cluster_stack();
        let services = common::start_services(stack.clone()).await;
        let base = services.server("write-through").unwrap().url();
        let url = format!("{base}/users/1");
        assert_eq!(get(&url).await.cache(), "MISS");
        assert_eq!(get(&url).await.cache(), "HIT");

        let nodes = stack.lock().unwrap().managed_cluster().unwrap().nodes();
        let from = owner_of(&stack, "user:1").await;
        let to = (from + 1) % nodes.len();
        let (source, target) = (&nodes[from], &nodes[to]);
        let slot: u16 = on_port(source.port, &["CLUSTER", "KEYSLOT", "user:1"]).await;
        let slot = slot.to_string();
        // The documented resharding steps: importing, migrating, move the keys, hand over.
        let _: () = on_port(
            target.port,
            &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source.id],
        )
        .await;
        let _: () = on_port(
            source.port,
            &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target.id],
        )
        .await;
        let keys: Vec<String> =
            on_port(source.port, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]).await;
        assert_eq!(keys, ["user:1"]);
        let _: () = on_port(
            source.port,
            &[
                "MIGRATE",
                "127.0.0.1",
                &target.port.to_string(),
                "",
                "0",
                "5000",
                "KEYS",
                "user:1",
            ],
        )
        .await;
        for node in &nodes {
            let _: () = on_port(
                node.port,
                &["CLUSTER", "SETSLOT", &slot, "NODE", &target.id],
            )
            .await;
        }
        let moved: Option<String> = on_port(target.port, &["GET", "user:1"]).await;
        assert!(moved.is_some(), "the key moved with its slot");

        // The servers' slot map still says `from`: the MOVED reply sends them to `to`.
        let after = get(&url).await;
        assert_eq!(
            (after.status, after.cache()),
            (200, "HIT"),
            "{:?}",
            after.body
        );
        let put = send(Method::PUT, &format!("{url}?name=Moved"), "").await;
        assert_eq!(put.status, 200);
        let cached: String = on_port(target.port, &["GET", "user:1"]).await;
        assert!(
            cached.contains("Moved"),
            "the write-through SET reached the new owner: {cached}"
        );
        services.shutdown().await;
    });
}

/// The pid of the redis-server serving `port` among the processes under `tmp`.
fn node_process(tmp: &std::path::Path, port: u16) -> Option<u32> {
    common::processes_mentioning(tmp).into_iter().find(|pid| {
        // redis-server names itself "redis-server 127.0.0.1:PORT [cluster]".
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline)
            .split([' ', '\0'])
            .any(|word| word.ends_with(&format!(":{port}")))
    })
}

/// What `serve` logs from now on, as it logs it, read from a second handle on its stderr
/// pipe (`Serve::signal` then returns only what this has not read).
fn follow_stderr(serve: &Serve) -> Arc<Mutex<String>> {
    use std::io::BufRead;
    use std::os::fd::AsFd;
    let pipe = serve
        .child
        .stderr
        .as_ref()
        .expect("serve's stderr is piped");
    let file = std::fs::File::from(pipe.as_fd().try_clone_to_owned().unwrap());
    let logged = Arc::new(Mutex::new(String::new()));
    let sink = logged.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    logged
}

#[test]
fn serve_with_a_cluster_prints_each_node_and_sigint_leaves_nothing_behind() {
    let _turn = serial();
    let tmp = common::private_tmpdir();
    let port = common::free_port_block();
    let serve = Serve::start(
        tmp.path(),
        &["--port", &port.to_string(), "--redis-cluster", "3"],
    );
    let cli_lines: Vec<&String> = serve
        .lines
        .iter()
        .filter(|l| l.contains("redis-cli -c -p "))
        .collect();
    assert_eq!(cli_lines.len(), 3, "{:?}", serve.lines);
    for (i, line) in cli_lines.iter().enumerate() {
        assert!(line.starts_with(&format!("redis:{i} ")), "{line}");
    }
    let running = common::processes_mentioning(tmp.path());
    assert!(
        running.len() >= 4,
        "three redis-server nodes and postgres: {running:?}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = rt.block_on(get(&format!("http://127.0.0.1:{port}/users/1")));
    assert_eq!(answer.json()["id"], 1);
    // The printed command reaches a node of the cluster.
    let node_port: u16 = cli_lines[0].rsplit(' ').next().unwrap().parse().unwrap();
    let state: String = rt.block_on(on_port(node_port, &["CLUSTER", "INFO"]));
    assert!(state.contains("cluster_state:ok"));

    // A node that crashes is started again by serve, on its port, and rejoins the cluster.
    let logged = follow_stderr(&serve);
    let node_pid = node_process(tmp.path(), node_port).expect("the node's redis-server process");
    // SAFETY: killing a redis-server this test's serve started.
    unsafe { libc::kill(node_pid as i32, libc::SIGKILL) };
    // Until the kill has taken effect and serve has noticed it (it looks every 250 ms),
    // the killed process, not a restarted one, may be what answers on the port.
    let restarted = rt.block_on(eventually(Duration::from_secs(15), || async {
        node_process(tmp.path(), node_port).is_some_and(|pid| pid != node_pid)
    }));
    assert!(
        restarted,
        "serve started a new redis-server on port {node_port}"
    );
    let rejoined = rt.block_on(eventually(Duration::from_secs(15), || async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{node_port}/")).unwrap();
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        let info: redis::RedisResult<String> = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut conn)
            .await;
        info.is_ok_and(|i| i.contains("cluster_state:ok"))
    }));
    assert!(rejoined, "the restarted node rejoined the cluster");
    // serve says so once it has seen the whole cluster healthy again, a moment later.
    let said = rt.block_on(eventually(Duration::from_secs(15), || async {
        logged.lock().unwrap().contains("started it again")
    }));
    let again = rt.block_on(get(&format!("http://127.0.0.1:{port}/users/1")));
    assert_eq!(again.status, 200);

    let (status, rest) = serve.signal(libc::SIGINT);
    let stderr = format!("{}{rest}", logged.lock().unwrap());
    assert_eq!(status.code(), Some(0), "a clean shutdown exits 0: {stderr}");
    assert!(said, "serve said it restarted the node: {stderr}");
    common::assert_nothing_left(tmp.path());
}

#[test]
fn a_sigkilled_serve_takes_every_cluster_node_with_it() {
    let _turn = serial();
    let tmp = common::private_tmpdir();
    let port = common::free_port_block();
    let mut serve = Serve::start(
        tmp.path(),
        &["--port", &port.to_string(), "--redis-cluster", "3"],
    );
    assert!(common::processes_mentioning(tmp.path()).len() >= 4);
    serve.child.kill().unwrap(); // SIGKILL: no handler, no destructor, no atexit runs
    serve.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common::processes_mentioning(tmp.path()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left running: {:?}",
            common::processes_mentioning(tmp.path())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The temp dir cannot be removed by a SIGKILLed process; the next start sweeps it.
    let out = common::cachelab()
        .args(["serve", "--redis-cluster", "2"])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 3 masters"), "{stderr}");
    common::assert_nothing_left(tmp.path());
}

/// Services over a cluster must not start when the cluster cannot be reached, and say
/// which URLs they tried.
#[test]
fn an_unreachable_external_cluster_is_one_error_naming_it() {
    in_turn(async {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        drop(taken);
        let options = StackOptions {
            redis_cluster_urls: vec![format!("redis://127.0.0.1:{port}/")],
            ..StackOptions::default()
        };
        let stack = Arc::new(Mutex::new(Stack::start(options).unwrap()));
        let error = Services::start(stack, &cachelab::services::ServerOptions::loopback(60))
            .await
            .err()
            .expect("no cluster answers");
        let message = format!("{error:#}");
        assert!(message.contains(&port.to_string()), "{message}");
    });
}

#[test]
fn the_shipped_labs_pass_on_a_cluster_and_a_single_node_lab_is_skipped_with_its_reason() {
    let _turn = serial();
    // The labs that exercise every strategy and remedy through the cluster, and one that
    // is single-node only. (All of labs/ passes too — see the issue note — but running it
    // twice, here and in shipped_labs, would double the suite's time.)
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("labs");
    let labs: Vec<_> = [
        "eviction",
        "hot-shard",
        "stampede",
        "protection",
        "penetration",
        "write-behind",
        "consistency",
        "upsert",
    ]
    .iter()
    .map(|name| dir.join(format!("{name}.rhai")))
    .collect();
    let out = common::cachelab()
        .arg("run")
        .args(&labs)
        .args(["--redis-cluster", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("skipped: single-node only on a Redis Cluster: maxmemory is per node"),
        "the eviction lab says why it does not run here:\n{stdout}"
    );
    assert!(
        stdout.contains("redis:1 (holds user:1)") || stdout.contains("(holds user:1)"),
        "{stdout}"
    );
    let last = stdout.trim_end().lines().last().unwrap_or_default();
    assert!(last.contains(" passed, 0 failed, 1 skipped · "), "{stdout}");
    assert!(last.ends_with(" passed, 0 failed"), "{stdout}");
}

#[test]
fn an_external_cluster_serves_the_servers_and_without_allow_flush_keeps_what_is_not_cachelabs() {
    in_turn(async {
        let dir = tempfile::tempdir().unwrap();
        let external = cachelab::stack::ManagedCluster::start(dir.path(), 3).unwrap();
        let options = StackOptions {
            redis_cluster_urls: external.urls()[1..].to_vec(),
            ..StackOptions::default()
        };
        let stack = Arc::new(Mutex::new(Stack::start(options).unwrap()));
        let services = common::start_services(stack.clone()).await;
        assert!(!services.stack.may_flush_redis);
        let nodes = external.nodes();
        let slot: u16 = on_port(nodes[0].port, &["CLUSTER", "KEYSLOT", "precious"]).await;
        let owner = nodes.iter().find(|n| n.slots.contains(&slot)).unwrap().port;
        let _: () = on_port(owner, &["SET", "precious", "data"]).await;
        let base = services.server("write-through").unwrap().url();
        assert_eq!(get(&format!("{base}/users/5")).await.cache(), "MISS");
        assert_eq!(get(&format!("{base}/users/5")).await.cache(), "HIT");

        services.reset().await.expect("the partial reset");
        assert_eq!(
            get(&format!("{base}/users/5")).await.cache(),
            "MISS",
            "cachelab's own keys are gone"
        );
        let kept: Option<String> = on_port(owner, &["GET", "precious"]).await;
        assert_eq!(
            kept.as_deref(),
            Some("data"),
            "a key that is not cachelab's survives the reset"
        );
        services.shutdown().await;
    });
}
