//! In-kernel tests of where the exception vectors put a trap frame when the stack is nearly
//! full, and of what they hand back (chapter 1, "When something goes wrong").
//!
//! A thread may legitimately run in the last frame's worth of its stack, the band where an
//! 816-byte trap frame no longer fits above the stack bottom. An interrupt taken there is handled
//! on the CPU's emergency stack, and must return on the thread's own stack with SP and the
//! thread's data as they were. An exception taken while the emergency stack is in use must put
//! its frame below the live one, not over it. `wait_for_interrupts_at` (src/arch) parks SP at a
//! chosen address and waits for interrupts there; no Rust runs in between, so only the vectors
//! can change what it reads back.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::mem::size_of;

use super::KTest;
use crate::arch::aarch64::cpu;
use crate::arch::aarch64::exception::{TrapFrame, emergency_stack, wait_for_interrupts_at};
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
/// WFIs per probe: each ends with an interrupt (the 100 Hz tick at the latest).
const WAITS: u64 = 2;
/// What the emergency stack is filled with before a probe, to see how deep an exception used it.
const UNUSED: u64 = 0xe3e3_e3e3_e3e3_e3e3;

/// Offsets of SP above the stack bottom, all in the band where a trap frame does not fit.
const OFFSETS: [usize; 3] = [0, 256, FRAME - 16];

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

/// Fill this CPU's emergency stack below `below` with `UNUSED`.
///
/// # Safety
/// No exception is using this CPU's emergency stack below `below` now, and the caller stays on
/// this CPU (pinned, or the CPU's own boot flow) until it has read the result.
unsafe fn fill_emergency_stack(cpu: usize, below: usize) {
    let (bottom, _) = emergency_stack(cpu);
    for word in (bottom..below).step_by(8) {
        // SAFETY: inside this CPU's emergency stack and unused, by the caller's contract.
        unsafe { (word as *mut u64).write_volatile(UNUSED) };
    }
}

/// Bytes of this CPU's emergency stack below `below` that no longer hold `UNUSED`, counting
/// from the lowest one touched: how deep the exceptions since the fill went.
///
/// # Safety
/// As for `fill_emergency_stack`.
unsafe fn emergency_stack_used(cpu: usize, below: usize) -> usize {
    let (bottom, _) = emergency_stack(cpu);
    let lowest = (bottom..below).step_by(8).find(|&word| {
        // SAFETY: inside this CPU's emergency stack, by the caller's contract not in use.
        unsafe { (word as *const u64).read_volatile() != UNUSED }
    });
    lowest.map_or(0, |w| below - w)
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

/// Probe at each of `OFFSETS` above the running thread's stack bottom; every offset is tried,
/// and the error names the ones that came back wrong and the first one's details.
fn probe_the_band(stack: &str) -> Result<(), String> {
    need_interrupts()?;
    let area = percpu::this_cpu();
    let cpu = area.id;
    let bottom = area
        .stack_bottom
        .load(core::sync::atomic::Ordering::Relaxed);
    ensure!(
        bottom != 0 && area.stack_contains(cpu::stack_pointer()),
        "{stack}: the per-CPU stack bounds do not describe the running stack"
    );
    ensure!(
        cpu::stack_pointer() - bottom > 4096,
        "{stack}: already within a page of the stack bottom; the probe would overwrite live frames"
    );
    let (_, emergency_top) = emergency_stack(cpu);
    let (mut bad, mut first) = (Vec::new(), None);
    for offset in OFFSETS {
        let sp = bottom + offset;
        let what = format!("{stack}, SP = bottom + {offset}");
        // SAFETY: this thread stays on this CPU (see the callers) and runs on its own stack, so
        // no exception is using the emergency stack.
        unsafe { fill_emergency_stack(cpu, emergency_top) };
        // SAFETY: `sp` is 16-aligned (the bottom is) and lies more than a page below our own
        // frames, in our stack; nothing else uses [sp, sp + 16). We do not migrate (above).
        let mut wrong = unsafe { probe(sp, 0x0ba5_e000_0000_0000 | offset as u64) };
        // SAFETY: as for the fill.
        let used = unsafe { emergency_stack_used(cpu, emergency_top) };
        if used == 0 {
            wrong.push(String::from(
                "the frame did not fit, yet the emergency stack was not used",
            ));
        } else {
            log::info!(target: "exception", "{what}: the interrupt used {used} bytes of cpu{cpu}'s emergency stack");
        }
        if !wrong.is_empty() {
            bad.push(offset);
            first.get_or_insert(format!("at bottom + {offset}: {}", wrong.join("; ")));
        }
    }
    match first {
        None => Ok(()),
        Some(first) => Err(format!("{stack}: wrong at bottom + {bad:?}; {first}")),
    }
}

/// The band on this CPU's boot stack (guard page below) and on a kernel thread's heap stack
/// (canary below).
fn irq_in_the_band_returns_there(_: &Platform<'static>) -> Result<(), String> {
    // The boot flow never migrates: it is its CPU's task 0.
    let on_boot_stack = probe_the_band("boot stack");
    let verdict: Arc<SpinLock<Result<(), String>>> =
        Arc::new(SpinLock::named("ktest exception verdict", Ok(())));
    let theirs = verdict.clone();
    let here = CpuMask::only(percpu::this_cpu().id);
    let pid = task::spawn_with(
        "band probe",
        DEFAULT_STACK_SIZE,
        here,
        Policy::Fifo,
        move || {
            let result = probe_the_band("heap stack");
            let failed = result.is_err();
            *theirs.lock() = result;
            i32::from(failed)
        },
    )
    .map_err(|e| format!("spawn: {e}"))?;
    let status = task::wait(pid).map_err(|e| format!("wait {pid}: {e}"))?;
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
    unsafe { fill_emergency_stack(cpu, sp) };
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
    let used = unsafe { emergency_stack_used(cpu, sp) };
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
