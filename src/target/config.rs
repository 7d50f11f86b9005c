//! The target TOML (`[app]`, `[model]`, optional `[redis]` and `[postgres]`), read with
//! `toml` + serde. Every field keeps its place in the file, so a mistake — an unknown key,
//! a template with a stray placeholder, a bad JSON pointer, an upstream nobody answers
//! on — is a setup error naming the file and line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::model::{self, Model, Route, Template};
use super::placeholders;
use crate::stack::endpoint;

/// A mistake in the target file or its surroundings; cachelab exits 2 with it.
#[derive(Debug)]
pub struct SetupError {
    /// `app.toml:7`, or just the file when no line applies.
    pub place: String,
    pub message: String,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

impl std::error::Error for SetupError {}

/// The service under test, as the file describes it, checked.
#[derive(Debug, Clone)]
pub struct Target {
    /// The file it was read from (messages name it).
    pub file: PathBuf,
    /// `http://host:port`, without a trailing slash.
    pub url: String,
    pub command: Option<String>,
    /// The command's working directory (relative paths are relative to the file).
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    /// The path polled until the app answers.
    pub ready: String,
    pub model: Model,
    /// The app's own Redis and Postgres; `None`: cachelab's managed ones.
    pub redis_url: Option<String>,
    pub postgres_url: Option<String>,
    /// Where `[redis]` / `[postgres]` `url` were written, for reachability errors.
    redis_line: usize,
    postgres_line: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    app: App,
    model: ModelSection,
    redis: Option<Upstream>,
    postgres: Option<Upstream>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct App {
    url: Spanned<String>,
    command: Option<Spanned<String>>,
    dir: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    ready: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSection {
    read: Spanned<String>,
    write: Spanned<String>,
    value: Spanned<String>,
    ids: Spanned<String>,
    cache_key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Upstream {
    url: Spanned<String>,
}

impl Target {
    /// Read and check `file`.
    pub fn load(file: &Path) -> Result<Self, SetupError> {
        let text = std::fs::read_to_string(file).map_err(|e| SetupError {
            place: file.display().to_string(),
            message: format!("cannot read it: {e}"),
        })?;
        Self::parse(file, &text)
    }

    /// Check `text`, the contents of `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Self, SetupError> {
        let at = |span: std::ops::Range<usize>, message: String| SetupError {
            place: format!("{}:{}", file.display(), line_of(text, span.start)),
            message,
        };
        let parsed: File = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => at(span, e.message().trim().to_string()),
            None => SetupError {
                place: file.display().to_string(),
                message: e.message().trim().to_string(),
            },
        })?;
        let checked = |field: &Spanned<String>,
                       name: &str,
                       check: &dyn Fn(&str) -> Result<(), String>|
         -> Result<String, SetupError> {
            check(field.get_ref()).map_err(|e| at(field.span(), format!("{name}: {e}")))?;
            Ok(field.get_ref().clone())
        };
        let app = &parsed.app;
        let url = checked(&app.url, "app.url", &check_base_url)?
            .trim_end_matches('/')
            .to_string();
        let ready = checked(&app.ready, "app.ready", &|r: &str| {
            if r.starts_with('/') {
                Ok(())
            } else {
                Err(format!("a path starting with `/`, got {r:?}"))
            }
        })?;
        let command = match &app.command {
            Some(c) => Some(checked(c, "app.command", &placeholders::check)?),
            None => None,
        };
        let mut env = Vec::new();
        for (name, value) in &app.env {
            let value = checked(value, &format!("app.env.{name}"), &placeholders::check)?;
            env.push((name.clone(), value));
        }
        let base = file.parent().unwrap_or(Path::new("."));
        let dir = base.join(app.dir.as_deref().unwrap_or("."));

        let m = &parsed.model;
        let read = Route::parse(m.read.get_ref(), &["id"])
            .and_then(|r| {
                if r.path.has_id() {
                    Ok(r)
                } else {
                    Err("it must use {id}".into())
                }
            })
            .map_err(|e| at(m.read.span(), format!("model.read: {e}")))?;
        let write = Route::parse(m.write.get_ref(), &["id", "value"])
            .and_then(|r| {
                if r.path.has_id() && r.path.has_value() {
                    Ok(r)
                } else {
                    Err("it must use {id} and {value}".into())
                }
            })
            .map_err(|e| at(m.write.span(), format!("model.write: {e}")))?;
        let value = checked(&m.value, "model.value", &model::check_pointer)?;
        let ids = model::parse_ids(m.ids.get_ref())
            .map_err(|e| at(m.ids.span(), format!("model.ids: {e}")))?;
        let cache_key = Template::parse(m.cache_key.get_ref(), &["id"])
            .and_then(|t| {
                if t.has_id() {
                    Ok(t)
                } else {
                    Err("it must use {id}".into())
                }
            })
            .map_err(|e| at(m.cache_key.span(), format!("model.cache_key: {e}")))?;

        let upstream = |u: &Option<Upstream>, name: &str, schemes: &[&str]| {
            let Some(u) = u else {
                return Ok((None, 0));
            };
            let url = u.url.get_ref();
            let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
            if !schemes.contains(&scheme) {
                return Err(at(
                    u.url.span(),
                    format!(
                        "{name}.url: expected a {}:// URL, got {}",
                        schemes[0],
                        endpoint::redact(url)
                    ),
                ));
            }
            Ok((Some(url.clone()), line_of(text, u.url.span().start)))
        };
        let (redis_url, redis_line) = upstream(&parsed.redis, "redis", &["redis"])?;
        let (postgres_url, postgres_line) =
            upstream(&parsed.postgres, "postgres", &["postgres", "postgresql"])?;
        Ok(Self {
            file: file.to_path_buf(),
            url,
            command,
            dir,
            env,
            ready,
            model: Model {
                read,
                write,
                value,
                ids,
                cache_key,
            },
            redis_url,
            postgres_url,
            redis_line,
            postgres_line,
        })
    }

