//! Write-behind's flush: a batch of queued writes applied to Postgres in one transaction.
//! Each kind of write keeps its meaning: a queued POST inserts (never over an existing
//! row), a queued PUT updates (never recreating a row deleted meanwhile), a queued DELETE
//! deletes. When Postgres refuses the batch, it is applied again write by write, each in a
//! savepoint, so the writes Postgres refuses are reported with its message and the rest
//! land: one bad write never holds the others back.

use std::collections::HashSet;

use super::{DbError, Store, User};

/// A write that write-behind's flusher applies in a batch.
#[derive(Debug, Clone)]
pub enum BatchWrite {
    /// Insert the row (a queued POST).
    Insert(User),
    /// Replace the fields of the existing row (a queued PUT).
    Update(User),
    Delete(i32),
}

impl BatchWrite {
    pub fn id(&self) -> i32 {
        match self {
            BatchWrite::Insert(u) | BatchWrite::Update(u) => u.id,
            BatchWrite::Delete(id) => *id,
        }
    }
}

/// What a batch did: how many writes landed, and the ones Postgres refused with why.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub applied: usize,
    pub rejected: Vec<(i32, String)>,
}

/// The batch split by kind, as the statements take them.
#[derive(Default)]
struct Split {
    inserts: Vec<User>,
    updates: Vec<User>,
    deletes: Vec<i32>,
}

const DELETE: &str = "DELETE FROM users WHERE id = ANY($1)";
const UPDATE: &str =
    "UPDATE users u SET name = r.name, email = r.email, updated_at = r.updated_at \
                      FROM json_populate_recordset(NULL::users, $1::json) r \
                      WHERE u.id = r.id RETURNING u.id";
const INSERT: &str = "INSERT INTO users (id, name, email, updated_at) \
                      SELECT id, name, email, updated_at \
                      FROM json_populate_recordset(NULL::users, $1::json)";

/// Why a queued update did not land although Postgres accepted the statement.
fn vanished(id: i32) -> String {
    format!(
        "user {id} is no longer in Postgres (deleted meanwhile): the queued update was not applied"
    )
}

impl Store {
    /// Apply `writes` (one per user) in one transaction. `Err` only when Postgres is
    /// unavailable (the batch stays queued and is retried); writes Postgres refuses are
    /// in the outcome's `rejected`, and everything else is applied.
    pub async fn apply_batch(&self, writes: &[BatchWrite]) -> Result<BatchOutcome, DbError> {
        let mut split = Split::default();
        for w in writes {
            match w {
                BatchWrite::Insert(u) => split.inserts.push(u.clone()),
                BatchWrite::Update(u) => split.updates.push(u.clone()),
                BatchWrite::Delete(id) => split.deletes.push(*id),
            }
        }
        match self.apply_together(split).await {
            Err(e) if !e.is_unavailable() => self.apply_one_by_one(writes.to_vec()).await,
            other => other,
        }
    }

    /// The fast path: three statements for the whole batch.
    async fn apply_together(&self, split: Split) -> Result<BatchOutcome, DbError> {
        let updates = json_rows(&split.updates);
        let inserts = json_rows(&split.inserts);
        let wanted: Vec<i32> = split.updates.iter().map(|u| u.id).collect();
        let total = split.inserts.len() + split.updates.len() + split.deletes.len();
        self.call(|client| {
            Box::pin(async move {
                let tx = client.transaction().await?;
                if !split.deletes.is_empty() {
                    tx.execute(DELETE, &[&split.deletes]).await?;
                }
                let mut updated = HashSet::new();
                if !wanted.is_empty() {
                    for row in tx.query(UPDATE, &[&updates]).await? {
                        updated.insert(row.get::<_, i32>(0));
                    }
                }
                if !split.inserts.is_empty() {
                    tx.execute(INSERT, &[&inserts]).await?;
                }
                tx.commit().await?;
                let rejected: Vec<(i32, String)> = wanted
                    .iter()
                    .filter(|id| !updated.contains(id))
                    .map(|&id| (id, vanished(id)))
                    .collect();
                Ok(BatchOutcome {
                    applied: total - rejected.len(),
                    rejected,
                })
            })
        })
        .await
    }

    /// The slow path after a refusal: each write in a savepoint of one transaction.
    async fn apply_one_by_one(&self, writes: Vec<BatchWrite>) -> Result<BatchOutcome, DbError> {
        self.call(|client| {
            Box::pin(async move {
                let mut outcome = BatchOutcome::default();
                let mut tx = client.transaction().await?;
                for w in &writes {
                    let sp = tx.savepoint("write").await?;
                    let done = match w {
                        BatchWrite::Delete(id) => {
                            sp.execute(DELETE, &[&vec![*id]]).await.map(|_| true)
                        }
                        BatchWrite::Update(u) => sp
                            .query(UPDATE, &[&json_rows(std::slice::from_ref(u))])
                            .await
                            .map(|rows| !rows.is_empty()),
                        BatchWrite::Insert(u) => {
                            let row = json_rows(std::slice::from_ref(u));
                            sp.execute(INSERT, &[&row]).await.map(|_| true)
                        }
                    };
                    match done {
                        Ok(true) => {
                            sp.commit().await?;
                            outcome.applied += 1;
                        }
                        Ok(false) => {
                            sp.commit().await?;
                            outcome.rejected.push((w.id(), vanished(w.id())));
                        }
                        Err(e) => {
                            let e = DbError::from(e);
                            if e.is_unavailable() {
                                return Err(e);
                            }
                            sp.rollback().await?;
                            outcome.rejected.push((w.id(), e.to_string()));
                        }
                    }
                }
                tx.commit().await?;
                Ok(outcome)
            })
        })
        .await
    }
}

/// Rows as the JSON array `json_populate_recordset` reads.
fn json_rows(rows: &[User]) -> serde_json::Value {
    serde_json::Value::Array(
        rows.iter()
            .map(|u| serde_json::to_value(u).expect("a user always serialises"))
            .collect(),
    )
}
