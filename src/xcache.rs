//! `X-Cache`: where an answer came from, the one list of its values. The servers send it,
//! the load generator counts it, the reports show it, and each value has the counter the
//! servers keep for it.

use serde::ser::SerializeMap;
use serde::Serialize;
use std::collections::BTreeMap;

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

/// Responses counted by X-Cache value: one count per value of ours, typed, and any other
/// value a server sent by its text. Serialised as a map value → count, zeros left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XCacheCounts {
    ours: [u64; XCache::ALL.len()],
    other: BTreeMap<String, u64>,
}

impl XCacheCounts {
    /// Count `n` answers of `value`.
    pub fn add(&mut self, value: XCache, n: u64) {
        self.ours[value as usize] += n;
    }

    /// Count `n` answers with a value that is not ours.
    pub fn add_other(&mut self, value: &str, n: u64) {
        match self.other.get_mut(value) {
            Some(total) => *total += n,
            None => {
                self.other.insert(value.to_string(), n);
            }
        }
    }

    /// Answers of `value`.
    pub fn get(&self, value: XCache) -> u64 {
        self.ours[value as usize]
    }

    /// Answers of the value a header spelt `value`, ours or not.
    pub fn by_name(&self, value: &str) -> u64 {
        match XCache::parse(value.as_bytes()) {
            Some(x) => self.get(x),
            None => self.other.get(value).copied().unwrap_or(0),
        }
    }

    /// Answers with a value that is not ours, by value.
    pub fn other(&self) -> &BTreeMap<String, u64> {
        &self.other
    }

    /// Every answer that carried an X-Cache header.
    pub fn total(&self) -> u64 {
        self.ours.iter().sum::<u64>() + self.other.values().sum::<u64>()
    }

    /// Add every count of `more`.
    pub fn merge(&mut self, more: &XCacheCounts) {
        for value in XCache::ALL {
            self.add(value, more.get(value));
        }
        for (value, n) in &more.other {
            self.add_other(value, *n);
        }
    }

    /// (value, count) of every value seen, ours first in `XCache::ALL`'s order.
    pub fn seen(&self) -> Vec<(&str, u64)> {
        XCache::ALL
            .into_iter()
            .map(|x| (x.as_str(), self.get(x)))
            .chain(self.other.iter().map(|(v, n)| (v.as_str(), *n)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

impl Serialize for XCacheCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let seen = self.seen();
        let mut map = serializer.serialize_map(Some(seen.len()))?;
        for (value, n) in seen {
            map.serialize_entry(value, &n)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::XCache;

    #[test]
    fn counts_serialise_as_a_map_of_the_values_seen() {
        let mut counts = super::XCacheCounts::default();
        counts.add(XCache::Near, 2);
        counts.add(XCache::Hit, 3);
        counts.add_other("odd", 1);
        let json = serde_json::to_string(&counts).unwrap();
        assert_eq!(json, r#"{"HIT":3,"NEAR":2,"odd":1}"#);
        assert_eq!(counts.total(), 6);
    }

    #[test]
    fn every_value_parses_back_and_others_do_not() {
        for x in XCache::ALL {
            assert_eq!(XCache::parse(x.as_str().as_bytes()), Some(x));
        }
        assert_eq!(XCache::parse(b"hit"), None);
        assert_eq!(XCache::parse(b"FAR"), None);
    }
}
