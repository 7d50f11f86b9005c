//! TTL jitter, the avalanche remedy: entries cached at the same moment with the same TTL
//! expire together and send their reads to Postgres together. Spreading each TTL by a
//! random share spreads the expiries.

use rand::Rng;
use std::time::Duration;

/// `base` × (1 ± u), u uniform in [0, percent / 100]; never below 1 ms.
pub fn apply(base: Duration, percent: f64) -> Duration {
    if percent <= 0.0 || !percent.is_finite() {
        return base;
    }
    let mut rng = rand::rng();
    let u = rng.random_range(0.0..=percent.min(100.0) / 100.0);
    let factor = if rng.random_bool(0.5) {
        1.0 + u
    } else {
        1.0 - u
    };
    base.mul_f64(factor).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::apply;
    use std::time::Duration;

    #[test]
    fn jitter_stays_within_the_percentage_and_spreads_both_ways() {
        let base = Duration::from_secs(10);
        assert_eq!(apply(base, 0.0), base);
        let ttls: Vec<_> = (0..2000).map(|_| apply(base, 20.0)).collect();
        assert!(ttls
            .iter()
            .all(|t| *t >= Duration::from_secs(8) && *t <= Duration::from_secs(12)));
        assert!(ttls.iter().any(|t| *t < Duration::from_millis(9_000)));
        assert!(ttls.iter().any(|t| *t > Duration::from_millis(11_000)));
    }
}
