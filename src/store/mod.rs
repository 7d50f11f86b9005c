//! The `users` table in PostgreSQL, behind a connection pool, as the strategy servers use
//! it.
//!
//! Every statement is parameterised, so names and emails are stored verbatim. Every call
//! is bounded: the pool wait, the connection and the statement each time out (2 s by
//! default), and a connection that timed out is thrown away rather than reused, so a
//! frozen Postgres costs a request at most the bound, never the length of the freeze.
//! Failures are `DbError`s, which the HTTP layer turns into 503 naming Postgres.

pub mod admin;
pub mod lab;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

use crate::outage::OutageLog;

/// The columns of a user as the HTTP API shows them (`updated_at` as ISO 8601 text).
pub const USER_COLUMNS: &str = "id, name, email, to_json(updated_at) #>> '{}' AS updated_at";

/// How long a Postgres call may take unless `--db-timeout` says otherwise.
pub const DEFAULT_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// How many connections a read tries when the ones it is handed turn out closed.
const READ_ATTEMPTS: u32 = 3;

/// A Postgres failure: the server is down, slow past the bound, or refused the statement.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{}", query_message(.0))]
    Query(#[from] tokio_postgres::Error),
}

/// What Postgres said, not just "db error": the server's message (and hint), or the
/// client's error with its cause.
pub(crate) fn query_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return match db.hint() {
            Some(hint) => format!("{} ({hint})", db.message()),
            None => db.message().to_string(),
        };
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// A row of the `users` table.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct User {
    pub id: i32,
    pub name: String,
    pub email: String,
    pub updated_at: Option<String>,
}

impl User {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            id: row.get(0),
            name: row.get(1),
            email: row.get(2),
            updated_at: row.get(3),
        }
    }
}

/// A write that write-behind's flusher applies in a batch.
#[derive(Debug, Clone)]
pub enum BatchWrite {
    /// Insert or replace the whole row.
    Upsert(User),
    Delete(i32),
}

/// A pooled handle on the users table; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    timeout: Duration,
    outage: Arc<OutageLog>,
}

