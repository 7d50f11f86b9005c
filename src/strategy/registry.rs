//! The one list of strategies. `serve`, `servers()`, `use_strategy`, `--strategy`,
//! `/metrics` labels and `cachelab api` all read it, and `serve --port P` gives each
//! strategy the port P + its position here, so URLs never change whichever subset runs.
//!
//! Adding a strategy is its file under `src/strategy/` plus one line in the `strategies!`
//! list in `src/strategy/mod.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use super::{Backend, Strategy, REGISTRY};
use crate::server::{HttpLimits, StrategyServer};

/// A future that starts a server.
type Starting = Pin<Box<dyn Future<Output = anyhow::Result<StrategyServer>> + Send>>;

/// One registered strategy.
#[derive(Clone, Copy)]
pub struct StrategyEntry {
    pub name: &'static str,
    pub summary: &'static str,
    /// Offset of its port from `serve --port`.
    pub port_offset: u16,
    /// Start its HTTP server on `addr` over `backend`.
    pub start: fn(Arc<Backend>, SocketAddr, HttpLimits) -> Starting,
}

impl std::fmt::Debug for StrategyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

pub fn start<S: Strategy>(backend: Arc<Backend>, addr: SocketAddr, limits: HttpLimits) -> Starting {
    Box::pin(StrategyServer::start(S::default(), backend, addr, limits))
}

/// The entry of strategy `S` (its port offset is set by its place in the list).
pub const fn entry<S: Strategy>() -> StrategyEntry {
    StrategyEntry {
        name: S::NAME,
        summary: S::SUMMARY,
        port_offset: 0,
        start: start::<S>,
    }
}

/// Number the entries' ports in list order.
pub const fn numbered<const N: usize>(mut entries: [StrategyEntry; N]) -> [StrategyEntry; N] {
    let mut i = 0;
    while i < N {
        entries[i].port_offset = i as u16;
        i += 1;
    }
    entries
}

/// Declares the strategy modules and the registry in one list, in port order.
macro_rules! strategies {
    ($($module:ident :: $strategy:ident),* $(,)?) => {
        $(
            mod $module;
            pub use $module::$strategy;
        )*

        /// Every strategy, in port order.
        pub static REGISTRY: &[registry::StrategyEntry] =
            &registry::numbered([$(registry::entry::<$strategy>()),*]);
    };
}
pub(crate) use strategies;

/// The registered strategy called `name`.
pub fn find(name: &str) -> Option<&'static StrategyEntry> {
    REGISTRY.iter().find(|e| e.name == name)
}

/// Every registered name, for messages and `--strategy`'s choices.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.name).collect()
}

#[cfg(test)]
mod tests {
    use super::super::REGISTRY;

    #[test]
    fn the_registry_lists_each_strategy_once_in_port_order() {
        let names: Vec<_> = REGISTRY.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "cache-aside",
                "write-through",
                "write-behind",
                "refresh-ahead"
            ]
        );
        for (i, e) in REGISTRY.iter().enumerate() {
            assert_eq!(e.port_offset as usize, i);
            assert!(!e.summary.is_empty());
        }
    }
}
