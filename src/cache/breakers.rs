//! Which breaker a Redis call goes through. A single Redis has one. A cluster has one per
//! master, found from the slot of the call's key: when one master dies, calls for its
//! slots skip it at once (a Postgres read), while the other masters keep serving hits.
//! Until the cluster's slot map is known, and for calls without a key, one breaker stands
//! for the whole cluster.

use arc_swap::ArcSwapOption;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::breaker::{self, Breaker};
use super::cluster::ClusterNode;
use super::slots::{key_slot, SLOTS};

/// A breaker a call goes through, and the node to probe when it opens (`None`: PING
/// through the connection, whatever it reaches).
#[derive(Clone)]
pub struct Picked {
    pub breaker: Arc<Breaker>,
    /// Shared, not copied: a call picks its breaker on every request.
    pub node: Option<Arc<str>>,
}

/// The breakers of one Redis or one cluster.
pub enum Breakers {
    Single(Arc<Breaker>),
    Cluster(NodeBreakers),
}

/// A cluster's breakers: one per master, and one for the whole cluster.
pub struct NodeBreakers {
    whole: Arc<Breaker>,
    map: ArcSwapOption<SlotOwners>,
    /// A task is reading the slot map now.
    learning: AtomicBool,
}

/// Which master serves each slot, and each master's breaker.
struct SlotOwners {
    /// Slot → index into `nodes`; `NO_OWNER` for a slot no master serves.
    owner: Vec<u16>,
    nodes: Vec<Picked>,
}

const NO_OWNER: u16 = u16::MAX;

impl Breakers {
    pub fn single() -> Self {
        Self::Single(Arc::new(Breaker::new(breaker::OPEN_AFTER_NODE, "Redis")))
    }

    pub fn cluster() -> Self {
        Self::Cluster(NodeBreakers {
            whole: Arc::new(Breaker::new(breaker::OPEN_AFTER_CLUSTER, "Redis Cluster")),
            map: ArcSwapOption::empty(),
            learning: AtomicBool::new(false),
        })
    }

    /// The breaker for a call on `key` (`None`: a call with no key).
    pub fn pick(&self, key: Option<&[u8]>) -> Picked {
        match self {
            Self::Single(b) => Picked {
                breaker: b.clone(),
                node: None,
            },
            Self::Cluster(c) => c.pick(key),
        }
    }

    /// Every breaker there is.
    pub fn all(&self) -> Vec<Picked> {
        match self {
            Self::Single(b) => vec![Picked {
                breaker: b.clone(),
                node: None,
            }],
            Self::Cluster(c) => {
                let mut all = vec![Picked {
                    breaker: c.whole.clone(),
                    node: None,
                }];
                if let Some(map) = c.map.load().as_ref() {
                    all.extend(map.nodes.iter().cloned());
                }
                all
            }
        }
    }

    /// Should the caller read the cluster's slot map now? True once for a cluster whose
    /// map is unknown, until `learned` or `not_learned` is called.
    pub fn should_learn(&self) -> bool {
        match self {
            Self::Single(_) => false,
            Self::Cluster(c) => c.map.load().is_none() && !c.learning.swap(true, Ordering::AcqRel),
        }
    }

    /// Claim the slot map's refresh (after a node came back: slots may have moved).
    pub fn claim_refresh(&self) -> bool {
        match self {
            Self::Single(_) => false,
            Self::Cluster(c) => !c.learning.swap(true, Ordering::AcqRel),
        }
    }

    /// The cluster's nodes as `CLUSTER NODES` lists them: rebuild the slot map, keeping
    /// the breakers (open or not) of the masters that were already known.
    pub fn learned(&self, nodes: &[ClusterNode]) {
        let Self::Cluster(c) = self else { return };
        let known = c.map.load_full();
        let mut owner = vec![NO_OWNER; SLOTS];
        let mut picked = Vec::new();
        for node in nodes.iter().filter(|n| n.role == "master") {
            let breaker = known
                .as_ref()
                .and_then(|m| {
                    m.nodes
                        .iter()
                        .find(|p| p.node.as_deref() == Some(node.addr.as_str()))
                })
                .map(|p| p.breaker.clone())
                .unwrap_or_else(|| {
                    Arc::new(Breaker::new(
                        breaker::OPEN_AFTER_NODE,
                        format!("Redis node {}", node.addr),
                    ))
                });
            let index = picked.len() as u16;
            for range in &node.slots {
                for slot in range.clone() {
                    if let Some(o) = owner.get_mut(slot as usize) {
                        *o = index;
                    }
                }
            }
            picked.push(Picked {
                breaker,
                node: Some(Arc::from(node.addr.as_str())),
            });
        }
        c.map.store(Some(Arc::new(SlotOwners {
            owner,
            nodes: picked,
        })));
        c.learning.store(false, Ordering::Release);
    }

    /// Reading the slot map failed: let a later call try again.
    pub fn not_learned(&self) {
        if let Self::Cluster(c) = self {
            c.learning.store(false, Ordering::Release);
        }
    }
}

impl NodeBreakers {
    fn pick(&self, key: Option<&[u8]>) -> Picked {
        let whole = || Picked {
            breaker: self.whole.clone(),
            node: None,
        };
        let (Some(key), Some(map)) = (key, self.map.load_full()) else {
            return whole();
        };
        match map.owner[key_slot(key) as usize] {
            NO_OWNER => whole(),
            index => map.nodes[index as usize].clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Breakers;
    use crate::cache::cluster::parse_cluster_nodes;

    fn three_masters() -> Vec<crate::cache::ClusterNode> {
        parse_cluster_nodes(
            "a 127.0.0.1:7000@17000 master - 0 0 1 connected 0-5460\n\
             b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n\
             c 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383\n",
        )
    }

    #[test]
    fn a_key_picks_the_breaker_of_the_master_serving_its_slot() {
        let b = Breakers::cluster();
        assert!(b.pick(Some(b"foo")).node.is_none(), "no map yet: the whole");
        assert!(b.should_learn());
        assert!(!b.should_learn(), "one learner at a time");
        b.learned(&three_masters());
        // foo is in slot 12182, user:7 and its lock in 2780.
        assert_eq!(b.pick(Some(b"foo")).node.as_deref(), Some("127.0.0.1:7002"));
        assert_eq!(
            b.pick(Some(b"lock:{user:7}")).node.as_deref(),
            Some("127.0.0.1:7000")
        );
        assert!(b.pick(None).node.is_none());
        assert_eq!(b.all().len(), 4);
    }

    #[test]
    fn relearning_keeps_an_open_breaker_open_and_follows_a_moved_slot() {
        let b = Breakers::cluster();
        b.learned(&three_masters());
        let dead = b.pick(Some(b"foo"));
        let error =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(
            dead.breaker.unreachable(&error),
            "one failure opens a node's breaker"
        );
        assert!(
            b.pick(Some(b"user:7")).breaker.allows(),
            "the others stay closed"
        );
        // Slot 12182 moves to the first master.
        b.learned(&parse_cluster_nodes(
            "a 127.0.0.1:7000@17000 master - 0 0 1 connected 0-5460 12182\n\
             b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n\
             c 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-12181 12183-16383\n",
        ));
        assert_eq!(b.pick(Some(b"foo")).node.as_deref(), Some("127.0.0.1:7000"));
        let c = b
            .all()
            .into_iter()
            .find(|p| p.node.as_deref() == Some("127.0.0.1:7002"));
        assert!(!c.unwrap().breaker.allows(), "still open after relearning");
    }
}