impl Store {
    /// A pool for `url`. Connections open lazily, so a database that is down now only
    /// fails the requests that need it.
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        use anyhow::Context;
        let mut config: tokio_postgres::Config = url
            .parse()
            .with_context(|| format!("parsing database URL {}", crate::stack::redact(url)))?;
        config.connect_timeout(timeout);
        config.application_name("cachelab");
        // The server enforces the bound too, so a slow statement does not run on after
        // the request gave up on it.
        config.options(format!("-c statement_timeout={}", timeout.as_millis()));
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(32)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .context("building the Postgres pool")?;
        Ok(Self {
            pool,
            timeout,
            outage: Arc::new(OutageLog::new("Postgres")),
        })
    }

    /// Is Postgres in an outage (its last call failed)?
    pub fn is_down(&self) -> bool {
        self.outage.is_down()
    }

    /// A pooled connection, waited for at most the time bound.
    async fn client(&self) -> Result<Object, DbError> {
        let got = match tokio::time::timeout(self.timeout, self.pool.get()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(DbError::from(e)),
            Err(_) => Err(DbError::Timeout(self.timeout)),
        };
        if let Err(e) = &got {
            self.outage_failed(e);
        }
        got
    }

    /// The result of a bounded call on `client`. A connection whose call timed out may be
    /// stuck behind a frozen server: it is detached from the pool, not reused.
    fn settle<T>(
        &self,
        client: Object,
        outcome: Result<Result<T, DbError>, tokio::time::error::Elapsed>,
    ) -> Result<T, DbError> {
        let result = self.bound(client, outcome);
        self.record(&result);
        result
    }

    /// `settle` without telling the outage log: for a call that may still be retried.
    fn bound<T>(
        &self,
        client: Object,
        outcome: Result<Result<T, DbError>, tokio::time::error::Elapsed>,
    ) -> Result<T, DbError> {
        match outcome {
            Ok(result) => result,
            Err(_) => {
                drop(Object::take(client));
                Err(DbError::Timeout(self.timeout))
            }
        }
    }

    /// Tell the outage log how a call ended.
    fn record<T>(&self, result: &Result<T, DbError>) {
        match result {
            Ok(_) => self.outage.succeeded(),
            Err(e) => self.outage_failed(e),
        }
    }

    fn outage_failed(&self, e: &DbError) {
        self.outage
            .failed(e, "reads of uncached users answer 503 until it is back");
    }

    /// Read one user. With `delay`, the query holds its connection that much longer and
    /// answers with the row as it was when the query began: a slow query. The delay is
    /// not part of the time bound (labs make queries slower than the bound on purpose).
    ///
    /// A pooled connection that Postgres (or a proxy in between) closed a moment ago can
    /// still be handed out before its close is noticed; the read is then tried again on
    /// another connection, a few times at most. Only reads are retried: they are safe to
    /// repeat.
    pub async fn get_user(&self, id: i32, delay: Duration) -> Result<Option<User>, DbError> {
        let mut attempts = 1;
        loop {
            // A connection the pool cannot give is logged by `client` itself.
            let client = self.client().await?;
            let outcome = tokio::time::timeout(self.timeout, async {
                let stmt = client
                    .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                    .await?;
                Ok(client.query_opt(&stmt, &[&id]).await?)
            })
            .await;
            if !delay.is_zero() && matches!(outcome, Ok(Ok(_))) {
                tokio::time::sleep(delay).await;
            }
            let result = self.bound(client, outcome);
            match &result {
                Err(DbError::Query(e)) if e.is_closed() && attempts < READ_ATTEMPTS => {
                    attempts += 1;
                }
                _ => {
                    self.record(&result);
                    return result.map(|row| row.as_ref().map(User::from_row));
                }
            }
        }
    }

    /// Change the given fields; `None` when there is no such user.
    pub async fn update_user(
        &self,
        id: i32,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<Option<User>, DbError> {
        let client = self.client().await?;
        let outcome = tokio::time::timeout(self.timeout, async {
            let stmt = client
                .prepare_cached(&format!(
                    "UPDATE users SET name = COALESCE($2, name), email = COALESCE($3, email), \
                     updated_at = NOW() WHERE id = $1 RETURNING {USER_COLUMNS}"
                ))
                .await?;
            let row = client.query_opt(&stmt, &[&id, &name, &email]).await?;
            Ok(row.as_ref().map(User::from_row))
        })
        .await;
        self.settle(client, outcome)
    }

    /// Insert a user with the next id.
    pub async fn insert_user(&self, name: &str, email: &str) -> Result<User, DbError> {
        let client = self.client().await?;
        let outcome = tokio::time::timeout(self.timeout, async {
            let stmt = client
                .prepare_cached(&format!(
                    "INSERT INTO users (name, email) VALUES ($1, $2) RETURNING {USER_COLUMNS}"
                ))
                .await?;
            let row = client.query_one(&stmt, &[&name, &email]).await?;
            Ok(User::from_row(&row))
        })
        .await;
        self.settle(client, outcome)
    }

    /// Take the next id from the users sequence without inserting (write-behind's POST).
    pub async fn next_user_id(&self) -> Result<i32, DbError> {
        let client = self.client().await?;
        let outcome = tokio::time::timeout(self.timeout, async {
            let row = client
                .query_one(
                    "SELECT nextval(pg_get_serial_sequence('users', 'id'))::int4",
                    &[],
                )
                .await?;
            Ok(row.get(0))
        })
        .await;
        self.settle(client, outcome)
    }

    /// Delete a user; `false` when there was none.
    pub async fn delete_user(&self, id: i32) -> Result<bool, DbError> {
        let client = self.client().await?;
        let outcome = tokio::time::timeout(self.timeout, async {
            let stmt = client
                .prepare_cached("DELETE FROM users WHERE id = $1")
                .await?;
            Ok(client.execute(&stmt, &[&id]).await? > 0)
        })
        .await;
        self.settle(client, outcome)
    }

    /// Apply a batch of writes in one transaction (write-behind's flush): deletes, then
    /// upserts of whole rows.
    pub async fn apply_batch(&self, writes: &[BatchWrite]) -> Result<(), DbError> {
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for w in writes {
            match w {
                BatchWrite::Upsert(u) => upserts.push(u),
                BatchWrite::Delete(id) => deletes.push(*id),
            }
        }
        let rows = serde_json::to_value(&upserts).unwrap_or_default();
        let mut client = self.client().await?;
        let outcome = tokio::time::timeout(self.timeout, async {
            let tx = client.transaction().await?;
            if !deletes.is_empty() {
                tx.execute("DELETE FROM users WHERE id = ANY($1)", &[&deletes])
                    .await?;
            }
            if !upserts.is_empty() {
                tx.execute(
                    "INSERT INTO users (id, name, email, updated_at) \
                     SELECT id, name, email, updated_at \
                     FROM json_populate_recordset(NULL::users, $1::json) \
                     ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, \
                     email = EXCLUDED.email, updated_at = EXCLUDED.updated_at",
                    &[&rows],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await;
        self.settle(client, outcome)
    }

    /// Does the database answer, and does it have the users table?
    pub async fn ping(&self) -> Result<(), DbError> {
        let client = self.client().await?;
        let outcome = tokio::time::timeout(self.timeout, async {
            client.simple_query("SELECT 1 FROM users LIMIT 1").await?;
            Ok(())
        })
        .await;
        self.settle(client, outcome)
    }

    /// Close every idle pooled connection: the next calls open fresh sessions (the
    /// per-lab reset, after the table was rebuilt).
    pub fn renew_sessions(&self) {
        self.pool.retain(|_, _| false);
    }
}
