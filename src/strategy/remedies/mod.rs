//! Remedies every strategy honours, one file each, called from the shared read and write
//! paths rather than copied into strategies: stampede protection (`singleflight`, `lock`,
//! `xfetch`, and `swr` through `refresh`), TTL `jitter` against avalanches, `tombstone`s
//! against penetration, and cache-aside's `invalidation` modes.

pub mod invalidation;
pub mod jitter;
pub mod lock;
pub mod refresh;
pub mod singleflight;
pub mod tombstone;
pub mod xfetch;

/// What the remedies of one server remember between requests.
#[derive(Default)]
pub struct State {
    pub flights: singleflight::Flights,
    pub refreshing: refresh::InFlight,
    pub recompute_times: xfetch::RecomputeTimes,
}
