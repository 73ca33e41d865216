//! The kernel heap: buddy_system_allocator over the RAM the device tree describes (chapter 2).
//!
//! Free RAM is every memory region minus what must not be handed out: the kernel image with its
//! stacks and page tables, the DTB, /memreserve/ and /reserved-memory ranges, the spin-table
//! page. The allocator sits behind an `IrqSafeSpinLock`, so any CPU, and any interrupt handler, may allocate. When an allocation
//! fails the heap logs the request and what is left; `alloc` then reports the failure as a
//! panic that names the size, and the panic handler stops the kernel clearly.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::platform::{FixedList, Region};
use crate::sync::IrqSafeSpinLock;
use crate::sync::spinlock::TtasLock;

/// Free RAM ranges: `memory` minus every `reserved` range, clipped to whole pages.
pub fn free_ranges(memory: &[Region], reserved: &[Region]) -> FixedList<Region, 32> {
    const PAGE: u64 = 4096;
    let mut out: FixedList<Region, 32> = FixedList::default();
    for ram in memory {
        // Cut `ram` at every reserved range, left to right: collect pieces by repeated splitting.
        let mut pieces: FixedList<Region, 32> = FixedList::default();
        pieces.push(*ram);
        for hole in reserved.iter().filter(|r| r.size > 0) {
            let mut next: FixedList<Region, 32> = FixedList::default();
            for piece in pieces.as_slice() {
                if !piece.overlaps(hole) {
                    next.push(*piece);
                    continue;
                }
                if hole.start > piece.start {
                    next.push(Region::new(piece.start, hole.start - piece.start));
                }
                if hole.end() < piece.end() {
                    next.push(Region::new(hole.end(), piece.end() - hole.end()));
                }
            }
            pieces = next;
        }
        for piece in pieces.as_slice() {
            let start = (piece.start + PAGE - 1) & !(PAGE - 1);
            let end = piece.end() & !(PAGE - 1);
            if end > start {
                out.push(Region::new(start, end - start));
            }
        }
    }
    out
}

/// Split free RAM in two: the first `heap_bytes` (whole pages) for the heap, the rest for the
/// page-frame allocator. Returns (heap ranges, frame ranges).
pub fn split_for_heap(
    free: &[Region],
    heap_bytes: u64,
) -> (FixedList<Region, 32>, FixedList<Region, 32>) {
    const PAGE: u64 = 4096;
    let mut left = heap_bytes & !(PAGE - 1);
    let (mut heap, mut frames): (FixedList<Region, 32>, FixedList<Region, 32>) = Default::default();
    for r in free {
        let take = left.min(r.size);
        if take > 0 {
            heap.push(Region::new(r.start, take));
        }
        if take < r.size {
            frames.push(Region::new(r.start + take, r.size - take));
        }
        left -= take;
    }
    (heap, frames)
}

/// Free RAM on `platform`, with the kernel `image` (stacks and boot page tables included) left
/// out, split between the heap and the page frames as `split_for_heap` does with the heap's
/// share (`config::HEAP_SHARE_DIVISOR`). Boot and the shell's `mem` both call this, so they
/// agree on who got what.
pub fn heap_and_frame_ranges(
    platform: &crate::platform::Platform<'_>,
    image: Region,
) -> (FixedList<Region, 32>, FixedList<Region, 32>) {
    let mut reserved = platform.reserved;
    reserved.push(image);
    let free = free_ranges(platform.memory.as_slice(), reserved.as_slice());
    let bytes: u64 = free.as_slice().iter().map(|r| r.size).sum();
    split_for_heap(free.as_slice(), bytes / crate::config::HEAP_SHARE_DIVISOR)
}

/// Allocation statistics, kept outside the lock so reading them never waits.
#[derive(Default)]
pub struct HeapStats {
    pub allocations: AtomicU64,
    pub frees: AtomicU64,
    pub failures: AtomicU64,
    pub bytes_in_use: AtomicUsize,
    pub bytes_total: AtomicUsize,
}

/// The global allocator: a buddy heap behind a spin lock.
pub struct KernelHeap {
    /// Test-and-test-and-set, not the default ticket lock: every CPU allocates, and under QEMU
    /// with more vCPUs than host cores a FIFO lock hands the heap to a waiter whose vCPU is not
    /// running, so every waiter behind it waits a host time slice (8 vCPUs on 2 cores spun
    /// for seconds here). TTAS gives it to whichever waiter is running.
    heap: IrqSafeSpinLock<buddy_system_allocator::Heap<32>, TtasLock>,
    pub stats: HeapStats,
}

