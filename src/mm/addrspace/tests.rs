//! Host tests of the address space over fake physical memory: a heap arena whose addresses
//! stand in for physical ones, handed out by a real `FramePool`.

use super::*;
use crate::mm::frames::FramePool;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
struct FakeMm {
    pool: &'static FramePool,
    flushes: Arc<Mutex<Vec<(u16, usize)>>>,
}

impl MmEnv for FakeMm {
    fn alloc_zeroed_page(&self) -> Option<usize> {
        let pa = self.pool.alloc()?;
        // SAFETY: arena pages are real host memory, ours alone once allocated.
        unsafe { core::ptr::write_bytes(pa as *mut u8, 0, PAGE_SIZE) };
        Some(pa)
    }
    fn get_page(&self, pa: usize) {
        self.pool.get(pa)
    }
    fn put_page(&self, pa: usize) {
        self.pool.put(pa);
    }
    fn page_refcount(&self, pa: usize) -> u32 {
        self.pool.refcount(pa)
    }
    fn page_ptr(&self, pa: usize) -> *mut u8 {
        pa as *mut u8
    }
    fn flush_page(&self, asid: u16, va: usize, _ran_on: &CpuMask) {
        self.flushes.lock().unwrap().push((asid, va));
    }
    fn flush_asid(&self, asid: u16, _ran_on: &CpuMask) {
        self.flushes.lock().unwrap().push((asid, usize::MAX));
    }
}

/// A pool over `pages` pages of leaked, page-aligned host memory.
fn env(pages: usize) -> FakeMm {
    let layout = std::alloc::Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap();
    // SAFETY: non-zero size; leaked for the test process's life.
    let arena = unsafe { std::alloc::alloc_zeroed(layout) } as usize;
    let pool: &'static FramePool = Box::leak(Box::new(FramePool::new(true)));
    pool.init([(arena, arena + pages * PAGE_SIZE)].into_iter());
    FakeMm {
        pool,
        flushes: Arc::default(),
    }
}

type Space = AddressSpaceIn<FakeMm>;

fn read_u64(s: &Space, va: usize) -> u64 {
    let (pa, _) = s.translate(va).expect("mapped");
    // SAFETY: pa is an arena address of a mapped page.
    unsafe { (pa as *const u64).read() }
}

/// Store as user code would: fault the page in (or copy it) for writing first.
fn user_write(s: &mut Space, va: usize, value: u64) {
    match s.translate(va) {
        Some((_, true)) => {}
        _ => s.handle_fault(va, Access::Write).unwrap(),
    }
    let (pa, writable) = s.translate(va).unwrap();
    assert!(writable, "{va:#x} still read-only after the write fault");
    // SAFETY: as in read_u64.
    unsafe { (pa as *mut u64).write(value) };
}

/// Give the space an ASID as if it had run, so its TLB maintenance is recorded.
fn as_if_it_ran(s: &Space) -> u16 {
    s.context.store((1 << 16) | 7, Ordering::Relaxed);
    7
}

#[test]
fn demand_zero_pages_appear_on_first_touch() {
    let e = env(64);
    let mut s = Space::new_in(e.clone()).unwrap();
    s.map_zeroed(0x40_0000, 3 * PAGE_SIZE, Prot::RW).unwrap();
    assert_eq!(s.resident_pages(), 0, "nothing is mapped before a touch");
    assert_eq!(s.lookup(0x40_1000), None);
    s.handle_fault(0x40_1008, Access::Read).unwrap();
    assert_eq!(s.resident_pages(), 1);
    assert_eq!(read_u64(&s, 0x40_1008), 0);
    user_write(&mut s, 0x40_1010, 42);
    assert_eq!(read_u64(&s, 0x40_1010), 42);
    assert_eq!(
        s.resident_pages(),
        1,
        "a write to a mapped RW page allocates nothing"
    );
    let d = s.lookup(0x40_1000).unwrap();
    assert_ne!(d & NOT_GLOBAL, 0, "user pages are per-ASID");
    assert_ne!(d & PXN, 0, "the kernel never executes user pages");
    assert_ne!(d & UXN, 0, "RW is not executable");
    assert_ne!(d & AP_EL0, 0);
    assert_eq!(d & AP_READ_ONLY, 0);
    assert_ne!(d & ACCESS_FLAG, 0);
    assert_eq!(d & SH_INNER, SH_INNER);
    // One table at each of levels 2 and 3, plus the root.
    assert_eq!(s.table_pages(), 3);
}

