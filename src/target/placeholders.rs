//! The placeholders an app's `command` and `env` may use: where the proxies listen,
//! in the forms apps are configured with. They always name the proxies, never the
//! upstreams, so everything the app does passes through what cachelab observes.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Every placeholder name, in the order the error message lists them.
pub const NAMES: &[&str] = &[
    "redis_url",
    "redis_host",
    "redis_port",
    "database_url",
    "pg_host",
    "pg_port",
    "pg_user",
    "pg_password",
    "pg_database",
];

/// Check that `text` uses only known placeholders with balanced braces.
pub fn check(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("a `}}` without its `{{` in {text:?}"));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("a `{{` without its `}}` in {text:?}"))?;
        let name = &rest[open + 1..open + close];
        if !NAMES.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}}; known: {}",
                NAMES
                    .iter()
                    .map(|n| format!("{{{n}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}

/// The values, from the URLs the app must use (the upstreams' with the proxies'
/// addresses in place of theirs).
pub struct Values(BTreeMap<&'static str, String>);

impl Values {
    /// `redis_url` and `database_url` already point at the proxies.
    pub fn new(
        redis_url: &str,
        redis_at: SocketAddr,
        database_url: &str,
        pg_at: SocketAddr,
    ) -> Self {
        let mut map = BTreeMap::new();
        map.insert("redis_url", redis_url.to_string());
        map.insert("redis_host", redis_at.ip().to_string());
        map.insert("redis_port", redis_at.port().to_string());
        map.insert("database_url", database_url.to_string());
        map.insert("pg_host", pg_at.ip().to_string());
        map.insert("pg_port", pg_at.port().to_string());
        let (user, password, database) = postgres_parts(database_url);
        map.insert("pg_user", user);
        map.insert("pg_password", password);
        map.insert("pg_database", database);
        Self(map)
    }

    /// `text` with every placeholder filled (checked by `check` beforehand).
    pub fn fill(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, value) in &self.0 {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }
}

/// User, password and database of a `postgres://user:password@host:port/db` URL, each
/// percent-decoded; empty where absent.
fn postgres_parts(url: &str) -> (String, String, String) {
    let decode = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let database = path.split('?').next().unwrap_or("");
    let (user, password) = match authority.rsplit_once('@') {
        Some((info, _)) => match info.split_once(':') {
            Some((u, p)) => (decode(u), decode(p)),
            None => (decode(info), String::new()),
        },
        None => (String::new(), String::new()),
    };
    (user, password, decode(database))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_with_the_proxies_addresses() {
        let values = Values::new(
            "redis://127.0.0.1:4001/3",
            "127.0.0.1:4001".parse().unwrap(),
            "postgres://app:s%40cret@127.0.0.1:4002/appdb",
            "127.0.0.1:4002".parse().unwrap(),
        );
        assert_eq!(
            values.fill(
                "--redis {redis_host}:{redis_port} --pg {pg_user}/{pg_password}@{pg_database}"
            ),
            "--redis 127.0.0.1:4001 --pg app/s@cret@appdb"
        );
        assert_eq!(values.fill("{redis_url}"), "redis://127.0.0.1:4001/3");
    }

    #[test]
    fn unknown_placeholders_are_refused_by_name() {
        assert!(check("{redis_url} and {pg_port}").is_ok());
        assert!(check("{redis_uri}").unwrap_err().contains("{redis_uri}"));
        assert!(check("{redis_url").is_err());
    }
}
