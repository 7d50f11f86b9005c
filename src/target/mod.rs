//! Target mode: the labs run against a service the user wrote, in any language, through
//! cachelab's proxies in front of its Redis and Postgres. This module reads the TOML that
//! describes the service (`config`), the model of its API (`model`), fills the
//! placeholders the app is started with (`placeholders`) and starts and stops the app
//! (`app`).

pub mod app;
pub mod config;
pub mod model;
pub mod placeholders;
pub mod session;

pub use config::{SetupError, Target};