#[test]
fn faults_outside_what_a_region_allows_say_why() {
    let e = env(64);
    let mut s = Space::new_in(e).unwrap();
    s.map_zeroed(0x40_0000, PAGE_SIZE, Prot::RX).unwrap();
    s.map_zeroed(0x50_0000, PAGE_SIZE, Prot::READ).unwrap();
    s.set_stack(0x80_0000, 4 * PAGE_SIZE).unwrap();
    assert_eq!(
        s.handle_fault(0x60_0000, Access::Read),
        Err(FaultError::NoRegion { addr: 0x60_0000 })
    );
    assert_eq!(
        s.handle_fault(0x40_0010, Access::Write),
        Err(FaultError::WriteToReadOnly { addr: 0x40_0010 })
    );
    assert_eq!(
        s.handle_fault(0x50_0000, Access::Exec),
        Err(FaultError::ExecOfNonExec { addr: 0x50_0000 })
    );
    let guard = 0x80_0000 - 5 * PAGE_SIZE + 8;
    assert_eq!(
        s.handle_fault(guard, Access::Write),
        Err(FaultError::StackOverflow { addr: guard })
    );
    s.handle_fault(0x40_0000, Access::Exec).unwrap();
    let d = s.lookup(0x40_0000).unwrap();
    assert_eq!(d & UXN, 0, "RX is executable at EL0");
    assert_ne!(d & AP_READ_ONLY, 0);
    s.handle_fault(0x80_0000 - 8, Access::Write).unwrap();
    assert_eq!(s.resident_pages(), 2);
    assert!(
        FaultError::StackOverflow { addr: 0x1000 }
            .to_string()
            .contains("stack overflow")
    );
}

#[test]
fn fork_shares_pages_copy_on_write_and_copies_only_on_write() {
    let e = env(128);
    let mut parent = Space::new_in(e.clone()).unwrap();
    let asid = as_if_it_ran(&parent);
    parent
        .map_zeroed(0x40_0000, 8 * PAGE_SIZE, Prot::RW)
        .unwrap();
    for p in 0..8 {
        user_write(&mut parent, 0x40_0000 + p * PAGE_SIZE, 100 + p as u64);
    }
    let in_use_before = e.pool.stats().in_use;
    e.flushes.lock().unwrap().clear();
    let mut child = parent.fork_in(e.clone()).unwrap();
    let fork_cost = e.pool.stats().in_use - in_use_before;
    let eager_cost = child.table_pages() + parent.resident_pages();
    println!(
        "fork of {} resident pages: {fork_cost} new pages with copy-on-write (the child's tables), {eager_cost} with an eager copy",
        parent.resident_pages()
    );
    assert_eq!(
        fork_cost,
        child.table_pages(),
        "a COW fork allocates only tables"
    );
    assert_eq!(fork_cost, 3);
    assert_eq!(eager_cost, 11);
    // Every parent page became read-only, and the parent's TLB entries were invalidated.
    let flushed = e.flushes.lock().unwrap().clone();
    assert_eq!(flushed.len(), 8);
    assert!(flushed.iter().all(|&(a, _)| a == asid));
    for p in 0..8 {
        let va = 0x40_0000 + p * PAGE_SIZE;
        let (ppa, pw) = parent.translate(va).unwrap();
        let (cpa, cw) = child.translate(va).unwrap();
        assert_eq!(ppa, cpa);
        assert!(!pw && !cw, "shared pages are read-only on both sides");
        assert_eq!(e.pool.refcount(ppa), 2);
    }
    // The child writes: it gets its own copy; the parent keeps its data.
    user_write(&mut child, 0x40_0000, 999);
    assert_eq!(read_u64(&child, 0x40_0000), 999);
    assert_eq!(read_u64(&parent, 0x40_0000), 100);
    assert_eq!(
        read_u64(&child, 0x40_1000),
        101,
        "unwritten pages stay shared"
    );
    let (ppa, _) = parent.translate(0x40_0000).unwrap();
    assert_eq!(e.pool.refcount(ppa), 1);
    // The parent is now the page's only holder: its write copies nothing.
    let before = e.pool.stats().in_use;
    user_write(&mut parent, 0x40_0000, 5);
    assert_eq!(
        e.pool.stats().in_use,
        before,
        "the last holder reuses the page"
    );
    assert_eq!(parent.translate(0x40_0000).unwrap().0, ppa);
    assert_eq!(read_u64(&child, 0x40_0000), 999);
}

