//! Turning a Rhai error into the one line a lab author needs: where (`file:line:column`),
//! what went wrong, and what to do — the nearest lab function for a typo, the fields a
//! map has for a misspelt field, the flag that lifts a limit.

use rhai::{EvalAltResult, Position};
use std::collections::HashMap;

use super::api::FnDoc;
use super::Limits;

/// What is known about the lab that failed, to explain its error.
pub struct Known<'a> {
    pub docs: &'a [FnDoc],
    /// The fields of the maps lab functions last returned, by function.
    pub shapes: &'a HashMap<String, Vec<String>>,
    pub source: &'a str,
    pub limits: &'a Limits,
}

/// What kind of end an error is.
pub enum Kind {
    /// `on_progress` stopped the lab; the token says why.
    Terminated(String),
    /// A limit was reached (operations, sizes, depth).
    Limit(String),
    /// A script error.
    Error(String),
}

pub struct Explained {
    pub pos: Position,
    pub kind: Kind,
}

/// Explain `err` using what is `known` of the lab.
pub fn explain(err: EvalAltResult, known: &Known) -> Explained {
    let pos = err.position();
    let kind = match err {
        EvalAltResult::ErrorInFunctionCall(name, _, inner, _) => {
            let inner = explain(*inner, known);
            // Errors inside a script-defined function point into it: prefer that spot.
            let pos = if inner.pos.is_none() { pos } else { inner.pos };
            let kind = match inner.kind {
                Kind::Error(m) => Kind::Error(format!("in {name}: {m}")),
                other => other,
            };
            return Explained { pos, kind };
        }
        EvalAltResult::ErrorInModule(name, inner, _) => {
            let inner = explain(*inner, known);
            let kind = match inner.kind {
                Kind::Error(m) => Kind::Error(format!("in module {name:?}: {m}")),
                other => other,
            };
            return Explained { pos, kind };
        }
        EvalAltResult::ErrorTerminated(token, _) => Kind::Terminated(token.to_string()),
        EvalAltResult::ErrorTooManyOperations(_) => Kind::Limit(format!(
            "the lab ran more than {} operations (--max-operations {}); raise it if this is not a runaway loop",
            known.limits.max_operations, known.limits.max_operations
        )),
        EvalAltResult::ErrorDataTooLarge(what, _) => Kind::Limit(format!(
            "{what} too large: a lab's strings may hold 16 MiB, its arrays 1,000,000 items, its maps 100,000 fields"
        )),
        EvalAltResult::ErrorStackOverflow(_) => {
            Kind::Limit("calls nested more than 64 deep (a runaway recursion?)".to_string())
        }
        EvalAltResult::ErrorFunctionNotFound(signature, _) => {
            Kind::Error(unknown_function(&signature, known))
        }
        EvalAltResult::ErrorPropertyNotFound(field, _) => {
            Kind::Error(missing_field(&field, pos, known))
        }
        EvalAltResult::ErrorMismatchDataType(wanted, got, _)
            if wanted.contains("string") && (got == "i64" || got.contains("int")) =>
        {
            Kind::Error(format!(
                "a map's keys are strings: index it with a string, like `status[\"200\"]` (or `map[n.to_string()]`), not the {got} {}",
                index_at(known.source, pos).unwrap_or_default()
            ))
        }
        // `throw` can raise any value: one nested too deep is not printed by recursion.
        EvalAltResult::ErrorRuntime(value, _) => Kind::Error(super::convert::shown(&value)),
        other => Kind::Error(without_position(&other.to_string())),
    };
    Explained { pos, kind }
}

/// Rhai's own messages end with " (line L, position C)": the report puts the position
/// in front once.
fn without_position(message: &str) -> String {
    match message.rfind(" (line ") {
        Some(i) if message.ends_with(')') && message[i..].contains(", position ") => {
            message[..i].to_string()
        }
        _ => message.to_string(),
    }
}

/// `file:line:column: message`.
pub fn at(file: &str, pos: Position, message: &str) -> String {
    match (pos.line(), pos.position()) {
        (Some(line), Some(column)) => format!("{file}:{line}:{column}: {message}"),
        (Some(line), None) => format!("{file}:{line}: {message}"),
        _ => format!("{file}: {message}"),
    }
}

/// Rhai's signature of a call (`http_gett (&str | ImmutableString | String, i64)`) in the
/// lab's own words (`http_gett(string, int)`).
fn as_lab_call(signature: &str) -> String {
    let Some((name, args)) = signature.split_once('(') else {
        return signature.to_string();
    };
    let args = args.trim_end_matches(')');
    let kinds: Vec<&str> = args
        .split(", ")
        .filter(|a| !a.trim().is_empty())
        .map(|arg| {
            let arg = arg.trim();
            if arg.contains("String") || arg.contains("str") {
                "string"
            } else if arg.contains("i64") || arg.contains("INT") {
                "int"
            } else if arg.contains("f64") || arg.contains("FLOAT") {
                "float"
            } else if arg.contains("bool") {
                "bool"
            } else if arg.contains("Map") {
                "map"
            } else if arg.contains("Array") || arg.contains("Vec<") {
                "array"
            } else {
                arg
            }
        })
        .collect();
    format!("{}({})", name.trim(), kinds.join(", "))
}

