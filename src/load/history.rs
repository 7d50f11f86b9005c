//! The consistency checker behind `load(#{history: true})`: it takes the operations a load
//! run recorded and reports the reads that were certainly stale, and by how long. It is pure
//! (no server, no clock) so its verdict can be tested on hand-made histories and trusted;
//! `write_jepsen` hands the same history to outside checkers (Knossos, Elle, Porcupine).

use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::time::Duration;

/// Whether an operation observed a key or changed it: all the checker needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Read,
    Write,
}

/// One request as the load generator saw it from outside: the checker can only use what a
/// client observes, so times bracket the moment the server actually acted.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// The worker that ran it; a worker runs one operation at a time, as Jepsen's
    /// processes do.
    pub process: u64,
    pub kind: OpKind,
    pub key: u64,
    /// For a write, the value written (`None`: a delete); for a read, the value returned
    /// (`None`: absent, e.g. a 404). Written values are unique per write, which is how a
    /// read is traced back to the write it saw.
    pub value: Option<String>,
    /// When the request was sent, since the run started: the op took effect no earlier.
    pub invoke: Duration,
    /// When its response arrived: the op took effect no later. `None` when no response
    /// came (timeout, lost connection), so a write may take effect at any later moment.
    pub complete: Option<Duration>,
    /// Whether it succeeded. A failed write may still have taken effect (a cache error
    /// after the database commit), so the checker treats it like one without completion.
    pub ok: bool,
}

/// What the checker concluded; `load()` puts it in its result as `consistency`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verdict {
    /// Successful reads judged; a failed read says nothing about the data.
    pub reads: u64,
    /// Reads that returned a value certainly overwritten before they began.
    pub stale_reads: u64,
    /// How long the stalest read's value had been overwritten when the read began.
    pub max_stale_ms: f64,
    /// Reads whose value no recorded write (nor the initial load) wrote: never called
    /// stale, since nothing is known about their age, but a lost or invented value to
    /// look at.
    pub unexplained: u64,
    /// The stalest reads, at most 5, the most stale first: enough to find them in a log.
    pub examples: Vec<StaleRead>,
    /// Every stale read (up to `STALE_POINTS`) as (invoke ms, staleness ms), for the
    /// report's picture of stale reads over time.
    #[serde(skip)]
    pub stale_at: Vec<(f64, f64)>,
}

/// How many stale reads the verdict keeps for the picture.
const STALE_POINTS: usize = 100_000;

/// One stale read with the evidence for it, so a reader can check the claim by hand.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaleRead {
    pub key: u64,
    pub value_read: Option<String>,
    pub read_invoke_ms: f64,
    pub read_complete_ms: f64,
    /// The value of the write that certainly replaced the one read (`None`: a delete).
    pub superseded_by: Option<String>,
    /// When that write completed: from then on the value read was certainly old.
    pub superseded_at_ms: f64,
    /// `read_invoke_ms - superseded_at_ms`.
    pub stale_ms: f64,
}

/// How many stale reads a verdict shows.
const EXAMPLES: usize = 5;

/// The completion of a write whose completion is unknown: it may take effect at any time.
const NEVER: Duration = Duration::MAX;

/// When a write certainly took effect by: its completion if it succeeded, else never.
fn certain_completion(op: &Op) -> Duration {
    match (op.ok, op.complete) {
        (true, Some(complete)) => complete,
        _ => NEVER,
    }
}

/// The completed writes to one key by invoke time, with the earliest-completing write
/// from each position on, so that "the first write certainly after t to complete" is a
/// binary search instead of a scan.
struct Successors<'a> {
    writes: Vec<&'a Op>,
    /// `earliest[i]` indexes the write with the earliest completion among `writes[i..]`.
    earliest: Vec<usize>,
}

impl<'a> Successors<'a> {
    fn new(mut writes: Vec<&'a Op>) -> Self {
        writes.sort_by_key(|w| w.invoke);
        let mut earliest = vec![0; writes.len()];
        for i in (0..writes.len()).rev() {
            earliest[i] = match earliest.get(i + 1) {
                Some(&j) if certain_completion(writes[j]) <= certain_completion(writes[i]) => j,
                _ => i,
            };
        }
        Successors { writes, earliest }
    }

