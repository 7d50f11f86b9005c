//! How cachelab opens a Postgres session, in one place: the servers' pool, the admin's
//! set-up and reset, and a lab's own session differ only in who they say they are
//! (`application_name`, so `pg_stat_activity` tells them apart), how long a connect may
//! take, and the server-side bounds they set (`-c` options).

use anyhow::Context;
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};

use crate::stack::endpoint::redact;

/// A session's settings for `url`; the password never reaches an error message.
pub fn config(
    url: &str,
    application: &str,
    connect_timeout: Duration,
    options: Option<&str>,
) -> anyhow::Result<Config> {
    let mut config: Config = url
        .parse()
        .with_context(|| format!("parsing database URL {}", redact(url)))?;
    config.connect_timeout(connect_timeout);
    config.application_name(application);
    if let Some(options) = options {
        config.options(options);
    }
    Ok(config)
}

/// Open one session (not pooled); its connection runs on a task of its own until the
/// client is dropped.
pub async fn open(url: &str, config: &Config) -> anyhow::Result<Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("connecting to Postgres at {}", redact(url)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}
