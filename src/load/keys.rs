//! Which user id a request asks for, when a URL has `{id}` in it: uniform over a range,
//! Zipf-distributed (a few hot keys, a long tail), as real caches see, or sequential (each
//! id in turn across all workers: a walk that touches every key once, to warm a cache).

use rand::rngs::SmallRng;
use rand::Rng;
use rand_distr::{Distribution, Zipf};

/// The id distribution a run draws from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyDist {
    Uniform,
    /// Zipf with exponent `s`: id 1 is the hottest.
    Zipf(f64),
    /// first, first+1, ... last, first, ... in request order over the whole run.
    Sequential,
}

impl KeyDist {
    /// `uniform`, `zipf` (s = 1.0), `zipf:<s>` or `sequential`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "uniform" => Ok(Self::Uniform),
            "zipf" => Ok(Self::Zipf(1.0)),
            "sequential" => Ok(Self::Sequential),
            _ => match text.strip_prefix("zipf:").map(str::parse::<f64>) {
                Some(Ok(s)) if s > 0.0 && s.is_finite() => Ok(Self::Zipf(s)),
                _ => Err(format!(
                    "unknown key distribution {text:?}; use uniform, zipf, zipf:<s> with s > 0, or sequential"
                )),
            },
        }
    }
}

/// An inclusive id range like `1..1000`.
pub fn parse_ids(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("ids must look like 1..1000 (inclusive, first >= 1), got {text:?}");
    let (lo, hi) = text.split_once("..").ok_or_else(bad)?;
    let lo: u64 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u64 = hi
        .trim_start_matches('=')
        .trim()
        .parse()
        .map_err(|_| bad())?;
    if lo == 0 || hi < lo {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// Draws ids for one worker, from the worker's own generator (no shared lock).
pub struct KeyPicker {
    first: u64,
    count: u64,
    zipf: Option<Zipf<f64>>,
    sequential: bool,
}

impl KeyPicker {
    pub fn new(dist: &KeyDist, (first, last): (u64, u64)) -> Self {
        let count = last - first + 1;
        let zipf = match dist {
            KeyDist::Zipf(s) => Some(Zipf::new(count as f64, *s).expect("validated exponent")),
            KeyDist::Uniform | KeyDist::Sequential => None,
        };
        Self {
            first,
            count,
            zipf,
            sequential: *dist == KeyDist::Sequential,
        }
    }

    /// The id of the request with this run-wide `ticket` number.
    pub fn next_id(&self, rng: &mut SmallRng, ticket: u64) -> u64 {
        let offset = match &self.zipf {
            Some(z) => (z.sample(rng) as u64).clamp(1, self.count) - 1,
            None if self.sequential => ticket % self.count,
            None => rng.random_range(0..self.count),
        };
        self.first + offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn zipf_makes_the_first_id_the_hottest_and_stays_in_range() {
        let picker = KeyPicker::new(&KeyDist::Zipf(1.1), (1, 1000));
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = vec![0u32; 1001];
        for _ in 0..20_000 {
            let id = picker.next_id(&mut rng, 0);
            assert!((1..=1000).contains(&id));
            counts[id as usize] += 1;
        }
        assert!(
            counts[1] > counts[2] && counts[2] > counts[50],
            "{:?}",
            &counts[..5]
        );
    }

    #[test]
    fn sequential_walks_every_id_in_ticket_order_and_wraps() {
        let picker = KeyPicker::new(&KeyDist::Sequential, (5, 7));
        let mut rng = SmallRng::seed_from_u64(1);
        let ids: Vec<u64> = (0..7).map(|t| picker.next_id(&mut rng, t)).collect();
        assert_eq!(ids, [5, 6, 7, 5, 6, 7, 5]);
        assert_eq!(KeyDist::parse("sequential").unwrap(), KeyDist::Sequential);
    }

    #[test]
    fn parses_distributions_and_ranges() {
        assert_eq!(KeyDist::parse("zipf:1.2").unwrap(), KeyDist::Zipf(1.2));
        assert!(KeyDist::parse("zipf:-1").is_err());
        assert_eq!(parse_ids("1..1000").unwrap(), (1, 1000));
        assert!(parse_ids("0..5").is_err());
        assert!(parse_ids("9..2").is_err());
    }
}
