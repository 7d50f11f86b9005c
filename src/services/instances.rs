//! Several instances of each strategy server (`serve --instances N`, a lab's
//! `set_instances(n)`): an in-process L1 is per process, so a write through one instance
//! and a read through another needs two. Each instance has its own backend — L1,
//! invalidation link, counters, remedies' state — over the shared store, cache and knobs.
//! Instance `i` of the strategy at registry position `s` listens on `P + 10·i + s` when
//! a first port `P` is given.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::cache::Cache;
use crate::knobs::Knobs;
use crate::server::{HttpLimits, StrategyServer};
use crate::store::Store;
use crate::strategy::{Backend, StrategyKind};

/// Instances per strategy, at most.
pub const MAX_INSTANCES: usize = 4;

/// Ports between one instance's servers and the next one's.
pub const INSTANCE_PORT_STRIDE: u16 = 10;

/// One running instance of a strategy server, as the lab API and tests see it.
#[derive(Clone)]
pub struct Instance {
    /// 0 for the first.
    pub index: usize,
    pub addr: SocketAddr,
    pub backend: Arc<Backend>,
}

impl Instance {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What starting one more instance takes: the shared clients and knobs, and where the
/// servers listen.
pub struct Launcher {
    pub store: Store,
    pub cache: Cache,
    pub knobs: Arc<Knobs>,
    pub bind: std::net::IpAddr,
    /// The first strategy's port (0: any free ports).
    pub port: u16,
    pub http: HttpLimits,
    /// Where the near caches' invalidation links dial.
    pub near_url: String,
}

/// The port of instance `index` of `kind` when the first strategy's is `first` (0 stays
/// 0: any free port).
pub fn port_of(first: u16, kind: StrategyKind, index: usize) -> Option<u16> {
    if first == 0 {
        return Some(0);
    }
    let stride = u16::try_from(index)
        .ok()?
        .checked_mul(INSTANCE_PORT_STRIDE)?;
    first.checked_add(stride)?.checked_add(kind.port_offset())
}

impl Launcher {
    /// Start instance `index` of `kind`, with its near cache's link.
    pub async fn start(&self, kind: StrategyKind, index: usize) -> anyhow::Result<StrategyServer> {
        let port = port_of(self.port, kind, index)
            .context("--port leaves no room for every strategy's and instance's port")?;
        let backend = Arc::new(Backend::new(
            kind.name(),
            self.store.clone(),
            self.cache.clone(),
            self.knobs.clone(),
        ));
        backend.near.spawn_link(
            &backend.daemons,
            self.near_url.clone(),
            self.knobs.clone(),
            backend.stop.clone(),
        );
        let addr = SocketAddr::new(self.bind, port);
        StrategyServer::start(kind, backend, addr, self.http).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_i_of_the_strategy_at_position_s_listens_on_p_plus_10i_plus_s() {
        let kinds = StrategyKind::ALL;
        assert_eq!(port_of(8000, kinds[0], 0), Some(8000));
        assert_eq!(port_of(8000, kinds[1], 0), Some(8001));
        assert_eq!(port_of(8000, kinds[1], 2), Some(8021));
        assert_eq!(port_of(8000, kinds[3], 3), Some(8033));
        assert_eq!(port_of(0, kinds[3], 3), Some(0));
        assert_eq!(port_of(65530, kinds[0], 1), None);
    }
}
