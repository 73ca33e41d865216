//! Page-frame stress: every CPU allocates and frees pages at once, tags each page it owns with
//! its CPU and iteration, and checks that nobody else wrote the tag (chapter 21, "The page
//! allocator and page faults").
//!
//! Two CPUs "claiming the same free memory page" is the failure a page allocator exists to
//! prevent: the second owner's tag lands in the first owner's page. The correct allocator runs
//! the test on the kernel's own pool; the deliberately broken one (every CPU on CPU 0's list, as
//! code that picked its list with IRQs on and then migrated would) runs it on a private pool over
//! pages borrowed from the kernel's, and the test must catch it.

use alloc::boxed::Box;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};

use super::KTest;
use crate::ensure;
use crate::mm::frames::{self, FRAMES, FramePool, PAGE_SIZE};
use crate::mm::phys_to_virt;
use crate::platform::Platform;
use crate::smp;

pub static TESTS: &[KTest] = &[
    KTest {
        name: "frames_stress",
        run: stress_the_kernels_pool,
    },
    KTest {
        name: "frames_broken_shared_list_is_caught",
        run: broken_shared_list_is_caught,
    },
    KTest {
        name: "frames_addrspace_fork_cow_drop",
        run: fork_cow_drop_on_the_kernels_frames,
    },
];

/// Allocations per CPU in one run.
const ITERATIONS: u64 = 3_000;
/// Pages a CPU holds at once: each new one pushes out the oldest.
const HELD: usize = 8;
/// Pages borrowed for the broken pool: few, so CPUs meet on the same ones often.
const BROKEN_POOL_PAGES: usize = 64;
/// Runs of the broken pool before concluding the test cannot catch it; run k is k times as
/// long (vCPUs on a busy host seldom run at the same instant; see locktorture's note).
const MAX_BROKEN_ATTEMPTS: u64 = 12;
/// Words tagged in each page, spread over it.
const TAG_WORDS: usize = 8;

/// What one run saw.
#[derive(Default)]
struct Report {
    allocations: AtomicU64,
    /// Pages found carrying another owner's tag.
    collisions: AtomicU64,
    /// The first collision: page, tag found, tag expected.
    first: [AtomicU64; 3],
    failed_allocations: AtomicU64,
}

fn tag(cpu: usize, iteration: u64) -> u64 {
    ((cpu as u64 + 1) << 48) | iteration
}

fn describe(tag: u64) -> String {
    match tag >> 48 {
        0 => alloc::format!("{tag:#x} (no tag)"),
        cpu => alloc::format!("cpu{} iteration {}", cpu - 1, tag & 0xffff_ffff_ffff),
    }
}

fn words(pa: usize) -> impl Iterator<Item = *mut u64> {
    let base = phys_to_virt(pa);
    (0..TAG_WORDS).map(move |i| (base + i * PAGE_SIZE / TAG_WORDS) as *mut u64)
}

fn write_tag(pa: usize, value: u64) {
    for w in words(pa) {
        // SAFETY: the page is this CPU's (just allocated); the linear map reaches it.
        unsafe { w.write_volatile(value) };
    }
}

/// The first word of the page that is not `value`, if any.
fn wrong_tag(pa: usize, value: u64) -> Option<u64> {
    words(pa)
        // SAFETY: as in write_tag; a racing owner's write is what the check looks for, and a
        // volatile aligned u64 read of RAM cannot tear.
        .map(|w| unsafe { w.read_volatile() })
        .find(|&v| v != value)
}

fn record(report: &Report, pa: usize, found: u64, mine: u64) {
    if report.collisions.fetch_add(1, Ordering::Relaxed) == 0 {
        report.first[0].store(pa as u64, Ordering::Relaxed);
        report.first[1].store(found, Ordering::Relaxed);
        report.first[2].store(mine, Ordering::Relaxed);
    }
}