    /// Among the writes invoked after `moment`, the one that completed first.
    fn first_completed_after(&self, moment: Duration) -> Option<&'a Op> {
        let from = self.writes.partition_point(|w| w.invoke <= moment);
        self.earliest.get(from).map(|&j| self.writes[j])
    }
}

/// Judges every successful read of `ops` against the writes of `ops` and `initial` (the
/// values loaded before the run, counted as writes completed at time 0). A read is stale
/// only when a write invoked after its value's write completed had itself completed before
/// the read was invoked, so no interleaving of the overlapping operations explains it.
pub fn check(ops: &[Op], initial: &HashMap<u64, String>) -> Verdict {
    // Each (key, value) to the latest moment its write certainly completed: values are
    // unique per write, but a shared one (several deletes) takes its latest write, the
    // one that makes a read of it least stale.
    let mut written: HashMap<(u64, Option<&str>), Duration> = HashMap::new();
    let mut record = |key, value, completed| {
        let latest = written.entry((key, value)).or_insert(completed);
        *latest = (*latest).max(completed);
    };
    for (&key, value) in initial {
        record(key, Some(value.as_str()), Duration::ZERO);
    }
    let mut completed: HashMap<u64, Vec<&Op>> = HashMap::new();
    for write in ops.iter().filter(|op| op.kind == OpKind::Write) {
        let done = certain_completion(write);
        record(write.key, write.value.as_deref(), done);
        if done != NEVER {
            completed.entry(write.key).or_default().push(write);
        }
    }
    let successors: HashMap<u64, Successors> = completed
        .into_iter()
        .map(|(key, writes)| (key, Successors::new(writes)))
        .collect();

    let mut verdict = Verdict::default();
    let mut max_stale = Duration::ZERO;
    // (staleness, read, superseding write), the stalest first.
    let mut stalest: Vec<(Duration, &Op, &Op)> = Vec::with_capacity(EXAMPLES + 1);
    let reads = ops
        .iter()
        .filter(|op| op.kind == OpKind::Read && op.ok && op.complete.is_some());
    for read in reads {
        verdict.reads += 1;
        let Some(&value_done) = written.get(&(read.key, read.value.as_deref())) else {
            verdict.unexplained += 1;
            continue;
        };
        if value_done == NEVER {
            continue;
        }
        let Some(next) = successors
            .get(&read.key)
            .and_then(|s| s.first_completed_after(value_done))
        else {
            continue;
        };
        let superseded_at = certain_completion(next);
        if superseded_at >= read.invoke {
            continue;
        }
        let stale = read.invoke - superseded_at;
        verdict.stale_reads += 1;
        max_stale = max_stale.max(stale);
        if verdict.stale_at.len() < STALE_POINTS {
            verdict.stale_at.push((ms(read.invoke), ms(stale)));
        }
        if stalest.len() < EXAMPLES || stale > stalest[EXAMPLES - 1].0 {
            stalest.push((stale, read, next));
            stalest.sort_by_key(|&(stale, read, _)| (std::cmp::Reverse(stale), read.invoke));
            stalest.truncate(EXAMPLES);
        }
    }
    verdict.max_stale_ms = ms(max_stale);
    verdict.examples = stalest
        .into_iter()
        .map(|(stale, read, next)| StaleRead {
            key: read.key,
            value_read: read.value.clone(),
            read_invoke_ms: ms(read.invoke),
            read_complete_ms: read.complete.map_or(0.0, ms),
            superseded_by: next.value.clone(),
            superseded_at_ms: ms(certain_completion(next)),
            stale_ms: ms(stale),
        })
        .collect();
    verdict
}

/// Milliseconds rounded to 3 decimals (microseconds): finer digits are clock noise.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// One line of a Jepsen history, fields in Jepsen's order.
#[derive(Serialize)]
struct JepsenLine<'a> {
    process: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    f: &'static str,
    key: u64,
    value: Option<&'a str>,
    time: u64,
}

