//! Everything AArch64-specific: the only place with `asm!` and system-register access.
//!
//! The pure parts (ESR decoding, translation-table building, the event stream's arithmetic)
//! compile on the host too, so unit tests cover them; the parts that execute instructions exist
//! only on the target.
//!
//! `chainload.rs` here is not part of the kernel: it is the entry code of the Pi 4's serial
//! chainloader (src/bin/chainloader.rs), which includes it by path.

pub mod esr;
pub mod layout;
pub mod pagetable;
pub mod timer;
pub mod user;

// The atomics and the waits are user-mode instructions: the host benchmark on an AArch64 Linux
// host runs them too (src/arch/mod.rs).
#[cfg(native_aarch64_sync)]
pub mod atomic;
#[cfg(target_os = "none")]
pub mod backtrace;
#[cfg(target_os = "none")]
pub mod barrier;
#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod context;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod exception;
#[cfg(target_os = "none")]
pub mod gic_cpuif;
#[cfg(target_os = "none")]
pub mod irqflags;
#[cfg(target_os = "none")]
pub mod mmu;
#[cfg(target_os = "none")]
pub mod psci;
#[cfg(target_os = "none")]
pub mod semihosting;
#[cfg(target_os = "none")]
pub mod tlb;
#[cfg(target_os = "none")]
pub mod uaccess;
#[cfg(native_aarch64_sync)]
pub mod wait;

/// How PSCI calls reach the firmware: the `method` of the device tree's `/psci` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    /// `hvc #0`, to a hypervisor (QEMU's built-in PSCI when we enter at EL1).
    Hvc,
    /// `smc #0`, to secure firmware (QEMU with virtualization=on, ARM Trusted Firmware).
    Smc,
}
