//! Looking inside PostgreSQL, bypassing the servers and the cache, on the lab's own
//! session: as a role that may only read and change rows of `users` (managed stack), or
//! read-only on an external database the lab may not reset. `db_get` is bounded like the
//! servers' reads, so a frozen Postgres is a lab error, not a wait until `--timeout`.

use rhai::{Array, Dynamic};

use super::{def, Registry};
use crate::lab::context;
use crate::lab::convert::{arg_array, arg_int, arg_str, from_json, lab_error, to_json, LabResult};

pub fn register(r: &mut Registry) {
    def!(r, "database", "db_get(id: int) -> map",
        "The users row with this id straight from Postgres (#{id, name, email, updated_at}), or ().",
        |id: Dynamic| -> LabResult<Dynamic> {
            let id = arg_int("db_get", "id", &id)?;
            let Ok(id) = i32::try_from(id) else { return Ok(Dynamic::UNIT) };
            context::with(|ctx| {
                let bound = ctx.services.db_timeout;
                let answer = {
                    let mut db = ctx.db.borrow_mut();
                    ctx.block_on(tokio::time::timeout(bound, db.get_user(id)))?
                };
                let Ok(user) = answer else {
                    // The session is stuck behind a server that does not answer: the next
                    // call opens another.
                    ctx.renew_db();
                    return Err(lab_error(format!(
                        "db_get: Postgres did not answer within {} ms (the servers' bound, --db-timeout-ms): is it paused?",
                        bound.as_millis()
                    )));
                };
                let user = user.map_err(|e| lab_error(format!("db_get: {e:#}")))?;
                Ok(user.map_or(Dynamic::UNIT, |u| {
                    let row = crate::lab::convert::to_dynamic(&u);
                    if let Some(map) = row.read_lock::<rhai::Map>() {
                        ctx.remember_shape("db_get", &map);
                    }
                    row
                }))
            })
        });
    def!(
        r,
        "database",
        "db_query(sql: string) -> array",
        "Run one SQL statement; rows come back as an array of maps (empty for statements without rows).",
        |sql: Dynamic| -> LabResult<Array> { query("db_query", &sql, Vec::new()) }
    );
    def!(r, "database", "db_query(sql: string, params: array) -> array",
        "Run SQL with $1, $2, ... bound to params, e.g. db_query(\"SELECT * FROM users WHERE id = $1\", [7]).",
        |sql: Dynamic, params: Dynamic| -> LabResult<Array> {
            let params = arg_array("db_query", "params", &params)?;
            query("db_query", &sql, params)
        });
}

fn query(function: &str, sql: &Dynamic, params: Array) -> LabResult<Array> {
    let sql = arg_str(function, "sql", sql)?;
    let params: Vec<serde_json::Value> = params.iter().map(to_json).collect();
    context::with(|ctx| {
        let mut db = ctx.db.borrow_mut();
        let rows = ctx
            .block_on(db.query_json(&sql, &params))?
            .map_err(|e| lab_error(format!("{function}: {e:#}")))?;
        Ok(rows.iter().map(from_json).collect())
    })
}
