//! Issue #16's near cache on a Redis Cluster, as `cachelab serve` runs it: the tracking
//! modes need one tracking connection per master, which the core does not keep, so in
//! `tracking` and `bcast` mode L1 stays unused (every read goes to Redis) and the log
//! says why; `ttl` mode needs no link and answers from L1.

mod common;

use common::{get, private_tmpdir, Serve};

/// The X-Cache values of three reads of user 3 through cache-aside, and what serve logged.
fn three_reads_on_a_cluster(mode: &str) -> (Vec<String>, String) {
    let tmp = private_tmpdir();
    let serve = Serve::start(
        tmp.path(),
        &[
            "--port",
            "0",
            "--redis-cluster",
            "3",
            "--strategy",
            "cache-aside",
            "--near-cache",
            mode,
        ],
    );
    let at = format!("{}/users/3", serve.url("cache-aside").unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seen = runtime.block_on(async {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let answer = get(&at).await;
            assert_eq!(answer.status, 200);
            seen.push(answer.cache().to_string());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        seen
    });
    (seen, serve.stop())
}

#[test]
fn on_a_cluster_tracking_keeps_l1_unused_and_says_why_while_ttl_mode_uses_it() {
    let (tracking, log) = three_reads_on_a_cluster("tracking");
    assert_eq!(tracking, ["MISS", "HIT", "HIT"], "{log}");
    assert!(
        log.contains("near cache tracking: needs one Redis node")
            && log.contains("L1 stays unused"),
        "{log}"
    );
    let (ttl, log) = three_reads_on_a_cluster("ttl");
    assert_eq!(ttl, ["MISS", "NEAR", "NEAR"], "{log}");
}

#[test]
fn the_near_cache_labs_are_skipped_on_a_cluster_with_their_reason() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("labs");
    let labs: Vec<_> = ["near-cache", "near-cache-race", "near-cache-partition"]
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
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout
            .matches("skipped: single-node only on a Redis Cluster: ")
            .count(),
        3,
        "{stdout}"
    );
    assert!(
        stdout.contains("on a cluster L1 stays unused, see the README"),
        "{stdout}"
    );
}
