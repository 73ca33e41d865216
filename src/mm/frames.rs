//! The page-frame allocator: every free 4 KiB page of RAM, handed out one at a time, with a
//! list of free pages per CPU in front of one global buddy allocator (chapter 21, "The page
//! allocator and page faults").
//!
//! The global allocator (buddy_system_allocator's `FrameAllocator`, over frame numbers) sits
//! behind one IRQ-safe lock. Taking that lock for every page would make it the busiest lock in
//! the kernel once four CPUs fault pages in, so each CPU keeps a short list of free pages of its
//! own, as Linux's per-CPU page lists do: `alloc` pops from this CPU's list and `free` pushes
//! onto it, and only when the list runs empty (refill: a batch of `BATCH` pages moves from the
//! global allocator) or grows past `HIGH` (drain: a batch moves back) does the CPU take the
//! lock. A list belongs to one CPU and is touched only with that CPU's IRQs masked, so nothing
//! else runs on the CPU meanwhile (no interrupt handler, no preemption, no migration): that is
//! the whole of its locking. Reading the CPU id with IRQs on and using the list after a
//! migration would let two CPUs pop the same page; `FramePool::set_broken_shared_list` builds
//! that mistake on purpose so the stress test in src/ktest/frames.rs can show what it does.
//!
//! Every frame also has a reference count (an `AtomicU32` per frame, in an array allocated at
//! init), for copy-on-write: a page shared by a parent and its forked child has count 2, and the
//! last `put_page` returns it to the free lists.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering as CoreOrdering};

use buddy_system_allocator::FrameAllocator;

use crate::config::MAX_CPUS;
use crate::percpu::{self, CacheAligned, PerCpu};
use crate::sync::IrqSafeSpinLock;
use crate::sync::irq::{pop_off, push_off};
use crate::sync::shim::{AtomicU32, Ordering, fence};
use crate::sync::spinlock::TtasLock;

/// Bytes in a page frame.
pub const PAGE_SIZE: usize = 4096;
const PAGE_SHIFT: u32 = 12;
/// Pages moved between a CPU's list and the global allocator at once.
pub const BATCH: usize = 16;
/// The most pages a CPU's list holds: a free that would go past it first drains a batch.
pub const HIGH: usize = 4 * BATCH;

/// One CPU's free pages: a stack of frame numbers.
///
/// The fields are atomics only so that the deliberately broken mode (several CPUs on one list)
/// stays a logic error the stress test can see, not undefined behaviour; in correct use one CPU
/// touches the list with its IRQs masked, and relaxed loads and stores compile to plain ones.
struct PageList {
    len: AtomicUsize,
    frames: [AtomicUsize; HIGH],
}

impl PageList {
    const fn new() -> Self {
        PageList {
            len: AtomicUsize::new(0),
            frames: [const { AtomicUsize::new(0) }; HIGH],
        }
    }

    fn len(&self) -> usize {
        self.len.load(CoreOrdering::Relaxed).min(HIGH)
    }

    fn pop(&self) -> Option<usize> {
        let len = self.len();
        if len == 0 {
            return None;
        }
        let frame = self.frames[len - 1].load(CoreOrdering::Relaxed);
        self.len.store(len - 1, CoreOrdering::Relaxed);
        Some(frame)
    }

    /// `pop` in the broken shared-list mode: the same steps with a pause between reading the
    /// length and writing it back, as a task preempted there would take, so the stress test
    /// meets the race within a bounded run rather than by luck of vCPU timing.
    fn pop_slowly(&self) -> Option<usize> {
        let len = self.len();
        if len == 0 {
            return None;
        }
        let frame = self.frames[len - 1].load(CoreOrdering::Relaxed);
        for i in 0..256u32 {
            core::hint::black_box(i);
        }
        self.len.store(len - 1, CoreOrdering::Relaxed);
        Some(frame)
    }

    /// Push unless full; false if there was no room.
    fn push(&self, frame: usize) -> bool {
        let len = self.len();
        if len == HIGH {
            return false;
        }
        self.frames[len].store(frame, CoreOrdering::Relaxed);
        self.len.store(len + 1, CoreOrdering::Relaxed);
        true
    }
}

