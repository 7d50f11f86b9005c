//! Run-time settings of the strategy servers that labs turn and `serve` flags set: the
//! TTL, a simulated slow query, padding to fill Redis fast, and every remedy.
//!
//! All knobs live in one `Settings` value: a new knob is one field (and its default).
//! Readers take a copy, so a request sees one consistent set even while a lab turns them;
//! the value is swapped whole (arc-swap), so reading it on every request takes no lock
//! and writes no shared memory.

use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;

/// The TTL of cache entries unless `--ttl` or `set_ttl` says otherwise.
pub const DEFAULT_TTL_SECS: u64 = 60;

/// Declares a knob enum whose values labs and flags name as strings.
macro_rules! named_modes {
    ($(#[$meta:meta])* $enum:ident { $($(#[$vmeta:meta])* $variant:ident => $name:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $enum {
            $($(#[$vmeta])* $variant,)*
        }

        impl $enum {
            /// The names a lab or a flag may use.
            pub const NAMES: &'static [&'static str] = &[$($name,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)*
                }
            }

            pub fn parse(name: &str) -> Result<Self, String> {
                match name {
                    $($name => Ok($enum::$variant),)*
                    other => Err(format!(
                        "unknown {} {other:?}; known: {}",
                        stringify!($enum).to_lowercase(),
                        Self::NAMES.join(", ")
                    )),
                }
            }
        }
    };
}

named_modes! {
    /// How concurrent misses on one key reach Postgres.
    Protection {
        /// Every miss reads Postgres (what the seed apps did).
        None => "none",
        /// One read per key at a time within this process; the others wait for it.
        Singleflight => "singleflight",
        /// One read per key across processes, through a Redis lock; the others poll.
        Lock => "lock",
        /// Probabilistic early recomputation (XFetch) before the entry expires.
        Xfetch => "xfetch",
        /// Stale-while-revalidate: a stale entry is served while one refresh runs.
        Swr => "swr",
    }
}

named_modes! {
    /// How cache-aside writes invalidate the cached row.
    Invalidation {
        /// DEL the key after the Postgres write.
        Delete => "delete",
        /// DEL, and DEL again `double_delete_ms` later.
        DoubleDelete => "double-delete",
        /// memcache-style leases: a write revokes the leases of reads in flight.
        Lease => "lease",
    }
}

/// Every knob's value at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Seconds a cache entry lives.
    pub ttl_secs: u64,
    /// Extra time each Postgres read holds its connection (a slow query).
    pub db_delay_ms: u64,
    /// Bytes of filler appended to each cached value.
    pub padding: usize,
    pub protection: Protection,
    /// XFetch's β: above 1 recomputes earlier, below 1 later.
    pub xfetch_beta: f64,
    /// How long past its TTL an entry may still be served stale under `swr`.
    pub stale_secs: u64,
    /// Each SETEX uses TTL × (1 ± u), u uniform in [0, ttl_jitter_percent / 100].
    pub ttl_jitter_percent: f64,
    /// Seconds a 404 is cached as a tombstone (0: not cached).
    pub negative_ttl_secs: u64,
    pub invalidation: Invalidation,
    /// The delay of the second DEL under `double-delete`.
    pub double_delete_ms: u64,
    /// Write-behind's batch interval.
    pub flush_interval_ms: u64,
    /// Refresh-ahead refreshes a hit whose remaining TTL is below this share of the TTL.
    pub refresh_ratio: f64,
    /// How long a `lock` holder may hold a key's lock; waiters give up after it.
    pub lock_ttl_ms: u64,
    /// How long a `lease` stays valid for the read that took it.
    pub lease_ttl_ms: u64,
}

impl Settings {
    /// The defaults, with `ttl_secs` as the TTL.
    pub fn with_ttl(ttl_secs: u64) -> Self {
        Self {
            ttl_secs,
            db_delay_ms: 0,
            padding: 0,
            protection: Protection::None,
            xfetch_beta: 1.0,
            stale_secs: 30,
            ttl_jitter_percent: 0.0,
            negative_ttl_secs: 0,
            invalidation: Invalidation::Delete,
            double_delete_ms: 500,
            flush_interval_ms: 100,
            refresh_ratio: 0.25,
            lock_ttl_ms: 3000,
            lease_ttl_ms: 5000,
        }
    }

    pub fn db_delay(&self) -> Duration {
        Duration::from_millis(self.db_delay_ms)
    }
}

/// The knobs shared by every strategy server of one `Services`.
pub struct Knobs {
    defaults: Settings,
    current: ArcSwap<Settings>,
}

impl Knobs {
    /// Knobs that start at, and reset to, `defaults`.
    pub fn new(defaults: Settings) -> Self {
        Self {
            defaults,
            current: ArcSwap::from_pointee(defaults),
        }
    }

    /// A copy of every knob now.
    pub fn get(&self) -> Settings {
        **self.current.load()
    }

    /// Change knobs, e.g. `knobs.update(|k| k.ttl_secs = 5)`.
    pub fn update(&self, change: impl Fn(&mut Settings)) {
        self.current.rcu(|now| {
            let mut next = **now;
            change(&mut next);
            Arc::new(next)
        });
    }

    /// Back to the defaults (a lab's fresh start).
    pub fn reset(&self) {
        self.current.store(Arc::new(self.defaults));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_their_names_and_refuse_others_listing_the_known_ones() {
        for name in Protection::NAMES {
            assert_eq!(Protection::parse(name).unwrap().name(), *name);
        }
        assert_eq!(
            Invalidation::parse("double-delete").unwrap(),
            Invalidation::DoubleDelete
        );
        let err = Protection::parse("mutex").unwrap_err();
        assert!(err.contains("singleflight, lock"), "{err}");
    }

    #[test]
    fn reset_restores_the_defaults_given_at_start() {
        let knobs = Knobs::new(Settings::with_ttl(7));
        knobs.update(|k| {
            k.ttl_secs = 1;
            k.protection = Protection::Lock;
        });
        assert_eq!(knobs.get().protection, Protection::Lock);
        knobs.reset();
        assert_eq!(knobs.get(), Settings::with_ttl(7));
    }
}
