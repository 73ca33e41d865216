//! In-kernel tests of where the exception vectors put a trap frame when the stack is nearly
//! full, and of what they hand back (chapter 1, "What goes wrong without it").
//!
//! An exception needs `EXCEPTION_STACK_RESERVE` bytes of stack: its frame and its handler's
//! calls. A thread may legitimately run with less than that left above its stack's bottom (the
//! band); an interrupt taken there is handled on the CPU's emergency stack and must return on the
//! thread's own stack with SP and the thread's data as they were. Just above the band, the
//! interrupt runs on the thread's stack and must stay above the bottom, even when it ends in a
//! preemptive switch. An exception taken while the emergency stack is in use must put its frame
//! below the live one, not over it. `wait_for_interrupts_at` (src/arch) parks SP at a chosen
//! address and waits for interrupts there; no Rust runs in between, so only the vectors can
//! change what it reads back.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::mem::size_of;
use core::sync::atomic::{AtomicBool, Ordering};

use super::KTest;
use crate::arch::aarch64::cpu;
use crate::arch::aarch64::exception::{
    EXCEPTION_STACK_RESERVE, TrapFrame, emergency_stack, wait_for_interrupts_at,
};
use crate::arch::irqflags;
use crate::ensure;
use crate::irq;
use crate::percpu;
use crate::platform::Platform;
use crate::sync::SpinLock;
use crate::task::{self, CpuMask, DEFAULT_STACK_SIZE, Policy};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "exception_irq_in_the_last_frame_of_a_stack_returns_there",
        run: irq_in_the_band_returns_there,
    },
    KTest {
        name: "exception_nested_on_the_emergency_stack_keeps_the_live_frame",
        run: nested_keeps_the_live_frame,
    },
];

const FRAME: usize = size_of::<TrapFrame>();
const RESERVE: usize = EXCEPTION_STACK_RESERVE;
/// WFIs per probe: each ends with an interrupt (the 100 Hz tick at the latest).
const WAITS: u64 = 2;
/// What a stack is filled with before a probe, to see how deep the exceptions went.
const UNUSED: u64 = 0xe3e3_e3e3_e3e3_e3e3;

/// Offsets of SP above the stack bottom inside the band: the bottom itself, inside and just
/// above a frame's worth, and the last 16 bytes before the reserve is there.
const BAND: [usize; 4] = [0, 256, FRAME, RESERVE - 16];
/// Probes just above the band, waiting to be preempted there (when another task waits).
const PREEMPTION_TRIES: usize = 20;

fn need_interrupts() -> Result<(), String> {
    ensure!(
        crate::drivers::gic::get().is_some(),
        "no interrupt controller: nothing would end a WFI"
    );
    ensure!(
        !irqflags::irqs_disabled(),
        "IRQs are masked here: no interrupt would be taken at the probe's SP"
    );
    Ok(())
}

/// Fill [from, to) with `UNUSED`.
///
/// # Safety
/// [from, to) is stack memory nothing uses now: part of this CPU's emergency stack while no
/// exception is on it, or of the caller's own stack far below its frames; the caller stays on
/// this CPU (pinned, or the CPU's own boot flow) until it has read the result.
unsafe fn fill(from: usize, to: usize) {
    for word in (from..to).step_by(8) {
        // SAFETY: unused and ours, by the caller's contract.
        unsafe { (word as *mut u64).write_volatile(UNUSED) };
    }
}

/// Bytes of [from, to) that no longer hold `UNUSED`, counting down from `to` to the lowest one
/// touched: how deep the exceptions since the fill went.
///
/// # Safety
/// As for `fill`.
unsafe fn used(from: usize, to: usize) -> usize {
    let lowest = (from..to).step_by(8).find(|&word| {
        // SAFETY: as for `fill`.
        unsafe { (word as *const u64).read_volatile() != UNUSED }
    });
    lowest.map_or(0, |w| to - w)
}

/// Probe at `sp`; returns what went wrong (nothing, if the interrupts came and gave back SP and
/// the word at [SP]).
///
/// # Safety
/// As for `wait_for_interrupts_at`.
unsafe fn probe(sp: usize, marker: u64) -> Vec<String> {
    let cpu = percpu::this_cpu().id;
    let before = irq::total_on(cpu);
    // SAFETY: forwarded to the caller.
    let seen = unsafe { wait_for_interrupts_at(sp, marker, WAITS) };
    let arrived = irq::total_on(cpu) - before;
    let mut wrong = Vec::new();
    if arrived == 0 {
        wrong.push(format!(
            "no interrupt arrived in {WAITS} WFIs with IRQs unmasked"
        ));
    }
    if seen.sp_after != sp as u64 {
        wrong.push(format!(
            "an interrupt taken at SP {sp:#x} returned with SP {:#x}",
            seen.sp_after
        ));
    }
    if seen.word_at_sp != marker {
        wrong.push(format!(
            "then [SP] read {:#x}, not {marker:#x}",
            seen.word_at_sp
        ));
    }
    wrong
}

