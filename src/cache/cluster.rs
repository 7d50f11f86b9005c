//! A Redis Cluster as its own nodes describe it (`CLUSTER NODES`): who serves which slots,
//! who is a replica, who is flagged as failed. Labs, the per-lab reset and the fault
//! proxies all need the same list in the same order, so it is parsed in one place.

use std::ops::RangeInclusive;

/// One node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The 40-character node id.
    pub id: String,
    /// `host:port` clients reach it at.
    pub addr: String,
    /// `master` or `replica`.
    pub role: &'static str,
    /// Flagged `fail` (or `fail?`) by the node that answered: a crashed master keeps its
    /// slots, so this is how a reader tells it is gone.
    pub failing: bool,
    /// The slot ranges it serves (a master; empty for a replica).
    pub slots: Vec<RangeInclusive<u16>>,
}

impl ClusterNode {
    /// The host and port of `addr`.
    pub fn host_port(&self) -> Option<(&str, u16)> {
        let (host, port) = self.addr.rsplit_once(':')?;
        Some((host, port.parse().ok()?))
    }

    /// The URL of a direct connection to this node, with the credentials of `like` (a URL
    /// of the same cluster).
    pub fn url_like(&self, like: &str) -> String {
        node_url(like, &self.addr)
    }
}

/// The URL of a direct connection to the node at `addr` (`ip:port`), with the credentials
/// and options of `like` (a URL of the same cluster).
pub fn node_url(like: &str, addr: &str) -> String {
    let Ok(addr) = addr.parse::<std::net::SocketAddr>() else {
        return format!("redis://{addr}/");
    };
    crate::stack::endpoint::with_authority(like, addr)
}

/// The nodes listed by a `CLUSTER NODES` reply, masters first in the order of the first
/// slot each serves, then replicas by address. The order is stable while the topology
/// is, so `"redis:0"` names the same node for a lab's whole run.
pub fn parse_cluster_nodes(reply: &str) -> Vec<ClusterNode> {
    let mut nodes: Vec<ClusterNode> = reply.lines().filter_map(parse_line).collect();
    nodes.sort_by(|a, b| {
        let key = |n: &ClusterNode| {
            (
                n.role != "master",
                n.slots.first().map_or(u16::MAX, |s| *s.start()),
                n.addr.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    nodes
}

/// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
fn parse_line(line: &str) -> Option<ClusterNode> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return None;
    }
    let addr = fields[1].split(['@', ',']).next()?.to_string();
    let flags: Vec<&str> = fields[2].split(',').collect();
    // A node that has left (or was never met) has no address to reach.
    if addr.starts_with(':') || flags.contains(&"noaddr") || flags.contains(&"handshake") {
        return None;
    }
    let role = if flags.contains(&"master") {
        "master"
    } else {
        "replica"
    };
    let slots = fields[8..]
        .iter()
        // `[slot->-id]` / `[slot-<-id]` mark a slot being migrated or imported.
        .filter(|s| !s.starts_with('['))
        .filter_map(|s| {
            let (start, end) = s.split_once('-').unwrap_or((s, s));
            Some(start.parse().ok()?..=end.parse().ok()?)
        })
        .collect();
    Some(ClusterNode {
        id: fields[0].to_string(),
        addr,
        role,
        failing: flags.contains(&"fail") || flags.contains(&"fail?"),
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_cluster_nodes;

    #[test]
    fn masters_come_in_slot_order_with_their_ranges_and_failure_flags() {
        let reply = "\
b2 127.0.0.1:7002@17002 master - 0 1 3 connected 10923-16383\n\
a0 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [5461->-b1]\n\
r9 127.0.0.1:7009@17009 slave a0 0 1 1 connected\n\
b1 127.0.0.1:7001@17001,node1.local master,fail - 0 1 2 disconnected 5461-10922 16000\n\
gone :0@0 master,noaddr - 0 0 0 disconnected\n";
        let nodes = parse_cluster_nodes(reply);
        let summary: Vec<_> = nodes
            .iter()
            .map(|n| (n.addr.as_str(), n.role, n.failing, n.slots.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("127.0.0.1:7000", "master", false, vec![0..=5460]),
                (
                    "127.0.0.1:7001",
                    "master",
                    true,
                    vec![5461..=10922, 16000..=16000]
                ),
                ("127.0.0.1:7002", "master", false, vec![10923..=16383]),
                ("127.0.0.1:7009", "replica", false, vec![]),
            ]
        );
        assert_eq!(nodes[0].host_port(), Some(("127.0.0.1", 7000)));
        assert_eq!(
            nodes[1].url_like("redis://:pw@127.0.0.1:7000/"),
            "redis://:pw@127.0.0.1:7001/"
        );
    }
}
