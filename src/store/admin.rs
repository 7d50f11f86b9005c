//! What only cachelab itself does to Postgres, as the superuser (managed) or the user's own
//! role (external): create the roles, build the `users` table from `schema.sql`, load
//! `users.json`, and rebuild all of it for every lab's fresh start.
//!
//! On the managed stack the servers connect as `cachelab_app`, which owns the table, and
//! labs as `cachelab_lab`, which may only read and change its rows: no DDL, no superuser
//! functions (`COPY ... PROGRAM`, `pg_read_file`), no temp objects.

use anyhow::Context;
use std::time::Duration;
use tokio_postgres::Client;

use crate::seed;

pub use crate::stack::roles::{APP_ROLE, LAB_ROLE};

/// A short-lived administrative session.
pub struct Admin {
    client: Client,
    /// Managed: roles exist and get their privileges; external: only the table is ours.
    managed: bool,
}

impl Admin {
    /// Connect to `url` (the superuser's on a managed stack).
    pub async fn connect(url: &str, managed: bool) -> anyhow::Result<Self> {
        // A reset must not wait forever behind a lock a stuck session holds.
        let config = super::connect::config(
            url,
            "cachelab-admin",
            Duration::from_secs(5),
            Some("-c lock_timeout=3000 -c statement_timeout=10000"),
        )?;
        let client = super::connect::open(url, &config).await?;
        Ok(Self { client, managed })
    }

    /// First start: roles (managed), the table if it is missing, and users.json when the
    /// table is empty or `reload` says so.
    pub async fn prepare(&self, reload: bool) -> anyhow::Result<()> {
        if self.managed {
            self.create_roles().await?;
            self.rebuild().await
        } else {
            self.client
                .batch_execute(seed::SCHEMA_SQL)
                .await
                .context("applying schema.sql")?;
            if reload || self.count_users().await? == 0 {
                self.reload_users().await?;
            }
            Ok(())
        }
    }

    async fn create_roles(&self) -> anyhow::Result<()> {
        let sql = format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN \
                 CREATE ROLE {APP_ROLE} LOGIN; END IF; \
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{LAB_ROLE}') THEN \
                 CREATE ROLE {LAB_ROLE} LOGIN; END IF; \
             END $$; \
             REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
             REVOKE TEMPORARY ON DATABASE postgres FROM PUBLIC; \
             GRANT USAGE ON SCHEMA public TO {APP_ROLE}, {LAB_ROLE}; \
             GRANT CREATE ON SCHEMA public TO {APP_ROLE};"
        );
        self.client
            .batch_execute(&sql)
            .await
            .context("creating the cachelab_app and cachelab_lab roles")
    }

    /// The fresh state of the table: lab sessions ended, the table dropped and built again
    /// from schema.sql (whatever a lab did to it), users.json loaded, role settings reset.
    /// On an external database this runs only with `--reset-data`.
    pub async fn rebuild(&self) -> anyhow::Result<()> {
        if self.managed {
            self.end_sessions_of(LAB_ROLE).await?;
            // Whatever the lab role owns or set for itself goes: large objects, default
            // privileges, settings per role and per role in this database.
            self.client
                .batch_execute(&format!(
                    "DROP OWNED BY {LAB_ROLE}; \
                     ALTER ROLE {LAB_ROLE} IN DATABASE postgres RESET ALL; \
                     ALTER ROLE {APP_ROLE} IN DATABASE postgres RESET ALL; \
                     GRANT USAGE ON SCHEMA public TO {LAB_ROLE};"
                ))
                .await
                .context("removing what the lab role owns and set")?;
        }
        let mut sql = format!("DROP TABLE IF EXISTS users CASCADE; {}", seed::SCHEMA_SQL);
        if self.managed {
            sql.push_str(&format!(
                "; ALTER TABLE users OWNER TO {APP_ROLE}; \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON users TO {LAB_ROLE}; \
                 GRANT USAGE, SELECT ON SEQUENCE users_id_seq TO {LAB_ROLE}; \
                 ALTER ROLE {LAB_ROLE} RESET ALL; ALTER ROLE {APP_ROLE} RESET ALL;"
            ));
        }
        self.client
            .batch_execute(&sql)
            .await
            .context("rebuilding the users table from schema.sql")?;
        self.reload_users().await
    }

    /// End every session of `role` (a lab's queries still running after the lab).
    pub async fn end_sessions_of(&self, role: &str) -> anyhow::Result<()> {
        self.client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE usename = $1 AND pid <> pg_backend_pid()",
                &[&role],
            )
            .await
            .with_context(|| format!("ending the sessions of {role}"))?;
        Ok(())
    }

    /// How many rows the users table holds.
    pub async fn count_users(&self) -> anyhow::Result<i64> {
        let row = self
            .client
            .query_one("SELECT count(*) FROM users", &[])
            .await
            .context("counting users")?;
        Ok(row.get(0))
    }

    /// Empty the users table and load users.json; the id sequence continues after the
    /// highest id.
    pub async fn reload_users(&self) -> anyhow::Result<()> {
        let records = serde_json::to_value(seed::users())?;
        let load = async {
            self.client.batch_execute("BEGIN; TRUNCATE users").await?;
            self.client
                .execute(
                    "INSERT INTO users (id, name, email) \
                     SELECT id, name, email FROM json_populate_recordset(NULL::users, $1::json)",
                    &[&records],
                )
                .await?;
            self.client
                .batch_execute(
                    "SELECT setval(pg_get_serial_sequence('users', 'id'), \
                     (SELECT COALESCE(MAX(id), 0) + 1 FROM users), false); COMMIT",
                )
                .await
        };
        if let Err(e) = load.await {
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(e).context("reloading users.json");
        }
        Ok(())
    }
}
