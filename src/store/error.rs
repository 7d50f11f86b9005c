//! Postgres failures in the two classes callers branch on. *Unavailable*: Postgres could
//! not be reached or did not answer in time (refused, reset, timed out, no pooled
//! connection, shutting down) — an outage, answered 503 and logged once. *Rejected*:
//! Postgres answered with an error (a constraint, a permission, bad data) — not an
//! outage; a unique violation is a conflict (409), anything else a 500 with Postgres' own
//! message.

use std::time::Duration;
use tokio_postgres::error::SqlState;

/// A Postgres call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{}", query_message(.0))]
    Query(#[from] tokio_postgres::Error),
}

/// Which class a failure is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbClass {
    /// Postgres could not be reached or did not answer in time: an outage.
    Unavailable,
    /// Postgres refused because the row's key is taken (a unique violation).
    Conflict,
    /// Postgres answered with any other error.
    Rejected,
}

impl DbError {
    pub fn class(&self) -> DbClass {
        match self {
            DbError::Timeout(_) => DbClass::Unavailable,
            DbError::Pool(deadpool_postgres::PoolError::Backend(e)) | DbError::Query(e) => {
                class_of(e)
            }
            DbError::Pool(_) => DbClass::Unavailable,
        }
    }

    /// Is this failure an outage (rather than Postgres refusing what it was asked)?
    pub fn is_unavailable(&self) -> bool {
        self.class() == DbClass::Unavailable
    }
}

/// The class of a client error: no SQLSTATE (I/O, a closed connection) or one of the
/// classes that mean "not serving" (08 connection exception, 53 insufficient resources,
/// 57 operator intervention — shutdown, statement timeout —, 58 system error) is an
/// outage; any other SQLSTATE is Postgres refusing the statement.
fn class_of(e: &tokio_postgres::Error) -> DbClass {
    let Some(code) = e.code() else {
        return DbClass::Unavailable;
    };
    if *code == SqlState::UNIQUE_VIOLATION {
        return DbClass::Conflict;
    }
    match &code.code()[..2] {
        "08" | "53" | "57" | "58" => DbClass::Unavailable,
        _ => DbClass::Rejected,
    }
}

/// What Postgres said, not just "db error": the server's message (with its detail and
/// hint), or the client's error with its cause.
pub(crate) fn query_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut message = db.message().to_string();
        for extra in [db.detail(), db.hint()].into_iter().flatten() {
            message.push_str(&format!(" ({extra})"));
        }
        return message;
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
