//! Run-time settings of the strategy servers that labs turn: TTL, a simulated slow query,
//! padding to fill Redis fast, and the stampede-protection mode.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// The TTL of cache entries unless `--ttl` or `set_ttl` says otherwise.
pub const DEFAULT_TTL_SECS: u64 = 60;

/// How the servers guard the database against a stampede of misses on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Every miss reads Postgres (what the seed apps did).
    None,
}

impl Protection {
    /// The modes a lab may name.
    pub const NAMES: &'static [&'static str] = &["none"];

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown protection mode {other:?}; known: {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// The knobs shared by both strategy servers.
pub struct Knobs {
    default_ttl: u64,
    ttl_secs: AtomicU64,
    db_delay_ms: AtomicU64,
    padding: AtomicU64,
    protection: Mutex<Protection>,
}

impl Knobs {
    pub fn new(default_ttl: u64) -> Self {
        Self {
            default_ttl,
            ttl_secs: AtomicU64::new(default_ttl),
            db_delay_ms: AtomicU64::new(0),
            padding: AtomicU64::new(0),
            protection: Mutex::new(Protection::None),
        }
    }

    /// Seconds a cache entry lives.
    pub fn ttl(&self) -> u64 {
        self.ttl_secs.load(Relaxed)
    }
    pub fn set_ttl(&self, secs: u64) {
        self.ttl_secs.store(secs, Relaxed);
    }

    /// Extra time each Postgres read takes.
    pub fn db_delay(&self) -> Duration {
        Duration::from_millis(self.db_delay_ms.load(Relaxed))
    }
    pub fn set_db_delay(&self, ms: u64) {
        self.db_delay_ms.store(ms, Relaxed);
    }

    /// Bytes of filler appended to each cached value.
    pub fn padding(&self) -> usize {
        self.padding.load(Relaxed) as usize
    }
    pub fn set_padding(&self, bytes: usize) {
        self.padding.store(bytes as u64, Relaxed);
    }

    pub fn protection(&self) -> Protection {
        *self.protection.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn set_protection(&self, mode: Protection) {
        *self.protection.lock().unwrap_or_else(|p| p.into_inner()) = mode;
    }

    /// Back to the defaults (a lab's fresh start).
    pub fn reset(&self) {
        self.set_ttl(self.default_ttl);
        self.set_db_delay(0);
        self.set_padding(0);
        self.set_protection(Protection::None);
    }
}
