//! Models to draw beside what Redis did: an exact LRU cache simulated in-process over the
//! very ids a load sent (`load(#{trace: true})`), the reference Redis' sampled LRU is an
//! approximation of.

use rhai::Dynamic;
use std::collections::{BTreeMap, HashMap};

use super::{def, Registry};
use crate::lab::convert::{arg_array, arg_count, arg_int, LabResult};

pub fn register(r: &mut Registry) {
    def!(r, "model", "lru_hit_ratio(ids: array, capacity: int) -> float",
        "The hit ratio of an exact LRU cache holding capacity keys, starting empty, over this sequence of ids (e.g. a load's trace).",
        |ids: Dynamic, capacity: Dynamic| -> LabResult<f64> {
            let ids = arg_array("lru_hit_ratio", "ids", &ids)?
                .iter()
                .map(|v| arg_int("lru_hit_ratio", "ids[]", v))
                .collect::<LabResult<Vec<_>>>()?;
            let capacity = arg_count("lru_hit_ratio", "capacity", &capacity)? as usize;
            Ok(exact_lru_hit_ratio(&ids, capacity))
        });
}

/// Hits over requests of an exact LRU cache of `capacity` keys over `ids`.
pub fn exact_lru_hit_ratio(ids: &[i64], capacity: usize) -> f64 {
    if ids.is_empty() {
        return 0.0;
    }
    // Last use of each cached key, and cached keys by last use (oldest first).
    let mut last_use: HashMap<i64, usize> = HashMap::new();
    let mut by_age: BTreeMap<usize, i64> = BTreeMap::new();
    let mut hits = 0usize;
    for (now, id) in ids.iter().enumerate() {
        if let Some(then) = last_use.get(id).copied() {
            hits += 1;
            by_age.remove(&then);
        } else if capacity > 0 && last_use.len() >= capacity {
            if let Some((_, oldest)) = by_age.pop_first() {
                last_use.remove(&oldest);
            }
        }
        if capacity > 0 {
            last_use.insert(*id, now);
            by_age.insert(now, *id);
        }
    }
    hits as f64 / ids.len() as f64
}

#[cfg(test)]
mod tests {
    use super::exact_lru_hit_ratio;

    #[test]
    fn exact_lru_keeps_the_most_recent_keys() {
        // capacity 2: 1 2 1 3 1 2 → hits: 1 (3rd), 1 (5th); 2 was evicted by 3.
        assert_eq!(exact_lru_hit_ratio(&[1, 2, 1, 3, 1, 2], 2), 2.0 / 6.0);
        assert_eq!(exact_lru_hit_ratio(&[1, 1, 1], 0), 0.0);
        assert_eq!(exact_lru_hit_ratio(&[1, 2, 3, 1, 2, 3], 3), 0.5);
        assert_eq!(exact_lru_hit_ratio(&[1, 2, 3, 1, 2, 3], 2), 0.0);
    }
}