/// Writes `ops` as a Jepsen history, one JSON object per line in time order: an `invoke`
/// and a completion per op, `ok`, `fail` (a read that failed) or `info` (an outcome
/// unknown, which includes a failed write, since it may have taken effect). As Jepsen
/// does, a process whose op ended in `info` continues under a new process number, since
/// checkers take that op as possibly still running. Times are nanoseconds since the run
/// start; an `info` without a completion time is placed at the end of the history.
pub fn write_jepsen(ops: &[Op], out: impl Write) -> io::Result<()> {
    let end = ops
        .iter()
        .map(|op| op.complete.unwrap_or(op.invoke).max(op.invoke))
        .max()
        .unwrap_or_default();
    let processes = jepsen_processes(ops);
    // (time, rank, op index, line), rank 0 for an invoke, 1 for a completion, 2 for one
    // with no time: at equal times invokes come first, so operations that touch are taken
    // as concurrent, never as ordered, and completions never seen come last.
    let mut lines = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        let outcome = match (op.complete, op.ok, op.kind) {
            (Some(_), true, _) => "ok",
            (Some(_), false, OpKind::Read) => "fail",
            _ => "info",
        };
        let (f, invoke_value, complete_value) = match op.kind {
            OpKind::Read => (
                "read",
                None,
                op.value.as_deref().filter(|_| outcome == "ok"),
            ),
            OpKind::Write => ("write", op.value.as_deref(), op.value.as_deref()),
        };
        let completed_at = op.complete.unwrap_or(end).max(op.invoke);
        let line = |kind, value, time: Duration| JepsenLine {
            process: processes[i],
            kind,
            f,
            key: op.key,
            value,
            time: u64::try_from(time.as_nanos()).unwrap_or(u64::MAX),
        };
        lines.push((op.invoke, 0, i, line("invoke", invoke_value, op.invoke)));
        let rank = if op.complete.is_some() { 1 } else { 2 };
        lines.push((
            completed_at,
            rank,
            i,
            line(outcome, complete_value, completed_at),
        ));
    }
    lines.sort_unstable_by_key(|&(time, rank, i, _)| (time, rank, i));
    let mut out = BufWriter::new(out);
    for (_, _, _, line) in &lines {
        serde_json::to_writer(&mut out, line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Jepsen's process number for each op: the worker's own, until one of its ops ends in
/// `info`; from then on the worker's ops get a fresh number above every worker's.
fn jepsen_processes(ops: &[Op]) -> Vec<u64> {
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| (ops[i].process, ops[i].invoke));
    let mut next_fresh = ops.iter().map(|op| op.process + 1).max().unwrap_or(0);
    let mut current: HashMap<u64, u64> = HashMap::new();
    let mut processes = vec![0; ops.len()];
    for i in order {
        let op = &ops[i];
        let process = current.entry(op.process).or_insert(op.process);
        processes[i] = *process;
        let indeterminate = op.complete.is_none() || (!op.ok && op.kind == OpKind::Write);
        if indeterminate {
            *process = next_fresh;
            next_fresh += 1;
        }
    }
    processes
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn write(key: u64, value: &str, invoke: u64, complete: Option<u64>) -> Op {
        Op {
            process: 0,
            kind: OpKind::Write,
            key,
            value: Some(value.to_string()),
            invoke: at(invoke),
            complete: complete.map(at),
            ok: complete.is_some(),
        }
    }

    fn read(key: u64, value: Option<&str>, invoke: u64, complete: u64) -> Op {
        Op {
            process: 1,
            kind: OpKind::Read,
            key,
            value: value.map(str::to_string),
            invoke: at(invoke),
            complete: Some(at(complete)),
            ok: true,
        }
    }

    fn initial(pairs: &[(u64, &str)]) -> HashMap<u64, String> {
        pairs.iter().map(|&(k, v)| (k, v.to_string())).collect()
    }

    #[test]
    fn a_read_of_an_overwritten_value_is_stale_since_the_overwrite_completed() {
        let ops = [write(1, "Bob", 10, Some(20)), read(1, Some("Ann"), 50, 55)];
        let verdict = check(&ops, &initial(&[(1, "Ann")]));
        assert_eq!(verdict.reads, 1);
        assert_eq!(verdict.stale_reads, 1);
        assert_eq!(verdict.max_stale_ms, 30.0);
        assert_eq!(
            verdict.examples,
            [StaleRead {
                key: 1,
                value_read: Some("Ann".into()),
                read_invoke_ms: 50.0,
                read_complete_ms: 55.0,
                superseded_by: Some("Bob".into()),
                superseded_at_ms: 20.0,
                stale_ms: 30.0,
            }]
        );
    }

    #[test]
    fn staleness_counts_from_the_earliest_completed_overwrite() {
        // Bob was invoked first but Cy completed first: the value was certainly old at 25.
        let ops = [
            write(1, "Bob", 10, Some(40)),
            write(1, "Cy", 15, Some(25)),
            read(1, Some("Ann"), 50, 51),
        ];
        let verdict = check(&ops, &initial(&[(1, "Ann")]));
        assert_eq!(verdict.stale_reads, 1);
        assert_eq!(verdict.max_stale_ms, 25.0);
        assert_eq!(verdict.examples[0].superseded_by.as_deref(), Some("Cy"));
    }

    #[test]
    fn an_overwrite_that_began_before_the_value_was_written_does_not_count() {
        // Bob overlaps Ann's write, so Bob may have landed first and Ann last.
        let ops = [
            write(1, "Ann", 10, Some(30)),
            write(1, "Bob", 20, Some(25)),
            read(1, Some("Ann"), 50, 51),
        ];
        assert_eq!(check(&ops, &HashMap::new()).stale_reads, 0);
    }

    #[test]
    fn a_linearizable_history_with_concurrent_operations_has_no_stale_read() {
        let ops = [
            write(1, "Bob", 10, Some(30)),
            write(1, "Cy", 20, Some(40)),
            read(1, Some("Ann"), 5, 12),   // before or during Bob
            read(1, Some("Bob"), 15, 18),  // Bob in flight
            read(1, Some("Ann"), 25, 35),  // overlaps Bob's completion
            read(1, Some("Bob"), 45, 50),  // Bob and Cy overlapped: either may be last
            read(1, Some("Cy"), 46, 50),   // reads overlapping each other disagree: fine
            read(2, Some("Dee"), 46, 50),  // a key nobody wrote
            write(2, "Eve", 60, Some(70)), // a write after every read
        ];
        let verdict = check(&ops, &initial(&[(1, "Ann"), (2, "Dee")]));
        assert_eq!(verdict.reads, 6);
        assert_eq!(verdict.stale_reads, 0);
        assert_eq!(verdict.unexplained, 0);
        assert!(verdict.examples.is_empty());
    }

    #[test]
    fn the_initial_value_is_fresh_until_a_write_completes_then_stale() {
        let ops = [
            read(1, Some("Ann"), 5, 6),
            write(1, "Bob", 10, Some(20)),
            read(1, Some("Ann"), 15, 16),
            read(1, Some("Ann"), 25, 26),
            read(1, Some("Bob"), 27, 28),
        ];
        let verdict = check(&ops, &initial(&[(1, "Ann")]));
        assert_eq!(verdict.reads, 4);
        assert_eq!(verdict.stale_reads, 1);
        assert_eq!(verdict.examples[0].read_invoke_ms, 25.0);
        assert_eq!(verdict.max_stale_ms, 5.0);
    }

    #[test]
    fn a_read_of_an_indeterminate_write_is_never_stale() {
        let mut failed = write(1, "Bob", 10, Some(12));
        failed.ok = false;
        let ops = [
            write(1, "Xi", 5, None),
            failed,
            write(1, "Cy", 30, Some(40)),
            read(1, Some("Xi"), 100, 101),
            read(1, Some("Bob"), 100, 101),
        ];
        let verdict = check(&ops, &initial(&[(1, "Ann")]));
        assert_eq!(verdict.reads, 2);
        assert_eq!(verdict.stale_reads, 0);
        assert_eq!(verdict.unexplained, 0);
    }

    #[test]
    fn an_indeterminate_write_never_makes_a_read_stale() {
        let mut failed = write(1, "Bob", 10, Some(12));
        failed.ok = false;
        let ops = [
            write(1, "Xi", 5, None),
            failed,
            read(1, Some("Ann"), 100, 101),
        ];
        let verdict = check(&ops, &initial(&[(1, "Ann")]));
        assert_eq!(verdict.stale_reads, 0);
    }

    #[test]
    fn values_no_write_explains_are_counted_and_never_stale() {
        let mut failed_read = read(1, Some("Zed"), 30, 31);
        failed_read.ok = false;
        let ops = [
            write(1, "Bob", 10, Some(20)),
            read(1, Some("Zed"), 30, 31),
            read(1, None, 30, 31),
            read(7, Some("Ann"), 30, 31), // Ann is key 1's, not key 7's
            failed_read,
        ];
        let verdict = check(&ops, &initial(&[(1, "Ann")]));
        assert_eq!(verdict.reads, 3, "a failed read is not a read");
        assert_eq!(verdict.unexplained, 3);
        assert_eq!(verdict.stale_reads, 0);
    }

    #[test]
    fn an_absent_read_matches_a_delete_and_is_stale_once_it_is_overwritten() {
        let delete = Op {
            value: None,
            ..write(1, "", 10, Some(20))
        };
        let ops = [
            delete,
            read(1, None, 25, 26),
            write(1, "Bob", 30, Some(40)),
            read(1, None, 45, 46),
        ];
        let verdict = check(&ops, &initial(&[(1, "Ann")]));
        assert_eq!(verdict.unexplained, 0);
        assert_eq!(verdict.stale_reads, 1);
        assert_eq!(verdict.examples[0].value_read, None);
        assert_eq!(verdict.max_stale_ms, 5.0);
    }

    #[test]
    fn examples_show_the_five_stalest_reads_stalest_first() {
        let mut ops = vec![write(1, "Bob", 10, Some(20))];
        let staleness = [3, 40, 7, 12, 1, 33, 25, 9];
        ops.extend(
            staleness
                .iter()
                .map(|s| read(1, Some("Ann"), 20 + s, 21 + s)),
        );
        let verdict = check(&ops, &initial(&[(1, "Ann")]));
        assert_eq!(verdict.stale_reads, 8);
        assert_eq!(verdict.max_stale_ms, 40.0);
        let shown: Vec<f64> = verdict.examples.iter().map(|e| e.stale_ms).collect();
        assert_eq!(shown, [40.0, 33.0, 25.0, 12.0, 9.0]);
    }

    #[test]
    fn staleness_is_reported_in_milliseconds_to_the_microsecond() {
        let mut stale = read(1, Some("Ann"), 0, 0);
        stale.invoke = Duration::from_nanos(20_123_456_789);
        stale.complete = Some(stale.invoke);
        let ops = [write(1, "Bob", 10, Some(20)), stale];
        let verdict = check(&ops, &initial(&[(1, "Ann")]));
        assert_eq!(verdict.max_stale_ms, 20_103.457);
        assert_eq!(verdict.examples[0].read_invoke_ms, 20_123.457);
    }

    #[test]
    fn the_jepsen_history_has_two_time_ordered_json_lines_per_op() {
        let mut failed_read = read(2, None, 12, 14);
        failed_read.ok = false;
        let ops = [
            read(1, Some("Ann"), 15, 30),
            write(1, "Bob", 10, Some(20)),
            failed_read,
            Op {
                process: 3,
                ..write(1, "Xi", 5, None)
            },
            Op {
                process: 3,
                ..read(1, Some("Bob"), 40, 41)
            },
        ];
        let mut out = Vec::new();
        write_jepsen(&ops, &mut out).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2 * ops.len());
        let times: Vec<u64> = lines.iter().map(|l| l["time"].as_u64().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert_eq!(
            lines[0],
            serde_json::json!({"process": 3, "type": "invoke", "f": "write", "key": 1,
                               "value": "Xi", "time": 5_000_000})
        );
        let summary: Vec<(&str, &str, Option<&str>)> = lines
            .iter()
            .map(|l| {
                let s = |f: &str| l[f].as_str().unwrap();
                (s("type"), s("f"), l["value"].as_str())
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("invoke", "write", Some("Xi")),
                ("invoke", "write", Some("Bob")),
                ("invoke", "read", None),
                ("fail", "read", None),
                ("invoke", "read", None),
                ("ok", "write", Some("Bob")),
                ("ok", "read", Some("Ann")),
                ("invoke", "read", None),
                ("ok", "read", Some("Bob")),
                ("info", "write", Some("Xi")),
            ]
        );
        // Process 3's write never completed, so its later read runs as a new process.
        assert_eq!(lines[7]["process"], lines[8]["process"]);
        assert_ne!(lines[7]["process"], 3);
        assert_eq!(lines[9]["process"], 3);
    }

    /// A sequential history over a few keys where every read returns the latest completed
    /// write (or the initial value), with each read's key and the values it could see.
    struct Sequential {
        ops: Vec<Op>,
        initial: HashMap<u64, String>,
        /// For each op index that is a read: the key's values so far, each with the
        /// completion of the write that replaced it (the last one not yet replaced).
        seen: HashMap<usize, Vec<(String, Option<Duration>)>>,
    }

    fn sequential(rng: &mut SmallRng, len: usize) -> Sequential {
        let keys = 4;
        let initial: HashMap<u64, String> = (0..keys).map(|k| (k, format!("init{k}"))).collect();
        let mut values: HashMap<u64, Vec<(String, Option<Duration>)>> = initial
            .iter()
            .map(|(&k, v)| (k, vec![(v.clone(), None)]))
            .collect();
        let (mut ops, mut seen) = (Vec::new(), HashMap::new());
        let mut now = Duration::ZERO;
        for n in 0..len {
            now += Duration::from_micros(rng.random_range(1..500));
            let invoke = now;
            now += Duration::from_micros(rng.random_range(1..500));
            let key = rng.random_range(0..keys);
            let history = values.get_mut(&key).unwrap();
            let (kind, value) = if rng.random_bool(0.2) {
                let value = format!("w{n}");
                history.last_mut().unwrap().1 = Some(now);
                history.push((value.clone(), None));
                (OpKind::Write, value)
            } else {
                seen.insert(ops.len(), history.clone());
                (OpKind::Read, history.last().unwrap().0.clone())
            };
            ops.push(Op {
                process: rng.random_range(0..8),
                kind,
                key,
                value: Some(value),
                invoke,
                complete: Some(now),
                ok: true,
            });
        }
        Sequential { ops, initial, seen }
    }

    #[test]
    fn sequential_histories_of_latest_values_have_no_stale_read_until_one_is_corrupted() {
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..50 {
            let mut history = sequential(&mut rng, 300);
            let verdict = check(&history.ops, &history.initial);
            assert_eq!(verdict.stale_reads, 0);
            assert_eq!(verdict.unexplained, 0);
            assert_eq!(verdict.reads as usize, history.seen.len());

            let mut corruptible: Vec<_> = history
                .seen
                .iter()
                .filter(|(_, values)| values.len() > 1)
                .collect();
            corruptible.sort_by_key(|&(&i, _)| i);
            let (&i, values) = corruptible[rng.random_range(0..corruptible.len())];
            let (old, replaced_at) = values[rng.random_range(0..values.len() - 1)].clone();
            let expected = history.ops[i].invoke - replaced_at.unwrap();
            history.ops[i].value = Some(old);
            let verdict = check(&history.ops, &history.initial);
            assert_eq!(verdict.stale_reads, 1);
            assert_eq!(verdict.max_stale_ms, ms(expected));
        }
    }
}
