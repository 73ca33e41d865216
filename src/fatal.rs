//! When the kernel cannot go on: the panic report (the IPI chapter).
//!
//! A panic on any CPU stops every other CPU first, with the stop IPI, so that nothing keeps
//! changing the state being reported, or keeps printing over the report. Then it prints which
//! CPU panicked, where and why, a frame-pointer backtrace of the panicking CPU, and where each
//! stopped CPU was. Addresses are raw; tools/symbolize names them from the ELF's symbols
//! (chapter 10 shows how).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::aarch64::backtrace;
use crate::logger;
use crate::percpu;

/// Set by the first CPU to panic; a second panicking CPU only stops.
static PANICKING: AtomicBool = AtomicBool::new(false);

fn report(args: core::fmt::Arguments<'_>) {
    logger::log_always(log::Level::Error, "panic", &args);
}

/// Report a panic and stop the machine (or end the QEMU run in test and demo modes).
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::arch::irqflags::local_irq_disable();
    let (file, line) = info.location().map_or(("?", 0), |l| (l.file(), l.line()));
    if PANICKING.swap(true, Ordering::AcqRel) {
        // Another CPU is already reporting; its stop IPI may not reach us with IRQs masked.
        report(format_args!(
            "{} (at {file}:{line}) while another CPU was panicking",
            info.message()
        ));
        crate::arch::aarch64::cpu::halt();
    }
    report(format_args!("{} (at {file}:{line})", info.message()));
    let stopped = crate::smp::ipi::stop_other_cpus();
    if let Some(area) = percpu::try_this_cpu() {
        let stack =
            area.stack_bottom.load(Ordering::Relaxed)..area.stack_top.load(Ordering::Relaxed);
        let mut n = 0;
        backtrace::walk(backtrace::frame_pointer(), stack, |return_address| {
            report(format_args!("  #{n:<2} {return_address:#018x}"));
            n += 1;
        });
        if n == 0 {
            report(format_args!(
                "  (no backtrace: the frame pointer is not on this CPU's stack)"
            ));
        }
    }
    for (cpu, pc) in stopped.iter().filter(|(cpu, _)| *cpu != usize::MAX) {
        match pc {
            Some(pc) => report(format_args!("cpu{cpu} stopped at PC {pc:#x}")),
            None => report(format_args!(
                "cpu{cpu} did not stop within 100 ms (IRQs masked, or no interrupts)"
            )),
        }
    }
    crate::power::fatal_stop()
}
