//! A throw-away Redis Cluster: N masters on free loopback ports, all 16384 hash slots
//! assigned, no persistence. It exists so labs can show what sharding changes (keys spread
//! over nodes, hash tags, one shard down while the others serve) without any setup; it is
//! started, crashed, restarted and removed like the single `ManagedRedis`.

use anyhow::{bail, Context};
use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{binaries, child::ManagedChild, managed_redis::log_tail, ports};

/// Redis Cluster hashes every key into one of this many slots.
pub const CLUSTER_SLOTS: u16 = 16384;

/// Fewer masters cannot lose one: the survivors would not be a majority able to agree
/// that it failed, so the whole cluster would stop serving.
const MIN_MASTERS: usize = 3;

/// How long (ms) a node may be silent before the others flag it as failing. Short, so a
/// lab that crashes a node sees the cluster react within seconds; long enough that a busy
/// two-core machine does not flag a healthy node.
const NODE_TIMEOUT_MS: u64 = 2000;

/// How long a freshly spawned node may take to answer PING.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// How long the nodes may take to agree on a healthy cluster. Redis itself holds a master
/// back for about two seconds before it reports `ok` (it gives the cluster a chance to
/// reconfigure a node that rejoins), so this is that floor plus ample slack.
const CONVERGE_WITHIN: Duration = Duration::from_secs(10);

const POLL_EVERY: Duration = Duration::from_millis(10);

/// A Redis Cluster this process started and will end: every node stops when this drops.
/// The directory it was given holds each node's `nodes-<port>.conf` and log; its owner
/// removes it after this has dropped.
pub struct ManagedCluster {
    binary: PathBuf,
    dir: PathBuf,
    nodes: Vec<Node>,
}

/// One master as a caller sees it: where it listens, who it is, what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNodeInfo {
    pub port: u16,
    /// The 40-character id the cluster knows the node by (kept across a restart).
    pub id: String,
    /// The slots this master was given: one contiguous range. cachelab never moves slots;
    /// after someone else has (CLUSTER SETSLOT), ask the cluster (`CLUSTER NODES`).
    pub slots: RangeInclusive<u16>,
}

/// A master and its process (`None` once `kill_node` has ended it).
struct Node {
    port: u16,
    /// The cluster bus port, set explicitly: Redis's default (port + 10000) may be taken
    /// or past 65535 for a port from the kernel's ephemeral range.
    bus_port: u16,
    id: String,
    slots: RangeInclusive<u16>,
    child: Option<ManagedChild>,
}

impl ManagedCluster {
    /// Start `masters` nodes in `dir`, give each an even, contiguous share of the slots,
    /// join them, and wait until every node reports a healthy cluster that knows all of
    /// them. Call it from the main thread, like `Stack::start`: the nodes are spawned on
    /// the calling thread so they die with cachelab even if it is SIGKILLed.
    pub fn start(dir: &Path, masters: usize) -> anyhow::Result<Self> {
        if masters < MIN_MASTERS {
            bail!(
                "a Redis Cluster needs at least {MIN_MASTERS} masters, not {masters}: with \
                 fewer, the others cannot agree that a crashed one failed and stop serving"
            );
        }
        if masters > usize::from(CLUSTER_SLOTS) {
            bail!(
                "a Redis Cluster has {CLUSTER_SLOTS} slots; {masters} masters cannot all own one"
            );
        }
        let began = Instant::now();
        let binary = binaries::redis_server()?;
        let mut cluster = Self {
            nodes: spawn_all(&binary, dir, masters)?,
            binary,
            dir: dir.to_path_buf(),
        };
        for node in &mut cluster.nodes {
            node.id = query::<String>(node.port, &["CLUSTER", "MYID"])?;
        }
        cluster.assign_slots_and_join()?;
        cluster.wait_until_converged()?;
        tracing::info!(
            "redis cluster of {masters} masters on ports {:?} ready in {:?}",
            cluster.nodes.iter().map(|n| n.port).collect::<Vec<_>>(),
            began.elapsed()
        );
        Ok(cluster)
    }

    /// Each master with its port, id and slots, in start order (the index `kill_node` and
    /// `start_node` take).
    pub fn nodes(&self) -> Vec<ClusterNodeInfo> {
        self.nodes
            .iter()
            .map(|n| ClusterNodeInfo {
                port: n.port,
                id: n.id.clone(),
                slots: n.slots.clone(),
            })
            .collect()
    }

