//! The caching strategies: one file per strategy behind one small trait, and the one
//! registry that lists them. Layers, top to bottom, each importing only those below:
//!
//! - `registry`: the enum of strategies;
//! - one file per strategy (`cache_aside`, `write_through`, `write_behind`,
//!   `refresh_ahead`), implementing `ops::Strategy` (the HTTP operations) and
//!   `source::RowSource` (how a miss is loaded and filled);
//! - `ops`: the operations' shared defaults; `read`: the read path with every remedy;
//!   `write`: the Postgres half of writes;
//! - `remedies/`: stampede protection, jitter, tombstones, invalidation, leases, the
//!   write guard;
//! - `fill`: loading a row and putting it into the cache; `cached`: what a cached value
//!   is; `source`; `backend` (what a server works with); `error` (failures → HTTP).
//!
//! The HTTP layer knows nothing beyond `ops::Strategy`, `registry` and `backend`.

mod backend;
mod cache_aside;
mod cached;
mod error;
pub mod fill;
mod ops;
mod read;
mod refresh_ahead;
pub mod registry;
pub mod remedies;
mod source;
mod write;
mod write_behind;
mod write_through;

pub use backend::Backend;
pub use cache_aside::CacheAside;
pub use error::StrategyError;
pub use ops::Strategy;
pub use read::Fetched;
pub use refresh_ahead::RefreshAhead;
pub use registry::StrategyKind;
pub use source::RowSource;
pub use write::Patch;
pub use write_behind::WriteBehind;
pub use write_through::WriteThrough;
