//! Remedies every strategy honours, one file each, called from the shared read and write
//! paths rather than copied into strategies: stampede protection (`singleflight`, `lock`,
//! `xfetch`, and `swr` through `refresh`), TTL `jitter` against avalanches, `tombstone`s
//! against penetration, cache-aside's `invalidation` modes, and the write `guard`.

pub mod guard;
pub mod invalidation;
pub mod jitter;
pub mod lease;
pub mod lock;
pub mod refresh;
pub mod singleflight;
pub mod state;
pub mod tombstone;
pub mod xfetch;
