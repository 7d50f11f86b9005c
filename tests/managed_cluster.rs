//! The managed Redis Cluster: N masters sharing all 16384 slots, served through the
//! redis crate's cluster client, surviving the crash of one master, and leaving nothing
//! running once dropped (tests/cluster.rs SIGKILLs a `serve` that owns one). Every test
//! starts real `redis-server` nodes in a temp dir of its own.

mod common;

use cachelab::stack::ManagedCluster;
use common::processes_mentioning;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests take turns: each runs several nodes on a small machine.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cachelab-cluster-test-")
        .tempdir()
        .expect("temp dir")
}

/// One command on one node, outside the cluster client.
fn on_node<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> T {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut conn = client.get_connection().expect("the node answers");
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(&mut conn)
        .unwrap_or_else(|e| panic!("{args:?} on port {port}: {e}"))
}

/// A field of `CLUSTER INFO` as one node reports it.
fn cluster_info(port: u16, field: &str) -> String {
    let info: String = on_node(port, &["CLUSTER", "INFO"]);
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {info}"))
        .trim()
        .to_string()
}

/// For each master (by index), a key whose slot it owns.
fn one_key_per_node(cluster: &ManagedCluster) -> Vec<String> {
    let nodes = cluster.nodes();
    let mut keys: Vec<Option<String>> = vec![None; nodes.len()];
    for n in 0.. {
        let key = format!("user:{n}");
        let slot: u16 = on_node(nodes[0].port, &["CLUSTER", "KEYSLOT", &key]);
        let owner = nodes.iter().position(|node| node.slots.contains(&slot));
        let owner = owner.unwrap_or_else(|| panic!("nobody owns slot {slot}"));
        keys[owner].get_or_insert(key);
        if keys.iter().all(Option::is_some) {
            return keys.into_iter().map(Option::unwrap).collect();
        }
    }
    unreachable!()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn cluster_connection(cluster: &ManagedCluster) -> ClusterConnection {
    ClusterClient::new(cluster.urls())
        .expect("cluster urls")
        .get_async_connection()
        .await
        .expect("the cluster client connects")
}

async fn get(conn: &mut ClusterConnection, key: &str) -> redis::RedisResult<Option<String>> {
    redis::cmd("GET").arg(key).query_async(conn).await
}

async fn set(conn: &mut ClusterConnection, key: &str, value: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(conn)
        .await
        .unwrap_or_else(|e| panic!("SET {key}: {e}"));
}

#[test]
fn three_masters_each_own_one_contiguous_range_and_together_all_16384_slots() {
    let _turn = serial();
    let dir = temp_dir();
    let cluster = ManagedCluster::start(dir.path(), 3).expect("cluster starts");
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 3);
    assert_eq!(
        cluster.urls(),
        nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect::<Vec<_>>()
    );
    for node in &nodes {
        assert_eq!(cluster_info(node.port, "cluster_state"), "ok");
        assert_eq!(cluster_info(node.port, "cluster_slots_assigned"), "16384");
        assert_eq!(cluster_info(node.port, "cluster_known_nodes"), "3");
        let id: String = on_node(node.port, &["CLUSTER", "MYID"]);
        assert_eq!(id, node.id);
    }
    // What the cluster itself says: CLUSTER SLOTS lists each slot range with its master.
    let shards: Vec<redis::Value> = on_node(nodes[0].port, &["CLUSTER", "SLOTS"]);
    let mut served: Vec<(u16, u16, u16)> = shards
        .iter()
        .map(|shard| {
            let (start, end, master): (u16, u16, (String, u16, String, redis::Value)) =
                redis::FromRedisValue::from_redis_value(shard.clone()).expect("a slot range");
            assert_eq!(master.0, "127.0.0.1");
            (start, end, master.1)
        })
        .collect();
    served.sort();
    assert_eq!(
        served.len(),
        3,
        "one contiguous range per master: {served:?}"
    );
    assert_eq!(served[0].0, 0);
    assert_eq!(served[2].1, 16383);
    for pair in served.windows(2) {
        assert_eq!(pair[1].0, pair[0].1 + 1, "no gap, no overlap: {served:?}");
    }
    for (start, end, port) in served {
        let node = nodes.iter().find(|n| n.port == port).expect("a known port");
        assert_eq!(node.slots, start..=end);
        assert!((5461..=5462).contains(&node.slots.clone().count()));
    }
}