/// Probe at each offset of `BAND` above the running thread's stack bottom, then just above
/// the band (`tries` times, or until this task is preempted there, if `me` is given); every
/// offset is tried, and the error names the ones that came back wrong and the first one's
/// details.
fn probe_the_band(stack: &str, me: Option<&task::Task>) -> Result<(), String> {
    need_interrupts()?;
    let area = percpu::this_cpu();
    let cpu = area.id;
    let bottom = area.stack_bottom.load(Ordering::Relaxed);
    ensure!(
        bottom != 0 && area.stack_contains(cpu::stack_pointer()),
        "{stack}: the per-CPU stack bounds do not describe the running stack"
    );
    // Our own interrupts may use a reserve below our SP while we fill [bottom, bottom + reserve).
    ensure!(
        cpu::stack_pointer() - bottom > 2 * RESERVE + 1024,
        "{stack}: too little stack under this frame to probe the band without touching it"
    );
    let (emergency_bottom, emergency_top) = emergency_stack(cpu);
    let (mut bad, mut first) = (Vec::new(), None);
    let mut complain = |offset: usize, wrong: Vec<String>| {
        if !wrong.is_empty() {
            bad.push(offset);
            first.get_or_insert(format!("at bottom + {offset}: {}", wrong.join("; ")));
        }
    };
    for offset in BAND {
        let sp = bottom + offset;
        // SAFETY: this thread stays on this CPU (see the callers) and runs on its own stack, so
        // no exception is using the emergency stack.
        unsafe { fill(emergency_bottom, emergency_top) };
        // SAFETY: `sp` is 16-aligned (the bottom is) and lies far below our own frames, in our
        // stack; nothing else uses [sp, sp + 16). We do not migrate (above).
        let mut wrong = unsafe { probe(sp, 0x0ba5_e000_0000_0000 | offset as u64) };
        // SAFETY: as for the fill.
        let used = unsafe { used(emergency_bottom, emergency_top) };
        if used == 0 {
            wrong.push(String::from(
                "the reserve was not there, yet the emergency stack was not used",
            ));
        } else if used > RESERVE {
            wrong.push(format!(
                "the interrupt used {used} bytes of the emergency stack, more than the {RESERVE}-byte reserve"
            ));
        } else if offset == 0 {
            log::info!(target: "exception", "{stack}: an interrupt at its bottom used {used} bytes of cpu{cpu}'s emergency stack");
        }
        complain(offset, wrong);
    }
    // Just above the band the interrupt runs on our stack, and must stay above the bottom.
    let sp = bottom + RESERVE;
    let preemptions = me.map(|t| t.preemptions());
    let tries = if me.is_some() { PREEMPTION_TRIES } else { 1 };
    let mut deepest = 0;
    for _ in 0..tries {
        // SAFETY: as above, and [bottom, sp) lies far below our frames (checked above).
        unsafe {
            fill(emergency_bottom, emergency_top);
            fill(bottom, sp);
        }
        // SAFETY: as above.
        let mut wrong = unsafe { probe(sp, 0x0ba5_e000_0000_ffff) };
        // SAFETY: as for the fills.
        let (emergency_used, own_used) =
            unsafe { (used(emergency_bottom, emergency_top), used(bottom, sp)) };
        deepest = deepest.max(own_used);
        if emergency_used > 0 {
            wrong.push(format!(
                "the reserve was there, yet {emergency_used} bytes of the emergency stack were used"
            ));
        }
        if own_used >= RESERVE {
            wrong.push(format!(
                "the interrupt went down to the stack bottom ({own_used} bytes below SP)"
            ));
        }
        complain(RESERVE, wrong);
        if me
            .zip(preemptions)
            .is_some_and(|(t, before)| t.preemptions() > before)
        {
            break;
        }
    }
    if let (Some(me), Some(before)) = (me, preemptions) {
        let preempted = me.preemptions() - before;
        ensure!(
            preempted > 0,
            "{stack}: not preempted in {PREEMPTION_TRIES} probes above the band, with another task waiting"
        );
        log::info!(target: "exception", "{stack}: interrupts just above the band used up to {deepest} of the {RESERVE} bytes; preemptions there: {preempted}");
    } else {
        log::info!(target: "exception", "{stack}: interrupts just above the band used up to {deepest} of the {RESERVE} bytes");
    }
    match first {
        None => Ok(()),
        Some(first) => Err(format!("{stack}: wrong at bottom + {bad:?}; {first}")),
    }
}