#[test]
fn dropping_parent_and_child_returns_every_page() {
    let e = env(256);
    let start = e.pool.stats().in_use;
    {
        let mut parent = Space::new_in(e.clone()).unwrap();
        as_if_it_ran(&parent);
        parent
            .map_zeroed(0x40_0000, 16 * PAGE_SIZE, Prot::RW)
            .unwrap();
        parent.set_stack(0x7f_0000_0000, 16 * PAGE_SIZE).unwrap();
        parent
            .map_copy(0x20_0000, &[1u8; 5000], 3 * PAGE_SIZE, Prot::RX)
            .unwrap();
        for p in 0..16 {
            user_write(&mut parent, 0x40_0000 + p * PAGE_SIZE, p as u64);
        }
        user_write(&mut parent, 0x7f_0000_0000 - 8, 1);
        let mut child = parent.fork_in(e.clone()).unwrap();
        user_write(&mut child, 0x40_3000, 7);
        let mut grandchild = child.fork_in(e.clone()).unwrap();
        user_write(&mut grandchild, 0x40_5000, 9);
        assert!(e.pool.stats().in_use > start);
        drop(child);
        user_write(&mut grandchild, 0x7f_0000_0000 - 8, 2);
        drop(parent);
        assert_eq!(read_u64(&grandchild, 0x40_3000), 7);
    }
    assert_eq!(e.pool.stats().in_use, start, "pages leaked");
    assert!(
        e.flushes
            .lock()
            .unwrap()
            .iter()
            .any(|&(_, va)| va == usize::MAX),
        "a space that ran flushes its ASID when dropped"
    );
}

#[test]
fn map_copy_places_bytes_at_an_unaligned_start_then_zeros() {
    let e = env(64);
    let mut s = Space::new_in(e).unwrap();
    let bytes: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8 + 1).collect();
    s.map_copy(0x40_0100, &bytes, 9000, Prot::RW).unwrap();
    assert_eq!(s.regions()[0].start, 0x40_0000);
    assert_eq!(s.regions()[0].end, 0x40_3000);
    assert_eq!(s.resident_pages(), 3, "eager: every page of the segment");
    let byte = |va: usize| {
        let (pa, _) = s.translate(va).unwrap();
        // SAFETY: a mapped arena page.
        unsafe { *(pa as *const u8) }
    };
    assert_eq!(byte(0x40_00ff), 0, "before the segment");
    assert_eq!(byte(0x40_0100), 1);
    assert_eq!(byte(0x40_0100 + 5999), bytes[5999]);
    assert_eq!(byte(0x40_0100 + 6000), 0, "the zero tail");
    assert_eq!(
        s.map_copy(0x40_2000, &[0; 8], 8, Prot::READ),
        Err(Errno::EEXIST)
    );
}

#[test]
fn brk_grows_demand_zero_and_shrinking_frees_pages() {
    let e = env(64);
    let mut s = Space::new_in(e.clone()).unwrap();
    s.map_zeroed(0x40_0000, PAGE_SIZE, Prot::RX).unwrap();
    s.set_heap_start(0x40_1000);
    assert_eq!(s.brk(0), 0x40_1000, "brk(0) asks for the current break");
    assert_eq!(s.brk(0x40_3800), 0x40_3800);
    assert_eq!(s.resident_pages(), 0);
    user_write(&mut s, 0x40_3400, 1);
    user_write(&mut s, 0x40_1000, 1);
    assert_eq!(s.resident_pages(), 2);
    assert_eq!(
        s.handle_fault(0x40_4000, Access::Write),
        Err(FaultError::NoRegion { addr: 0x40_4000 })
    );
    let in_use = e.pool.stats().in_use;
    assert_eq!(s.brk(0x40_2000), 0x40_2000);
    assert_eq!(s.resident_pages(), 1);
    assert_eq!(e.pool.stats().in_use, in_use - 1);
    assert_eq!(
        s.brk(0x3f_0000),
        0x40_2000,
        "below the start: the break stays"
    );
    s.map_zeroed(0x50_0000, PAGE_SIZE, Prot::RW).unwrap();
    assert_eq!(
        s.brk(0x50_0800),
        0x40_2000,
        "into another region: the break stays"
    );
}

