//! Waiting for another CPU to change a location, without hammering it (the locks chapter).
//!
//! `LDAXR` loads the value and arms this CPU's exclusive monitor on its cache line. If the value
//! is still the one we are waiting to see change, `WFE` sleeps until an event: any store by
//! another CPU to that line clears the monitor, and clearing it is an event. So the unlocker's
//! ordinary store wakes exactly the CPUs watching it, with no SEV and no bus traffic while
//! waiting. The leading `SEVL; WFE` empties the event register, so a stale event cannot cut the
//! real wait short. (Under QEMU's multi-threaded TCG, WFE returns at once: waiters spin.)

use core::arch::asm;
use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32};

macro_rules! wait_while {
    ($name:ident, $ty:ty, $atomic:ty, $load:literal, $reg:literal) => {
        /// Return once `*p` may differ from `old` (callers re-check: wake-ups can be spurious).
        #[inline]
        pub fn $name(p: &$atomic, old: $ty) {
            // SAFETY: `p` is a valid atomic in Normal memory; the sequence only loads it.
            unsafe {
                asm!(
                    "sevl",
                    "wfe",
                    concat!($load, " {v:w}, [{p}]"),
                    concat!("cmp {v:w}, {old:w}", $reg),
                    "b.ne 2f",
                    "wfe",
                    "2:",
                    v = out(reg) _,
                    p = in(reg) p.as_ptr(),
                    old = in(reg) old as u32,
                    options(nostack),
                )
            }
        }
    };
}

wait_while!(wait_while_u8, u8, AtomicU8, "ldaxrb", ", uxtb");
wait_while!(wait_while_u16, u16, AtomicU16, "ldaxrh", ", uxth");
wait_while!(wait_while_u32, u32, AtomicU32, "ldaxr", "");
