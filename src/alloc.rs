//! The binary's global allocator: the system allocator, except that blocks of 4 MiB and more
//! (decoded Parquet columns, a fit's fitted values) get their own 2 MiB-aligned mapping marked
//! for transparent huge pages. A million-row `train` touches ~130 MB of fresh memory; on
//! 4 KiB pages that is ~16,000 page faults and a fifth of its wall time (BENCHMARKS.md,
//! "Trainer"). Small blocks stay with the system allocator, so a long `meter capture` keeps
//! its footprint (mimalloc, tried first, raised it past the 30 MB target).

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large get their own mapping.
const LARGE: usize = 4 << 20;
/// The huge page size on x86-64 and arm64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// System allocator with huge pages for large blocks (Linux; elsewhere the system one).
pub struct Allocator;

fn large(layout: &Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= LARGE && layout.align() <= HUGE_PAGE
}

fn mapped_len(size: usize) -> usize {
    size.div_ceil(HUGE_PAGE) * HUGE_PAGE
}

/// A fresh, zeroed, 2 MiB-aligned mapping of at least `size` bytes, or null.
#[cfg(target_os = "linux")]
unsafe fn map_large(size: usize) -> *mut u8 {
    let len = mapped_len(size);
    // Over-map by one huge page and trim both ends, so that the block starts on a 2 MiB
    // boundary: a huge page can only back an aligned 2 MiB range.
    let raw = libc::mmap(
        std::ptr::null_mut(),
        len + HUGE_PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if raw == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let raw = raw as usize;
    let start = raw.next_multiple_of(HUGE_PAGE);
    if start > raw {
        libc::munmap(raw as *mut libc::c_void, start - raw);
    }
    let end = start + len;
    let raw_end = raw + len + HUGE_PAGE;
    if raw_end > end {
        libc::munmap(end as *mut libc::c_void, raw_end - end);
    }
    // Advice only: where THP is off, the block simply stays on small pages.
    libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    start as *mut u8
}

#[cfg(target_os = "linux")]
unsafe fn unmap_large(ptr: *mut u8, size: usize) {
    libc::munmap(ptr as *mut libc::c_void, mapped_len(size));
}

// `large()` is false off Linux, so these are never called there.
#[cfg(not(target_os = "linux"))]
unsafe fn map_large(_size: usize) -> *mut u8 {
    std::ptr::null_mut()
}

#[cfg(not(target_os = "linux"))]
unsafe fn unmap_large(_ptr: *mut u8, _size: usize) {}

// SAFETY: a block comes from System (small) or from its own anonymous mapping (large), and
// which one is decided by its layout alone; callers give the same layout back, so every block
// returns to where it came from. Fresh anonymous mappings are zeroed, as alloc_zeroed needs.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if large(&layout) {
            map_large(layout.size())
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if large(&layout) {
            map_large(layout.size())
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if large(&layout) {
            unmap_large(ptr, layout.size());
        } else {
            System.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        match (large(&layout), large(&new_layout)) {
            (false, false) => System.realloc(ptr, layout, new_size),
            // The mapping already covers the new size.
            (true, true) if mapped_len(new_size) == mapped_len(layout.size()) => ptr,
            _ => {
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The tests run under this allocator (it is the binary's global one): vectors that grow
    /// across the threshold, shrink back, and are zeroed, keep their contents.
    #[test]
    fn blocks_keep_their_contents_across_the_threshold() {
        let mut v: Vec<u64> = Vec::new();
        for i in 0..1_500_000u64 {
            v.push(i);
        }
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
        v.truncate(1000);
        v.shrink_to_fit();
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
        let z = vec![0u8; 9 << 20];
        assert!(z.iter().all(|&b| b == 0));
        assert_eq!(z.as_ptr() as usize % super::HUGE_PAGE, 0);
        let mut w = vec![7u8; 5 << 20];
        w.resize(6 << 20, 8);
        w.resize(11 << 20, 9);
        assert_eq!((w[0], w[(6 << 20) - 1], w[(11 << 20) - 1]), (7, 8, 9));
    }
}