#[test]
fn mmap_and_munmap_split_regions_and_free_pages() {
    let e = env(64);
    let mut s = Space::new_in(e.clone()).unwrap();
    let asid = as_if_it_ran(&s);
    let a = s.mmap_anon(0, 4 * PAGE_SIZE, Prot::RW).unwrap();
    assert_eq!(a, MMAP_BASE);
    let b = s.mmap_anon(a, PAGE_SIZE, Prot::RW).unwrap();
    assert_eq!(b, a + 4 * PAGE_SIZE, "a taken hint moves on to free room");
    assert_eq!(s.mmap_anon(0x9000_0000, 10, Prot::READ), Ok(0x9000_0000));
    assert_eq!(s.mmap_anon(0, 0, Prot::READ), Err(Errno::EINVAL));
    for p in 0..4 {
        user_write(&mut s, a + p * PAGE_SIZE, 1);
    }
    e.flushes.lock().unwrap().clear();
    let in_use = e.pool.stats().in_use;
    s.munmap(a + PAGE_SIZE, 2 * PAGE_SIZE).unwrap();
    assert_eq!(e.pool.stats().in_use, in_use - 2);
    assert_eq!(
        *e.flushes.lock().unwrap(),
        vec![(asid, a + PAGE_SIZE), (asid, a + 2 * PAGE_SIZE)],
        "each unmapped page is invalidated"
    );
    let starts: Vec<usize> = s.regions().iter().map(|r| r.start).collect();
    assert_eq!(starts, vec![0x9000_0000, a, a + 3 * PAGE_SIZE, b]);
    assert_eq!(
        s.handle_fault(a + PAGE_SIZE, Access::Read),
        Err(FaultError::NoRegion {
            addr: a + PAGE_SIZE
        })
    );
    assert_eq!(read_u64(&s, a + 3 * PAGE_SIZE), 1);
    assert_eq!(s.munmap(a + 1, PAGE_SIZE), Err(Errno::EINVAL));
    assert_eq!(
        s.munmap(0x1234_0000, PAGE_SIZE),
        Ok(()),
        "nothing there is fine"
    );
}

#[test]
fn user_ranges_are_checked_against_regions() {
    let e = env(32);
    let mut s = Space::new_in(e).unwrap();
    s.map_zeroed(0x40_0000, PAGE_SIZE, Prot::READ).unwrap();
    s.map_zeroed(0x40_1000, PAGE_SIZE, Prot::RW).unwrap();
    assert_eq!(
        s.check_user_range(0x40_0ff0, 0x20, false),
        Ok(()),
        "spanning two regions"
    );
    assert_eq!(
        s.check_user_range(0x40_0ff0, 0x20, true),
        Err(Errno::EFAULT)
    );
    assert_eq!(
        s.check_user_range(0x40_1ff0, 0x20, false),
        Err(Errno::EFAULT)
    );
    assert_eq!(
        s.check_user_range(usize::MAX - 4, 8, false),
        Err(Errno::EFAULT)
    );
    assert_eq!(s.check_user_range(0, 0, true), Ok(()));
    assert_eq!(
        s.check_user_range(USER_END - 8, 16, false),
        Err(Errno::EFAULT)
    );
}

#[test]
fn running_out_of_frames_is_an_error_not_a_panic() {
    let e = env(4);
    let mut s = Space::new_in(e).unwrap();
    s.map_zeroed(0x40_0000, 8 * PAGE_SIZE, Prot::RW).unwrap();
    // Root + two tables leave one page for data.
    s.handle_fault(0x40_0000, Access::Write).unwrap();
    assert_eq!(
        s.handle_fault(0x40_1000, Access::Write),
        Err(FaultError::OutOfMemory { addr: 0x40_1000 })
    );
}

#[test]
fn a_space_that_ran_only_here_is_flushed_here_and_any_other_everywhere() {
    let on = |cpus: &[usize]| cpus.iter().copied().collect::<CpuMask>();
    assert_eq!(flush_scope(&on(&[2]), 2), FlushScope::ThisCpu);
    // It ran here and on another CPU: that CPU's TLB may still hold its entries.
    assert_eq!(flush_scope(&on(&[2, 0]), 2), FlushScope::EveryCpu);
    // It ran only elsewhere (this CPU runs its teardown after it moved, say).
    assert_eq!(flush_scope(&on(&[1]), 2), FlushScope::EveryCpu);
    // Never ran: no ASID either, so no flush is asked for; if one were, broadcast is safe.
    assert_eq!(flush_scope(&CpuMask::EMPTY, 2), FlushScope::EveryCpu);
    let top = crate::config::MAX_CPUS - 1;
    assert_eq!(flush_scope(&on(&[top]), top), FlushScope::ThisCpu);
    // Another word of the mask: a CPU past 63 that also ran the space is not forgotten.
    assert_eq!(flush_scope(&on(&[0, top]), 0), FlushScope::EveryCpu);
}
