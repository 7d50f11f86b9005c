//! A lab's own Postgres session: `db_get` and `db_query` run here, never on the servers'
//! pool, as a role that may only read and change rows of `users` (managed stack). The
//! session is opened on first use and closed with the lab, so nothing a lab sets in it
//! (a search_path, an advisory lock) reaches the next lab. On an external database
//! without `--reset-data` every statement runs in a read-only transaction.

use anyhow::Context;
use std::time::Duration;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use super::{User, USER_COLUMNS};

/// The lab's session, opened lazily.
pub struct LabDb {
    url: String,
    read_only: bool,
    client: Option<Client>,
}

impl LabDb {
    /// A session for `url` (not connected yet). `read_only`: statements run in read-only
    /// transactions, so a lab cannot change an external table it was not allowed to reset.
    pub fn new(url: String, read_only: bool) -> Self {
        Self {
            url,
            read_only,
            client: None,
        }
    }

    async fn client(&mut self) -> anyhow::Result<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let mut config: tokio_postgres::Config = self.url.parse().with_context(|| {
                format!("parsing database URL {}", crate::stack::redact(&self.url))
            })?;
            config.connect_timeout(Duration::from_secs(5));
            config.application_name("cachelab-lab");
            let (client, connection) = config
                .connect(NoTls)
                .await
                .context("connecting to Postgres")?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// The users row with this id, or `None`.
    pub async fn get_user(&mut self, id: i32) -> anyhow::Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let rows = self.query_json(&sql, &[serde_json::json!(id)]).await?;
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
        let read_only = self.read_only;
        let client = self.client().await?;
        // Prepared outside the transaction: a statement that cannot be wrapped fails to
        // prepare, which inside a transaction would abort it.
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
        let tx = client
            .build_transaction()
            .read_only(read_only)
            .start()
            .await?;
        let rows = if returns_rows {
            tx.query(&stmt, &refs)
                .await?
                .iter()
                .map(|r| r.get::<_, serde_json::Value>(0))
                .collect()
        } else {
            tx.execute(&stmt, &refs).await?;
            Vec::new()
        };
        tx.commit().await?;
        Ok(rows)
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
