//! A global allocator that survives hostile length prefixes.
//!
//! The `kafka-protocol` decoder pre-allocates arrays with
//! `Vec::with_capacity(n)` for a length `n` read off the wire, before it
//! finds out that the frame is far too short to hold `n` elements (an open
//! upstream bug). A few bytes can so ask for hundreds of GiB. The system
//! allocator refuses such a request, and Rust then *aborts* the process: a
//! one-packet denial of service that no `catch_unwind` can stop.
//!
//! This allocator serves every allocation of [`HUGE_BYTES`] or more with an
//! anonymous `mmap(MAP_NORESERVE)`: address space only, no memory committed
//! until a page is touched. The decoder never touches the pages (it fails on
//! the short frame first) and the mapping is released at once. Smaller
//! allocations, nearly all of them, go to the system allocator unchanged.
//! Legitimate allocations this large do not exist in Strata (requests are
//! capped at `socket.request.max.bytes`, cache blocks are MiBs).
//!
//! Under `vm.overcommit_memory=2` the kernel refuses even reserved mappings,
//! and a hostile frame can still abort the process; the default heuristic
//! mode (0) and mode 1 are covered.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations from this size up are served by `mmap`.
pub const HUGE_BYTES: usize = 1 << 30;

/// Page size assumed for `mmap` alignment (the smallest on Linux).
const PAGE_BYTES: usize = 4096;

/// The system allocator, with `mmap(MAP_NORESERVE)` for huge requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReservingAllocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE_BYTES
}

/// Caps glibc's malloc arenas at two. By default glibc gives busy threads
/// arenas of their own (up to 8 per core) and each keeps freed memory for
/// reuse; with the runtime's worker threads allocating and freeing
/// megabyte-sized segment buffers, that added ~250 MiB of resident memory
/// under produce load (measured: peak RSS 753-892 MiB with the default,
/// 518-605 MiB with two arenas, same throughput). Call once at start-up,
/// before threads are spawned. A no-op on other C libraries.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[expect(unsafe_code, reason = "mallopt is a C call")]
    // SAFETY: mallopt only adjusts allocator tunables; M_ARENA_MAX with a
    // positive value is valid at any time, and it is called before other
    // threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[expect(unsafe_code, reason = "a global allocator is unsafe by definition")]
mod imp {
    use super::*;

    fn reserve(size: usize) -> *mut u8 {
        // SAFETY: an anonymous private mapping with no address hint has no
        // preconditions; failure is reported as MAP_FAILED and mapped to
        // null, which GlobalAlloc callers handle.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            ptr.cast()
        }
    }

    fn release(ptr: *mut u8, size: usize) {
        // SAFETY: `ptr` and `size` describe a mapping made by `reserve`
        // (huge layouts only ever come from there) that is being freed.
        unsafe {
            libc::munmap(ptr.cast(), size);
        }
    }

    // SAFETY: every method either forwards to `System` with the caller's
    // arguments or, for huge layouts, uses a fresh page-aligned anonymous
    // mapping (zero-filled, at least `size` bytes, alignment ≤ a page),
    // released with the same size. Huge and small layouts never mix: the
    // size of a layout decides which side frees it.
    unsafe impl GlobalAlloc for ReservingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if is_huge(&layout) {
                return reserve(layout.size());
            }
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if is_huge(&layout) {
                // Anonymous mappings are zero-filled.
                return reserve(layout.size());
            }
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if is_huge(&layout) {
                release(ptr, layout.size());
                return;
            }
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: the caller guarantees `new_size` with this alignment
            // forms a valid layout.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            if !is_huge(&layout) && !is_huge(&new_layout) {
                // SAFETY: forwarded with the caller's guarantees.
                return unsafe { System.realloc(ptr, layout, new_size) };
            }
            // SAFETY: `new_layout` is valid (see above).
            let fresh = unsafe { self.alloc(new_layout) };
            if !fresh.is_null() {
                // SAFETY: both blocks are live, distinct, and at least
                // min(old, new) bytes long.
                unsafe { std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size)) };
                // SAFETY: `ptr` was allocated by this allocator with `layout`.
                unsafe { self.dealloc(ptr, layout) };
            }
            fresh
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_capacity_is_reserved_not_aborted() {
        // Goal: the allocation the decoder would ask for on a hostile frame
        // succeeds (as address space) instead of aborting. This test binary
        // uses ReservingAllocator as its global allocator (see lib.rs).
        let v: Vec<[u8; 64]> = Vec::with_capacity(2_000_000_000); // 128 GB
        assert!(v.capacity() >= 2_000_000_000);
        drop(v);
        let mut small: Vec<u8> = Vec::with_capacity(16);
        small.extend_from_slice(b"still works");
        assert_eq!(&small[..], b"still works");
    }

    #[test]
    fn huge_allocations_can_be_written_and_grown() {
        let mut v: Vec<u8> = Vec::with_capacity(HUGE_BYTES);
        v.push(7);
        v.reserve(HUGE_BYTES * 2);
        assert_eq!(v[0], 7);
        v.shrink_to(1024);
        assert_eq!(v[0], 7);
    }
}
