//! PSCI, the firmware interface that powers CPUs on and off (chapter 3, "Waking the other cores").
//!
//! A PSCI call is a function id in x0 and arguments in x1..x3, made with `hvc` or `smc` as the
//! device tree's `/psci` node says (QEMU virt: hvc at EL1 entry, smc with virtualization=on).
//! The status comes back in x0.

use crate::platform::PsciConduit;

pub const PSCI_VERSION: u32 = 0x8400_0000;
pub const CPU_ON_64: u32 = 0xc400_0003;
/// AFFINITY_INFO (SMC64): is the CPU with this MPIDR on, off or on its way?
pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
/// PSCI 0.2 SYSTEM_RESET.
const SYSTEM_RESET: u32 = 0x8400_0009;
pub const SYSTEM_OFF: u32 = 0x8400_0008;

/// A PSCI status code with its name from the PSCI specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciError(pub i64);

impl PsciError {
    pub fn name(self) -> &'static str {
        match self.0 {
            -1 => "NOT_SUPPORTED",
            -2 => "INVALID_PARAMETERS",
            -3 => "DENIED",
            -4 => "ALREADY_ON",
            -5 => "ON_PENDING",
            -6 => "INTERNAL_FAILURE",
            -7 => "NOT_PRESENT",
            -8 => "DISABLED",
            -9 => "INVALID_ADDRESS",
            _ => "UNKNOWN_ERROR",
        }
    }
}

fn call(conduit: PsciConduit, function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = function as u64;
    // SAFETY: a PSCI call follows the SMC calling convention: x0..x3 carry the call and may be
    // changed, x4..x17 may be clobbered by the firmware; no memory of ours is touched.
    unsafe {
        match conduit {
            PsciConduit::Hvc => core::arch::asm!("hvc #0", inout("x0") x0, inout("x1") a1 => _,
                inout("x2") a2 => _, inout("x3") a3 => _, clobber_abi("C")),
            PsciConduit::Smc => core::arch::asm!("smc #0", inout("x0") x0, inout("x1") a1 => _,
                inout("x2") a2 => _, inout("x3") a3 => _, clobber_abi("C")),
        }
    }
    x0 as i64
}

/// Start the CPU whose MPIDR is `mpidr` at physical address `entry`, with `context` in its x0.
pub fn cpu_on(
    conduit: PsciConduit,
    mpidr: u64,
    entry: usize,
    context: u64,
) -> Result<(), PsciError> {
    match call(conduit, CPU_ON_64, mpidr, entry as u64, context) {
        0 => Ok(()),
        e => Err(PsciError(e)),
    }
}

/// AFFINITY_INFO for the single CPU `mpidr` (affinity level 0): 0 ON, 1 OFF, 2 ON_PENDING, or
/// a negative status; INVALID_PARAMETERS (-2) means no CPU has that MPIDR.
pub fn affinity_info(conduit: PsciConduit, mpidr: u64) -> i64 {
    call(conduit, AFFINITY_INFO_64, mpidr, 0, 0)
}

/// The PSCI version as (major, minor).
pub fn version(conduit: PsciConduit) -> (u32, u32) {
    let v = call(conduit, PSCI_VERSION, 0, 0, 0) as u32;
    (v >> 16, v & 0xffff)
}

/// Power the machine off. Returns only if the firmware refused.
pub fn system_off(conduit: PsciConduit) -> PsciError {
    PsciError(call(conduit, SYSTEM_OFF, 0, 0, 0))
}

/// Restart the machine. Returns only if the firmware refused.
pub fn system_reset(conduit: PsciConduit) -> PsciError {
    PsciError(call(conduit, SYSTEM_RESET, 0, 0, 0))
}
