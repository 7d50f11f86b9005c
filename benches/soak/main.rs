//! Soak of `cachelab serve`: does Postgres end up agreeing with every acknowledged write,
//! on all four strategies, through a Redis crash and a Postgres restart?
//!
//! It starts `target/release/cachelab serve` (its own child, in a private TMPDIR), runs
//! 16 workers for `--minutes` doing GET 40 % / PUT 40 % / DELETE 10 % / POST 10 % on all
//! four strategies — each strategy owns its own ids (1–250 cache-aside, 251–500
//! write-through, 501–750 write-behind, 751–1000 refresh-ahead, and the ids its POSTs
//! create), half the requests go to its 5 newest live ids so concurrent writes to one id
//! happen; a PUT writes a unique name, a unique email, or both — and records every write
//! (id, strategy, invoke and completion time, the answer, what it asserts). At 40 % of the
//! run it SIGKILLs the managed redis-server (serve restarts it empty), some seconds later
//! it stops the postmaster with SIGINT (serve starts it again). At the end it stops the
//! workers, waits (bounded) for write-behind's queue to be flushed, reads every row from
//! Postgres and judges every id (see judge.rs): the final row must be what some write
//! left that no acknowledged write certainly overwrote; write-behind writes acknowledged
//! after its last flush before the Redis kill may be lost with it and are counted apart.
//!
//! It prints requests per strategy and method, status counts, p50/p99, errors in each
//! fault window, the ids judged, agreements, losses attributed to the Redis kill and every
//! violation (id, final row, its writes); it exits 1 on a violation, a wedged or
//! dead-lettered write-behind queue, or a fault that did not happen, 2 on a set-up error.
//!
//! Run (builds the release binary it starts; a 10-minute soak by default):
//!     cargo bench --bench soak -- --minutes 10
//!     benches/soak.sh --minutes 1          # the same, shorter
//! Options: --minutes M (fractions allowed), --workers N (16), --port P (0: free ports),
//! --seed S, --hot N (5), --timeout-ms (5000), --no-faults, --bin PATH (or $CACHELAB).

mod judge;
mod serve;
mod workload;

use anyhow::Context;
use clap::Parser;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serve::Serve;
use workload::{Outcome, Row, Shared, Stats, Val, Write, METHODS};

/// The strategies, in serve's port order (P, P+1, P+2, P+3).
pub const STRATEGIES: [&str; 4] = [
    "cache-aside",
    "write-through",
    "write-behind",
    "refresh-ahead",
];
const WRITE_BEHIND: u8 = 2;
const QUEUE: &str = "{wb}:queue";
const FLUSHING: &str = "{wb}:flushing";
const REJECTED: &str = "{wb}:rejected";

