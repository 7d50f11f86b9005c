//! Reading and rewriting the host:port of a Redis or Postgres URL (or a Postgres
//! `key=value` connection string), so the servers can be pointed at a fault proxy in
//! front of the real server without anything else in the URL changing.

/// The `host:port` a URL points at, with `default_port` when it names none.
pub fn authority(url: &str, default_port: u16) -> Option<String> {
    if let Some((_, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let hostport = rest[..end].rsplit('@').next()?;
        if hostport.is_empty() {
            return Some(format!("127.0.0.1:{default_port}"));
        }
        return Some(if hostport.contains(':') && !hostport.ends_with(']') {
            hostport.to_string()
        } else {
            format!("{hostport}:{default_port}")
        });
    }
    let host = dsn_value(url, "host").unwrap_or("127.0.0.1");
    let port = dsn_value(url, "port").unwrap_or("");
    let port = if port.is_empty() {
        default_port.to_string()
    } else {
        port.to_string()
    };
    Some(format!("{host}:{port}"))
}

/// `url` with its host and port replaced by `addr`.
pub fn with_authority(url: &str, addr: std::net::SocketAddr) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let userinfo = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        return format!("{scheme}://{userinfo}{addr}{tail}");
    }
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|part| !part.starts_with("host=") && !part.starts_with("port="))
        .collect();
    format!("host={} port={} {}", addr.ip(), addr.port(), kept.join(" "))
        .trim_end()
        .to_string()
}

fn dsn_value<'a>(dsn: &'a str, key: &str) -> Option<&'a str> {
    dsn.split_whitespace()
        .find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
}

/// Hide the password of a `scheme://user:password@host/...` URL.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_everything_but_the_authority() {
        let via: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            authority("redis://:pw@10.0.0.5:6380/2", 6379).as_deref(),
            Some("10.0.0.5:6380")
        );
        assert_eq!(
            with_authority("redis://:pw@10.0.0.5:6380/2", via),
            "redis://:pw@127.0.0.1:4000/2"
        );
        assert_eq!(
            authority("postgres://bob@db.local/app", 5432).as_deref(),
            Some("db.local:5432")
        );
        assert_eq!(
            with_authority("postgres://bob@db.local/app?sslmode=disable", via),
            "postgres://bob@127.0.0.1:4000/app?sslmode=disable"
        );
        assert_eq!(
            authority("host=db port=5433 user=bob", 5432).as_deref(),
            Some("db:5433")
        );
        assert_eq!(
            with_authority("host=db port=5433 user=bob", via),
            "host=127.0.0.1 port=4000 user=bob"
        );
    }

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://bob:s3cret@db.local:5432/app"),
            "postgres://bob:***@db.local:5432/app"
        );
        assert_eq!(
            redact("redis://:pw@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
    }
}