    /// One URL per master: a cluster client needs only one that answers, but giving all
    /// of them lets it connect while any single node is down.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| node_url(n.port)).collect()
    }

    /// Kill master `i` without warning, as a crash would. Its slots go unserved until
    /// `start_node(i)`; the other masters keep serving theirs.
    /// Panics if there is no master `i`.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill();
        }
    }

    /// Start master `i` again on its old ports with its old `nodes-<port>.conf`, so it
    /// rejoins as the same node owning the same slots, and wait until every node reports
    /// the cluster healthy again. Its keys are gone: nodes keep no data on disk.
    /// Call it from the main thread for the same reason as `start`.
    /// Panics if there is no master `i`.
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        if let Some(child) = node.child.as_mut() {
            if !child.has_exited() {
                bail!(
                    "cluster node {i} (port {}) is still running; kill it first",
                    node.port
                );
            }
        }
        let mut child = spawn_node(&self.binary, &self.dir, node.port, node.bus_port)?;
        wait_until_answering(&mut child, &self.dir, node.port)?;
        node.child = Some(child);
        self.wait_until_converged()
    }

    /// Is master `i` running (not killed, not crashed)?
    /// Panics if there is no master `i`.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i]
            .child
            .as_mut()
            .is_some_and(|child| !child.has_exited())
    }

    /// The process id of each master, `None` for one that is not running (for SIGSTOP and
    /// SIGCONT).
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.nodes
            .iter()
            .map(|n| n.child.as_ref().and_then(ManagedChild::pid))
            .collect()
    }

    /// Stop master `i` cleanly (SIGTERM); like `kill_node`, its slots go unserved until
    /// `start_node(i)`. Panics if there is no master `i`.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.stop();
        }
    }

    /// Start every master that is not running (killed, stopped or crashed) and wait until
    /// the cluster is healthy again; returns whether any was started. Any thread may call
    /// it: the nodes are forked by the stack's spawner thread (see `child`).
    pub fn revive(&mut self) -> anyhow::Result<bool> {
        let down: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| !self.is_running(i))
            .collect();
        for &i in &down {
            let node = &mut self.nodes[i];
            let mut child = spawn_node(&self.binary, &self.dir, node.port, node.bus_port)?;
            wait_until_answering(&mut child, &self.dir, node.port)?;
            node.child = Some(child);
        }
        if !down.is_empty() {
            self.wait_until_converged()?;
        }
        Ok(!down.is_empty())
    }

    /// Give each master its slots, make the config epochs distinct (as `redis-cli --cluster
    /// create` does, so the nodes need not resolve a tie first), and introduce every node
    /// to every other, so none waits for gossip to learn of a third.
    fn assign_slots_and_join(&self) -> anyhow::Result<()> {
        for (epoch, node) in (1u64..).zip(&self.nodes) {
            let (start, end) = (node.slots.start().to_string(), node.slots.end().to_string());
            query::<()>(node.port, &["CLUSTER", "ADDSLOTSRANGE", &start, &end])?;
            query::<()>(
                node.port,
                &["CLUSTER", "SET-CONFIG-EPOCH", &epoch.to_string()],
            )?;
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let (port, bus_port) = (node.port.to_string(), node.bus_port.to_string());
            for other in self.nodes.iter().take(i) {
                query::<()>(
                    other.port,
                    &["CLUSTER", "MEET", "127.0.0.1", &port, &bus_port],
                )?;
            }
        }
        Ok(())
    }

    /// Wait until every running node reports the cluster `ok`, knows all masters, and sees
    /// all 16384 slots assigned to nodes it does not suspect of failing.
    fn wait_until_converged(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + CONVERGE_WITHIN;
        loop {
            let lagging = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .find_map(|n| self.unhealthy_view(n).map(|why| (n, why)));
            let Some((node, why)) = lagging else {
                return Ok(());
            };
            if Instant::now() > deadline {
                bail!(
                    "redis cluster node on port {} did not converge within {CONVERGE_WITHIN:?}: \
                     {why} (log: {})",
                    node.port,
                    log_tail(&log_path(&self.dir, node.port))
                );
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// What is still wrong in `node`'s view of the cluster, or `None` when nothing is.
    fn unhealthy_view(&self, node: &Node) -> Option<String> {
        let info = match query::<String>(node.port, &["CLUSTER", "INFO"]) {
            Ok(info) => info,
            Err(e) => return Some(format!("{e:#}")),
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .unwrap_or("?")
                .trim()
                .to_string()
        };
        let all_slots = CLUSTER_SLOTS.to_string();
        let masters = self.nodes.len().to_string();
        let state = field("cluster_state");
        let assigned = field("cluster_slots_assigned");
        let ok = field("cluster_slots_ok");
        let known = field("cluster_known_nodes");
        let healthy = state == "ok" && assigned == all_slots && ok == all_slots && known == masters;
        (!healthy).then(|| {
            format!(
                "cluster_state:{state}, {assigned} of {all_slots} slots assigned, {ok} served \
                 by nodes not suspected of failing, {known} of {masters} nodes known"
            )
        })
    }
}

/// Spawn `count` nodes on fresh ports, all before waiting for any, so their start-ups
/// overlap. They are spawned on the calling thread (not one thread each) because the
/// parent-death signal is tied to the thread that spawns a child.
fn spawn_all(binary: &Path, dir: &Path, count: usize) -> anyhow::Result<Vec<Node>> {
    let mut used_ports = HashSet::new();
    let mut nodes = Vec::with_capacity(count);
    for i in 0..count {
        let (port, bus_port) = fresh_ports(&mut used_ports)?;
        nodes.push(Node {
            port,
            bus_port,
            id: String::new(),
            slots: slot_share(i, count),
            child: Some(spawn_node(binary, dir, port, bus_port)?),
        });
    }
    let mut attempts = vec![1; count];
    let mut ready = vec![false; count];
    let deadline = Instant::now() + READY_WITHIN;
    while ready.contains(&false) {
        for (i, node) in nodes.iter_mut().enumerate() {
            if ready[i] {
                continue;
            }
            if answers_ping(node.port) {
                ready[i] = true;
                continue;
            }
            let child = node.child.as_mut().expect("spawned above");
            if !child.has_exited() {
                continue;
            }
            if attempts[i] == 3 {
                bail!(
                    "redis-server on port {} exited during start-up: {}",
                    node.port,
                    log_tail(&log_path(dir, node.port))
                );
            }
            // A free port can be taken between asking and binding: try fresh ones.
            attempts[i] += 1;
            (node.port, node.bus_port) = fresh_ports(&mut used_ports)?;
            node.child = Some(spawn_node(binary, dir, node.port, node.bus_port)?);
        }
        if let Some(i) = ready.iter().position(|r| !r) {
            if Instant::now() > deadline {
                bail!(
                    "redis-server on port {} did not answer PING within {READY_WITHIN:?}",
                    nodes[i].port
                );
            }
            std::thread::sleep(POLL_EVERY);
        }
    }
    Ok(nodes)
}

/// Master `i` of `count` owns the `i`-th of `count` near-equal contiguous slot ranges.
fn slot_share(i: usize, count: usize) -> RangeInclusive<u16> {
    let slots = usize::from(CLUSTER_SLOTS);
    let start = i * slots / count;
    let end = (i + 1) * slots / count - 1;
    start as u16..=end as u16
}

/// A client port and a bus port, both free now and not handed to another node already.
fn fresh_ports(used: &mut HashSet<u16>) -> anyhow::Result<(u16, u16)> {
    let mut next = || loop {
        let port = ports::free_port()?;
        if used.insert(port) {
            return anyhow::Ok(port);
        }
    };
    Ok((next()?, next()?))
}

fn spawn_node(binary: &Path, dir: &Path, port: u16, bus_port: u16) -> anyhow::Result<ManagedChild> {
    let mut command = Command::new(binary);
    command.args(["--port", &port.to_string()]).args([
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        "--dir",
    ]);
    command.arg(dir);
    command
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
        .args(["--cluster-port", &bus_port.to_string()])
        .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
        // With the default (`yes`), once the others agree that a crashed master failed,
        // every node refuses every key, not just the dead master's. `no` keeps the other
        // shards serving, which is what a sharded cache should show when one shard dies.
        .args(["--cluster-require-full-coverage", "no"]);
    ManagedChild::spawn(
        "redis-server",
        command,
        &log_path(dir, port),
        libc::SIGTERM,
        libc::SIGKILL,
    )
    .with_context(|| format!("starting redis cluster node on port {port}"))
}

/// Wait until a restarted node answers PING, or explain why it never will.
fn wait_until_answering(child: &mut ManagedChild, dir: &Path, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if answers_ping(port) {
            return Ok(());
        }
        if child.has_exited() {
            bail!(
                "redis cluster node on port {port} exited during start-up: {}",
                log_tail(&log_path(dir, port))
            );
        }
        if Instant::now() > deadline {
            bail!("redis cluster node on port {port} did not answer PING within {READY_WITHIN:?}");
        }
        std::thread::sleep(POLL_EVERY);
    }
}

fn log_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("redis-{port}.log"))
}