/// "unknown function http_gett(string); did you mean http_get(path: string) -> map?"
fn unknown_function(rhai_signature: &str, known: &Known) -> String {
    let signature = &as_lab_call(rhai_signature);
    let name = signature
        .split(['(', ' '])
        .next()
        .unwrap_or(signature)
        .trim();
    let same_name: Vec<&str> = known
        .docs
        .iter()
        .filter(|d| d.name() == name)
        .map(|d| d.signature)
        .collect();
    if !same_name.is_empty() {
        return format!(
            "{name} cannot be called as {signature}; it takes: {}",
            same_name.join(" | ")
        );
    }
    let nearest = known
        .docs
        .iter()
        .map(|d| (edit_distance(name, d.name()), d))
        .filter(|(d, doc)| *d <= (doc.name().len() / 3).max(2))
        .min_by_key(|(d, _)| *d);
    match nearest {
        Some((_, doc)) => format!(
            "unknown function {signature}; did you mean {}? ({})",
            doc.signature, doc.doc
        ),
        None => format!(
            "unknown function {signature}; `cachelab api` lists every function a lab can call"
        ),
    }
}

/// "r.stauts: the map has no field `stauts` (did you mean `status`?); its fields: ..."
/// A nested map is named by its path: `r.consistency.stale` lists the fields of the map
/// `load().consistency`, `r.timeline[0].x` those of a `load().timeline[]` entry.
fn missing_field(field: &str, pos: Position, known: &Known) -> String {
    let receiver = receiver_at(known.source, pos, field);
    let from = receiver.as_deref().and_then(|path| {
        let root_len = path.find(['.', '[']).unwrap_or(path.len());
        let (root, rest) = path.split_at(root_len);
        let function = assigned_from(known.source, pos, root)?;
        let key = format!("{function}{}", without_indices(rest));
        known.shapes.get_key_value(&key)
    });
    // The map it came from, else the returned map that has the nearest field.
    let shape = from.or_else(|| {
        known
            .shapes
            .iter()
            .filter(|(_, fields)| fields.iter().any(|f| edit_distance(f, field) <= 2))
            .min_by_key(|(_, fields)| {
                fields
                    .iter()
                    .map(|f| edit_distance(f, field))
                    .min()
                    .unwrap_or(usize::MAX)
            })
    });
    let what = match &receiver {
        Some(r) => format!("{r}.{field}"),
        None => format!(".{field}"),
    };
    match shape {
        Some((function, fields)) => {
            let hint = fields
                .iter()
                .map(|f| (edit_distance(f, field), f))
                .filter(|(d, _)| *d <= 2)
                .min_by_key(|(d, _)| *d)
                .map(|(_, f)| format!(" (did you mean `{f}`?)"))
                .unwrap_or_default();
            let named = match function.split_once(['.']) {
                Some((f, rest)) => format!("the map {f}().{rest}"),
                None => format!("the map {function}() returns"),
            };
            format!(
                "{what}: no such field{hint}; {named} has: {}",
                fields.join(", ")
            )
        }
        None => format!(
            "{what}: the map has no field `{field}`; test an optional field with `\"{field}\" in map` before reading it"
        ),
    }
}

/// `.timeline[0].x` → `.timeline[].x`: any index of an array reads the same shape.
fn without_indices(path: &str) -> String {
    let mut out = String::new();
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

/// The index expression at `pos` (`[200]`), for an error about it.
fn index_at(source: &str, pos: Position) -> Option<String> {
    let line = source.lines().nth(pos.line()? - 1)?;
    let from = pos.position()?.saturating_sub(1);
    let rest: String = line.chars().skip(from).collect();
    let start = rest.find('[')?;
    let end = rest[start..].find(']')? + start;
    Some(rest[start..=end].to_string())
}

/// The variable a property access at `pos` reads from (`r` in `r.stauts`).
fn receiver_at(source: &str, pos: Position, field: &str) -> Option<String> {
    let line = source.lines().nth(pos.line()? - 1)?;
    let column = pos.position()?;
    let chars: Vec<char> = line.chars().collect();
    // The field starts at `column` (1-based); the receiver ends before the dot ahead of it.
    let start = column.checked_sub(1)?;
    let text: String = chars.get(start..)?.iter().collect();
    if !text.starts_with(field) {
        return None;
    }
    let before: String = chars.get(..start)?.iter().collect();
    let before = before.strip_suffix('.')?;
    let root: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!root.is_empty() && !root.starts_with(['.', '['])).then_some(root)
}

/// The lab function whose result `variable` was last assigned before `pos`.
fn assigned_from(source: &str, pos: Position, variable: &str) -> Option<String> {
    let last_line = pos.line()?;
    let lines: Vec<&str> = source.lines().take(last_line).collect();
    lines.into_iter().rev().find_map(|line| {
        let rest = line
            .trim_start()
            .strip_prefix("let ")
            .unwrap_or(line.trim_start());
        let rest = rest
            .strip_prefix(variable)?
            .trim_start()
            .strip_prefix('=')?;
        let call: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        (!call.is_empty() && rest.trim_start()[call.len()..].starts_with('(')).then_some(call)
    })
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rhai_signatures_read_in_lab_types() {
        assert_eq!(
            as_lab_call("http_gett (&str | ImmutableString | String)"),
            "http_gett(string)"
        );
        assert_eq!(as_lab_call("f (i64, f64, bool)"), "f(int, float, bool)");
        assert_eq!(as_lab_call("g ()"), "g()");
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("stauts", "status"), 2);
        assert_eq!(edit_distance("http_gett", "http_get"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn the_receiver_and_its_source_function_are_found_in_the_source() {
        let src = "let r = http_get(\"/users/1\");\ncheck(\"x\", r.stauts == 200);\n";
        let pos = Position::new(2, 14);
        assert_eq!(receiver_at(src, pos, "stauts").as_deref(), Some("r"));
        assert_eq!(assigned_from(src, pos, "r").as_deref(), Some("http_get"));
    }
}