#[test]
fn the_cluster_client_reaches_every_node_and_runs_multi_key_commands_on_one_hash_tag() {
    let _turn = serial();
    let dir = temp_dir();
    let cluster = ManagedCluster::start(dir.path(), 3).expect("cluster starts");
    let keys = one_key_per_node(&cluster);
    let rt = runtime();
    rt.block_on(async {
        let mut conn = cluster_connection(&cluster).await;
        for key in &keys {
            set(&mut conn, key, &format!("value of {key}")).await;
        }
        for key in &keys {
            assert_eq!(
                get(&mut conn, key).await.unwrap(),
                Some(format!("value of {key}"))
            );
        }

        // Keys sharing a hash tag share a slot, so one node runs a multi-key command.
        let (name, email) = ("{user:1}:name", "{user:1}:email");
        redis::cmd("MSET")
            .arg(name)
            .arg("Ada")
            .arg(email)
            .arg("ada@example.org")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        let both: Vec<String> = redis::cmd("MGET")
            .arg(name)
            .arg(email)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(both, ["Ada", "ada@example.org"]);
        redis::cmd("RENAME")
            .arg(name)
            .arg("{user:1}:nick")
            .query_async::<()>(&mut conn)
            .await
            .expect("RENAME within one hash tag");
        assert_eq!(
            get(&mut conn, "{user:1}:nick").await.unwrap().as_deref(),
            Some("Ada")
        );
        // Without a shared tag the same command spans slots, and the client refuses it.
        let crossed = redis::cmd("RENAME")
            .arg(&keys[0])
            .arg(&keys[1])
            .query_async::<()>(&mut conn)
            .await
            .expect_err("RENAME across nodes");
        assert!(
            crossed.to_string().to_lowercase().contains("crossslot"),
            "{crossed}"
        );
    });
    // Each key lives on the node that owns its slot, not everywhere.
    for (node, key) in cluster.nodes().iter().zip(&keys) {
        let keys_there: usize = on_node(node.port, &["DBSIZE"]);
        let stored: Option<String> = on_node(node.port, &["GET", key]);
        assert_eq!(stored, Some(format!("value of {key}")));
        assert!(keys_there >= 1);
    }
}

#[test]
fn a_killed_master_leaves_the_others_serving_and_rejoins_with_its_slots_but_not_its_keys() {
    let _turn = serial();
    let dir = temp_dir();
    let mut cluster = ManagedCluster::start(dir.path(), 3).expect("cluster starts");
    let before = cluster.nodes();
    let keys = one_key_per_node(&cluster);
    let rt = runtime();
    let mut conn = rt.block_on(async {
        let mut conn = cluster_connection(&cluster).await;
        for key in &keys {
            set(&mut conn, key, "before the crash").await;
        }
        conn
    });

    cluster.kill_node(1);
    rt.block_on(async {
        let survivors = async {
            for key in [&keys[0], &keys[2]] {
                assert_eq!(
                    get(&mut conn, key).await.unwrap().as_deref(),
                    Some("before the crash")
                );
            }
        };
        tokio::time::timeout(Duration::from_secs(1), survivors)
            .await
            .expect("the other shards answer within 1 s of the crash");
    });
    // Once the survivors agree that the node failed, they still serve their own slots.
    let survivor = before[0].port;
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster_info(survivor, "cluster_slots_fail") != before[1].slots.len().to_string() {
        assert!(
            Instant::now() < deadline,
            "the survivors never flagged the killed node as failed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for node in [&before[0], &before[2]] {
        assert_eq!(cluster_info(node.port, "cluster_state"), "ok");
    }
    rt.block_on(async {
        for key in [&keys[0], &keys[2]] {
            assert_eq!(
                get(&mut conn, key).await.unwrap().as_deref(),
                Some("before the crash")
            );
        }
    });

    cluster.start_node(1).expect("the node restarts");
    assert_eq!(cluster.nodes(), before, "same ports, ids and slots");
    for node in &before {
        assert_eq!(cluster_info(node.port, "cluster_state"), "ok");
        assert_eq!(cluster_info(node.port, "cluster_slots_ok"), "16384");
    }
    rt.block_on(async {
        // No persistence: the restarted master is back with its slots but without its keys.
        let lost = tokio::time::timeout(Duration::from_secs(5), get(&mut conn, &keys[1]))
            .await
            .expect("the restarted node answers");
        assert_eq!(lost.unwrap(), None);
        set(&mut conn, &keys[1], "after the restart").await;
        assert_eq!(
            get(&mut conn, &keys[1]).await.unwrap().as_deref(),
            Some("after the restart")
        );
        assert_eq!(
            get(&mut conn, &keys[0]).await.unwrap().as_deref(),
            Some("before the crash")
        );
    });
}

#[test]
fn dropping_the_cluster_ends_every_node() {
    let _turn = serial();
    let dir = temp_dir();
    let cluster = ManagedCluster::start(dir.path(), 3).expect("cluster starts");
    let running = processes_mentioning(dir.path());
    assert_eq!(running.len(), 3, "one redis-server per master: {running:?}");
    drop(cluster);
    let left = processes_mentioning(dir.path());
    assert!(left.is_empty(), "processes left running: {left:?}");
    let path = dir.path().to_path_buf();
    dir.close().expect("nothing holds the dir");
    assert!(!path.exists());
}

#[test]
fn fewer_than_three_masters_is_refused_before_anything_starts() {
    let _turn = serial();
    let dir = temp_dir();
    for masters in [0, 1, 2] {
        let error = ManagedCluster::start(dir.path(), masters)
            .err()
            .expect("too few masters");
        assert!(
            error.to_string().contains("at least 3 masters"),
            "{error:#}"
        );
    }
    assert!(processes_mentioning(dir.path()).is_empty());
    assert!(common::entries(dir.path()).is_empty());
}