fn node_url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/")
}

fn answers_ping(port: u16) -> bool {
    query::<String>(port, &["PING"]).is_ok_and(|pong| pong == "PONG")
}

/// One command on one node over a short-lived blocking connection: set-up sends a few
/// dozen commands, so a connection each keeps this simple at no noticeable cost.
fn query<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> anyhow::Result<T> {
    let what = || format!("{} on redis cluster node port {port}", args.join(" "));
    let client = redis::Client::open(node_url(port)).with_context(what)?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .with_context(what)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))
        .with_context(what)?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(&mut conn).with_context(what)
}

#[cfg(test)]
mod tests {
    use super::{slot_share, CLUSTER_SLOTS};

    #[test]
    fn slot_shares_are_contiguous_near_equal_and_cover_every_slot() {
        for count in [3, 5, 7] {
            let shares: Vec<_> = (0..count).map(|i| slot_share(i, count)).collect();
            assert_eq!(*shares[0].start(), 0);
            assert_eq!(*shares[count - 1].end(), CLUSTER_SLOTS - 1);
            for pair in shares.windows(2) {
                assert_eq!(*pair[1].start(), pair[0].end() + 1, "{shares:?}");
            }
            let sizes: Vec<usize> = shares.iter().map(|s| s.clone().count()).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "{sizes:?}");
        }
    }
}
