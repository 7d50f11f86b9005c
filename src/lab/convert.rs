//! Values crossing the boundary between Rust and lab scripts: JSON ↔ `Dynamic` in one place,
//! and the argument checks that name the function and argument a lab got wrong.

use rhai::{Array, Dynamic, EvalAltResult, Map};

/// What a lab function returns.
pub type LabResult<T> = Result<T, Box<EvalAltResult>>;

/// A runtime error carrying the message a lab author sees.
pub fn lab_error(message: impl Into<String>) -> Box<EvalAltResult> {
    let message: String = message.into();
    Box::new(EvalAltResult::ErrorRuntime(
        message.into(),
        rhai::Position::NONE,
    ))
}

/// JSON → Dynamic: numbers to i64 (or f64), objects to maps, arrays to arrays.
pub fn from_json(value: &serde_json::Value) -> Dynamic {
    use serde_json::Value;
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.clone().into(),
        Value::Array(items) => items.iter().map(from_json).collect::<Array>().into(),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.as_str().into(), from_json(v)))
            .collect::<Map>()
            .into(),
    }
}

/// Dynamic → JSON (for SQL parameters, request bodies and comparisons).
pub fn to_json(value: &Dynamic) -> serde_json::Value {
    use serde_json::Value;
    if value.is_unit() {
        Value::Null
    } else if let Ok(b) = value.as_bool() {
        Value::Bool(b)
    } else if let Ok(i) = value.as_int() {
        Value::from(i)
    } else if let Ok(f) = value.as_float() {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    } else if value.is_string() {
        Value::String(value.clone().into_string().unwrap_or_default())
    } else if value.is_array() {
        Value::Array(
            value
                .clone()
                .into_array()
                .unwrap_or_default()
                .iter()
                .map(to_json)
                .collect(),
        )
    } else if value.is_map() {
        let map = value.clone().cast::<Map>();
        Value::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect(),
        )
    } else {
        Value::String(value.to_string())
    }
}

/// A serialisable Rust value as a lab map/array.
pub fn to_dynamic<T: serde::Serialize>(value: &T) -> Dynamic {
    from_json(&serde_json::to_value(value).unwrap_or(serde_json::Value::Null))
}

fn type_name(value: &Dynamic) -> &'static str {
    if value.is_unit() {
        "()"
    } else if value.is_int() {
        "int"
    } else if value.is_float() {
        "float"
    } else if value.is_bool() {
        "bool"
    } else if value.is_string() {
        "string"
    } else if value.is_array() {
        "array"
    } else if value.is_map() {
        "map"
    } else {
        "other"
    }
}

fn wrong(function: &str, arg: &str, expected: &str, value: &Dynamic) -> Box<EvalAltResult> {
    lab_error(format!(
        "{function}: argument `{arg}` must be {expected}, got {} {}",
        type_name(value),
        value
    ))
}

/// A string argument.
pub fn arg_str(function: &str, arg: &str, value: &Dynamic) -> LabResult<String> {
    if value.is_string() {
        Ok(value.clone().into_string().unwrap_or_default())
    } else {
        Err(wrong(function, arg, "a string", value))
    }
}

/// An integer argument (a float with no fraction is accepted too).
pub fn arg_int(function: &str, arg: &str, value: &Dynamic) -> LabResult<i64> {
    match (value.as_int(), value.as_float()) {
        (Ok(i), _) => Ok(i),
        (_, Ok(f)) if f.fract() == 0.0 && f.is_finite() => Ok(f as i64),
        _ => Err(wrong(function, arg, "an integer", value)),
    }
}

/// A non-negative integer argument.
pub fn arg_count(function: &str, arg: &str, value: &Dynamic) -> LabResult<u64> {
    let i = arg_int(function, arg, value)?;
    u64::try_from(i).map_err(|_| wrong(function, arg, "a non-negative integer", value))
}

/// A number argument.
pub fn arg_num(function: &str, arg: &str, value: &Dynamic) -> LabResult<f64> {
    match (value.as_int(), value.as_float()) {
        (Ok(i), _) => Ok(i as f64),
        (_, Ok(f)) => Ok(f),
        _ => Err(wrong(function, arg, "a number", value)),
    }
}

/// A bool argument.
pub fn arg_bool(function: &str, arg: &str, value: &Dynamic) -> LabResult<bool> {
    value
        .as_bool()
        .map_err(|_| wrong(function, arg, "a bool (true/false)", value))
}

/// A map argument.
pub fn arg_map(function: &str, arg: &str, value: &Dynamic) -> LabResult<Map> {
    if value.is_map() {
        Ok(value.clone().cast::<Map>())
    } else {
        Err(wrong(function, arg, "a map like #{name: \"Ann\"}", value))
    }
}

/// An array argument.
pub fn arg_array(function: &str, arg: &str, value: &Dynamic) -> LabResult<Array> {
    if value.is_array() {
        Ok(value.clone().into_array().unwrap_or_default())
    } else {
        Err(wrong(function, arg, "an array", value))
    }
}

/// Equality as a lab author means it: 3 == 3.0, maps and arrays compared by content.
pub fn same_value(a: &Dynamic, b: &Dynamic) -> bool {
    fn norm(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::Number(n) => n
                .as_f64()
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number),
            Value::Array(items) => Value::Array(items.into_iter().map(norm).collect()),
            Value::Object(fields) => {
                Value::Object(fields.into_iter().map(|(k, v)| (k, norm(v))).collect())
            }
            other => other,
        }
    }
    norm(to_json(a)) == norm(to_json(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_dynamic_with_native_number_types() {
        let json =
            serde_json::json!({"id": 7, "ratio": 0.5, "tags": ["a", 1], "none": null, "ok": true});
        let dynamic = from_json(&json);
        let map = dynamic.clone().cast::<Map>();
        assert!(map["id"].is_int());
        assert!(map["ratio"].is_float());
        assert!(map["tags"].is_array());
        assert!(map["none"].is_unit());
        assert_eq!(to_json(&dynamic), json);
    }

    #[test]
    fn same_value_treats_int_and_float_alike() {
        assert!(same_value(&Dynamic::from(3_i64), &Dynamic::from(3.0_f64)));
        assert!(!same_value(&Dynamic::from(3_i64), &Dynamic::from("3")));
    }

    #[test]
    fn wrong_arguments_name_the_function_and_argument() {
        let err = arg_str("http_get", "path", &Dynamic::from(5_i64)).unwrap_err();
        assert!(
            err.to_string()
                .contains("http_get: argument `path` must be a string, got int 5"),
            "{err}"
        );
    }
}
