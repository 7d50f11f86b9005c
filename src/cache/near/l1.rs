//! The level-1 store: user rows kept in the server process, in a well-kept concurrent
//! cache (quick_cache: S3-FIFO eviction by capacity, lock-striped, no background thread).
//! Each entry remembers when it was admitted, so the longest life (`near_ttl_ms`) is
//! checked on every read and a changed knob applies at once.

use bytes::Bytes;
use quick_cache::sync::Cache;
use std::time::{Duration, Instant};

/// An admitted row and when it came in.
#[derive(Clone)]
struct Entry {
    value: Bytes,
    admitted: Instant,
}

/// User rows by id, at most `capacity` of them.
pub struct L1 {
    rows: Cache<i32, Entry>,
}

impl L1 {
    pub fn new(capacity: u64) -> Self {
        Self {
            rows: Cache::new(capacity.max(1) as usize),
        }
    }

    /// The row of `id` if it is younger than `max_age`; an older one is dropped.
    pub fn get(&self, id: i32, max_age: Duration) -> Option<Bytes> {
        let entry = self.rows.get(&id)?;
        if entry.admitted.elapsed() <= max_age {
            Some(entry.value)
        } else {
            self.rows.remove_if(&id, |e| e.admitted == entry.admitted);
            None
        }
    }

    /// Admit `value` for `id`; returns when it did, to take it back by (`remove_exact`).
    pub fn insert(&self, id: i32, value: Bytes) -> Instant {
        let admitted = Instant::now();
        self.rows.insert(id, Entry { value, admitted });
        admitted
    }

    /// Drop the entry of `id` only if it is the one admitted at `admitted`.
    pub fn remove_exact(&self, id: i32, admitted: Instant) {
        self.rows.remove_if(&id, |e| e.admitted == admitted);
    }

    /// Drop the entry of `id`, if any; whether there was one.
    pub fn remove(&self, id: i32) -> bool {
        self.rows.remove(&id).is_some()
    }

    pub fn clear(&self) {
        self.rows.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Change how many rows it holds (evicting at once if fewer).
    pub fn set_capacity(&self, capacity: u64) {
        if self.rows.capacity() != capacity.max(1) {
            self.rows.set_capacity(capacity.max(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::L1;
    use bytes::Bytes;
    use std::time::Duration;

    #[test]
    fn rows_live_at_most_their_age_and_capacity_evicts() {
        let l1 = L1::new(100);
        l1.insert(1, Bytes::from_static(b"one"));
        assert_eq!(
            l1.get(1, Duration::from_secs(1)).as_deref(),
            Some(&b"one"[..])
        );
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(l1.get(1, Duration::from_millis(1)), None, "too old");
        assert!(l1.is_empty(), "an expired row is dropped when seen");
        for id in 0..1000 {
            l1.insert(id, Bytes::from_static(b"x"));
        }
        assert!(l1.len() <= 100, "{}", l1.len());
        let at = l1.insert(7, Bytes::from_static(b"a"));
        l1.insert(7, Bytes::from_static(b"b"));
        l1.remove_exact(7, at);
        assert_eq!(
            l1.get(7, Duration::from_secs(1)).as_deref(),
            Some(&b"b"[..]),
            "a newer admission stays"
        );
    }
}
