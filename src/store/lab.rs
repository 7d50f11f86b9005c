//! A lab's own Postgres session: `db_get` and `db_query` run here, never on the servers'
//! pool, as a role that may only read and change rows of `users` (managed stack). The
//! session is opened on first use and closed with the lab, so nothing a lab sets in it
//! (a search_path, an advisory lock) reaches the next lab. On an external database
//! without `--reset-data` every statement runs in a read-only transaction.

use anyhow::Context;
use std::time::Duration;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

use super::{User, USER_COLUMNS};

/// Rows one `db_query` may return, and bytes of JSON: a lab cannot pull a table the size
/// of the machine's memory into itself in one call.
const MAX_ROWS: usize = 100_000;
const MAX_BYTES: usize = 32 * 1024 * 1024;

/// The lab's session, opened lazily.
pub struct LabDb {
    url: String,
    read_only: bool,
    /// External database: make sure the role cannot reach the server's programs or files
    /// before running a lab's own SQL.
    check_role: bool,
    /// The check passed (it runs once per session).
    role_checked: bool,
    client: Option<Client>,
}

impl LabDb {
    /// A session for `url` (not connected yet). `read_only`: statements run in read-only
    /// transactions, so a lab cannot change an external table it was not allowed to reset.
    pub fn new(url: String, read_only: bool, check_role: bool) -> Self {
        Self {
            url,
            read_only,
            check_role,
            role_checked: false,
            client: None,
        }
    }

    async fn client(&mut self) -> anyhow::Result<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let config =
                super::connect::config(&self.url, "cachelab-lab", Duration::from_secs(5), None)?;
            self.client = Some(super::connect::open(&self.url, &config).await?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// The users row with this id, or `None`.
    pub async fn get_user(&mut self, id: i32) -> anyhow::Result<Option<User>> {
        // Our own statement: safe to run as any role.
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let rows = self.run(&sql, &[serde_json::json!(id)]).await?;
        rows.into_iter()
            .next()
            .map(serde_json::from_value)
            .transpose()
            .context("reading a users row")
    }

    /// Run any one SQL statement with positional parameters; rows come back as JSON
    /// objects. Statements that return no rows (an UPDATE without RETURNING) give an
    /// empty list.
    pub async fn query_json(
        &mut self,
        sql: &str,
        params: &[serde_json::Value],
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        if self.check_role && !self.role_checked {
            refuse_powerful_roles(self.client().await?).await?;
            self.role_checked = true;
        }
        self.run(sql, params).await
    }

    /// `run_statement`, with Postgres' errors told as Postgres words them (its message and
    /// hint), not wrapped in the client's "db error: ERROR: ...".
    async fn run(
        &mut self,
        sql: &str,
        params: &[serde_json::Value],
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        self.run_statement(sql, params).await.map_err(|e| {
            match e.downcast_ref::<tokio_postgres::Error>() {
                Some(pg) => anyhow::anyhow!(super::query_message(pg)),
                None => e,
            }
        })
    }

    async fn run_statement(
        &mut self,
        sql: &str,
        params: &[serde_json::Value],
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let read_only = self.read_only;
        let client = self.client().await?;
        // Prepared outside the transaction: a statement that cannot be wrapped fails to
        // prepare, which inside a transaction would abort it.
        let wrapped = format!("WITH q AS ({sql}) SELECT to_json(q)::text FROM q");
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
        let tx = client
            .build_transaction()
            .read_only(read_only)
            .start()
            .await?;
        let rows = if returns_rows {
            let mut stream = std::pin::pin!(tx.query_raw(&stmt, refs).await?);
            let mut rows = Vec::new();
            let mut bytes = 0usize;
            while let Some(row) = futures_util::StreamExt::next(&mut stream).await {
                let text: String = row?.get(0);
                bytes += text.len();
                if rows.len() >= MAX_ROWS || bytes > MAX_BYTES {
                    anyhow::bail!(
                        "too many rows: the result is larger than {MAX_ROWS} rows or {} MiB of JSON; narrow it with WHERE or LIMIT",
                        MAX_BYTES >> 20
                    );
                }
                rows.push(serde_json::from_str(&text)?);
            }
            rows
        } else {
            tx.execute(&stmt, &refs).await?;
            Vec::new()
        };
        // Read-only: roll back, so not even what a read-only transaction may write (large
        // objects) outlives the statement.
        if read_only {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(rows)
    }
}

/// A superuser — or a role that may run programs or touch files on the database server —
/// could escape any transaction: labs do not run SQL as one.
async fn refuse_powerful_roles(client: &Client) -> anyhow::Result<()> {
    let row = client
        .query_one(
            "SELECT current_user::text, r.rolsuper \
             OR pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER') \
             OR pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') \
             OR pg_has_role(current_user, 'pg_write_server_files', 'MEMBER') \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .context("checking the lab role's privileges")?;
    let (role, powerful): (String, bool) = (row.get(0), row.get(1));
    if powerful {
        anyhow::bail!(
            "labs do not run SQL as {role}: it is a superuser (or may run programs or read files on the database server); give labs a role that may only use the users table with --lab-database-url URL, or use the managed stack"
        );
    }
    Ok(())
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