/// How long write-behind may take to empty its queue once the workers stopped.
const FLUSH_BOUND: Duration = Duration::from_secs(30);
/// How long serve may take to bring a killed Redis or a stopped Postgres back.
const REVIVE_BOUND: Duration = Duration::from_secs(30);
/// How long before the Redis kill write-behind's queue is watched for flushes.
const WATCH_BEFORE_KILL: Duration = Duration::from_secs(3);
/// Errors this long after a fault count as the fault's (unless the next fault came first).
const FAULT_WINDOW: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(
    name = "soak",
    about = "Soak of cachelab serve: mixed writes on all strategies through a Redis kill and a Postgres restart, then Postgres judged against every acknowledged write"
)]
struct Args {
    /// Minutes of load (fractions allowed, e.g. 0.5).
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Concurrent workers (each a closed loop of requests).
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// serve's --port (0: every strategy on a free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seed of the workers' choices (random unless given; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// How many of each strategy's newest live ids get half of its requests.
    #[arg(long, default_value_t = 5)]
    hot: usize,
    /// A request without an answer within this is indeterminate.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Run without the Redis kill and the Postgres restart.
    #[arg(long)]
    no_faults: bool,
    /// The cachelab binary to serve (default: the one cargo built for this bench).
    #[arg(long, env = "CACHELAB")]
    bin: Option<PathBuf>,
    /// Violations printed in full (the rest are counted).
    #[arg(long, default_value_t = 10)]
    show: usize,
    /// Passed by `cargo bench`; without it (as under `cargo test --benches`) nothing runs.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.bench {
        println!(
            "soak: a benchmark, not a test; run it with `cargo bench --bench soak -- --minutes 10`"
        );
        return ExitCode::SUCCESS;
    }
    let valid = args.minutes > 0.0
        && args.minutes <= 24.0 * 60.0
        && (1..=256).contains(&args.workers)
        && args.hot > 0
        && (100..=120_000).contains(&args.timeout_ms);
    if !valid {
        eprintln!("soak: want 0 < --minutes <= 1440, 1 <= --workers <= 256, --hot >= 1, 100 <= --timeout-ms <= 120000");
        return ExitCode::from(2);
    }
    let bin = args
        .bin
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cachelab")));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // Forked from the main thread, which lives as long as the soak: serve's parent-death
    // signal fires only when the soak itself ends.
    let mut serve = match Serve::start(&bin, args.port) {
        Ok(serve) => serve,
        Err(e) => {
            eprintln!("soak: {e:#}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(async {
        tokio::select! {
            result = soak(&args, &mut serve) => match result {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(e) => {
                    eprintln!("soak: {e:#}");
                    eprintln!("serve's log ends:\n{}", serve.log_tail(15));
                    2
                }
            },
            _ = interrupted() => {
                eprintln!("soak: interrupted; stopping serve");
                130
            }
        }
    });
    // Workers are aborted with the soak's future; now serve, then the runtime.
    if let Some(ended) = serve.stop() {
        println!("serve {ended}");
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// What happened at the Redis kill.
struct RedisKill {
    at_us: u64,
    pid: u32,
    /// Write-behind writes acknowledged before this were flushed (or in a batch that
    /// reached Postgres) when Redis died; None when no flush was seen before the kill.
    safe_us: Option<u64>,
    flushes_seen: usize,
    queued_at_kill: u64,
    /// How long serve took to start it again, and its new pid.
    back_after: Option<(Duration, u32)>,
}

/// What happened at the Postgres restart.
struct PgRestart {
    at_us: u64,
    pid: u32,
    /// How long serve took to start it again, and its new pid.
    back_after: Option<(Duration, u32)>,
}

/// The whole soak; Ok(passed).
async fn soak(args: &Args, serve: &mut Serve) -> anyhow::Result<bool> {
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let seed = args.seed.unwrap_or_else(rand::random);
    println!(
        "soak: {:.1} min, {} workers, seed {seed}, serve pid {} ({})",
        args.minutes,
        args.workers,
        serve.pid,
        serve.urls.join(" ")
    );
    println!("      redis port {}, {}", serve.redis_port, serve.pg_url);

    let initial = read_rows(&serve.pg_url)
        .await
        .context("reading the users table at the start")?;
    let mut ids: Vec<i32> = initial.keys().copied().collect();
    ids.sort_unstable();
    anyhow::ensure!(
        ids.len() >= STRATEGIES.len(),
        "the users table has only {} rows",
        ids.len()
    );
    let chunk = ids.len().div_ceil(STRATEGIES.len());
    let pools: Vec<Vec<i32>> = ids.chunks(chunk).map(<[i32]>::to_vec).collect();
    let mut owner: HashMap<i32, u8> = HashMap::new();
    for (s, pool) in pools.iter().enumerate() {
        println!(
            "      {:<14} ids {}–{} and those its POSTs create",
            STRATEGIES[s],
            pool[0],
            pool[pool.len() - 1]
        );
        owner.extend(pool.iter().map(|&id| (id, s as u8)));
    }

    let start = Instant::now();
    let shared = Arc::new(Shared::new(
        serve.urls.clone(),
        pools,
        args.hot,
        Duration::from_millis(args.timeout_ms),
        start,
    ));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..args.workers {
        workers.spawn(workload::worker(
            shared.clone(),
            seed.wrapping_add(w as u64),
        ));
    }
    let progress = tokio::spawn(progress(shared.clone(), duration));
    let _abort_progress = AbortOnDrop(progress);

    let (mut redis_kill, mut pg_restart) = (None, None);
    let mut fault_problems = Vec::new();
    if !args.no_faults {
        let redis_at = duration.mul_f64(0.4);
        let pg_at = redis_at
            + duration
                .mul_f64(0.1)
                .clamp(Duration::from_secs(5), Duration::from_secs(15));
        match kill_redis(serve, &shared, start + redis_at).await {
            Ok(k) => redis_kill = Some(k),
            Err(e) => fault_problems.push(format!("the Redis kill: {e:#}")),
        }
        match restart_postgres(serve, &shared, start + pg_at).await {
            Ok(r) => pg_restart = Some(r),
            Err(e) => fault_problems.push(format!("the Postgres restart: {e:#}")),
        }
    }
    tokio::time::sleep_until((start + duration).into()).await;
    shared.stop.store(true, Ordering::Relaxed);
    let ran_for = start.elapsed();
    let mut chunks: Vec<Vec<Write>> = Vec::new();
    let mut stats = Stats::empty();
    let join_bound = Duration::from_millis(args.timeout_ms) + Duration::from_secs(5);
    let joined = tokio::time::timeout(join_bound, async {
        while let Some(result) = workers.join_next().await {
            let (w, s) = result.context("a worker panicked")?;
            chunks.extend(w);
            stats.merge(s);
        }
        anyhow::Ok(())
    })
    .await;
    joined.map_err(|_| anyhow::anyhow!("the workers did not stop within {join_bound:?}"))??;
    let stopped_us = shared.now_us();
    let mut writes: Vec<Write> = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
    for chunk in chunks {
        writes.extend(chunk);
    }

    // Write-behind's queue must drain; nothing may be dead-lettered or left behind.
    let redis_url = format!("redis://127.0.0.1:{}/", serve.redis_port);
    let drain = drain_queue(&redis_url)
        .await
        .context("watching write-behind's queue")?;
    let rows = read_rows(&serve.pg_url)
        .await
        .context("reading the users table at the end")?;
    let serve_alive = serve.exited().is_none();

    let at_risk = |w: &Write| match &redis_kill {
        Some(k) => {
            w.strategy == WRITE_BEHIND
                && w.outcome == Outcome::Acked
                && w.invoke_us < k.at_us
                && w.complete_us >= k.safe_us.unwrap_or(0)
        }
        None => false,
    };
    let judged = judge::judge(&initial, &owner, &writes, &at_risk, &rows);

    // The report.
    let total: u64 = stats.requests.iter().flatten().sum();
    println!();
    println!(
        "requests: {total} in {:.1} s ({:.0}/s), {} writes recorded",
        ran_for.as_secs_f64(),
        total as f64 / ran_for.as_secs_f64(),
        writes.len()
    );
    println!(
        "  {:<14} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "strategy", "GET", "PUT", "DELETE", "POST", "total"
    );
    for (s, name) in STRATEGIES.iter().enumerate() {
        let r = stats.requests[s];
        println!(
            "  {name:<14} {:>9} {:>9} {:>9} {:>9} {:>9}",
            r[0],
            r[1],
            r[2],
            r[3],
            r.iter().sum::<u64>()
        );
    }
    println!("status:");
    for (s, name) in STRATEGIES.iter().enumerate() {
        let line: Vec<String> = stats
            .status
            .iter()
            .filter(|((st, _), _)| *st == s)
            .map(|((_, code), n)| match code {
                0 => format!("no answer {n}"),
                c => format!("{c} {n}"),
            })
            .collect();
        println!("  {name:<14} {}", line.join(", "));
    }
    println!("latency (ms):  {:>8} {:>8} {:>8}", "p50", "p99", "max");
    for (m, method) in METHODS.iter().enumerate() {
        let h = &stats.latency[m];
        println!(
            "  {method:<12} {:>8.2} {:>8.2} {:>8.1}",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }

    println!("faults:");
    let mut windows: Vec<(String, u64, u64)> = Vec::new();
    let window = FAULT_WINDOW.as_micros() as u64;
    if args.no_faults {
        println!("  none (--no-faults)");
    }
    if let Some(k) = &redis_kill {
        let revived = serve.log_lines("managed redis had stopped").len();
        println!(
            "  redis-server (pid {}) SIGKILLed at {}; serve restarted it {} ({} log line{})",
            k.pid,
            judge::secs(k.at_us),
            k.back_after
                .map(|(d, new)| format!("within {} ms as pid {new}", d.as_millis()))
                .unwrap_or_else(|| "NOT within the bound".to_string()),
            revived,
            if revived == 1 { "" } else { "s" }
        );
        match k.safe_us {
            Some(safe) => println!(
                "    write-behind: {} flushes seen in the {} s before; the last one took its batch after {} ({} ms before the kill); {} entries queued at the kill",
                k.flushes_seen,
                WATCH_BEFORE_KILL.as_secs(),
                judge::secs(safe),
                (k.at_us - safe) / 1000,
                k.queued_at_kill
            ),
            None => println!(
                "    write-behind: NO flush seen in the {} s before the kill ({} entries queued)",
                WATCH_BEFORE_KILL.as_secs(),
                k.queued_at_kill
            ),
        }
        let end = pg_restart
            .as_ref()
            .map_or(k.at_us + window, |p| p.at_us.min(k.at_us + window));
        windows.push(("the Redis kill".to_string(), k.at_us, end));
    }
    if let Some(p) = &pg_restart {
        let revived = serve.log_lines("managed postgres had stopped").len();
        println!(
            "  postmaster (pid {}) stopped with SIGINT at {}; serve started it again {} ({} log line{})",
            p.pid,
            judge::secs(p.at_us),
            p.back_after
                .map(|(d, new)| format!("within {} ms as pid {new}", d.as_millis()))
                .unwrap_or_else(|| "NOT within the bound".to_string()),
            revived,
            if revived == 1 { "" } else { "s" }
        );
        windows.push((
            "the Postgres restart".to_string(),
            p.at_us,
            p.at_us + window,
        ));
    }
    for problem in &fault_problems {
        println!("  FAILED: {problem}");
    }
    let mut outside: BTreeMap<usize, u64> = BTreeMap::new();
    let mut inside: Vec<(BTreeMap<usize, u64>, u64)> = vec![(BTreeMap::new(), 0); windows.len()];
    for e in &stats.errors {
        match windows
            .iter()
            .position(|(_, from, to)| (*from..*to).contains(&e.complete_us))
        {
            Some(i) => {
                *inside[i].0.entry(e.strategy).or_default() += 1;
                inside[i].1 = inside[i].1.max(e.complete_us - windows[i].1);
            }
            None => *outside.entry(e.strategy).or_default() += 1,
        }
    }
    let per_strategy = |m: &BTreeMap<usize, u64>| {
        STRATEGIES
            .iter()
            .enumerate()
            .map(|(s, name)| format!("{name} {}", m.get(&s).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, (what, _, to)) in windows.iter().enumerate() {
        let (m, last) = &inside[i];
        let n: u64 = m.values().sum();
        println!(
            "  errors in the {:.1} s after {what}: {n} ({}){}",
            (to - windows[i].1) as f64 / 1e6,
            per_strategy(m),
            if n > 0 {
                format!("; the last {} ms after it", last / 1000)
            } else {
                String::new()
            }
        );
    }
    let outside_n: u64 = outside.values().sum();
    let mut outside_examples: Vec<&workload::ErrorAt> = stats
        .errors
        .iter()
        .filter(|e| {
            !windows
                .iter()
                .any(|(_, from, to)| (*from..*to).contains(&e.complete_us))
        })
        .collect();
    outside_examples.sort_by_key(|e| e.complete_us);
    outside_examples.truncate(5);
    println!(
        "  errors outside the fault windows: {outside_n}{}",
        if outside_n > 0 {
            format!(" ({})", per_strategy(&outside))
        } else {
            String::new()
        }
    );
    for e in outside_examples {
        println!(
            "    at {}: {} {} answered {}: {}",
            judge::secs(e.complete_us),
            STRATEGIES[e.strategy],
            METHODS[e.method],
            judge::status_text(e.status),
            e.text()
        );
    }

    println!(
        "write-behind after the workers stopped (at {}):",
        judge::secs(stopped_us)
    );
    match drain.flushed_after {
        Some(d) => println!("  queue flushed within {} ms", d.as_millis()),
        None => println!(
            "  WEDGED: {QUEUE} and {FLUSHING} still hold {} entries after {FLUSH_BOUND:?}",
            drain.left_entries
        ),
    }
    println!(
        "  {REJECTED}: {}",
        if drain.rejected == 0 {
            "empty".to_string()
        } else {
            format!("{} entries (REJECTED)", drain.rejected)
        }
    );
    println!(
        "  {{wb}}:* keys left: {}",
        if drain.keys_left.is_empty() {
            "none".to_string()
        } else {
            drain.keys_left.join(", ")
        }
    );

    let count = |o: Outcome| writes.iter().filter(|w| w.outcome == o).count();
    println!(
        "judged: {} ids ({} rows at the start, {} at the end); writes: {} acknowledged, {} indeterminate, {} not found",
        judged.ids,
        initial.len(),
        rows.len(),
        count(Outcome::Acked),
        count(Outcome::Indeterminate),
        count(Outcome::NotFound)
    );
    println!("  agree: {}", judged.agree);
    if judged.indeterminate_posts_applied > 0 {
        println!(
            "    (of which {} created by a POST that got no definite answer)",
            judged.indeterminate_posts_applied
        );
    }
    if let Some(k) = &redis_kill {
        let at_risk_n = writes.iter().filter(|w| at_risk(w)).count();
        if judged.lost_writes.is_empty() {
            println!("  lost with the Redis kill: 0 writes (of {at_risk_n} at risk)");
        } else {
            let offsets: Vec<i64> = judged
                .lost_writes
                .iter()
                .map(|&i| writes[i].complete_us as i64 - k.at_us as i64)
                .collect();
            let earliest = offsets.iter().min().copied().unwrap_or(0);
            let latest = offsets.iter().max().copied().unwrap_or(0);
            println!(
                "  lost with the Redis kill: {} writes on {} ids (of {at_risk_n} at risk), all acknowledged within {} ms before it{}",
                judged.lost_writes.len(),
                judged.lost_ids,
                (-earliest).max(0) / 1000,
                if latest > 0 { format!(" (the latest {} ms after it: in flight at the kill)", latest / 1000) } else { String::new() }
            );
        }
    }
    println!(
        "  answers: {} values shown by acknowledged answers judged as reads, {} stale",
        judged.reads, judged.stale_reads
    );
    println!("  violations: {} ids", judged.violations.len());
    if !judged.violations.is_empty() {
        let mut by_strategy: BTreeMap<&str, usize> = BTreeMap::new();
        let (mut finals, mut stale): (
            BTreeMap<judge::Register, usize>,
            BTreeMap<judge::Register, usize>,
        ) = Default::default();
        for v in &judged.violations {
            *by_strategy
                .entry(v.strategy.map_or("no strategy", |s| STRATEGIES[s as usize]))
                .or_default() += 1;
            for (register, _) in &v.final_wrong {
                *finals.entry(*register).or_default() += 1;
            }
            for (register, _) in &v.stale_answers {
                *stale.entry(*register).or_default() += 1;
            }
        }
        let join = |m: &BTreeMap<judge::Register, usize>| {
            m.iter()
                .map(|(r, n)| format!("{} {n}", r.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "    by strategy: {}",
            by_strategy
                .iter()
                .map(|(s, n)| format!("{s} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "    final row wrong: {} ids ({})",
            judged.violations.len() - judged.answer_only_violations,
            join(&finals)
        );
        println!(
            "    stale answers: {} ({}); {} ids with a right final row",
            judged.stale_reads,
            join(&stale),
            judged.answer_only_violations
        );
    }
    // A few of each kind: a lost field in the final row, a row that should be gone (or
    // there), an answer that showed a replaced value.
    let kind = |v: &judge::Violation| {
        if v.final_wrong
            .iter()
            .any(|(r, _)| *r != judge::Register::Existence)
        {
            0
        } else if !v.final_wrong.is_empty() {
            1
        } else {
            2
        }
    };
    let per_kind = args.show.div_ceil(3);
    let mut shown = 0;
    for k in 0..3 {
        for v in judged
            .violations
            .iter()
            .filter(|v| kind(v) == k)
            .take(per_kind)
        {
            if shown < args.show {
                print_violation(v, &writes);
                shown += 1;
            }
        }
    }
    if judged.violations.len() > shown {
        println!(
            "    ... and {} more (--show N prints more)",
            judged.violations.len() - shown
        );
    }
    if !judged.bad_answers.is_empty() {
        println!(
            "  acknowledged writes whose answer lacks what they wrote: {}",
            judged.bad_answers.len()
        );
        for b in judged.bad_answers.iter().take(args.show) {
            println!("    {b}");
        }
    }

    if let Some(kb) = peak_memory_kb() {
        println!("soak's own peak memory: {} MB", kb / 1024);
    }

    let mut failures = Vec::new();
    if !judged.violations.is_empty() {
        failures.push(format!(
            "{} ids disagree with their acknowledged writes",
            judged.violations.len()
        ));
    }
    if !judged.bad_answers.is_empty() {
        failures.push(format!(
            "{} answers lack what they wrote",
            judged.bad_answers.len()
        ));
    }
    if drain.flushed_after.is_none() {
        failures.push("write-behind's queue is wedged".to_string());
    }
    if drain.rejected > 0 {
        failures.push(format!(
            "{} writes dead-lettered in {REJECTED}",
            drain.rejected
        ));
    }
    // `{wb}:generation` is bookkeeping (how many writes each user had), not a queue.
    if drain.keys_left.iter().any(|k| k != "{wb}:generation") {
        failures.push("write-behind keys left after the flush".to_string());
    }
    if redis_kill.as_ref().is_some_and(|k| k.safe_us.is_none()) {
        failures.push("no write-behind flush seen before the Redis kill".to_string());
    }
    failures.extend(fault_problems);
    if !serve_alive {
        failures.push("serve exited before the end".to_string());
    }
    if failures.is_empty() {
        println!("PASS");
    } else {
        println!("FAIL: {}", failures.join("; "));
    }
    Ok(failures.is_empty())
}

fn print_violation(v: &judge::Violation, writes: &[Write]) {
    let row = match &v.final_row {
        Some((name, email)) => format!("name={name} email={email}"),
        None => "absent".to_string(),
    };
    println!(
        "    id {} ({}): final row {row}",
        v.id,
        v.strategy.map_or("no strategy", |s| STRATEGIES[s as usize])
    );
    for (register, why) in &v.final_wrong {
        println!("      - final {}: {why}", register.as_str());
    }
    for (register, why) in v.stale_answers.iter().take(3) {
        println!("      - stale {}: {why}", register.as_str());
    }
    if v.stale_answers.len() > 3 {
        println!(
            "      - ... and {} more stale answers",
            v.stale_answers.len() - 3
        );
    }
    let shown = v.writes.len().saturating_sub(12);
    if shown > 0 {
        println!("      ({shown} earlier writes not shown)");
    }
    for &i in &v.writes[shown..] {
        let w = &writes[i];
        let answer = match (w.row_answer(), w.error()) {
            (Some((n, e)), _) => format!(" -> name={n} email={e}"),
            (None, Some(err)) => format!(" ({err})"),
            _ => String::new(),
        };
        println!(
            "      {:>10} .. {:>10}  {:<13} {} {}{answer}",
            judge::secs(w.invoke_us),
            judge::secs(w.complete_us),
            STRATEGIES[w.strategy as usize],
            judge::status_text(w.status),
            w.asserts()
        );
    }
}

/// This process' peak resident memory (VmHWM), in kB.
fn peak_memory_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Aborts a task when dropped (the progress printer ends with the soak, however it ends).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A line on stderr every few seconds, so a long soak shows it is alive.
async fn progress(shared: Arc<Shared>, duration: Duration) {
    let every = (duration / 20).clamp(Duration::from_secs(5), Duration::from_secs(30));
    let mut last = 0;
    loop {
        tokio::time::sleep(every).await;
        let n = shared.done_requests.load(Ordering::Relaxed);
        eprintln!(
            "[{:>6.1} s] {n} requests ({:.0}/s), {} errors",
            shared.start.elapsed().as_secs_f64(),
            (n - last) as f64 / every.as_secs_f64(),
            shared.done_errors.load(Ordering::Relaxed)
        );
        last = n;
    }
}

/// Every row of `users` as (name, email).
async fn read_rows(url: &str) -> anyhow::Result<HashMap<i32, Row>> {
    let (client, connection) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .context("connecting to Postgres timed out")??;
    let connection = tokio::spawn(connection);
    let rows = tokio::time::timeout(
        Duration::from_secs(60),
        client.query("SELECT id, name, email FROM users", &[]),
    )
    .await
    .context("reading users timed out")??;
    drop(client);
    let _ = connection.await;
    Ok(rows
        .iter()
        .map(|r| {
            let (name, email): (&str, &str) = (r.get(1), r.get(2));
            (r.get::<_, i32>(0), (Val::of(name), Val::of(email)))
        })
        .collect())
}

async fn redis_connection(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    Ok(tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .context("connecting to Redis timed out")??)
}

/// Watch write-behind's queue until `at` (each flush renames the queue into the batch,
/// so the queue shrinking or the batch appearing is a flush taking its batch; the batch
/// disappearing is it applied), then SIGKILL the redis-server and wait for serve to
/// start it again.
async fn kill_redis(serve: &Serve, shared: &Shared, at: Instant) -> anyhow::Result<RedisKill> {
    tokio::time::sleep_until((at.checked_sub(WATCH_BEFORE_KILL).unwrap_or(at)).into()).await;
    let url = format!("redis://127.0.0.1:{}/", serve.redis_port);
    let mut conn = redis_connection(&url).await?;
    // (sent at, queue length, batch in flight)
    let mut polls: Vec<(u64, u64, bool)> = Vec::new();
    while Instant::now() < at {
        let sent = shared.now_us();
        let (queued, flushing): (u64, bool) = tokio::time::timeout(
            Duration::from_millis(500),
            redis::pipe()
                .hlen(QUEUE)
                .exists(FLUSHING)
                .query_async(&mut conn),
        )
        .await
        .context("watching the queue timed out")??;
        polls.push((sent, queued, flushing));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let pid = serve
        .redis_pid()
        .context("no redis-server child of serve with its port in /proc")?;
    let at_us = shared.now_us();
    // SAFETY: a process our child started, found by its parent and port.
    if unsafe { libc::kill(pid as i32, libc::SIGKILL) } != 0 {
        anyhow::bail!("kill -9 {pid}: {}", std::io::Error::last_os_error());
    }
    let took_batch = |i: usize| {
        let (_, q, f) = polls[i];
        let (_, pq, pf) = polls[i - 1];
        q < pq || (f && !pf)
    };
    let flushes_seen = (1..polls.len()).filter(|&i| took_batch(i)).count();
    // The last poll with no batch in flight; the last batch taken before it was applied,
    // and holds every write acknowledged before the poll that preceded its taking.
    let safe_us = polls.iter().rposition(|p| !p.2).and_then(|j| {
        (1..=j)
            .rev()
            .find(|&i| took_batch(i))
            .map(|i| polls[i - 1].0)
    });
    let queued_at_kill = polls.last().map_or(0, |p| p.1);
    let killed = Instant::now();
    let mut back_after = None;
    while killed.elapsed() < REVIVE_BOUND {
        if let Some(new) = serve.redis_pid().filter(|&p| p != pid) {
            back_after = Some((killed.elapsed(), new));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(RedisKill {
        at_us,
        pid,
        safe_us,
        flushes_seen,
        queued_at_kill,
        back_after,
    })
}

/// At `at`, stop the postmaster with SIGINT (fast shutdown: what was committed stays) and
/// wait for serve to start it again.
async fn restart_postgres(
    serve: &Serve,
    shared: &Shared,
    at: Instant,
) -> anyhow::Result<PgRestart> {
    tokio::time::sleep_until(at.into()).await;
    let pid = serve
        .postmaster_pid()
        .context("no postmaster.pid naming a postgres child of serve under the private TMPDIR")?;
    let at_us = shared.now_us();
    // SAFETY: a process our child started, found by its postmaster.pid and parent.
    if unsafe { libc::kill(pid as i32, libc::SIGINT) } != 0 {
        anyhow::bail!("kill -INT {pid}: {}", std::io::Error::last_os_error());
    }
    let stopped = Instant::now();
    let mut back_after = None;
    while stopped.elapsed() < REVIVE_BOUND {
        if let Some(new) = serve.postmaster_pid().filter(|&p| p != pid) {
            back_after = Some((stopped.elapsed(), new));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(PgRestart {
        at_us,
        pid,
        back_after,
    })
}

/// What `drain_queue` saw.
struct Drain {
    flushed_after: Option<Duration>,
    left_entries: u64,
    rejected: u64,
    keys_left: Vec<String>,
}

/// Wait (bounded) until write-behind's queue and batch are gone; then count the
/// dead-letter hash and list every `{wb}:*` key left.
async fn drain_queue(url: &str) -> anyhow::Result<Drain> {
    let mut conn = redis_connection(url).await?;
    let started = Instant::now();
    let mut flushed_after = None;
    let mut left_entries = 0;
    while started.elapsed() < FLUSH_BOUND {
        let (queued, flushing): (u64, u64) = redis::pipe()
            .hlen(QUEUE)
            .hlen(FLUSHING)
            .query_async(&mut conn)
            .await?;
        let present: u64 = redis::cmd("EXISTS")
            .arg(QUEUE)
            .arg(FLUSHING)
            .query_async(&mut conn)
            .await?;
        left_entries = queued + flushing;
        if present == 0 {
            flushed_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rejected: u64 = redis::cmd("HLEN")
        .arg(REJECTED)
        .query_async(&mut conn)
        .await
        .unwrap_or(1);
    let mut keys_left = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("{wb}:*")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        keys_left.extend(keys);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    keys_left.sort();
    keys_left.dedup();
    Ok(Drain {
        flushed_after,
        left_entries,
        rejected,
        keys_left,
    })
}