/// Where the frames are: the first frame number and one counter per frame from there.
struct Refcounts {
    first_frame: usize,
    counts: Box<[AtomicU32]>,
}

/// What `stats` reports, for the shell's `mem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameStats {
    /// Pages the allocator was given.
    pub total: usize,
    /// Free pages in the global allocator.
    pub free: usize,
    /// Free pages waiting on each CPU's list.
    pub cached: [usize; MAX_CPUS],
    /// Pages handed out and not yet freed: total - free - all cached.
    pub in_use: usize,
}

// By hand: arrays longer than 32 have no `Default`.
impl Default for FrameStats {
    fn default() -> Self {
        FrameStats {
            total: 0,
            free: 0,
            cached: [0; MAX_CPUS],
            in_use: 0,
        }
    }
}

impl FrameStats {
    pub fn cached_total(&self) -> usize {
        self.cached.iter().sum()
    }
}

/// A page-frame allocator. The kernel has one (`FRAMES`, reached through the free functions
/// below); the stress test builds private ones over pages borrowed from it.
pub struct FramePool {
    /// The global buddy allocator of frame numbers. TTAS like the heap's lock: under QEMU a FIFO
    /// lock hands the lock to a waiter whose vCPU is not running.
    global: IrqSafeSpinLock<FrameAllocator<32>, TtasLock>,
    /// Free frames inside `global`, kept outside the lock so `stats` never waits.
    global_free: AtomicUsize,
    total: AtomicUsize,
    lists: PerCpu<PageList>,
    refcounts: spin::Once<Refcounts>,
    /// Test-only: every CPU uses CPU 0's list (as code that picked its list with IRQs on and
    /// then migrated would), so CPUs race on one list.
    broken_shared_list: AtomicBool,
    /// Frames handed out while their count said they were in use: the lists are corrupt.
    double_allocations: AtomicUsize,
    /// Puts of pages whose count was already zero.
    double_frees: AtomicUsize,
    /// Panic on a double allocation (the kernel's pool); a test pool counts them instead.
    panic_on_corruption: bool,
}

impl FramePool {
    pub const fn new(panic_on_corruption: bool) -> Self {
        FramePool {
            global: IrqSafeSpinLock::named("frames", FrameAllocator::new()),
            global_free: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            lists: PerCpu::new([const { CacheAligned(PageList::new()) }; MAX_CPUS]),
            refcounts: spin::Once::new(),
            broken_shared_list: AtomicBool::new(false),
            double_allocations: AtomicUsize::new(0),
            double_frees: AtomicUsize::new(0),
            panic_on_corruption,
        }
    }

    /// Give the pool the page-aligned physical ranges `[start, end)`; once only. Allocates
    /// the refcount array (4 bytes per frame between the lowest and highest address) on the
    /// heap. Returns the number of pages.
    pub fn init(&self, ranges: impl Iterator<Item = (usize, usize)>) -> usize {
        let ranges: Vec<(usize, usize)> = ranges
            .map(|(s, e)| (s.div_ceil(PAGE_SIZE), e / PAGE_SIZE))
            .filter(|(s, e)| e > s)
            .collect();
        let first = ranges.iter().map(|r| r.0).min().unwrap_or(0);
        let last = ranges.iter().map(|r| r.1).max().unwrap_or(0);
        let mut pages = 0;
        self.refcounts.call_once(|| Refcounts {
            first_frame: first,
            counts: (first..last).map(|_| AtomicU32::new(0)).collect(),
        });
        let mut global = self.global.lock();
        for &(start, end) in &ranges {
            global.add_frame(start, end);
            pages += end - start;
        }
        self.global_free.fetch_add(pages, CoreOrdering::Relaxed);
        self.total.fetch_add(pages, CoreOrdering::Relaxed);
        pages
    }

    fn count_of(&self, frame: usize) -> &AtomicU32 {
        let r = self
            .refcounts
            .get()
            .expect("page frame used before frames::init");
        match frame
            .checked_sub(r.first_frame)
            .and_then(|i| r.counts.get(i))
        {
            Some(c) => c,
            None => panic!(
                "{:#x} is not a page frame of this allocator",
                frame << PAGE_SHIFT
            ),
        }
    }