impl KernelHeap {
    pub const fn new() -> Self {
        KernelHeap {
            heap: IrqSafeSpinLock::named("heap", buddy_system_allocator::Heap::new()),
            stats: HeapStats {
                allocations: AtomicU64::new(0),
                frees: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                bytes_in_use: AtomicUsize::new(0),
                bytes_total: AtomicUsize::new(0),
            },
        }
    }

    /// Give the heap the memory [start, start + size).
    ///
    /// # Safety
    /// The range must be mapped read-write, unused by anything else, for the kernel's lifetime.
    pub unsafe fn add_region(&self, region: Region) {
        // SAFETY: forwarded to the caller.
        unsafe {
            self.heap
                .lock()
                .add_to_heap(region.start as usize, region.end() as usize)
        };
        self.stats
            .bytes_total
            .fetch_add(region.size as usize, Ordering::Relaxed);
    }

    pub fn bytes_in_use(&self) -> usize {
        self.stats.bytes_in_use.load(Ordering::Relaxed)
    }

    pub fn bytes_total(&self) -> usize {
        self.stats.bytes_total.load(Ordering::Relaxed)
    }
}

impl Default for KernelHeap {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every allocation comes from the buddy heap under its lock, so no block is handed out
// twice; dealloc returns blocks with the layout they were allocated with.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.heap.lock().alloc(layout) {
            Ok(block) => {
                self.stats.allocations.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .bytes_in_use
                    .fetch_add(layout.size(), Ordering::Relaxed);
                block.as_ptr()
            }
            Err(()) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "out of memory: request of {} bytes (align {}) failed; {} of {} bytes in use",
                    layout.size(),
                    layout.align(),
                    self.bytes_in_use(),
                    self.bytes_total()
                );
                core::ptr::null_mut()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = core::ptr::NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with this layout.
            unsafe { self.heap.lock().dealloc(block, layout) };
            self.stats.frees.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_in_use
                .fetch_sub(layout.size(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ranges_are_cut_out_and_pages_kept_whole() {
        let ram = [Region::new(0x4000_0000, 0x2000_0000)];
        let reserved = [
            Region::new(0x4000_0000, 0x1_0000),  // DTB at the start of RAM
            Region::new(0x4008_0000, 0x20_0800), // kernel, not page-sized
            Region::new(0x9000_0000, 0x1000),    // outside RAM: ignored
        ];
        let free = free_ranges(&ram, &reserved);
        // The kernel ends at 0x4028_0800, mid-page: the heap starts at the next whole page.
        assert_eq!(
            free.as_slice(),
            [
                Region::new(0x4001_0000, 0x7_0000),
                Region::new(0x4028_1000, 0x6000_0000 - 0x4028_1000)
            ]
        );
    }

    #[test]
    fn the_heap_takes_its_share_from_the_front_and_the_frames_the_rest() {
        let free = [
            Region::new(0x4000_0000, 0x3000),
            Region::new(0x5000_0000, 0x10_0000),
        ];
        let (heap, frames) = split_for_heap(&free, 0x5000);
        assert_eq!(
            heap.as_slice(),
            [
                Region::new(0x4000_0000, 0x3000),
                Region::new(0x5000_0000, 0x2000)
            ]
        );
        assert_eq!(
            frames.as_slice(),
            [Region::new(0x5000_2000, 0x10_0000 - 0x2000)]
        );
    }

    #[test]
    fn a_fully_reserved_region_leaves_nothing() {
        let ram = [Region::new(0, 0x1000)];
        assert!(free_ranges(&ram, &[Region::new(0, 0x1000)]).is_empty());
    }

    #[test]
    fn heap_serves_and_reports_exhaustion() {
        #[repr(align(4096))]
        struct Arena([u8; 64 * 1024]);
        let arena = Box::leak(Box::new(Arena([0; 64 * 1024])));
        let heap = KernelHeap::new();
        // SAFETY: the leaked arena is ours alone for the rest of the test process.
        unsafe { heap.add_region(Region::new(arena.0.as_ptr() as u64, arena.0.len() as u64)) };
        let small = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: valid non-zero layout; freed below with the same layout.
        let p = unsafe { heap.alloc(small) };
        assert!(!p.is_null());
        assert_eq!(heap.bytes_in_use(), 100);
        let huge = Layout::from_size_align(1 << 20, 8).unwrap();
        // SAFETY: as above; a null result is the expected outcome.
        assert!(unsafe { heap.alloc(huge) }.is_null());
        assert_eq!(heap.stats.failures.load(Ordering::Relaxed), 1);
        // SAFETY: p came from this heap with this layout.
        unsafe { heap.dealloc(p, small) };
        assert_eq!(heap.bytes_in_use(), 0);
    }
}
