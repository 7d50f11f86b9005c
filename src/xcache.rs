//! `X-Cache`: where an answer came from, the one list of its values. The servers send it,
//! the load generator counts it, the reports show it, and each value has the counter the
//! servers keep for it.

use crate::counters::Counter;

/// Where a read's answer came from: the `X-Cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XCache {
    /// The cache.
    Hit,
    /// This request's own Postgres read (cold, expired, or an early recompute).
    Miss,
    /// The cache, past freshness; a refresh was started.
    Stale,
    /// Another request's Postgres read, waited for.
    Coalesced,
    /// The server's own near cache (L1), without asking Redis.
    Near,
}

impl XCache {
    pub const ALL: [XCache; 5] = [
        XCache::Hit,
        XCache::Miss,
        XCache::Stale,
        XCache::Coalesced,
        XCache::Near,
    ];

    /// The header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            XCache::Hit => "HIT",
            XCache::Miss => "MISS",
            XCache::Stale => "STALE",
            XCache::Coalesced => "COALESCED",
            XCache::Near => "NEAR",
        }
    }

    /// The value a header carries, if it is one of ours.
    pub fn parse(value: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str().as_bytes() == value)
    }

    /// The counter each answer kind increments.
    pub fn counter(self) -> Counter {
        match self {
            XCache::Hit => Counter::Hits,
            XCache::Miss => Counter::Misses,
            XCache::Stale => Counter::Stale,
            XCache::Coalesced => Counter::Coalesced,
            XCache::Near => Counter::NearHits,
        }
    }

    /// What it means, in one line (for `cachelab api`).
    pub fn doc(self) -> &'static str {
        match self {
            XCache::Hit => "answered from the cache (a cached 404 tombstone too)",
            XCache::Miss => "this request read Postgres: cold, expired, or an early recompute",
            XCache::Stale => {
                "answered from the cache past its freshness; a background refresh was started"
            }
            XCache::Coalesced => "answered by another request's Postgres read, waited for",
            XCache::Near => "answered from the server's own near cache (L1), without asking Redis",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::XCache;

    #[test]
    fn every_value_parses_back_and_others_do_not() {
        for x in XCache::ALL {
            assert_eq!(XCache::parse(x.as_str().as_bytes()), Some(x));
        }
        assert_eq!(XCache::parse(b"hit"), None);
        assert_eq!(XCache::parse(b"FAR"), None);
    }
}
