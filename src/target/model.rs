//! How the app's API maps onto ids, keys and values: the read and write requests as
//! templates, the JSON pointer to the written value, the ids a lab may use, and the Redis
//! key the app caches an id under. Pure, so every rule is unit-tested here.

use std::ops::RangeInclusive;

/// One piece of a template: text as written, or a placeholder to fill.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Id,
    Value,
}

/// A path template such as `/users/{id}?name={value}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parse `text`, allowing only the placeholders in `allowed` (`"id"`, `"value"`).
    pub fn parse(text: &str, allowed: &[&str]) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(format!("a `}}` without its `{{` in {text:?}"));
            }
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("a `{{` without its `}}` in {text:?}"))?;
            let name = &rest[open + 1..open + close];
            if !allowed.contains(&name) {
                return Err(format!(
                    "unknown placeholder {{{name}}} in {text:?}; it may use {}",
                    allowed
                        .iter()
                        .map(|a| format!("{{{a}}}"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ));
            }
            pieces.push(if name == "id" {
                Piece::Id
            } else {
                Piece::Value
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Self { pieces })
    }

    /// Does it use `{id}` / `{value}`?
    pub fn has_id(&self) -> bool {
        self.pieces.contains(&Piece::Id)
    }

    pub fn has_value(&self) -> bool {
        self.pieces.contains(&Piece::Value)
    }

    /// The text with `{id}` and `{value}` filled in; the value is percent-encoded, so any
    /// name fits in a path or a query.
    pub fn fill(&self, id: u64, value: &str) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Id => out.push_str(&id.to_string()),
                Piece::Value => out.extend(form_urlencoded::byte_serialize(value.as_bytes())),
            }
        }
        out
    }

    /// The template as written, placeholders included (`/users/{id}`).
    pub fn pattern(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Id => "{id}",
                Piece::Value => "{value}",
            })
            .collect()
    }

    /// The id in `text` if it is this template with `{id}` filled (no `{value}`).
    pub fn id_of(&self, text: &str) -> Option<u64> {
        let mut rest = text;
        let mut id = None;
        for (i, piece) in self.pieces.iter().enumerate() {
            match piece {
                Piece::Text(t) => rest = rest.strip_prefix(t.as_str())?,
                Piece::Id => {
                    let end = match self.pieces.get(i + 1) {
                        Some(Piece::Text(next)) => rest.find(next.as_str())?,
                        _ => rest.len(),
                    };
                    id = Some(rest[..end].parse().ok()?);
                    rest = &rest[end..];
                }
                Piece::Value => return None,
            }
        }
        rest.is_empty().then_some(id).flatten()
    }
}

/// An HTTP request template: `GET /users/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    pub path: Template,
}

impl Route {
    pub fn parse(text: &str, allowed: &[&str]) -> Result<Self, String> {
        let (method, path) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("expected \"METHOD /path\", got {text:?}"))?;
        let method = method.to_ascii_uppercase();
        if !["GET", "PUT", "POST", "PATCH", "DELETE"].contains(&method.as_str()) {
            return Err(format!(
                "the method must be GET, PUT, POST, PATCH or DELETE, got {method:?}"
            ));
        }
        let path = path.trim();
        if !path.starts_with('/') {
            return Err(format!("the path must start with `/`, got {path:?}"));
        }
        Ok(Self {
            method,
            path: Template::parse(path, allowed)?,
        })
    }
}

/// The model of the app's API.
#[derive(Debug, Clone)]
pub struct Model {
    pub read: Route,
    pub write: Route,
    /// RFC 6901 pointer to the written value in a read's JSON body.
    pub value: String,
    pub ids: RangeInclusive<u64>,
    pub cache_key: Template,
}

/// Check an RFC 6901 JSON pointer: empty (the whole body) or `/`-separated, with `~` only
/// as `~0` or `~1`.
pub fn check_pointer(text: &str) -> Result<(), String> {
    if !text.is_empty() && !text.starts_with('/') {
        return Err(format!(
            "a JSON pointer starts with `/` (e.g. \"/name\"), got {text:?}"
        ));
    }
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "in a JSON pointer `~` must be followed by 0 or 1, in {text:?}"
            ));
        }
    }
    Ok(())
}

/// `"1..1000"` (both ends included).
pub fn parse_ids(text: &str) -> Result<RangeInclusive<u64>, String> {
    let (low, high) = text
        .split_once("..")
        .ok_or_else(|| format!("expected \"FIRST..LAST\", e.g. \"1..1000\", got {text:?}"))?;
    let low: u64 = low
        .trim()
        .parse()
        .map_err(|_| format!("{low:?} is not a whole number"))?;
    let high: u64 = high
        .trim()
        .trim_start_matches('=')
        .parse()
        .map_err(|_| format!("{high:?} is not a whole number"))?;
    if low > high {
        return Err(format!("the range {text:?} is empty"));
    }
    Ok(low..=high)
}

/// The value at `pointer` in a JSON body, as text (a string as it is, anything else as
/// JSON).
pub fn value_at(body: &str, pointer: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    match json.pointer(pointer)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_template_fills_id_and_an_encoded_value() {
        let route = Route::parse("put /users/{id}?name={value}", &["id", "value"]).unwrap();
        assert_eq!(route.method, "PUT");
        assert_eq!(route.path.fill(7, "a b&c"), "/users/7?name=a+b%26c");
    }

    #[test]
    fn unknown_placeholders_and_unbalanced_braces_are_refused() {
        assert!(Template::parse("/users/{uid}", &["id"])
            .unwrap_err()
            .contains("{uid}"));
        assert!(Template::parse("/users/{id", &["id"]).is_err());
        assert!(Template::parse("/users/id}", &["id"]).is_err());
        assert!(Route::parse("/users/{id}", &["id"]).is_err());
    }

    #[test]
    fn a_cache_key_gives_back_its_id_and_nothing_else() {
        let key = Template::parse("user:{id}", &["id"]).unwrap();
        assert_eq!(key.id_of("user:42"), Some(42));
        assert_eq!(key.id_of("user:x"), None);
        assert_eq!(key.id_of("session:42"), None);
        let key = Template::parse("app:{id}:v1", &["id"]).unwrap();
        assert_eq!(key.id_of("app:9:v1"), Some(9));
        assert_eq!(key.id_of("app:9:v2"), None);
    }

    #[test]
    fn pointers_ids_and_values() {
        assert!(check_pointer("/name").is_ok());
        assert!(check_pointer("name").is_err());
        assert!(check_pointer("/a~2").is_err());
        assert_eq!(parse_ids("1..1000").unwrap(), 1..=1000);
        assert!(parse_ids("5..1").is_err());
        assert!(parse_ids("1-5").is_err());
        assert_eq!(
            value_at(r#"{"name":"x","n":3}"#, "/name").as_deref(),
            Some("x")
        );
        assert_eq!(value_at(r#"{"n":3}"#, "/n").as_deref(), Some("3"));
    }
}
