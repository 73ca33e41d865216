//! Ending a run: exit QEMU with a status, power off, or halt (chapter 1, "Test mode").
//!
//! A test run must tell the host whether it passed. With semihosting, QEMU exits with our
//! status; without it, PSCI SYSTEM_OFF stops the machine (status 0, the host then reads the
//! printed verdict); with neither (a real Pi 4), the CPU halts and the console says so.
//!
//! The shell's `reboot` (chapter 13) asks PSCI for SYSTEM_RESET. Without PSCI there is no way to
//! reset the machine, so `reboot` says so and returns, and the shell goes on.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::arch::aarch64::{PsciConduit, cpu, psci, semihosting};

/// Exit status of a run stopped by a panic or a fatal exception.
pub const FATAL_EXIT_STATUS: u32 = 3;

static EXIT_ON_FATAL: AtomicBool = AtomicBool::new(false);
/// 0: no PSCI, 1: hvc, 2: smc.
static CONDUIT: AtomicU8 = AtomicU8::new(0);

/// Record how to power off, and whether a fatal error ends the run (test and demo modes) or
/// only halts the CPU (interactive mode, where the output stays on screen).
pub fn init(psci: Option<PsciConduit>, exit_on_fatal: bool) {
    let conduit = match psci {
        None => 0,
        Some(PsciConduit::Hvc) => 1,
        Some(PsciConduit::Smc) => 2,
    };
    CONDUIT.store(conduit, Ordering::Relaxed);
    EXIT_ON_FATAL.store(exit_on_fatal, Ordering::Relaxed);
}

fn conduit() -> Option<PsciConduit> {
    match CONDUIT.load(Ordering::Relaxed) {
        1 => Some(PsciConduit::Hvc),
        2 => Some(PsciConduit::Smc),
        _ => None,
    }
}

/// End the run with `status`: semihosting exit, else PSCI SYSTEM_OFF, else halt.
pub fn exit(status: u32) -> ! {
    semihosting::exit(status);
    if let Some(c) = conduit() {
        let refused = psci::system_off(c);
        crate::console::emergency_write("power: PSCI SYSTEM_OFF refused: ");
        crate::console::emergency_write(refused.name());
        crate::console::emergency_write("\n");
    }
    crate::console::emergency_write("power: no way to power off on this machine; halting\n");
    cpu::halt()
}

/// Why `reboot` could not restart the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootError {
    /// The device tree has no `/psci` node (the Raspberry Pi 4's firmware provides none).
    NoPsci,
    /// The firmware refused, with this PSCI status.
    Refused(psci::PsciError),
}

impl core::fmt::Display for RebootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RebootError::NoPsci => write!(
                f,
                "this machine has no PSCI firmware to reset it (a Raspberry Pi 4 boots without \
                 one); power-cycle it instead"
            ),
            RebootError::Refused(e) => write!(f, "PSCI SYSTEM_RESET refused: {}", e.name()),
        }
    }
}

/// Restart the machine through PSCI SYSTEM_RESET. Returns only if that is impossible or the
/// firmware refused; QEMU started with `-no-reboot` (as tools/qemu-run does) exits instead.
pub fn reboot() -> RebootError {
    let Some(conduit) = conduit() else {
        return RebootError::NoPsci;
    };
    RebootError::Refused(psci::system_reset(conduit))
}

/// After a panic or fatal exception: end the run in test/demo modes, else halt this CPU.
pub fn fatal_stop() -> ! {
    if EXIT_ON_FATAL.load(Ordering::Relaxed) {
        exit(FATAL_EXIT_STATUS);
    }
    cpu::halt()
}
