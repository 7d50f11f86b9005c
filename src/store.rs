//! The `users` table in PostgreSQL, behind a connection pool.
//!
//! Every statement is parameterised: names and emails are stored verbatim. Any failure
//! here is reported as an error the HTTP layer turns into 503.

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::Serialize;
use std::time::Duration;
use tokio_postgres::types::{ToSql, Type};

use crate::seed;

/// The columns of a user as the HTTP API shows them (`updated_at` as ISO 8601 text).
const USER_COLUMNS: &str = "id, name, email, to_json(updated_at) #>> '{}' AS updated_at";

/// A row of the `users` table.
#[derive(Debug, Clone, Serialize, PartialEq)]
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

/// A pooled handle on the users table; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// A pool for `url`. Connections open lazily, so a database that is down now only
    /// fails the requests that need it.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .with_context(|| format!("parsing database URL {}", crate::stack::redact(url)))?;
        config.connect_timeout(Duration::from_secs(2));
        config.application_name("cachelab");
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
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(2)))
            .build()
            .context("building the Postgres pool")?;
        Ok(Self { pool })
    }

    async fn client(&self) -> anyhow::Result<deadpool_postgres::Object> {
        self.pool.get().await.context("connecting to Postgres")
    }

    /// Read one user. With `delay`, the query holds its connection that much longer and
    /// answers with the row as it was when the query began: a slow query.
    pub async fn get_user(&self, id: i32, delay: Duration) -> anyhow::Result<Option<User>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .await?;
        let row = client.query_opt(&stmt, &[&id]).await?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(row.as_ref().map(User::from_row))
    }

    /// Change the given fields; `None` when there is no such user.
    pub async fn update_user(
        &self,
        id: i32,
        name: Option<&str>,
        email: Option<&str>,
    ) -> anyhow::Result<Option<User>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE users SET name = COALESCE($2, name), email = COALESCE($3, email), \
                 updated_at = NOW() WHERE id = $1 RETURNING {USER_COLUMNS}"
            ))
            .await?;
        let row = client.query_opt(&stmt, &[&id, &name, &email]).await?;
        Ok(row.as_ref().map(User::from_row))
    }

    /// Insert a user with the next id.
    pub async fn insert_user(&self, name: &str, email: &str) -> anyhow::Result<User> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "INSERT INTO users (name, email) VALUES ($1, $2) RETURNING {USER_COLUMNS}"
            ))
            .await?;
        let row = client.query_one(&stmt, &[&name, &email]).await?;
        Ok(User::from_row(&row))
    }

    /// Delete a user; `false` when there was none.
    pub async fn delete_user(&self, id: i32) -> anyhow::Result<bool> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("DELETE FROM users WHERE id = $1")
            .await?;
        Ok(client.execute(&stmt, &[&id]).await? > 0)
    }

    /// Does the database answer?
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Create the users table if it is missing.
    pub async fn apply_schema(&self) -> anyhow::Result<()> {
        self.client()
            .await?
            .batch_execute(seed::SCHEMA_SQL)
            .await
            .context("applying schema.sql")
    }

    /// How many rows the users table holds.
    pub async fn count_users(&self) -> anyhow::Result<i64> {
        let row = self
            .client()
            .await?
            .query_one("SELECT count(*) FROM users", &[])
            .await?;
        Ok(row.get(0))
    }

    /// Empty the users table and load users.json; the id sequence continues after the
    /// highest id.
    pub async fn reload_users(&self) -> anyhow::Result<()> {
        let mut client = self.client().await?;
        let records = serde_json::to_value(seed::users())?;
        let tx = client.transaction().await?;
        tx.batch_execute("TRUNCATE users").await?;
        tx.execute(
            "INSERT INTO users (id, name, email) \
             SELECT id, name, email FROM json_populate_recordset(NULL::users, $1::json)",
            &[&records],
        )
        .await?;
        tx.batch_execute(
            "SELECT setval(pg_get_serial_sequence('users', 'id'), \
             (SELECT COALESCE(MAX(id), 0) + 1 FROM users), false)",
        )
        .await?;
        tx.commit().await.context("reloading users.json")
    }

    /// Run any SQL with positional parameters; rows come back as JSON objects. Statements
    /// that return no rows (an UPDATE without RETURNING) give an empty list.
    pub async fn query_json(
        &self,
        sql: &str,
        params: &[serde_json::Value],
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let client = self.client().await?;
        let wrapped = format!("WITH q AS ({sql}) SELECT to_json(q) FROM q");
        let (stmt, returns_rows) = match client.prepare(&wrapped).await {
            Ok(stmt) => (stmt, true),
            Err(_) => (client.prepare(sql).await?, false),
        };
        if stmt.params().len() != params.len() {
            anyhow::bail!(
                "the SQL has {} parameter(s) but {} value(s) were given",
                stmt.params().len(),
                params.len()
            );
        }
        let values = stmt
            .params()
            .iter()
            .zip(params)
            .enumerate()
            .map(|(i, (ty, value))| sql_param(i + 1, ty, value))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let refs: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        if returns_rows {
            let rows = client.query(&stmt, &refs).await?;
            Ok(rows
                .iter()
                .map(|r| r.get::<_, serde_json::Value>(0))
                .collect())
        } else {
            client.execute(&stmt, &refs).await?;
            Ok(Vec::new())
        }
    }
}

/// Convert a JSON value to the Rust type Postgres expects for parameter `$n`.
fn sql_param(
    n: usize,
    ty: &Type,
    value: &serde_json::Value,
) -> anyhow::Result<Box<dyn ToSql + Sync + Send>> {
    use serde_json::Value;
    let wrong = || anyhow::anyhow!("parameter ${n} is {ty}, but the value given is {value}");
    Ok(match *ty {
        Type::INT2 => Box::new(i16::try_from(value.as_i64().ok_or_else(wrong)?)?),
        Type::INT4 => Box::new(i32::try_from(value.as_i64().ok_or_else(wrong)?)?),
        Type::INT8 => Box::new(value.as_i64().ok_or_else(wrong)?),
        Type::FLOAT4 => Box::new(value.as_f64().ok_or_else(wrong)? as f32),
        Type::FLOAT8 => Box::new(value.as_f64().ok_or_else(wrong)?),
        Type::BOOL => Box::new(value.as_bool().ok_or_else(wrong)?),
        Type::JSON | Type::JSONB => Box::new(value.clone()),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => match value {
            Value::String(s) => Box::new(s.clone()),
            Value::Null => Box::new(None::<String>),
            other => Box::new(other.to_string()),
        },
        _ => anyhow::bail!("parameter ${n} is {ty}, which labs cannot pass directly; cast it in the SQL, e.g. ${n}::text"),
    })
}
