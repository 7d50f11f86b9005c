//! Why a request could not be answered, and what that means over HTTP: the one place a
//! failure of the store, the cache or the strategy becomes a status and a counter.

use std::sync::Arc;

use crate::cache::CacheError;
use crate::counters::Counter;
use crate::store::{DbClass, DbError};

/// Why a request could not be answered. `status` and `counter` map every case to its
/// HTTP status and to what it counts, in one place.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    /// Postgres failed: unavailable (503 naming Postgres), or it refused the statement
    /// (409 for a unique violation, else 500 with its message).
    #[error("{}", postgres_message(.0))]
    Postgres(#[from] DbError),
    /// A write that needs Redis (write-behind queues in Redis) could not reach it.
    #[error("redis unavailable: {0}")]
    Redis(#[from] CacheError),
    /// The row's key is taken (write-behind's POST on an id a row already holds): 409.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A write that kept losing its compare-and-set to other writes of the same row: 503.
    #[error("busy: {0}")]
    Contended(String),
    /// A read's own failure, shared with the requests that waited on it: it counts once,
    /// for this request.
    #[error("{0}")]
    Shared(Arc<StrategyError>),
    /// Another request's failure, waited for: answered the same, counted by that one.
    #[error("{0}")]
    Coalesced(Arc<StrategyError>),
    /// Anything else: a 500 that says what failed.
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

fn postgres_message(e: &DbError) -> String {
    match e.class() {
        DbClass::Unavailable => format!("postgres unavailable: {e}"),
        DbClass::Conflict => format!("conflict: {e}"),
        DbClass::Rejected => format!("postgres refused the statement: {e}"),
    }
}

impl StrategyError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            StrategyError::Postgres(e) => match e.class() {
                DbClass::Unavailable => 503,
                DbClass::Conflict => 409,
                DbClass::Rejected => 500,
            },
            StrategyError::Redis(_) | StrategyError::Contended(_) => 503,
            StrategyError::Conflict(_) => 409,
            StrategyError::Shared(inner) | StrategyError::Coalesced(inner) => inner.status(),
            StrategyError::Internal(_) => 500,
        }
    }

    /// The counter this failed request adds to, if any: an unavailable Postgres counts
    /// `db_errors`, a refusal `db_rejected`. A Redis failure was counted where it
    /// happened (`cache_errors`), and a waiter's failure by the request it waited on.
    pub fn counter(&self) -> Option<Counter> {
        match self {
            StrategyError::Postgres(e) if e.is_unavailable() => Some(Counter::DbErrors),
            StrategyError::Postgres(_) | StrategyError::Conflict(_) => Some(Counter::DbRejected),
            StrategyError::Shared(inner) => inner.counter(),
            StrategyError::Redis(_)
            | StrategyError::Contended(_)
            | StrategyError::Coalesced(_)
            | StrategyError::Internal(_) => None,
        }
    }
}