    /// Run `f` on this CPU's list with IRQs masked, so only this CPU, and nothing else on it,
    /// touches the list meanwhile.
    fn with_my_list<R>(&self, f: impl FnOnce(&PageList) -> R) -> R {
        push_off();
        let cpu = if self.broken_shared_list.load(CoreOrdering::Relaxed) {
            0
        } else {
            percpu::current_id().unwrap_or(0)
        };
        let result = f(self.lists.for_cpu(cpu));
        pop_off();
        result
    }

    /// One page: its physical address, refcount 1, contents undefined.
    pub fn alloc(&self) -> Option<usize> {
        let broken = self.broken_shared_list.load(CoreOrdering::Relaxed);
        let pop = |list: &PageList| {
            if broken {
                list.pop_slowly()
            } else {
                list.pop()
            }
        };
        let frame = self.with_my_list(|list| {
            if let Some(frame) = pop(list) {
                return Some(frame);
            }
            self.refill(list);
            pop(list)
        })?;
        let before = self.count_of(frame).swap(1, Ordering::Relaxed);
        if before != 0 {
            self.double_allocations.fetch_add(1, CoreOrdering::Relaxed);
            if self.panic_on_corruption {
                panic!(
                    "page frame {:#x} handed out while its refcount was {before}: the free lists are corrupt",
                    frame << PAGE_SHIFT
                );
            }
        }
        Some(frame << PAGE_SHIFT)
    }

    /// Move up to a batch from the global allocator onto `list` (empty, this CPU's).
    fn refill(&self, list: &PageList) {
        let mut global = self.global.lock();
        for _ in 0..BATCH {
            let Some(frame) = global.alloc(1) else { break };
            self.global_free.fetch_sub(1, CoreOrdering::Relaxed);
            if !list.push(frame) {
                // Only in the broken shared-list mode can another CPU have filled it meanwhile.
                global.dealloc(frame, 1);
                self.global_free.fetch_add(1, CoreOrdering::Relaxed);
                break;
            }
        }
    }

    /// A run of `count` contiguous pages straight from the global allocator, each with
    /// refcount 1 (the stress test borrows its private pool's memory this way).
    pub fn alloc_contiguous(&self, count: usize) -> Option<usize> {
        let frame = self.global.lock().alloc(count)?;
        self.global_free.fetch_sub(count, CoreOrdering::Relaxed);
        for f in frame..frame + count {
            self.count_of(f).store(1, Ordering::Relaxed);
        }
        Some(frame << PAGE_SHIFT)
    }

    /// Return a page whose count has reached zero to this CPU's list (draining a batch to the
    /// global allocator first if the list is full).
    fn free(&self, frame: usize) {
        self.with_my_list(|list| {
            if list.push(frame) {
                return;
            }
            let mut global = self.global.lock();
            for _ in 0..BATCH {
                let Some(old) = list.pop() else { break };
                global.dealloc(old, 1);
                self.global_free.fetch_add(1, CoreOrdering::Relaxed);
            }
            if !list.push(frame) {
                global.dealloc(frame, 1);
                self.global_free.fetch_add(1, CoreOrdering::Relaxed);
            }
        });
    }

    /// One more holder of the page at `pa` (a copy-on-write share).
    pub fn get(&self, pa: usize) {
        let before = self
            .count_of(pa >> PAGE_SHIFT)
            .fetch_add(1, Ordering::Relaxed);
        assert!(before > 0, "get_page({pa:#x}) on a free page");
    }

    /// One holder fewer; the last one frees the page. True if this call freed it.
    pub fn put(&self, pa: usize) -> bool {
        match drop_reference(self.count_of(pa >> PAGE_SHIFT)) {
            Ok(true) => {
                self.free(pa >> PAGE_SHIFT);
                true
            }
            Ok(false) => false,
            Err(DoubleFree) => {
                self.double_frees.fetch_add(1, CoreOrdering::Relaxed);
                assert!(
                    !self.panic_on_corruption,
                    "put_page({pa:#x}) on a free page (double free)"
                );
                false
            }
        }
    }

