//! What a lab concludes: checks that are recorded and go on, asserts that stop the lab,
//! and notes, tables and charts for the report — all kept in the order they happened.

use rhai::{Array, Dynamic, Map, NativeCallContext};

use super::{def, Registry};
use crate::lab::context::{self, Halt};
use crate::lab::convert::{
    arg_array, arg_bool, arg_map, arg_num, arg_str, lab_error, same_value, shown, to_json,
    LabResult,
};
use crate::report::{ChartSpec, Event};

pub fn register(r: &mut Registry) {
    def!(
        r,
        "checks",
        "check(name: string, condition: bool) -> bool",
        "Record a named check (✓/✗ in the report) and go on; returns the condition.",
        |call: NativeCallContext, name: Dynamic, condition: Dynamic| -> LabResult<bool> {
            let name = arg_str("check", "name", &name)?;
            let pass = arg_bool("check", "condition", &condition)?;
            let line = call.call_position().line();
            context::with(|ctx| {
                ctx.add(Event::Check {
                    name,
                    pass,
                    line,
                    measured: None,
                });
                Ok(pass)
            })
        }
    );
    def!(
        r,
        "checks",
        "assert(condition: bool, message: string)",
        "Stop the lab (it fails) unless condition is true.",
        |condition: Dynamic, message: Dynamic| -> LabResult<()> {
            let pass = arg_bool("assert", "condition", &condition)?;
            if pass {
                return Ok(());
            }
            let message = arg_str("assert", "message", &message)?;
            context::with(|ctx| Err(ctx.halt_with(Halt::Assert(message))))
        }
    );
    def!(r, "checks", "assert_eq(actual: any, expected: any, message: string)",
        "Stop the lab (it fails) unless actual equals expected (3 == 3.0; maps and arrays by content).",
        |actual: Dynamic, expected: Dynamic, message: Dynamic| -> LabResult<()> {
            if same_value("assert_eq", &actual, &expected)? {
                return Ok(());
            }
            let message = arg_str("assert_eq", "message", &message)?;
            let (expected, actual) = (shown(&expected), shown(&actual));
            context::with(|ctx| {
                Err(ctx.halt_with(Halt::Assert(format!("{message}: expected {expected}, got {actual}"))))
            })
        });
    def!(
        r,
        "checks",
        "note(text: any)",
        "Add an observation to the report (numbers, tables, anything worth reading).",
        |text: Dynamic| -> LabResult<()> {
            let text = crate::lab::convert::display("note", &text)?;
            context::with(|ctx| {
                ctx.add(Event::Note { text });
                Ok(())
            })
        }
    );
    def!(r, "checks", "table(title: string, rows: array)",
        "A table in the report: rows an array of arrays whose first row names the columns, or an array of maps (columns in key order).",
        |title: Dynamic, rows: Dynamic| -> LabResult<()> {
            let title = arg_str("table", "title", &title)?;
            let rows = arg_array("table", "rows", &rows)?;
            let (columns, rows) = table_rows(None, rows)?;
            context::with(|ctx| {
                ctx.add(Event::Table { title, columns, rows });
                Ok(())
            })
        });
    def!(
        r,
        "checks",
        "table(title: string, columns: array, rows: array)",
        "A table with its columns in this order; rows are arrays, or maps read by column name.",
        |title: Dynamic, columns: Dynamic, rows: Dynamic| -> LabResult<()> {
            let title = arg_str("table", "title", &title)?;
            let columns = arg_array("table", "columns", &columns)?
                .iter()
                .map(|c| arg_str("table", "columns[]", c))
                .collect::<LabResult<Vec<_>>>()?;
            let rows = arg_array("table", "rows", &rows)?;
            let (columns, rows) = table_rows(Some(columns), rows)?;
            context::with(|ctx| {
                ctx.add(Event::Table {
                    title,
                    columns,
                    rows,
                });
                Ok(())
            })
        }
    );
    def!(r, "checks", "chart(title: string, opts: map)",
        "A chart in the HTML report: opts x and y (axis labels), series (name → array of [x, y]), kind (\"line\" or \"bar\"), categories (names of x = 0, 1, ...).",
        |title: Dynamic, opts: Dynamic| -> LabResult<()> {
            let title = arg_str("chart", "title", &title)?;
            let opts = arg_map("chart", "opts", &opts)?;
            let chart = chart_spec(title, &opts)?;
            context::with(|ctx| {
                ctx.add(Event::Chart(chart));
                Ok(())
            })
        });
}

