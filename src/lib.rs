//! cachelab as a library: the pieces the `cachelab` binary is made of, public so the
//! integration tests can start a stack, crash its Redis, or stop its Postgres.

pub mod cache;
pub mod cli;
pub mod commands;
pub mod counters;
pub mod exit;
pub mod knobs;
pub mod lab;
pub mod load;
pub mod outage;
pub mod output;
pub mod report;
pub mod seed;
pub mod server;
pub mod services;
pub mod shutdown;
pub mod stack;
pub mod store;
pub mod strategy;
pub mod target;
pub mod xcache;

/// Counts what each lab thread allocates, so `--max-memory-mb` holds at every operation.
#[global_allocator]
static ALLOCATOR: lab::memory::CountingAllocator = lab::memory::CountingAllocator;