/// The band on this CPU's boot stack (guard page below) and on a kernel thread's heap stack
/// (canary below); on the heap stack, with a second task waiting, so that an interrupt just above
/// the band also ends in a preemptive switch.
fn irq_in_the_band_returns_there(_: &Platform<'static>) -> Result<(), String> {
    // The boot flow never migrates: it is its CPU's task 0.
    let on_boot_stack = probe_the_band("boot stack", None);
    let here = CpuMask::only(percpu::this_cpu().id);
    let stop = Arc::new(AtomicBool::new(false));
    let theirs = stop.clone();
    let rival = task::spawn_with(
        "band rival",
        DEFAULT_STACK_SIZE,
        here,
        Policy::RoundRobin,
        move || {
            while !theirs.load(Ordering::Relaxed) {
                task::yield_now();
            }
            0
        },
    )
    .map_err(|e| format!("spawn: {e}"))?;
    let verdict: Arc<SpinLock<Result<(), String>>> =
        Arc::new(SpinLock::named("ktest exception verdict", Ok(())));
    let theirs = verdict.clone();
    let prober = task::spawn_with(
        "band probe",
        DEFAULT_STACK_SIZE,
        here,
        Policy::RoundRobin,
        move || {
            let me = task::current();
            let result = probe_the_band("heap stack", Some(&me));
            let failed = result.is_err();
            *theirs.lock() = result;
            i32::from(failed)
        },
    )
    .map_err(|e| format!("spawn: {e}"))?;
    let status = task::wait(prober).map_err(|e| format!("wait {prober}: {e}"))?;
    stop.store(true, Ordering::Relaxed);
    task::wait(rival).map_err(|e| format!("wait {rival}: {e}"))?;
    let on_heap_stack = core::mem::replace(&mut *verdict.lock(), Ok(()));
    match (on_boot_stack, on_heap_stack) {
        (Ok(()), Ok(())) => {}
        (Err(why), Ok(())) | (Ok(()), Err(why)) => return Err(why),
        (Err(boot), Err(heap)) => return Err(format!("{boot} | {heap}")),
    }
    ensure!(status == 0, "the probing thread exited with {status}");
    Ok(())
}

/// Sit on this CPU's emergency stack below a (pretend) live trap frame and take interrupts
/// there: each must push its frame below SP, leave the live frame alone, and come back.
fn nested_keeps_the_live_frame(_: &Platform<'static>) -> Result<(), String> {
    need_interrupts()?;
    // The boot flow never migrates (it is its CPU's task 0), and it runs on its own stack, so
    // nothing is using this CPU's emergency stack until the probe moves there.
    let cpu = percpu::this_cpu().id;
    let (bottom, top) = emergency_stack(cpu);
    let live = top - FRAME;
    let pattern = |word: usize| 0x11fe_0000_0000_0000 ^ word as u64;
    for word in (live..top).step_by(8) {
        // SAFETY: this CPU's emergency stack, unused (above).
        unsafe { (word as *mut u64).write_volatile(pattern(word)) };
    }
    // Where a handler running on the live frame would have its own frames.
    let sp = live - 256;
    // SAFETY: as above.
    unsafe { fill(bottom, sp) };
    // SAFETY: `sp` is 16-aligned, on this CPU's emergency stack, which nothing else uses; we
    // do not migrate (above).
    let mut wrong = unsafe { probe(sp, 0x0e5c_a1a7_ed00_0000) };
    let overwritten = (live..top).step_by(8).find(|&word| {
        // SAFETY: as above.
        unsafe { (word as *const u64).read_volatile() != pattern(word) }
    });
    if let Some(word) = overwritten {
        wrong.push(format!(
            "the live frame at {live:#x} was overwritten (first at {word:#x})"
        ));
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    // SAFETY: as above.
    let used = unsafe { used(bottom, sp) };
    ensure!(
        used >= FRAME,
        "the nested interrupt left no frame below SP ({used} bytes used)"
    );
    ensure!(
        used < sp - bottom,
        "the nested interrupt used the emergency stack down to its bottom"
    );
    log::info!(target: "exception", "a nested interrupt used {used} bytes below SP {sp:#x}");
    Ok(())
}

/// `demo=task-overflow`: a kernel thread's SP goes below its heap stack's bottom, into its
/// canary, and it waits there for an interrupt, as a thread that overflowed between two switches
/// would. The interrupt reports the overflow and stops the kernel; returning to the thread would
/// let it go on writing over the heap block below its stack.
pub fn task_overflow_demo() {
    log::info!(target: "demo",
        "task-overflow: a kernel thread moves its SP 32 bytes below its stack's bottom, into its canary, and waits for an interrupt"
    );
    let here = CpuMask::only(percpu::this_cpu().id);
    let spawned = task::spawn_with("overflower", DEFAULT_STACK_SIZE, here, Policy::Fifo, || {
        let bottom = percpu::this_cpu().stack_bottom.load(Ordering::Relaxed);
        // SAFETY: deliberately outside the contract, as an overflow would be: SP goes below
        // the usable stack, and the probe's 16-byte marker lands in this thread's own canary
        // (the 64 bytes under `bottom`, part of its heap block), damaging nothing else. The
        // thread is pinned and FIFO, so the first interrupt is taken right there.
        let seen = unsafe { wait_for_interrupts_at(bottom - 32, 0x0de0_0000_0000_0032, 1) };
        log::error!(target: "demo",
            "task-overflow: an interrupt returned to SP {:#x}, below the stack: the overflow went unreported",
            seen.sp_after
        );
        1
    });
    match spawned {
        Ok(pid) => {
            let _ = task::wait(pid);
        }
        Err(e) => log::error!(target: "demo", "task-overflow: cannot spawn the thread: {e}"),
    }
}
