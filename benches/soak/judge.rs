//! The checker. Every id is three registers: whether the row exists, its name and its
//! email. The values the soak writes are unique, so a value names its writer.
//!
//! **The final state.** Each register's final value (from Postgres, after write-behind's
//! flush) must be the value of some write w of that register — a PUT that set the field,
//! a POST, a DELETE, or the row as loaded at the start (a write completed at time 0) —
//! such that no write of that register that was acknowledged (2xx) was invoked after w
//! completed: w is not certainly overwritten. Judging fields apart is what catches a lost
//! partial update: `PUT name=A` and `PUT email=E`, both answered 200, must both be in the
//! final row, whichever ran first.
//!
//! **The answers.** An acknowledged PUT answers with the row after it, so what it did not
//! write is a read: its other field, and (from any PUT or DELETE answer: 200, 204 or 404)
//! whether the row existed. A read must return the value of a write invoked before the
//! read completed that had not certainly been overwritten — by an acknowledged write
//! invoked after it completed and completed before the read was invoked — when the read
//! began (the criterion of DESIGN.md's history checker: no false positives). This sees a
//! lost update even when a later write hides it from the final row.
//!
//! Writes without a definite answer (no answer, timeout, 5xx) may or may not have applied,
//! possibly later than they completed: they are always candidates and never overwrite.
//! Write-behind writes acknowledged after its last flush before the Redis kill may be lost
//! with the queue: those (and only those) are "at risk" and do not overwrite; what agrees
//! only thanks to that is counted as lost with the fault, never as agreeing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;

use crate::workload::{Outcome, Row, Val, Write, WriteKind};

/// The three registers of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Register {
    Existence,
    Name,
    Email,
}

impl Register {
    pub fn as_str(self) -> &'static str {
        match self {
            Register::Existence => "existence",
            Register::Name => "name",
            Register::Email => "email",
        }
    }
}

/// Whether a row exists, printed as the checker says it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Present(bool);

impl Display for Present {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0 {
            "the row exists"
        } else {
            "the row is absent"
        })
    }
}

/// One write of one register.
struct W<T> {
    value: T,
    invoke: u64,
    /// u64::MAX for a write without a definite answer: it may apply at any time.
    complete: u64,
    acked: bool,
    at_risk: bool,
    /// Index into the writes (None: the row as loaded at the start, or its absence).
    write: Option<usize>,
}

impl<T> W<T> {
    /// The row as loaded at the start (or its absence): a write completed at time 0.
    fn start(value: T) -> Self {
        W {
            value,
            invoke: 0,
            complete: 0,
            acked: true,
            at_risk: false,
            write: None,
        }
    }

    /// Write `i` (`x`) of this register.
    fn of(value: T, x: &Write, i: usize, at_risk: bool) -> Self {
        let acked = x.outcome == Outcome::Acked;
        W {
            value,
            invoke: x.invoke_us,
            complete: if acked { x.complete_us } else { u64::MAX },
            acked,
            at_risk: acked && at_risk,
            write: Some(i),
        }
    }
}

/// A value one answer showed for a register it did not write.
struct R<T> {
    value: T,
    /// Index into the writes: the write whose answer it is.
    write: usize,
}

enum Verdict {
    Agree,
    /// Agrees once the at-risk writes (these) are allowed to be lost.
    Lost(Vec<usize>),
    /// Explained by no write that is not certainly overwritten: why.
    Violation(String),
}

