//! Semihosting exit: how a test run tells QEMU its verdict (chapter 1, "Test mode").
//!
//! With `-semihosting-config enable=on,target=native`, QEMU treats `hlt #0xf000` as a call to
//! the host. SYS_EXIT_EXTENDED-style reporting uses SYS_EXIT (0x18) with a pointer to the pair
//! [ADP_Stopped_ApplicationExit, exit code], and QEMU exits with that code. Without semihosting
//! the instruction is undefined; exception.rs recognises it and hands back
//! `SEMIHOSTING_UNAVAILABLE`, so the caller can fall back to PSCI SYSTEM_OFF.

use super::exception::SEMIHOSTING_UNAVAILABLE;

const SYS_EXIT: u64 = 0x18;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Ask QEMU to exit with `code`. Returns only if semihosting is not enabled.
pub fn exit(code: u32) {
    let block: [u64; 2] = [ADP_STOPPED_APPLICATION_EXIT, code as u64];
    let mut x0 = SYS_EXIT;
    // SAFETY: the host reads the two-word block we point x1 at; if semihosting is off the
    // exception handler skips the instruction and sets x0. FP/SIMD state is saved by the trap.
    unsafe {
        core::arch::asm!("hlt #0xf000", inout("x0") x0, in("x1") block.as_ptr(), options(nostack));
    }
    debug_assert_eq!(x0, SEMIHOSTING_UNAVAILABLE);
}
