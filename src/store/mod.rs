//! The `users` table in PostgreSQL, behind a connection pool, as the strategy servers use
//! it.
//!
//! Every statement is parameterised, so names and emails are stored verbatim. Every call
//! is bounded: the pool wait, the connection and the statement each time out (2 s by
//! default), and a connection that timed out is thrown away rather than reused, so a
//! frozen Postgres costs a request at most the bound, never the length of the freeze.
//! Failures are `DbError`s in two classes (see `error`): an unavailable Postgres is an
//! outage (logged once, 503), a statement Postgres refused is not.

pub mod admin;
mod batch;
mod connect;
mod error;
pub mod lab;

pub use batch::{BatchOutcome, BatchWrite};
pub(crate) use error::query_message;
pub use error::{DbClass, DbError};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::outage::OutageLog;

/// The columns of a user as the HTTP API shows them (`updated_at` as ISO 8601 text).
pub const USER_COLUMNS: &str = "id, name, email, to_json(updated_at) #>> '{}' AS updated_at";

/// How long a Postgres call may take unless `--db-timeout` says otherwise.
pub const DEFAULT_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// How many connections a read tries when the ones it is handed turn out closed.
const READ_ATTEMPTS: u32 = 3;

/// A row of the `users` table. `updated_at` is the row's stamp: every write of it takes
/// `clock_timestamp()` under the row lock, so two racing writers' stamps are ordered like
/// their commits (the write guard compares them).
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

/// One bounded call's work on a pooled connection.
type Call<'c, T> = Pin<Box<dyn Future<Output = Result<T, DbError>> + Send + 'c>>;

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
        // The server enforces the bound too, so a slow statement does not run on after
        // the request gave up on it.
        let bound = format!("-c statement_timeout={}", timeout.as_millis());
        let config = connect::config(url, "cachelab", timeout, Some(&bound))?;
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
            self.record_failure(e);
        }
        got
    }

    /// Run `work` on a pooled connection within the time bound, and tell the outage log
    /// how it went: the one shape of every call but the retried read. The work owns what
    /// it sends (it may outlive no borrow of the caller's).
    async fn call<T>(
        &self,
        work: impl for<'c> FnOnce(&'c mut Object) -> Call<'c, T>,
    ) -> Result<T, DbError> {
        let mut client = self.client().await?;
        let outcome = tokio::time::timeout(self.timeout, work(&mut client)).await;
        let result = self.bound(client, outcome);
        self.record(&result);
        result
    }

    /// The result of a bounded call on `client`. A connection whose call timed out may be
    /// stuck behind a frozen server: it is detached from the pool, not reused.
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

    /// Tell the outage log how a call ended: a statement Postgres refused means Postgres
    /// is there.
    fn record<T>(&self, result: &Result<T, DbError>) {
        match result {
            Err(e) => self.record_failure(e),
            Ok(_) => self.outage.succeeded(),
        }
    }

    fn record_failure(&self, e: &DbError) {
        if e.is_unavailable() {
            self.outage
                .failed(e, "reads of uncached users answer 503 until it is back");
        } else {
            self.outage.succeeded();
        }
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
        let sql = format!(
            "UPDATE users SET name = COALESCE($2, name), email = COALESCE($3, email), \
             updated_at = clock_timestamp() WHERE id = $1 RETURNING {USER_COLUMNS}"
        );
        let (name, email) = (name.map(str::to_owned), email.map(str::to_owned));
        self.call(|client| {
            Box::pin(async move {
                let stmt = client.prepare_cached(&sql).await?;
                let row = client.query_opt(&stmt, &[&id, &name, &email]).await?;
                Ok(row.as_ref().map(User::from_row))
            })
        })
        .await
    }

    /// Insert a user with the next id. An id taken behind the sequence's back (a row
    /// inserted with an explicit id) is a unique violation: a conflict, nothing
    /// overwritten.
    pub async fn insert_user(&self, name: &str, email: &str) -> Result<User, DbError> {
        let sql =
            format!("INSERT INTO users (name, email, updated_at) VALUES ($1, $2, clock_timestamp()) RETURNING {USER_COLUMNS}");
        let (name, email) = (name.to_owned(), email.to_owned());
        self.call(|client| {
            Box::pin(async move {
                let stmt = client.prepare_cached(&sql).await?;
                let row = client.query_one(&stmt, &[&name, &email]).await?;
                Ok(User::from_row(&row))
            })
        })
        .await
    }

    /// Take the next id from the users sequence without inserting (write-behind's POST):
    /// `Err(id)` when a row already holds that id (inserted with an explicit id), so the
    /// caller can refuse rather than overwrite it.
    pub async fn reserve_user_id(&self) -> Result<Result<i32, i32>, DbError> {
        self.call(|client| {
            Box::pin(async move {
                let row = client
                    .query_one(
                        "SELECT s.id, EXISTS (SELECT 1 FROM users u WHERE u.id = s.id) \
                         FROM (SELECT nextval(pg_get_serial_sequence('users', 'id'))::int4 AS id) s",
                        &[],
                    )
                    .await?;
                let (id, taken): (i32, bool) = (row.get(0), row.get(1));
                Ok(if taken { Err(id) } else { Ok(id) })
            })
        })
        .await
    }

    /// Delete a user: the stamp of the delete (as `updated_at` is written), or `None`
    /// when there was no such user.
    pub async fn delete_user(&self, id: i32) -> Result<Option<String>, DbError> {
        self.call(|client| {
            Box::pin(async move {
                let stmt = client
                    .prepare_cached(
                        "DELETE FROM users WHERE id = $1 \
                         RETURNING to_json(clock_timestamp()::timestamp) #>> '{}'",
                    )
                    .await?;
                Ok(client.query_opt(&stmt, &[&id]).await?.map(|row| row.get(0)))
            })
        })
        .await
    }

    /// Does the database answer, and does it have the users table?
    pub async fn ping(&self) -> Result<(), DbError> {
        self.call(|client| {
            Box::pin(async move {
                client.simple_query("SELECT 1 FROM users LIMIT 1").await?;
                Ok(())
            })
        })
        .await
    }

    /// Close every idle pooled connection: the next calls open fresh sessions (the
    /// per-lab reset, after the table was rebuilt).
    pub fn renew_sessions(&self) {
        self.pool.retain(|_, _| false);
    }
}
