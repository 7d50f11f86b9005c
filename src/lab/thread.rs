//! The thread a lab runs on, with a stack deep enough for any value the lab can build
//! within its limits.
//!
//! Rhai clones, compares, prints and drops nested values (arrays in arrays, maps in maps,
//! function pointers curried with function pointers) by recursion, a frame or more per
//! level. A stack overflow cannot be caught in Rust: it aborts the process, and every lab
//! after it and the reports with it. Measured per level of nesting on a release build
//! (a debug build takes 2–5× more): about 1.9 KB to compare or print nested arrays or
//! maps, 210 B to clone them, 180 B to drop a curried chain.
//!
//! What bounds the nesting: arrays and maps count every item at every level against
//! Rhai's size limits after each change (1,000,000 array items + 100,000 map fields, so at
//! most ~1.1 million levels: ~2.1 GB to print), and each level makes every later change
//! walk all the levels below it, so a million levels take hours to build. A curried chain
//! counts against no size limit and builds in linear time, but every level holds ~140 B
//! that the memory cap counts, so it nests at most `--max-memory-mb` / 140 B deep: ~1.3×
//! the cap in stack to drop (2.3× on a debug build).
//!
//! So the stack is 4 GiB, or 4× the memory cap when that is more. It is address space,
//! not memory: the kernel backs a page only when the recursion first reaches it, so a lab
//! that nests nothing costs what it always did. Where the system refuses that much (a
//! `ulimit -v`, a small machine with strict overcommit), the thread gets the most it can,
//! with a warning.

use std::sync::mpsc;

/// The least stack worth trying before giving up on a lab thread.
const FLOOR: usize = 64 << 20;

/// The stack a lab thread asks for under a memory cap of `max_memory_mb`.
pub fn wanted_stack(max_memory_mb: u64) -> usize {
    let by_cap = usize::try_from(max_memory_mb.saturating_mul(4 << 20)).unwrap_or(usize::MAX);
    by_cap.max(4 << 30)
}

/// Run `work` on a thread named "lab" whose stack is `wanted_stack(max_memory_mb)`, or
/// the most below it the system grants (halving down to 64 MiB). Returns the stack size
/// the thread got.
pub fn spawn<F>(max_memory_mb: u64, work: F) -> std::io::Result<usize>
where
    F: FnOnce() + Send + 'static,
{
    let wanted = wanted_stack(max_memory_mb);
    let mut size = wanted;
    loop {
        // The work is sent once the thread exists: a refused spawn keeps it for the next try.
        let (tx, rx) = mpsc::channel::<F>();
        let spawned = std::thread::Builder::new()
            .name("lab".into())
            .stack_size(size)
            .spawn(move || {
                if let Ok(work) = rx.recv() {
                    work();
                }
            });
        match spawned {
            Ok(_) => {
                if size < wanted {
                    tracing::warn!(
                        "the lab thread got a {} MiB stack, not the {} MiB asked for: a lab that nests values that deep can crash cachelab",
                        size >> 20,
                        wanted >> 20
                    );
                }
                let _ = tx.send(work);
                return Ok(size);
            }
            Err(_) if size / 2 >= FLOOR => size /= 2,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stack_grows_with_the_memory_cap_beyond_4_gib() {
        assert_eq!(super::wanted_stack(512), 4 << 30);
        assert_eq!(super::wanted_stack(2048), 8 << 30);
    }

    #[test]
    fn a_value_nested_100_000_deep_is_built_and_dropped_on_a_lab_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        super::spawn(512, move || {
            let mut value = rhai::Dynamic::UNIT;
            for _ in 0..100_000 {
                value = rhai::Dynamic::from_array(vec![value]);
            }
            let copy = value.clone();
            drop(value);
            drop(copy);
            let _ = tx.send(());
        })
        .unwrap();
        rx.recv().expect("the thread did not overflow its stack");
    }
}
