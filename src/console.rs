//! The console: the PL011 behind a lock, plus an emergency path for panics (chapter 2).
//!
//! `write_line` takes the lock for one whole line, so lines from different CPUs never
//! interleave. If the CPU that wants to print already holds the lock (it panicked or faulted
//! mid-line), waiting would deadlock, so it writes straight to the UART instead: a garbled
//! line beats a silent hang.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::arch::aarch64::exception::TrapFrame;
use crate::arch::irqflags;
use crate::drivers::{bcm2711_gpio, pl011::Pl011};
use crate::platform::Platform;
use crate::sync::IrqSafeSpinLock;
use crate::sync::spsc::ByteRing;

/// quartet's console speed on every board.
pub const BAUD: u32 = crate::platform::CONSOLE_BAUD;

/// IRQ-safe: interrupt handlers may log, and a handler that spun on a lock its own CPU holds
/// would never return.
static UART: IrqSafeSpinLock<Option<Pl011>> = IrqSafeSpinLock::named("console", None);
/// The UART's virtual address (in the linear map) for the lock-free emergency path; 0: none.
static EMERGENCY_UART: AtomicUsize = AtomicUsize::new(0);

/// Remember where the UART is (its physical address; 0 for none), for messages before `init`
/// and for panics. Takes no lock.
pub fn set_emergency_uart(base: u64) {
    let virt = if base == 0 {
        0
    } else {
        crate::mm::phys_to_virt(base as usize)
    };
    EMERGENCY_UART.store(virt, Ordering::Relaxed);
}

/// Program the UART (and on the Pi route it to the header pins) and make it the console.
/// Without a UART (a tree of another board that names none) there is no console, and the
/// emergency path is silenced too: no address is better than another board's.
pub fn init(platform: &Platform<'_>) {
    if !platform.uart.is_present() {
        set_emergency_uart(0);
        return;
    }
    if let Some(gpio) = platform.gpio {
        // SAFETY: the GPIO block is in the linear map as Device memory (mm/paging.rs).
        unsafe {
            bcm2711_gpio::route_uart0_to_header(crate::mm::phys_to_virt(gpio.start as usize))
        };
    }
    // SAFETY: the UART's registers are mapped as Device memory; from now on only this lock
    // (and the emergency path, when the lock cannot be had) drives it.
    let uart = unsafe { Pl011::new(crate::mm::phys_to_virt(platform.uart.regs.start as usize)) };
    uart.init(platform.uart.clock_hz, BAUD);
    set_emergency_uart(platform.uart.regs.start);
    *UART.lock() = Some(uart);
}

