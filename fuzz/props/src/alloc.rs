//! A heap meter: the system allocator, counting per thread how many bytes are held, so that a
//! property can bound the peak a decoder reaches. A binary opts in by installing [`Meter`] as
//! its global allocator (every fuzz target and the corpus regression test do); without it,
//! [`peak_during`] measures nothing and reports 0.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // Const-initialised and without a destructor: reading them never allocates, so the
    // allocator may use them.
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static INSTALLED: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator with per-thread accounting.
pub struct Meter;

fn add(bytes: isize) {
    // `try_with` fails only while the thread is being torn down; nothing is measured then.
    let _ = HELD.try_with(|held| {
        let now = held.get() + bytes;
        held.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
    let _ = INSTALLED.try_with(|installed| installed.set(true));
}

fn size(layout: Layout) -> isize {
    isize::try_from(layout.size()).unwrap_or(isize::MAX)
}

// SAFETY: every call is forwarded unchanged to `System`; the accounting touches only
// thread-local cells that never allocate.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add(size(layout));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(size(layout));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        add(-size(layout));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(isize::try_from(new_size).unwrap_or(isize::MAX) - size(layout));
        }
        new
    }
}

/// Runs `f` and returns what it returned and the most heap it held at once beyond what was
/// held when it started (on this thread, counting what it returns).
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = HELD.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let value = f();
    let peak = PEAK.with(Cell::get) - start;
    (value, usize::try_from(peak).unwrap_or(0))
}

/// Whether [`Meter`] is the global allocator of this binary (it has counted an allocation
/// on this thread).
pub fn installed() -> bool {
    let _probe = Box::new(0u8);
    INSTALLED.with(Cell::get)
}
