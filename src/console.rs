//! The console: the PL011 behind a lock, plus an emergency path for panics (chapter 2).
//!
//! `write_line` takes the lock for one whole line, so lines from different CPUs never
//! interleave. If the CPU that wants to print already holds the lock (it panicked or faulted
//! mid-line), waiting would deadlock, so it writes straight to the UART instead: a garbled
//! line beats a silent hang.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::drivers::{bcm2711_gpio, pl011::Pl011};
use crate::platform::Platform;
use crate::sync::IrqSafeSpinLock;

/// quartet's console speed on every board.
pub const BAUD: u32 = 115_200;

/// IRQ-safe: interrupt handlers may log, and a handler that spun on a lock its own CPU holds
/// would never return.
static UART: IrqSafeSpinLock<Option<Pl011>> = IrqSafeSpinLock::new(None);
/// The UART address for the lock-free emergency path (usable even with the MMU off).
static EMERGENCY_UART: AtomicUsize = AtomicUsize::new(0);

/// Remember where the UART is, for messages before `init` and for panics. Takes no lock, so it
/// may run with the MMU off (a relaxed store is a plain store).
pub fn set_emergency_uart(base: u64) {
    EMERGENCY_UART.store(base as usize, Ordering::Relaxed);
}

/// Program the UART (and on the Pi route it to the header pins) and make it the console.
pub fn init(platform: &Platform<'_>) {
    if let Some(gpio) = platform.gpio {
        // SAFETY: the GPIO block is in the identity map as Device memory (mm/paging.rs).
        unsafe { bcm2711_gpio::route_uart0_to_header(gpio.start as usize) };
    }
    // SAFETY: the UART's registers are mapped as Device memory; from now on only this lock
    // (and the emergency path, when the lock cannot be had) drives it.
    let uart = unsafe { Pl011::new(platform.uart.regs.start as usize) };
    uart.init(platform.uart.clock_hz, BAUD);
    set_emergency_uart(platform.uart.regs.start);
    *UART.lock() = Some(uart);
}

/// Write one complete line (it should end in '\n').
pub fn write_line(line: &str) {
    // With the MMU off a lock may never be taken (FACTS.md), so early lines go unlocked; only
    // the boot CPU runs then, so nothing can interleave with them.
    if !crate::arch::aarch64::mmu::is_enabled() || UART.is_held_by_current_cpu() {
        emergency_write(line);
        return;
    }
    let uart = UART.lock();
    match uart.as_ref() {
        Some(u) => u.write_str(line),
        None => {
            drop(uart);
            emergency_write(line);
        }
    }
}

/// Write without the lock. For panics and for the time before `init`.
pub fn emergency_write(text: &str) {
    let base = EMERGENCY_UART.load(Ordering::Relaxed);
    if base != 0 {
        // SAFETY: the address is the platform's PL011; concurrent use can only garble output.
        let uart = unsafe { Pl011::new(base) };
        uart.write_str(text);
    }
}

/// A byte typed on the console, if any (polled; interrupt-driven input comes with the GIC).
pub fn try_read_byte() -> Option<u8> {
    UART.lock().as_ref().and_then(|u| u.read_byte())
}

/// How long `read_byte_blocking` waits between polls of an empty UART. A byte takes 87 us on
/// the wire at 115200 baud and the receive FIFO holds 16, so nothing typed is lost.
const POLL_INTERVAL_US: u64 = 50;

/// The next byte typed on the console, waiting as long as it takes. This is the shell's only
/// source of input (chapter 10): today it polls the UART; once UART receive interrupts exist,
/// this one function changes to sleep until the interrupt handler has queued a byte.
pub fn read_byte_blocking() -> u8 {
    loop {
        if let Some(byte) = try_read_byte() {
            return byte;
        }
        // Between polls, leave the console lock alone so other CPUs can print.
        let start = crate::arch::counter();
        let interval = crate::arch::counter_frequency() * POLL_INTERVAL_US / 1_000_000;
        while crate::arch::counter().wrapping_sub(start) < interval {
            core::hint::spin_loop();
        }
    }
}