    /// Make sure every upstream the file names answers a TCP connect (within 2 s), so an
    /// unreachable one is a setup error naming its line rather than a lab failure later.
    pub async fn check_upstreams(&self) -> Result<(), SetupError> {
        let named = [
            (&self.redis_url, self.redis_line, "redis", 6379),
            (&self.postgres_url, self.postgres_line, "postgres", 5432),
        ];
        for (url, line, name, port) in named {
            let Some(url) = url else { continue };
            let at = endpoint::authority(url, port).unwrap_or_default();
            let connect = tokio::net::TcpStream::connect(at.clone());
            let failure = match tokio::time::timeout(Duration::from_secs(2), connect).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 2 s".to_string(),
            };
            return Err(SetupError {
                place: format!("{}:{line}", self.file.display()),
                message: format!("{name}.url: cannot reach {at}: {failure}"),
            });
        }
        Ok(())
    }
}

/// `http://host:port` with nothing after it but an optional `/`.
fn check_base_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("expected an http:// URL (no TLS), got {url:?}"))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "expected just a scheme, host and port (e.g. \"http://127.0.0.1:8000\"), got {url:?}"
        ));
    }
    Ok(())
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"[app]
url = "http://127.0.0.1:8000"
command = "python3 app.py --port 8000"
dir = "apps"
env = { REDIS_URL = "{redis_url}", DATABASE_URL = "{database_url}" }
ready = "/users/1"

[model]
read = "GET /users/{id}"
write = "PUT /users/{id}?name={value}"
value = "/name"
ids = "1..1000"
cache_key = "user:{id}"
"#;

    fn error(text: &str) -> String {
        Target::parse(Path::new("app.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_design_example_parses() {
        let t = Target::parse(Path::new("/x/app.toml"), GOOD).unwrap();
        assert_eq!(t.url, "http://127.0.0.1:8000");
        assert_eq!(t.dir, Path::new("/x/apps"));
        assert_eq!(t.model.ids, 1..=1000);
        assert_eq!(t.env.len(), 2);
        assert!(t.redis_url.is_none() && t.postgres_url.is_none());
    }

    #[test]
    fn mistakes_name_their_line() {
        let unknown = GOOD.replace("ids = ", "idz = \"1\"\nids = ");
        assert!(
            error(&unknown).starts_with("app.toml:12: unknown field `idz`"),
            "{}",
            error(&unknown)
        );
        let template = GOOD.replace("name={value}", "name={val}");
        assert!(
            error(&template).starts_with("app.toml:10: model.write"),
            "{}",
            error(&template)
        );
        let pointer = GOOD.replace("\"/name\"", "\"name\"");
        assert!(error(&pointer).starts_with("app.toml:11: model.value"));
        let env = GOOD.replace("{redis_url}", "{redis_uri}");
        assert!(error(&env).starts_with("app.toml:5: app.env.REDIS_URL"));
        let upstream = format!("{GOOD}[redis]\nurl = \"http://x\"\n");
        assert!(error(&upstream).starts_with("app.toml:15: redis.url"));
    }
}
