//! XFetch, probabilistic early recomputation (Vattani, Chierichetti, Lowenstein, VLDB
//! 2015): a hit recomputes early when `now − δ·β·ln(rand) ≥ expiry`, where δ is how long
//! the last recomputation of that key took. Keys that are slow to recompute or close to
//! expiry refresh early with rising probability, so one request refreshes a hot key
//! before it expires instead of a stampede after.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Beyond this many keys the memory of recompute times starts afresh.
const MAX_REMEMBERED: usize = 100_000;

/// δ per key: how long its last Postgres read (recomputation) took.
#[derive(Default)]
pub struct RecomputeTimes(Mutex<HashMap<i32, Duration>>);

impl RecomputeTimes {
    pub fn record(&self, id: i32, took: Duration) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_REMEMBERED {
            map.clear();
        }
        map.insert(id, took);
    }

    pub fn get(&self, id: i32) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
    }
}

/// Should a hit with `pttl_ms` left recompute now? `draw` is uniform in (0, 1].
pub fn recompute_early(delta: Duration, beta: f64, pttl_ms: i64, draw: f64) -> bool {
    if pttl_ms < 0 || draw <= 0.0 {
        return false;
    }
    let gap_ms = -(delta.as_secs_f64() * 1000.0) * beta * draw.ln();
    gap_ms >= pttl_ms as f64
}

/// A uniform draw in (0, 1].
pub fn draw() -> f64 {
    1.0 - rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::recompute_early;
    use std::time::Duration;

    #[test]
    fn early_recomputation_grows_likelier_near_expiry_and_with_slow_reads() {
        let share = |delta_ms: u64, pttl_ms: i64| {
            (1..=1000)
                .filter(|i| {
                    recompute_early(
                        Duration::from_millis(delta_ms),
                        1.0,
                        pttl_ms,
                        *i as f64 / 1000.0,
                    )
                })
                .count()
        };
        // P(early) = exp(-pttl / (δβ)).
        assert_eq!(share(100, 10_000), 0);
        assert!(share(100, 100) > 300 && share(100, 100) < 400);
        assert!(share(100, 10) > share(100, 100));
        assert!(share(1000, 100) > share(100, 100));
        assert!(!recompute_early(Duration::from_secs(1), 1.0, -1, 0.5));
    }
}
