//! A run from start to summary: draw the seed, start `concurrency` workers in a `JoinSet`,
//! sweep their events into the timeline at every interval boundary, and assemble the
//! summary when the last one is done. Workers belong to the run: cancelling the plan's
//! token, a process shutdown, or dropping the `run` future stops every one of them.

use std::sync::Arc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::history;
use super::plan::Plan;
use super::summary::Summary;
use super::timeline::{Inbox, Timeline};
use super::worker::{self, Output, Progress, Shared};

/// Run `plan` to the end (or until it is cancelled) and return what was observed. Call
/// `plan.check()` first: `run` trusts the plan.
pub async fn run(plan: Plan, progress: Arc<Progress>) -> Summary {
    // Below 2^63, so the seed survives a trip through a lab's integers (i64) and back.
    let seed = plan.seed.unwrap_or_else(|| rand::random::<u64>() >> 1);
    let stop = plan.cancel.child_token();
    // If this future is dropped, the guard stops the workers' loops and the JoinSet
    // aborts their tasks; their connections close with them.
    let stop_guard = stop.clone().drop_guard();
    let workers = plan.concurrency.max(1);
    let (interval, sampler) = (plan.interval, plan.sampler.clone());
    let start = Instant::now();
    let shared = Arc::new(Shared::new(plan, seed, progress, stop.clone(), start));
    let mut timeline = Timeline::new(interval, sampler);
    let inboxes: Vec<Inbox> = (0..workers).map(|_| Inbox::default()).collect();
    let mut tasks = JoinSet::new();
    for (index, inbox) in inboxes.iter().enumerate() {
        tasks.spawn(worker::work(shared.clone(), index, inbox.clone()));
    }
    let mut outputs: Vec<Output> = Vec::with_capacity(workers);
    let shutdown = crate::shutdown::token();
    loop {
        let boundary = start + timeline.next_boundary();
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(output)) => outputs.push(output),
                // A panicked worker: what it reported before still counts.
                Some(Err(_)) => {}
                None => break,
            },
            _ = tokio::time::sleep_until(boundary) => timeline.sweep(start.elapsed(), &inboxes),
            _ = shutdown.cancelled(), if !stop.is_cancelled() => stop.cancel(),
        }
    }
    let elapsed = start.elapsed();
    let cancelled = stop.is_cancelled();
    drop(stop_guard);
    let (tally, interval, timeline) = timeline.finish(elapsed, &inboxes);

    let plan = &shared.plan;
    let mut history = Vec::new();
    let mut keyed = Vec::new();
    for output in outputs {
        history.extend(output.history);
        keyed.extend(output.keys);
    }
    history.sort_by_key(|op| (op.invoke, op.process));
    keyed.sort_unstable_by_key(|&(sent, ticket, _)| (sent, ticket));
    let consistency = plan
        .record_history
        .then(|| history::check(&history, &plan.initial_values));
    Summary {
        tally,
        elapsed,
        seed,
        cancelled,
        interval,
        timeline,
        history,
        consistency,
        keys: keyed.into_iter().map(|(_, _, id)| id).collect(),
    }
}
