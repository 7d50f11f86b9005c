//! Values crossing the boundary between Rust and lab scripts: JSON ↔ `Dynamic` in one place,
//! and the argument checks that name the function and argument a lab got wrong.
//!
//! The converters walk a value by recursion, so a value a lab hands in must not nest
//! deeper than `MAX_DEPTH`: `arg_map`, `arg_array`, `display` and `same_value` refuse one
//! that does, with a lab error, before anything walks it.

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

/// How deep a value handed to a lab function may nest (arrays and maps inside each other):
/// as deep as serde_json reads JSON. Far deeper than any data a lab works with, and shallow
/// enough that walking it by recursion costs a few hundred KiB of stack at most.
pub const MAX_DEPTH: usize = 128;

/// Does `value` nest arrays or maps more than `room` levels deep? Looks no deeper than
/// `room + 1` levels, so it is safe on a value of any depth.
fn deeper_than(value: &Dynamic, room: usize) -> bool {
    if let Ok(array) = value.as_array_ref() {
        return room == 0 || array.iter().any(|v| deeper_than(v, room - 1));
    }
    if let Ok(map) = value.as_map_ref() {
        return room == 0 || map.values().any(|v| deeper_than(v, room - 1));
    }
    false
}

/// Refuse a value nested deeper than `MAX_DEPTH`, naming the function and argument.
pub fn within_depth(function: &str, arg: &str, value: &Dynamic) -> LabResult<()> {
    if deeper_than(value, MAX_DEPTH) {
        return Err(lab_error(format!(
            "{function}: argument `{arg}` nests arrays or maps more than {MAX_DEPTH} levels deep; lab functions take values up to {MAX_DEPTH} levels"
        )));
    }
    Ok(())
}

/// A value for an error message: as Rhai prints it, unless it nests too deep to print.
pub fn shown(value: &Dynamic) -> String {
    if deeper_than(value, MAX_DEPTH) {
        return format!("(a value nested more than {MAX_DEPTH} levels deep)");
    }
    value.to_string()
}

/// JSON → Dynamic (rhai's serde support): numbers to i64 or f64, objects to maps.
pub fn from_json(value: &serde_json::Value) -> Dynamic {
    rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT)
}

/// Dynamic → JSON (for SQL parameters, request bodies, reports and comparisons).
pub fn to_json(value: &Dynamic) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_else(|_| serde_json::Value::String(value.to_string()))
}

/// A serialisable Rust value as a lab map/array.
pub fn to_dynamic<T: serde::Serialize>(value: &T) -> Dynamic {
    rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT)
}

pub use crate::output::format_float;

/// A value as a note shows it: floats by `format_float`, containers element by element.
/// `function` names the lab function in the error for a value nested too deep.
pub fn display(function: &str, value: &Dynamic) -> LabResult<String> {
    within_depth(function, "text", value)?;
    Ok(shallow_display(value))
}

/// `display` of a value known to be within `MAX_DEPTH`.
fn shallow_display(value: &Dynamic) -> String {
    if let Ok(f) = value.as_float() {
        return format_float(f);
    }
    if value.is_string() {
        return value.clone().into_string().unwrap_or_default();
    }
    if value.is_array() {
        let items: Vec<String> = value
            .clone()
            .into_array()
            .unwrap_or_default()
            .iter()
            .map(inner)
            .collect();
        return format!("[{}]", items.join(", "));
    }
    if value.is_map() {
        let map = value.clone().cast::<Map>();
        let fields: Vec<String> = map
            .iter()
            .map(|(k, v)| format!("{k}: {}", inner(v)))
            .collect();
        return format!("#{{{}}}", fields.join(", "));
    }
    value.to_string()
}

/// An element inside a container: strings quoted.
fn inner(value: &Dynamic) -> String {
    if value.is_string() {
        format!("{:?}", value.clone().into_string().unwrap_or_default())
    } else {
        shallow_display(value)
    }
}

/// Round a float to what `format_float` shows (for numbers labs get back).
pub fn round_float(f: f64) -> f64 {
    format_float(f).parse().unwrap_or(f)
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
        shown(value)
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
        within_depth(function, arg, value)?;
        Ok(value.clone().cast::<Map>())
    } else {
        Err(wrong(function, arg, "a map like #{name: \"Ann\"}", value))
    }
}

/// An array argument.
pub fn arg_array(function: &str, arg: &str, value: &Dynamic) -> LabResult<Array> {
    if value.is_array() {
        within_depth(function, arg, value)?;
        Ok(value.clone().into_array().unwrap_or_default())
    } else {
        Err(wrong(function, arg, "an array", value))
    }
}

/// Equality as a lab author means it: 3 == 3.0, maps and arrays compared by content.
/// `function` names the lab function in the error for a value nested too deep.
pub fn same_value(function: &str, a: &Dynamic, b: &Dynamic) -> LabResult<bool> {
    within_depth(function, "actual", a)?;
    within_depth(function, "expected", b)?;
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
    Ok(norm(to_json(a)) == norm(to_json(b)))
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
    fn floats_are_shown_to_what_is_meaningful() {
        assert_eq!(format_float(1.0163399999999998), "1.016");
        assert_eq!(format_float(3.0), "3.0");
        assert_eq!(format_float(0.41234567), "0.4123");
        assert_eq!(format_float(0.000123456), "0.0001235");
        assert_eq!(format_float(12345.6789), "12345.679");
        assert_eq!(format_float(-2.5), "-2.5");
        assert_eq!(round_float(150.70012345), 150.7);
    }

    #[test]
    fn notes_show_floats_rounded_inside_containers_too() {
        let map: Map = [("p50".into(), Dynamic::from(2.0_f64 / 3.0))]
            .into_iter()
            .collect();
        let shown = |v: Dynamic| display("note", &v).unwrap();
        assert_eq!(shown(Dynamic::from(map)), "#{p50: 0.6667}");
        assert_eq!(shown(Dynamic::from(1.0163399999999998_f64)), "1.016");
        let array: Array = vec![Dynamic::from("a"), Dynamic::from(1_i64)];
        assert_eq!(shown(Dynamic::from(array)), "[\"a\", 1]");
    }

    #[test]
    fn same_value_treats_int_and_float_alike() {
        let same = |a: Dynamic, b: Dynamic| same_value("assert_eq", &a, &b).unwrap();
        assert!(same(Dynamic::from(3_i64), Dynamic::from(3.0_f64)));
        assert!(!same(Dynamic::from(3_i64), Dynamic::from("3")));
    }

    /// `[[...[]...]]`, `levels` arrays deep.
    fn nested(levels: usize) -> Dynamic {
        (0..levels).fold(Dynamic::UNIT, |inner, _| Dynamic::from_array(vec![inner]))
    }

    #[test]
    fn values_up_to_the_depth_limit_are_taken_and_deeper_ones_refused_naming_the_limit() {
        assert!(arg_array("redis", "args", &nested(MAX_DEPTH)).is_ok());
        let err = arg_array("redis", "args", &nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(
            err.to_string()
                .contains("redis: argument `args` nests arrays or maps more than 128 levels deep"),
            "{err}"
        );
        assert!(display("note", &nested(MAX_DEPTH + 1)).is_err());
        assert!(same_value("assert_eq", &nested(2), &nested(MAX_DEPTH + 1)).is_err());
        assert!(shown(&nested(1000)).contains("nested more than 128 levels deep"));
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
