//! What a lab's thread has allocated, counted as it happens: the memory cap must hold
//! however few operations a lab grows in (forty 8 MB strings take a few hundred), so it
//! cannot rely on sampling the process now and then. A global allocator wraps the
//! system's and, on threads marked as lab threads only, keeps a running byte count that
//! the engine's progress hook compares with `--max-memory-mb` at every operation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting bytes on lab threads.
pub struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static BYTES: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    // `try_with`: never panic in the allocator, even while thread-locals are torn down.
    let counting = COUNTING.try_with(Cell::get).unwrap_or(false);
    if counting {
        let _ = BYTES.try_with(|b| b.set(b.get().saturating_add(delta)));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counting only
// touches const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Count this thread's allocations from now on, from zero.
pub fn start_counting() {
    BYTES.with(|b| b.set(0));
    COUNTING.with(|c| c.set(true));
}

/// Bytes this thread allocated and has not freed since `start_counting`.
pub fn counted() -> u64 {
    BYTES.with(Cell::get).max(0) as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lab_thread_counts_what_it_holds() {
        std::thread::spawn(|| {
            super::start_counting();
            let big = vec![0u8; 8 << 20];
            assert!(super::counted() >= 8 << 20);
            drop(big);
            assert!(super::counted() < 1 << 20);
        })
        .join()
        .unwrap();
    }
}