/// Every online CPU allocates `iterations` pages from `pool`, holding `HELD` at a time.
fn run(pool: &FramePool, iterations: u64) -> Report {
    let report = Report::default();
    let start = smp::StartLine::new();
    smp::on_each_cpu(&|cpu| {
        start.wait();
        let mut held: [(usize, u64); HELD] = [(0, 0); HELD];
        for i in 0..iterations {
            let slot = (i as usize) % HELD;
            let (old, old_tag) = held[slot];
            if old != 0 {
                if let Some(found) = wrong_tag(old, old_tag) {
                    record(&report, old, found, old_tag);
                }
                pool.put(old);
                held[slot] = (0, 0);
            }
            let Some(pa) = pool.alloc() else {
                report.failed_allocations.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            report.allocations.fetch_add(1, Ordering::Relaxed);
            let mine = tag(cpu, i);
            write_tag(pa, mine);
            held[slot] = (pa, mine);
            // Check every page still held: a second owner's tag shows up here.
            for &(page, t) in held.iter().filter(|h| h.0 != 0) {
                if let Some(found) = wrong_tag(page, t) {
                    record(&report, page, found, t);
                }
            }
        }
        for &(page, t) in held.iter().filter(|h| h.0 != 0) {
            if let Some(found) = wrong_tag(page, t) {
                record(&report, page, found, t);
            }
            pool.put(page);
        }
    });
    report
}

fn stress_the_kernels_pool(_: &Platform<'static>) -> Result<(), String> {
    let before = frames::stats();
    ensure!(before.total > 0, "the page-frame allocator has no pages");
    let report = run(&FRAMES, ITERATIONS);
    let after = frames::stats();
    let cpus = smp::online_cpus().count() as u64;
    log::info!(
        "{} allocations on {cpus} CPUs, {} collisions; {} free, {:?} on per-CPU lists",
        report.allocations.load(Ordering::Relaxed),
        report.collisions.load(Ordering::Relaxed),
        after.free,
        &after.cached[..cpus as usize]
    );
    ensure!(
        report.collisions.load(Ordering::Relaxed) == 0,
        "page {:#x} held by {} was written by {}",
        report.first[0].load(Ordering::Relaxed),
        describe(report.first[2].load(Ordering::Relaxed)),
        describe(report.first[1].load(Ordering::Relaxed))
    );
    ensure!(
        report.failed_allocations.load(Ordering::Relaxed) == 0,
        "{} allocations failed with {} pages free",
        report.failed_allocations.load(Ordering::Relaxed),
        before.free
    );
    ensure!(
        report.allocations.load(Ordering::Relaxed) == ITERATIONS * cpus,
        "{} allocations, expected {}",
        report.allocations.load(Ordering::Relaxed),
        ITERATIONS * cpus
    );
    ensure!(
        after.in_use == before.in_use,
        "{} pages in use before, {} after: pages lost",
        before.in_use,
        after.in_use
    );
    ensure!(
        after.total == after.free + after.cached_total() + after.in_use,
        "the counts do not add up: {after:?}"
    );
    Ok(())
}

fn broken_shared_list_is_caught(_: &Platform<'static>) -> Result<(), String> {
    if smp::online_cpus().count() < 2 {
        log::info!("one CPU cannot race itself; skipped");
        return Ok(());
    }
    let borrowed = FRAMES
        .alloc_contiguous(BROKEN_POOL_PAGES)
        .ok_or_else(|| String::from("cannot borrow pages for the broken pool"))?;
    let in_use_with_loan = frames::stats().in_use;
    let mut caught = None;
    for attempt in 1..=MAX_BROKEN_ATTEMPTS {
        // A fresh pool each time: a broken run leaves its lists corrupt.
        let pool = Box::new(FramePool::new(false));
        pool.init(core::iter::once((
            borrowed,
            borrowed + BROKEN_POOL_PAGES * PAGE_SIZE,
        )));
        pool.set_broken_shared_list(true);
        let report = run(&pool, ITERATIONS * attempt);
        let collisions = report.collisions.load(Ordering::Relaxed);
        if collisions > 0 {
            caught = Some((
                attempt,
                report,
                pool.double_allocations(),
                pool.double_frees(),
            ));
            break;
        }
    }
    // Whatever state the broken pool left, the borrowed pages all go back.
    for page in (0..BROKEN_POOL_PAGES).map(|i| borrowed + i * PAGE_SIZE) {
        FRAMES.put(page);
    }
    ensure!(
        frames::stats().in_use + BROKEN_POOL_PAGES == in_use_with_loan,
        "the borrowed pages did not all come back"
    );
    let Some((attempt, report, double_allocations, double_frees)) = caught else {
        return Err(alloc::format!(
            "the shared list survived {MAX_BROKEN_ATTEMPTS} runs: this test cannot catch a broken page list"
        ));
    };
    log::info!(
        "caught the shared page list (run {attempt}): page {:#x} held by {} was written by {}; {} collisions in {} allocations, {double_allocations} pages handed out twice, {double_frees} double frees",
        report.first[0].load(Ordering::Relaxed),
        describe(report.first[2].load(Ordering::Relaxed)),
        describe(report.first[1].load(Ordering::Relaxed)),
        report.collisions.load(Ordering::Relaxed),
        report.allocations.load(Ordering::Relaxed),
    );
    Ok(())
}

/// An address space on the kernel's own frames (not activated: until the kernel leaves TTBR0
/// for the high half a user table cannot be loaded): demand-zero, fork, a copy-on-write copy,
/// and every page back after both are dropped. The TLB instructions are run too, so a
/// malformed operand would trap here.
fn fork_cow_drop_on_the_kernels_frames(_: &Platform<'static>) -> Result<(), String> {
    use crate::mm::addrspace::{Access, AddressSpace, Prot};
    let start = frames::stats().in_use;
    let base = 0x40_0000;
    let write = |space: &mut AddressSpace, va: usize, value: u64| -> Result<(), String> {
        if !space.translate(va).is_some_and(|(_, w)| w) {
            space
                .handle_fault(va, Access::Write)
                .map_err(|e| alloc::format!("{e}"))?;
        }
        let (pa, _) = space.translate(va).ok_or("not mapped after the fault")?;
        // SAFETY: a page of this address space, reached through the linear map.
        unsafe { (phys_to_virt(pa) as *mut u64).write_volatile(value) };
        Ok(())
    };
    let read = |space: &AddressSpace, va: usize| {
        // SAFETY: as above; the caller asks only for mapped addresses.
        space
            .translate(va)
            .map(|(pa, _)| unsafe { (phys_to_virt(pa) as *const u64).read_volatile() })
    };
    {
        let mut parent = AddressSpace::new().map_err(|e| alloc::format!("{e:?}"))?;
        parent
            .map_zeroed(base, 16 * PAGE_SIZE, Prot::RW)
            .map_err(|e| alloc::format!("{e:?}"))?;
        for p in 0..16 {
            write(&mut parent, base + p * PAGE_SIZE, p as u64 + 1)?;
        }
        let before_fork = frames::stats().in_use;
        let mut child = parent.fork().map_err(|e| alloc::format!("{e:?}"))?;
        let fork_cost = frames::stats().in_use - before_fork;
        write(&mut child, base, 100)?;
        ensure!(
            read(&parent, base) == Some(1),
            "the child's write reached the parent"
        );
        ensure!(
            read(&child, base) == Some(100),
            "the child's write was lost"
        );
        ensure!(
            read(&child, base + PAGE_SIZE) == Some(2),
            "an unwritten page is not shared"
        );
        log::info!(
            "fork of {} resident pages took {fork_cost} new pages (tables); an eager copy would take {}",
            parent.resident_pages(),
            fork_cost + parent.resident_pages()
        );
        crate::arch::aarch64::tlb::flush_page(1, base);
        crate::arch::aarch64::tlb::flush_leaf(1, base);
        crate::arch::aarch64::tlb::flush_asid(1);
        crate::arch::aarch64::tlb::flush_all();
        crate::arch::aarch64::tlb::flush_all_local();
    }
    let end = frames::stats().in_use;
    ensure!(
        end == start,
        "{start} pages in use before, {end} after dropping both spaces"
    );
    Ok(())
}