    pub fn refcount(&self, pa: usize) -> u32 {
        self.count_of(pa >> PAGE_SHIFT).load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> FrameStats {
        let mut s = FrameStats {
            total: self.total.load(CoreOrdering::Relaxed),
            free: self.global_free.load(CoreOrdering::Relaxed),
            ..FrameStats::default()
        };
        for (cpu, list) in self.lists.iter().enumerate() {
            s.cached[cpu] = list.len();
        }
        s.in_use = s.total.saturating_sub(s.free + s.cached_total());
        s
    }

    /// Test-only: make every CPU use CPU 0's list (see the module doc).
    pub fn set_broken_shared_list(&self, broken: bool) {
        self.broken_shared_list.store(broken, CoreOrdering::Relaxed);
    }

    pub fn double_allocations(&self) -> usize {
        self.double_allocations.load(CoreOrdering::Relaxed)
    }

    pub fn double_frees(&self) -> usize {
        self.double_frees.load(CoreOrdering::Relaxed)
    }

    /// The physical address range this pool's refcounts cover.
    pub fn span(&self) -> (usize, usize) {
        self.refcounts.get().map_or((0, 0), |r| {
            (
                r.first_frame << PAGE_SHIFT,
                (r.first_frame + r.counts.len()) << PAGE_SHIFT,
            )
        })
    }
}

/// A `put` found the count at zero: the page was already free.
#[derive(Debug, PartialEq, Eq)]
struct DoubleFree;

/// Drop one reference to a page; true if it was the last. The holders may have read or written
/// the page until their `put`, and the last one hands it to whoever allocates it next: the
/// release half of the decrement publishes each holder's accesses, and the acquire fence on the
/// last one orders them all before the page's reuse (loom checks this,
/// `loom_last_put_sees_every_holders_reads_done`).
fn drop_reference(count: &AtomicU32) -> Result<bool, DoubleFree> {
    let before = count.fetch_sub(1, Ordering::Release);
    if before == 0 {
        count.fetch_add(1, Ordering::Relaxed);
        return Err(DoubleFree);
    }
    if before == 1 {
        fence(Ordering::Acquire);
        return Ok(true);
    }
    Ok(false)
}

/// The kernel's page frames.
pub static FRAMES: FramePool = FramePool::new(true);

/// Give the kernel's allocator every free range (physical, page-aligned); see src/main.rs.
pub fn init(free_ranges: impl Iterator<Item = (usize, usize)>) -> usize {
    FRAMES.init(free_ranges)
}

/// One page: its physical address, refcount 1, contents undefined.
pub fn alloc_page() -> Option<usize> {
    FRAMES.alloc()
}

/// One page of zeros, refcount 1.
pub fn alloc_zeroed_page() -> Option<usize> {
    let pa = FRAMES.alloc()?;
    // SAFETY: the page is ours alone (refcount 1, just allocated) and the linear map reaches
    // every page frame read-write.
    unsafe { core::ptr::write_bytes(super::phys_to_virt(pa) as *mut u8, 0, PAGE_SIZE) };
    Some(pa)
}

pub fn get_page(pa: usize) {
    FRAMES.get(pa)
}

pub fn put_page(pa: usize) {
    FRAMES.put(pa);
}

pub fn page_refcount(pa: usize) -> u32 {
    FRAMES.refcount(pa)
}

pub fn stats() -> FrameStats {
    FRAMES.stats()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    /// A pool over pretend frames (nothing touches their memory).
    fn pool(frames: usize) -> FramePool {
        let pool = FramePool::new(true);
        let start = 0x4000_0000;
        assert_eq!(
            pool.init([(start, start + frames * PAGE_SIZE)].into_iter()),
            frames
        );
        pool
    }

    fn as_cpu<R: Send + 'static>(id: usize, f: impl FnOnce() -> R + Send + 'static) -> R {
        let _cpus = crate::percpu::playing_cpus();
        std::thread::spawn(move || {
            percpu::install(id);
            f()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn a_first_allocation_refills_a_batch_and_frees_stay_on_the_cpu() {
        let pool = Arc::new(pool(256));
        let p = pool.clone();
        as_cpu(1, move || {
            let page = p.alloc().unwrap();
            assert_eq!(p.refcount(page), 1);
            let s = p.stats();
            assert_eq!(
                s.cached[1],
                BATCH - 1,
                "one batch moved, one page handed out"
            );
            assert_eq!((s.free, s.in_use), (256 - BATCH, 1));
            assert!(p.put(page));
            assert_eq!(p.stats().cached[1], BATCH);
            assert_eq!(p.stats().in_use, 0);
        });
    }

    #[test]
    fn a_long_list_drains_a_batch_back_and_nothing_is_lost() {
        let pool = Arc::new(pool(512));
        let p = pool.clone();
        as_cpu(2, move || {
            let pages: Vec<usize> = (0..300).map(|_| p.alloc().unwrap()).collect();
            let distinct: HashSet<_> = pages.iter().collect();
            assert_eq!(distinct.len(), 300, "a page handed out twice");
            for &page in &pages {
                p.put(page);
                assert!(p.stats().cached[2] <= HIGH);
            }
            let s = p.stats();
            assert_eq!(s.in_use, 0);
            assert_eq!(s.free + s.cached_total(), 512);
            assert!(s.cached[2] > 0 && s.cached[2] <= HIGH);
        });
    }

    #[test]
    fn exhaustion_returns_none_and_every_page_comes_back() {
        let pool = Arc::new(pool(40));
        let p = pool.clone();
        as_cpu(0, move || {
            let pages: Vec<usize> = std::iter::from_fn(|| p.alloc()).collect();
            assert_eq!(pages.len(), 40);
            assert_eq!(p.stats().in_use, 40);
            pages.iter().for_each(|&pg| {
                p.put(pg);
            });
            assert_eq!(p.stats().in_use, 0);
        });
    }

    #[test]
    fn refcounts_free_on_the_last_put_only() {
        let pool = Arc::new(pool(64));
        let p = pool.clone();
        as_cpu(0, move || {
            let page = p.alloc().unwrap();
            p.get(page);
            assert_eq!(p.refcount(page), 2);
            assert!(!p.put(page), "the first put of two must not free");
            assert_eq!(p.stats().in_use, 1);
            assert!(p.put(page));
            assert_eq!(p.refcount(page), 0);
            assert_eq!(p.stats().in_use, 0);
        });
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn a_double_put_is_caught() {
        let pool = pool(64);
        let page = pool.alloc().unwrap();
        pool.put(page);
        pool.put(page);
    }

    #[test]
    fn cpus_allocating_at_once_never_share_a_page() {
        let _cpus = crate::percpu::playing_cpus();
        let pool = Arc::new(pool(1024));
        let handles: Vec<_> = (0..4)
            .map(|cpu| {
                let p = pool.clone();
                std::thread::spawn(move || {
                    percpu::install(cpu);
                    let mut mine = Vec::new();
                    for round in 0..200 {
                        mine.push(p.alloc().unwrap());
                        if round % 3 == 0 {
                            p.put(mine.swap_remove(round % mine.len()));
                        }
                    }
                    mine
                })
            })
            .collect();
        let all: Vec<usize> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let distinct: HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
        assert_eq!(pool.stats().in_use, all.len());
        assert_eq!(pool.double_allocations(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    /// Two holders of a shared page (copy-on-write: both only read it) drop their references at
    /// once; the one that drops the last reuses the page, writing it. Loom reports a data race
    /// if the other holder's read could come after that write, which is what a relaxed
    /// decrement without the acquire fence would allow.
    #[test]
    fn loom_last_put_sees_every_holders_reads_done() {
        loom::model(|| {
            let count = Arc::new(AtomicU32::new(2));
            let page = Arc::new(UnsafeCell::new(7u64));
            let holder = {
                let (count, page) = (count.clone(), page.clone());
                loom::thread::spawn(move || {
                    // SAFETY (model): holders only read the shared page.
                    assert_eq!(page.with(|p| unsafe { *p }), 7);
                    if drop_reference(&count).unwrap() {
                        // SAFETY (model): the last holder owns the page.
                        page.with_mut(|p| unsafe { *p = 0 });
                        return true;
                    }
                    false
                })
            };
            // SAFETY (model): as above.
            assert_eq!(page.with(|p| unsafe { *p }), 7);
            let freed_here = drop_reference(&count).unwrap();
            if freed_here {
                // SAFETY (model): as above.
                page.with_mut(|p| unsafe { *p = 0 });
            }
            let freed_there = holder.join().unwrap();
            assert!(
                freed_here ^ freed_there,
                "exactly one holder frees the page"
            );
        });
    }
}
