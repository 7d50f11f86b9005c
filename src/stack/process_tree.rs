//! A managed server's process tree as /proc shows it: every descendant of a pid (postgres'
//! backends are the postmaster's children but each leads a session of its own, so a
//! process group does not reach them), signalled together, and known by pid and start
//! time so a pid the system hands out again is never taken for a process of ours.

use std::time::{Duration, Instant};

/// Send `signal` to `pid` and every descendant of it (postgres' backends are the
/// postmaster's children but each leads a session of its own, so a process group does
/// not reach them).
pub fn signal_tree(pid: u32, signal: i32) {
    let mut pids = vec![pid];
    let mut i = 0;
    while i < pids.len() {
        let parent = pids[i];
        pids.extend(children_of(parent));
        i += 1;
    }
    for pid in pids {
        // SAFETY: signalling processes we started (or their children).
        unsafe {
            libc::kill(pid as i32, signal);
        }
    }
}

/// A process that was in a server's tree: its pid and start time (clock ticks after
/// boot), so that a pid the system hands out again later is never taken for it.
pub(super) type Member = (u32, u64);

/// Every descendant of `pid` now, with its start time.
pub(super) fn descendants(pid: u32) -> Vec<Member> {
    let mut pids = children_of(pid);
    let mut i = 0;
    while i < pids.len() {
        let parent = pids[i];
        pids.extend(children_of(parent));
        i += 1;
    }
    pids.into_iter()
        .filter_map(|p| Some((p, stat_of(p)?.start_time)))
        .collect()
}

/// SIGKILL the members of a server's tree still running after the server ended (a child
/// it left behind when it was killed), and wait (at most 2 s) until they are gone.
pub(super) fn end_leftovers(name: &str, tree: &[Member]) {
    let alive = |&(pid, started): &Member| {
        stat_of(pid).is_some_and(|s| s.start_time == started && s.state != 'Z')
    };
    let left: Vec<Member> = tree.iter().copied().filter(alive).collect();
    if left.is_empty() {
        return;
    }
    tracing::warn!("{name} left {} processes behind; killing them", left.len());
    for (pid, _) in &left {
        // SAFETY: signalling a process of our child's tree, checked by its start time.
        unsafe {
            libc::kill(*pid as i32, libc::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while left.iter().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// When process `pid` started (clock ticks after boot), if it runs: with the pid, it
/// names one process even after the system hands the pid out again.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_of(pid).map(|s| s.start_time)
}

/// What /proc says of a process.
struct Stat {
    state: char,
    parent: u32,
    start_time: u64,
}

fn stat_of(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the ")" closing the command name: state, ppid, ... starttime (22nd
    // field of the line, 20th after the name).
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The pids whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat_of(*pid).is_some_and(|s| s.parent == parent))
        .collect()
}