/// Columns and rows of a table, from arrays (first row = header unless `columns` is
/// given) or maps.
fn table_rows(
    columns: Option<Vec<String>>,
    rows: Array,
) -> LabResult<(Vec<String>, Vec<Vec<serde_json::Value>>)> {
    let mut rows = rows.into_iter();
    let first = rows.clone().next();
    let columns = match (columns, &first) {
        (Some(columns), _) => columns,
        (None, Some(first)) if first.is_map() => first
            .clone()
            .cast::<Map>()
            .keys()
            .map(|k| k.to_string())
            .collect(),
        (None, Some(first)) => {
            let header = arg_array("table", "rows[0]", first)?;
            rows.next();
            header.iter().map(|c| c.to_string()).collect()
        }
        (None, None) => return Err(lab_error("table: `rows` is empty")),
    };
    let body = rows
        .map(|row| {
            if row.is_map() {
                let map = row.cast::<Map>();
                Ok(columns
                    .iter()
                    .map(|c| map.get(c.as_str()).map_or(serde_json::Value::Null, to_json))
                    .collect())
            } else {
                let cells = arg_array("table", "rows[]", &row)?;
                Ok(cells.iter().map(to_json).collect())
            }
        })
        .collect::<LabResult<Vec<_>>>()?;
    Ok((columns, body))
}

/// A chart from `chart()`'s options.
fn chart_spec(title: String, opts: &Map) -> LabResult<ChartSpec> {
    const KNOWN: [&str; 5] = ["x", "y", "series", "kind", "categories"];
    if let Some(unknown) = opts.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(lab_error(format!(
            "chart: unknown option `{unknown}`; known: {}",
            KNOWN.join(", ")
        )));
    }
    let text = |key: &str| -> LabResult<String> {
        opts.get(key).map_or(Ok(String::new()), |v| {
            arg_str("chart", &format!("opts.{key}"), v)
        })
    };
    let kind = match text("kind")?.as_str() {
        "" | "line" => "line",
        "bar" => "bar",
        other => {
            return Err(lab_error(format!(
                "chart: `kind` must be \"line\" or \"bar\", got {other:?}"
            )))
        }
    };
    let series_map = opts
        .get("series")
        .ok_or_else(|| lab_error("chart: give `series`, a map of name → array of [x, y]"))?;
    let series_map = arg_map("chart", "opts.series", series_map)?;
    let mut series = Vec::new();
    for (name, points) in &series_map {
        let points = arg_array("chart", &format!("opts.series.{name}"), points)?
            .iter()
            .map(|p| {
                let pair = arg_array("chart", &format!("opts.series.{name}[]"), p)?;
                match pair.as_slice() {
                    [x, y] => Ok((arg_num("chart", "x", x)?, arg_num("chart", "y", y)?)),
                    _ => Err(lab_error(format!(
                        "chart: each point of series {name:?} must be [x, y]"
                    ))),
                }
            })
            .collect::<LabResult<Vec<_>>>()?;
        series.push((name.to_string(), points));
    }
    let categories = match opts.get("categories") {
        Some(c) => arg_array("chart", "opts.categories", c)?
            .iter()
            .map(|v| v.to_string())
            .collect(),
        None => Vec::new(),
    };
    Ok(ChartSpec {
        title,
        x: text("x")?,
        y: text("y")?,
        kind: kind.to_string(),
        series,
        categories,
    })
}