/// The final value `fin` of a register against its writers.
fn judge_final<T: PartialEq + Display>(fin: &T, writers: &[W<T>], writes: &[Write]) -> Verdict {
    let last_invoked = |safe_only: bool| {
        writers
            .iter()
            .filter(|w| w.acked && !(safe_only && w.at_risk))
            .map(|w| w.invoke)
            .max()
            .unwrap_or(0)
    };
    let candidates: Vec<&W<T>> = writers.iter().filter(|w| w.value == *fin).collect();
    if candidates.iter().any(|c| c.complete >= last_invoked(false)) {
        return Verdict::Agree;
    }
    if let Some(best) = candidates
        .iter()
        .filter(|c| c.complete >= last_invoked(true))
        .max_by_key(|c| c.complete)
    {
        return Verdict::Lost(
            writers
                .iter()
                .filter(|w| w.acked && w.at_risk && w.invoke > best.complete)
                .filter_map(|w| w.write)
                .collect(),
        );
    }
    let overwriter = writers
        .iter()
        .filter(|w| w.acked)
        .max_by_key(|w| w.invoke)
        .map(|w| describe(w.write, writes))
        .unwrap_or_default();
    Verdict::Violation(match candidates.iter().max_by_key(|c| c.complete) {
        None => format!("{fin}, which no write of this id wrote"),
        Some(c) => format!(
            "{fin}, written by {}, but {overwriter} was invoked after that completed",
            describe(c.write, writes)
        ),
    })
}

/// A value an answer showed (`read`) against the register's writers.
fn judge_read<T: PartialEq + Display>(read: &R<T>, writers: &[W<T>], writes: &[Write]) -> Verdict {
    let r = &writes[read.write];
    let sources: Vec<&W<T>> = writers
        .iter()
        .filter(|w| w.value == read.value && w.invoke < r.complete_us)
        .collect();
    // The acknowledged write that certainly replaced `s` before the read began, if any.
    let replaced = |s: &W<T>, safe_only: bool| {
        writers
            .iter()
            .filter(|w| w.acked && !(safe_only && w.at_risk))
            .filter(|w| w.invoke > s.complete && w.complete < r.invoke_us)
            .max_by_key(|w| w.complete)
    };
    if sources.iter().any(|s| replaced(s, false).is_none()) {
        return Verdict::Agree;
    }
    if let Some(s) = sources.iter().find(|s| replaced(s, true).is_none()) {
        return Verdict::Lost(
            writers
                .iter()
                .filter(|w| w.acked && w.at_risk)
                .filter(|w| w.invoke > s.complete && w.complete < r.invoke_us)
                .filter_map(|w| w.write)
                .collect(),
        );
    }
    let what = format!(
        "the answer to {} ({}, invoked {}) shows {}",
        r.asserts(),
        status_text(r.status),
        secs(r.invoke_us),
        read.value
    );
    Verdict::Violation(match sources.iter().max_by_key(|s| s.complete) {
        None => format!("{what}, which no write invoked before it wrote"),
        Some(s) => format!(
            "{what}, written by {}, but {} had replaced it before",
            describe(s.write, writes),
            replaced(s, true).map_or(String::new(), |w| describe(w.write, writes))
        ),
    })
}

fn describe(write: Option<usize>, writes: &[Write]) -> String {
    match write {
        None => "the row as loaded at the start".to_string(),
        Some(i) => {
            let x = &writes[i];
            format!(
                "{} (invoked {}, answered {} at {})",
                x.asserts(),
                secs(x.invoke_us),
                status_text(x.status),
                secs(x.complete_us)
            )
        }
    }
}

pub fn secs(us: u64) -> String {
    format!("{:.3} s", us as f64 / 1e6)
}

pub fn status_text(status: u16) -> String {
    if status == 0 {
        "nothing".to_string()
    } else {
        status.to_string()
    }
}

/// An id whose final row, or an answer about it, no write explains.
pub struct Violation {
    pub id: i32,
    pub strategy: Option<u8>,
    pub final_row: Option<Row>,
    /// Each register whose final value disagrees, and why.
    pub final_wrong: Vec<(Register, String)>,
    /// Each answer that showed a value it could not have seen, and why.
    pub stale_answers: Vec<(Register, String)>,
    /// The id's writes (indices), in invocation order.
    pub writes: Vec<usize>,
}