/// Write one complete line (it should end in '\n').
pub fn write_line(line: &str) {
    // With the MMU off a lock may never be taken (chapter 4), so early lines go unlocked; only
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

/// Write bytes as a user program gave them (not necessarily UTF-8 or whole lines), under the
/// console's lock so one call's bytes stay together.
pub fn write_bytes(bytes: &[u8]) {
    let uart = UART.lock();
    match uart.as_ref() {
        Some(u) => u.write_bytes(bytes),
        None => {
            drop(uart);
            emergency_write(&alloc::string::String::from_utf8_lossy(bytes));
        }
    }
}

/// A byte typed and not yet read, if any, without waiting: the shell polls this for Ctrl-C
/// while a program runs in the foreground.
pub fn poll_byte() -> Option<u8> {
    if INPUT_BY_INTERRUPT.load(Ordering::Acquire) {
        INPUT.pop()
    } else {
        try_read_byte()
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

/// A byte waiting in the UART, if any (a direct poll; `read_byte_blocking` is the shell's way in).
pub fn try_read_byte() -> Option<u8> {
    UART.lock().as_ref().and_then(|u| u.read_byte())
}

/// Bytes typed and not yet read: filled by the UART's receive interrupt, emptied by
/// `read_byte_blocking`. One producer (the handler, on the CPU the UART interrupt is routed
/// to) and one consumer (the shell), so no lock.
static INPUT: ByteRing<256> = ByteRing::new();
/// Set once the receive interrupt is wired up; until then input is polled.
static INPUT_BY_INTERRUPT: AtomicBool = AtomicBool::new(false);

fn on_uart_interrupt(_intid: u32, _frame: &TrapFrame) {
    let uart = UART.lock();
    if let Some(u) = uart.as_ref() {
        // Clear first, then drain. The other order loses keystrokes: a byte that arrives after
        // the last read raises the interrupt again, and a clear after the loop would wipe that
        // out, leaving the byte in the FIFO with nothing to announce it.
        u.clear_receive_interrupts();
        while let Some(byte) = u.read_byte() {
            INPUT.push(byte);
        }
    }
    if let Some(hooks) = INPUT_SLEEP.get() {
        (hooks.wake)();
    }
}

/// Take console input by interrupt: register the handler for the UART's SPI, route it to this
/// CPU and unmask the UART's receive interrupts. Without an interrupt number in the device
/// tree, input stays polled.
pub fn enable_input_interrupt(platform: &Platform<'_>) -> Result<u32, &'static str> {
    let intid = platform
        .uart
        .irq
        .ok_or("the device tree gives the UART no interrupt; console input stays polled")?;
    let gic =
        crate::drivers::gic::get().ok_or("no interrupt controller; console input stays polled")?;
    crate::irq::register(intid, "uart rx", on_uart_interrupt)
        .map_err(|_| "the UART interrupt could not be registered; console input stays polled")?;
    gic.enable(intid, false, crate::percpu::this_cpu().id);
    if let Some(u) = UART.lock().as_ref() {
        u.enable_receive_interrupts();
    }
    INPUT_BY_INTERRUPT.store(true, Ordering::Release);
    Ok(intid)
}

/// How a reader waits for input once tasks can sleep (src/task sets them; the console sits
/// below the scheduler and cannot name it).
pub struct InputSleep {
    /// Sleep until `ready()` holds; false if this flow cannot sleep here (then WFI it is).
    pub wait: fn(&dyn Fn() -> bool) -> bool,
    /// Wake the sleeping reader, if any: called by the receive interrupt.
    pub wake: fn(),
}

static INPUT_SLEEP: spin::Once<InputSleep> = spin::Once::new();

/// Let readers sleep instead of WFI (once, at scheduler start).
pub fn set_input_sleep(hooks: InputSleep) {
    INPUT_SLEEP.call_once(|| hooks);
}

/// Bytes lost because nobody read the input fast enough.
pub fn input_dropped() -> usize {
    INPUT.dropped()
}

/// How long `read_byte_blocking` waits between polls of an empty UART. A byte takes 87 us on
/// the wire at 115200 baud and the receive FIFO holds 16, so nothing typed is lost.
const POLL_INTERVAL_US: u64 = 50;

/// The next byte typed on the console, waiting as long as it takes. This is the shell's only
/// source of input (chapter 13). Once `enable_input_interrupt` succeeded it sleeps until the
/// UART's receive interrupt has queued a byte; before that (or without an interrupt) it polls.
pub fn read_byte_blocking() -> u8 {
    if INPUT_BY_INTERRUPT.load(Ordering::Acquire) {
        return read_byte_by_interrupt();
    }
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

/// Sleep in WFI until the receive interrupt has queued a byte. The check is made with IRQs
/// masked so that a byte arriving between the check and the WFI still ends the WFI.
fn read_byte_by_interrupt() -> u8 {
    loop {
        if let Some(byte) = INPUT.pop() {
            return byte;
        }
        // With a scheduler, the reader sleeps and its CPU runs other tasks meanwhile.
        if let Some(hooks) = INPUT_SLEEP.get()
            && (hooks.wait)(&|| !INPUT.is_empty())
        {
            continue;
        }
        let flags = irqflags::local_irq_save();
        if INPUT.is_empty() {
            irqflags::wait_for_interrupt();
        }
        irqflags::local_irq_restore(flags);
    }
}
