//! Turning request parts into validated values, with the 4xx message a user sees when
//! they are wrong.

use std::collections::HashMap;

/// Longest name or email accepted, in characters.
pub const MAX_FIELD_CHARS: usize = 256;
/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request the server refuses, with its status and message.
#[derive(Debug)]
pub struct BadRequest {
    pub status: u16,
    pub message: String,
}

impl BadRequest {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }
}

/// A user id from the path: a positive integer that fits the table's `SERIAL` column.
pub fn parse_id(raw: &str) -> Result<i32, BadRequest> {
    // Digits only: Rust's integer parsing would take "+1".
    let digits = !raw.is_empty() && raw.bytes().all(|c| c.is_ascii_digit());
    match raw.parse::<i64>() {
        Ok(id) if digits && id >= 1 && id <= i32::MAX as i64 => Ok(id as i32),
        _ => Err(BadRequest::new(format!(
            "user id must be a positive integer up to {}, got {raw:?}",
            i32::MAX
        ))),
    }
}

/// The `name` and `email` a PUT or POST carries, from the query string and/or a JSON body
/// (query parameters win where both give a field).
#[derive(Debug, Default)]
pub struct UserFields {
    pub name: Option<String>,
    pub email: Option<String>,
}

impl UserFields {
    pub fn parse(query: Option<&str>, body: &[u8]) -> Result<Self, BadRequest> {
        let mut fields = Self::default();
        if !body.iter().all(u8::is_ascii_whitespace) {
            let value: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| BadRequest::new(format!("request body is not valid JSON: {e}")))?;
            let object = value
                .as_object()
                .ok_or_else(|| BadRequest::new("request body must be a JSON object"))?;
            fields.name = json_field(object, "name")?;
            fields.email = json_field(object, "email")?;
        }
        let params: HashMap<String, String> = match query {
            Some(q) => parse_query(q)?,
            None => HashMap::new(),
        };
        if let Some(name) = params.get("name") {
            fields.name = Some(name.clone());
        }
        if let Some(email) = params.get("email") {
            fields.email = Some(email.clone());
        }
        for (field, value) in [("name", &fields.name), ("email", &fields.email)] {
            if let Some(v) = value {
                check_field(field, v)?;
            }
        }
        Ok(fields)
    }
}

/// `a=1&b=x%20y` into pairs, strictly: a malformed percent-escape or bytes that are not
/// UTF-8 are a 400, never stored with replacement characters.
fn parse_query(query: &str) -> Result<HashMap<String, String>, BadRequest> {
    let mut params = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        params.insert(decode(key)?, decode(value)?);
    }
    Ok(params)
}

fn decode(text: &str) -> Result<String, BadRequest> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        let near = &bytes[i..(i + 3).min(bytes.len())];
                        BadRequest::new(format!(
                            "bad percent-encoding in the query string near {:?}",
                            String::from_utf8_lossy(near)
                        ))
                    })?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| BadRequest::new("a query parameter is not valid UTF-8 once percent-decoded"))
}

fn json_field(
    object: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Option<String>, BadRequest> {
    match object.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(BadRequest::new(format!(
            "`{field}` must be a string, got {other}"
        ))),
    }
}

fn check_field(field: &str, value: &str) -> Result<(), BadRequest> {
    if value.trim().is_empty() {
        return Err(BadRequest::new(format!("`{field}` must not be empty")));
    }
    let chars = value.chars().count();
    if chars > MAX_FIELD_CHARS {
        return Err(BadRequest::new(format!(
            "`{field}` is {chars} characters long; the limit is {MAX_FIELD_CHARS}"
        )));
    }
    if value.contains('\0') {
        return Err(BadRequest::new(format!(
            "`{field}` must not contain NUL characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_positive_and_fit_int4() {
        assert_eq!(parse_id("42").unwrap(), 42);
        for bad in [
            "0",
            "-3",
            "abc",
            "2147483648",
            "99999999999999999999",
            "1.5",
            "",
            "+1",
            " 1",
        ] {
            assert_eq!(parse_id(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn query_parameters_win_over_the_body() {
        let f =
            UserFields::parse(Some("name=Ann%20Lee"), br#"{"name":"x","email":"a@b.c"}"#).unwrap();
        assert_eq!(f.name.as_deref(), Some("Ann Lee"));
        assert_eq!(f.email.as_deref(), Some("a@b.c"));
    }

    #[test]
    fn query_values_are_decoded_strictly() {
        let f = UserFields::parse(Some("name=J%C3%BCrgen+K&email=a%40b.c"), b"").unwrap();
        assert_eq!(f.name.as_deref(), Some("Jürgen K"));
        assert_eq!(f.email.as_deref(), Some("a@b.c"));
        for bad in [
            "name=%ZZ",
            "name=%C3",
            "name=abc%",
            "name=%FF%FE",
            "name=%a\u{e9}",
        ] {
            assert_eq!(
                UserFields::parse(Some(bad), b"").unwrap_err().status,
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn malformed_and_oversized_input_is_refused() {
        assert!(UserFields::parse(None, b"{not json").is_err());
        assert!(UserFields::parse(None, b"[1,2]").is_err());
        assert!(UserFields::parse(None, br#"{"name": 5}"#).is_err());
        let long = format!("name={}", "a".repeat(MAX_FIELD_CHARS + 1));
        assert!(UserFields::parse(Some(&long), b"").is_err());
        assert!(UserFields::parse(Some("name="), b"").is_err());
    }
}