/// The checker's findings.
pub struct Judgement {
    pub ids: usize,
    /// Ids whose final row and answers agree with their writes.
    pub agree: usize,
    /// Ids that agree only with at-risk writes lost.
    pub lost_ids: usize,
    /// The at-risk writes that were lost (indices).
    pub lost_writes: Vec<usize>,
    pub violations: Vec<Violation>,
    /// Ids whose final row agrees, but an answer does not.
    pub answer_only_violations: usize,
    /// Values read from answers and judged.
    pub reads: usize,
    pub stale_reads: usize,
    /// Rows created by a POST that had no definite answer (found by their unique name).
    pub indeterminate_posts_applied: usize,
    /// Acknowledged writes whose answer did not carry what they wrote.
    pub bad_answers: Vec<String>,
}

/// Judge the final `rows` against the `initial` rows and every write.
pub fn judge(
    initial: &HashMap<i32, Row>,
    owner: &HashMap<i32, u8>,
    writes: &[Write],
    at_risk: &dyn Fn(&Write) -> bool,
    rows: &HashMap<i32, Row>,
) -> Judgement {
    // Every write with an id, grouped by id, in invocation order.
    let mut order: Vec<u32> = (0..writes.len() as u32)
        .filter(|&i| writes[i as usize].id != 0)
        .collect();
    order.sort_by_key(|&i| (writes[i as usize].id, writes[i as usize].invoke_us));
    let mut by_id: BTreeMap<i32, &[u32]> = BTreeMap::new();
    for group in order.chunk_by(|&a, &b| writes[a as usize].id == writes[b as usize].id) {
        by_id.insert(writes[group[0] as usize].id, group);
    }
    let mut ids: BTreeSet<i32> = initial.keys().copied().collect();
    ids.extend(by_id.keys());
    ids.extend(rows.keys());

    // A POST without a definite answer may have created a row whose id nobody knows:
    // such a row is recognised by its unique name and email.
    let indeterminate_posts: HashMap<Row, usize> = writes
        .iter()
        .enumerate()
        .filter(|(_, w)| w.kind == WriteKind::Post && w.outcome == Outcome::Indeterminate)
        .map(|(i, w)| ((w.name, w.email), i))
        .collect();

    let mut j = Judgement {
        ids: ids.len(),
        agree: 0,
        lost_ids: 0,
        lost_writes: Vec::new(),
        violations: Vec::new(),
        answer_only_violations: 0,
        reads: 0,
        stale_reads: 0,
        indeterminate_posts_applied: 0,
        bad_answers: Vec::new(),
    };
    for id in ids {
        let list: Vec<usize> = by_id
            .get(&id)
            .map_or(Vec::new(), |g| g.iter().map(|&i| i as usize).collect());
        let fin = rows.get(&id).copied();
        if list.is_empty() && !initial.contains_key(&id) {
            let row = fin.expect("an id nobody wrote and nobody loaded is a final row");
            if indeterminate_posts.contains_key(&row) {
                j.indeterminate_posts_applied += 1;
                j.agree += 1;
            } else {
                j.violations.push(Violation {
                    id,
                    strategy: None,
                    final_row: fin,
                    final_wrong: vec![(
                        Register::Existence,
                        "a row no acknowledged or pending POST created".to_string(),
                    )],
                    stale_answers: Vec::new(),
                    writes: Vec::new(),
                });
            }
            continue;
        }
        let mut exists: Vec<W<Present>> = Vec::new();
        let mut names: Vec<W<Val>> = Vec::new();
        let mut emails: Vec<W<Val>> = Vec::new();
        let (mut read_exists, mut read_names, mut read_emails) =
            (Vec::new(), Vec::new(), Vec::new());
        match initial.get(&id) {
            Some(&(name, email)) => {
                exists.push(W::start(Present(true)));
                names.push(W::start(name));
                emails.push(W::start(email));
            }
            None => exists.push(W::start(Present(false))),
        }
        let mut strategy = owner.get(&id).copied();
        for &i in &list {
            let w = &writes[i];
            strategy.get_or_insert(w.strategy);
            // What the answer showed about what this write did not set.
            match (w.kind, w.outcome) {
                (WriteKind::Put, Outcome::Acked) => {
                    read_exists.push(R {
                        value: Present(true),
                        write: i,
                    });
                    if let Some((name, email)) = w.row_answer() {
                        if !w.name.is_some() {
                            read_names.push(R {
                                value: name,
                                write: i,
                            });
                        }
                        if !w.email.is_some() {
                            read_emails.push(R {
                                value: email,
                                write: i,
                            });
                        }
                    }
                }
                (WriteKind::Put | WriteKind::Delete, Outcome::NotFound) => {
                    read_exists.push(R {
                        value: Present(false),
                        write: i,
                    });
                }
                _ => {}
            }
            if w.outcome == Outcome::NotFound {
                continue;
            }
            if w.outcome == Outcome::Acked {
                check_answer(&mut j.bad_answers, w);
            }
            let risk = at_risk(w);
            match w.kind {
                WriteKind::Delete => exists.push(W::of(Present(false), w, i, risk)),
                WriteKind::Post => exists.push(W::of(Present(true), w, i, risk)),
                WriteKind::Put => {}
            }
            if w.name.is_some() {
                names.push(W::of(w.name, w, i, risk));
            }
            if w.email.is_some() {
                emails.push(W::of(w.email, w, i, risk));
            }
        }

        let mut finals = vec![(
            Register::Existence,
            judge_final(&Present(fin.is_some()), &exists, writes),
        )];
        if let Some((name, email)) = fin {
            finals.push((Register::Name, judge_final(&name, &names, writes)));
            finals.push((Register::Email, judge_final(&email, &emails, writes)));
        }
        let mut answers = Vec::new();
        answers.extend(
            read_exists
                .iter()
                .map(|r| (Register::Existence, judge_read(r, &exists, writes))),
        );
        answers.extend(
            read_names
                .iter()
                .map(|r| (Register::Name, judge_read(r, &names, writes))),
        );
        answers.extend(
            read_emails
                .iter()
                .map(|r| (Register::Email, judge_read(r, &emails, writes))),
        );
        j.reads += answers.len();

        let mut lost = BTreeSet::new();
        let mut sort = |verdicts: Vec<(Register, Verdict)>| {
            let mut wrong = Vec::new();
            for (register, v) in verdicts {
                match v {
                    Verdict::Agree => {}
                    Verdict::Lost(l) => lost.extend(l),
                    Verdict::Violation(why) => wrong.push((register, why)),
                }
            }
            wrong
        };
        let final_wrong = sort(finals);
        let stale_answers = sort(answers);
        j.stale_reads += stale_answers.len();
        if !final_wrong.is_empty() || !stale_answers.is_empty() {
            if final_wrong.is_empty() {
                j.answer_only_violations += 1;
            }
            j.violations.push(Violation {
                id,
                strategy,
                final_row: fin,
                final_wrong,
                stale_answers,
                writes: list,
            });
        } else if !lost.is_empty() {
            j.lost_ids += 1;
            j.lost_writes.extend(lost);
        } else {
            j.agree += 1;
        }
    }
    j.lost_writes.sort_unstable();
    j.lost_writes.dedup();
    j
}

/// An acknowledged PUT or POST answers with the row after it: it must carry what it wrote.
fn check_answer(bad: &mut Vec<String>, w: &Write) {
    if w.kind == WriteKind::Delete {
        return;
    }
    let Some((got_name, got_email)) = w.row_answer() else {
        bad.push(format!(
            "id {}: {} answered {} without a row",
            w.id,
            w.asserts(),
            w.status
        ));
        return;
    };
    let name_ok = !w.name.is_some() || w.name == got_name;
    let email_ok = !w.email.is_some() || w.email == got_email;
    if !(name_ok && email_ok) {
        bad.push(format!(
            "id {}: {} answered {} with name={got_name} email={got_email}",
            w.id,
            w.asserts(),
            w.status
        ));
    }
}
