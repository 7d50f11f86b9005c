//! The one list of strategies, an enum the compiler checks: a new strategy is its file,
//! one variant here, and the match arm the compiler then asks for in each `match` on it
//! (its name and summary below; the server's start). `serve`, `servers()`, `use_strategy`,
//! `--strategy`, `/metrics` labels and `cachelab api` all read it, and `serve --port P`
//! gives each strategy the port P + its position here, so URLs never change whichever
//! subset runs.

use super::cache_aside::CacheAside;
use super::ops::Strategy;
use super::refresh_ahead::RefreshAhead;
use super::write_behind::WriteBehind;
use super::write_through::WriteThrough;

/// A registered strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    CacheAside,
    WriteThrough,
    WriteBehind,
    RefreshAhead,
}

impl StrategyKind {
    /// Every strategy, in port order.
    pub const ALL: [StrategyKind; 4] = [
        StrategyKind::CacheAside,
        StrategyKind::WriteThrough,
        StrategyKind::WriteBehind,
        StrategyKind::RefreshAhead,
    ];

    /// The name URLs, logs, `use_strategy` and `--strategy` use.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::CacheAside => CacheAside::NAME,
            StrategyKind::WriteThrough => WriteThrough::NAME,
            StrategyKind::WriteBehind => WriteBehind::NAME,
            StrategyKind::RefreshAhead => RefreshAhead::NAME,
        }
    }

    /// One line for `cachelab api`, the README and `serve --help`.
    pub fn summary(self) -> &'static str {
        match self {
            StrategyKind::CacheAside => CacheAside::SUMMARY,
            StrategyKind::WriteThrough => WriteThrough::SUMMARY,
            StrategyKind::WriteBehind => WriteBehind::SUMMARY,
            StrategyKind::RefreshAhead => RefreshAhead::SUMMARY,
        }
    }

    /// Offset of its port from `serve --port`: its place in `ALL`.
    pub fn port_offset(self) -> u16 {
        Self::ALL
            .iter()
            .position(|k| *k == self)
            .expect("every strategy is in ALL") as u16
    }

    /// The strategy called `name`.
    pub fn find(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Every registered name, for messages and `--strategy`'s choices.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|k| k.name()).collect()
    }

    /// `find` as a clap value parser: an unknown name lists the known ones.
    pub fn parse(name: &str) -> Result<Self, UnknownStrategy> {
        Self::find(name).ok_or_else(|| UnknownStrategy(name.to_string()))
    }
}

/// A strategy name no strategy has; its message lists the known ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStrategy(pub String);

impl std::fmt::Display for UnknownStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown strategy {:?}; known: {}",
            self.0,
            StrategyKind::names().join(", ")
        )
    }
}

impl std::error::Error for UnknownStrategy {}

#[cfg(test)]
mod tests {
    use super::StrategyKind;

    #[test]
    fn the_registry_lists_each_strategy_once_in_port_order() {
        let names = StrategyKind::names();
        assert_eq!(
            names,
            [
                "cache-aside",
                "write-through",
                "write-behind",
                "refresh-ahead"
            ]
        );
        for (i, kind) in StrategyKind::ALL.iter().enumerate() {
            assert_eq!(kind.port_offset() as usize, i);
            assert!(!kind.summary().is_empty());
            assert_eq!(StrategyKind::find(kind.name()), Some(*kind));
        }
        // Every variant is in ALL: the match below fails to compile when one is added,
        // and the count must follow.
        let count = |k: StrategyKind| match k {
            StrategyKind::CacheAside
            | StrategyKind::WriteThrough
            | StrategyKind::WriteBehind
            | StrategyKind::RefreshAhead => 4,
        };
        assert_eq!(count(StrategyKind::CacheAside), StrategyKind::ALL.len());
        assert!(StrategyKind::parse("lru")
            .unwrap_err()
            .to_string()
            .contains("write-behind"));
    }
}
