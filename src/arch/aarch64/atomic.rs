//! Atomic read-modify-write operations written by hand (the atomics chapter).
//!
//! Two implementations of every operation:
//! - **LL/SC**: load-exclusive (`LDXR`/`LDAXR`) marks the location in this CPU's exclusive
//!   monitor; store-exclusive (`STXR`/`STLXR`) succeeds only if no other CPU wrote the location in
//!   between, else the loop retries. ARMv8.0 (the Pi 4's Cortex-A72) has only these.
//! - **LSE** (ARMv8.1 Large System Extensions): one instruction (`LDADD`, `SWP`, `CAS`, `LDSET`,
//!   `LDCLR`, `LDEOR`) that the interconnect may perform near the data instead of bouncing the
//!   line between CPUs. QEMU's `-cpu max` has them.
//!
//! Which one runs is chosen once at boot from ID_AA64ISAR0_EL1 (`select`). Orderings follow
//! `core::sync::atomic::Ordering`: Relaxed (plain exclusives), Acquire (`LDAXR`, `...A`),
//! Release (`STLXR`, `...L`), AcqRel (both), and SeqCst as Linux's "fully ordered" value-returning
//! ops: `LDXR` ... `STLXR` followed by `DMB ISH` (LSE: the `...AL` forms).

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static USE_LSE: AtomicBool = AtomicBool::new(false);

/// Use LSE instructions if `lse` (call once at boot, after checking the CPU has them).
pub fn select(lse: bool) {
    USE_LSE.store(lse, Ordering::Relaxed);
}

/// True when the LSE forms are in use.
pub fn uses_lse() -> bool {
    USE_LSE.load(Ordering::Relaxed)
}

/// One LL/SC read-modify-write loop; `$compute` turns `{old}` and `{v}` into `{new}`.
macro_rules! llsc_rmw {
    ($p:expr, $v:expr, $ord:expr, $compute:literal) => {{
        macro_rules! variant {
                    ($ld:literal, $st:literal, $fence:literal) => {{
                        let old: u64;
                        // SAFETY: `$p` points to a live, aligned u64 in Normal memory (callers pass
                        // `AtomicU64::as_ptr`); the loop only touches that location.
                        unsafe {
                            asm!(
                                concat!("2: ", $ld, " {old}, [{p}]"),
                                $compute,
                                concat!($st, " {fail:w}, {new}, [{p}]"),
                                "cbnz {fail:w}, 2b",
                                $fence,
                                old = out(reg) old,
                                new = out(reg) _,
                                fail = out(reg) _,
                                p = in(reg) $p,
                                v = in(reg) $v,
                                options(nostack),
                            )
                        };
                        old
                    }};
                }
        match $ord {
            Ordering::Relaxed => variant!("ldxr", "stxr", ""),
            Ordering::Acquire => variant!("ldaxr", "stxr", ""),
            Ordering::Release => variant!("ldxr", "stlxr", ""),
            Ordering::AcqRel => variant!("ldaxr", "stlxr", ""),
            _ => variant!("ldxr", "stlxr", "dmb ish"),
        }
    }};
}

/// One LSE instruction `$insn` with its ordering suffix: `$insn{suffix} {v}, {old}, [{p}]`.
macro_rules! lse_rmw {
    ($p:expr, $v:expr, $ord:expr, $insn:literal) => {{
        macro_rules! variant {
                ($suffix:literal) => {{
                    let old: u64;
                    // SAFETY: as for LL/SC; the CPU implements LSE (checked before `select(true)`).
                    unsafe {
                        asm!(
                            ".arch_extension lse",
                            concat!($insn, $suffix, " {v}, {old}, [{p}]"),
                            old = out(reg) old,
                            p = in(reg) $p,
                            v = in(reg) $v,
                            options(nostack),
                        )
                    };
                    old
                }};
            }
        match $ord {
            Ordering::Relaxed => variant!(""),
            Ordering::Acquire => variant!("a"),
            Ordering::Release => variant!("l"),
            _ => variant!("al"),
        }
    }};
}

/// `*p += v`, returning the old value.
pub fn fetch_add(p: &AtomicU64, v: u64, ord: Ordering) -> u64 {
    if uses_lse() {
        lse_rmw!(p.as_ptr(), v, ord, "ldadd")
    } else {
        llsc_fetch_add(p, v, ord)
    }
}

// lab:llsc-add begin
/// `*p += v` with a load-exclusive/store-exclusive loop, returning the old value.
///
/// `llsc_rmw!` writes the same loop for every other operation; this one is spelt out as the
/// one to read first. `LDXR` loads `*p` and arms this CPU's exclusive monitor on it, `ADD`
/// computes in a register, and `STXR` stores only if the monitor is still armed, which a
/// store by any other CPU to the location clears: it writes 0 into `fail` on success and 1 if
/// the loop must start again from a fresh load. Acquire makes the load `LDAXR`, Release the
/// store `STLXR`, and SeqCst adds `DMB ISH` after a successful store (the module doc says why).
#[inline]
fn llsc_fetch_add(p: &AtomicU64, v: u64, ord: Ordering) -> u64 {
    macro_rules! add_loop {
        ($ld:literal, $st:literal, $fence:literal) => {{
            let old: u64;
            // SAFETY: `p` is a live, aligned AtomicU64 in Normal memory; the loop reads and
            // writes only that location, atomically, and touches no stack.
            unsafe {
                asm!(
                    concat!("2: ", $ld, " {old}, [{p}]"),
                    "add {new}, {old}, {v}",
                    concat!($st, " {fail:w}, {new}, [{p}]"),
                    "cbnz {fail:w}, 2b",
                    $fence,
                    old = out(reg) old,
                    new = out(reg) _,
                    fail = out(reg) _,
                    p = in(reg) p.as_ptr(),
                    v = in(reg) v,
                    options(nostack),
                )
            };
            old
        }};
    }
    match ord {
        Ordering::Relaxed => add_loop!("ldxr", "stxr", ""),
        Ordering::Acquire => add_loop!("ldaxr", "stxr", ""),
        Ordering::Release => add_loop!("ldxr", "stlxr", ""),
        Ordering::AcqRel => add_loop!("ldaxr", "stlxr", ""),
        _ => add_loop!("ldxr", "stlxr", "dmb ish"),
    }
}
// lab:llsc-add end

/// `*p = v`, returning the old value.
pub fn swap(p: &AtomicU64, v: u64, ord: Ordering) -> u64 {
    if uses_lse() {
        lse_rmw!(p.as_ptr(), v, ord, "swp")
    } else {
        llsc_rmw!(p.as_ptr(), v, ord, "mov {new}, {v}")
    }
}

/// `*p |= v`, returning the old value.
pub fn fetch_or(p: &AtomicU64, v: u64, ord: Ordering) -> u64 {
    if uses_lse() {
        lse_rmw!(p.as_ptr(), v, ord, "ldset")
    } else {
        llsc_rmw!(p.as_ptr(), v, ord, "orr {new}, {old}, {v}")
    }
}

/// `*p &= !v` (clear the bits of `v`), returning the old value. LSE calls this `LDCLR`.
pub fn fetch_clear(p: &AtomicU64, v: u64, ord: Ordering) -> u64 {
    if uses_lse() {
        lse_rmw!(p.as_ptr(), v, ord, "ldclr")
    } else {
        llsc_rmw!(p.as_ptr(), v, ord, "bic {new}, {old}, {v}")
    }
}

/// `*p ^= v`, returning the old value.
pub fn fetch_xor(p: &AtomicU64, v: u64, ord: Ordering) -> u64 {
    if uses_lse() {
        lse_rmw!(p.as_ptr(), v, ord, "ldeor")
    } else {
        llsc_rmw!(p.as_ptr(), v, ord, "eor {new}, {old}, {v}")
    }
}

/// If `*p == expected`, store `new`. Returns the value found (equal to `expected` on success).
/// `ord` applies to success. A failed compare promises no ordering, as in Linux (the acquire
/// forms happen to order it anyway, and the host stand-in asks for acquire on failure).
pub fn compare_exchange(p: &AtomicU64, expected: u64, new: u64, ord: Ordering) -> u64 {
    if uses_lse() {
        macro_rules! cas {
            ($insn:literal) => {{
                let mut found = expected;
                // SAFETY: as above; CAS writes only `*p`, and only when it equals `expected`.
                unsafe {
                    asm!(
                        ".arch_extension lse",
                        concat!($insn, " {found}, {new}, [{p}]"),
                        found = inout(reg) found,
                        new = in(reg) new,
                        p = in(reg) p.as_ptr(),
                        options(nostack),
                    )
                };
                found
            }};
        }
        return match ord {
            Ordering::Relaxed => cas!("cas"),
            Ordering::Acquire => cas!("casa"),
            Ordering::Release => cas!("casl"),
            _ => cas!("casal"),
        };
    }
    macro_rules! llsc_cas {
        ($ld:literal, $st:literal, $fence:literal) => {{
            let found: u64;
            // SAFETY: as for llsc_rmw; the store happens only when the compare succeeded.
            unsafe {
                asm!(
                    concat!("2: ", $ld, " {found}, [{p}]"),
                    "cmp {found}, {expected}",
                    "b.ne 3f",
                    concat!($st, " {fail:w}, {new}, [{p}]"),
                    "cbnz {fail:w}, 2b",
                    $fence,
                    "3:",
                    found = out(reg) found,
                    fail = out(reg) _,
                    p = in(reg) p.as_ptr(),
                    expected = in(reg) expected,
                    new = in(reg) new,
                    options(nostack),
                )
            };
            found
        }};
    }
    match ord {
        Ordering::Relaxed => llsc_cas!("ldxr", "stxr", ""),
        Ordering::Acquire => llsc_cas!("ldaxr", "stxr", ""),
        Ordering::Release => llsc_cas!("ldxr", "stlxr", ""),
        Ordering::AcqRel => llsc_cas!("ldaxr", "stlxr", ""),
        _ => llsc_cas!("ldxr", "stlxr", "dmb ish"),
    }
}

/// Store-release `half` into the low 16 bits of `word` (`STLRH`), leaving the high half to
/// whoever is changing it at the same moment.
///
/// This is how Linux's arm64 ticket lock unlocked: the holder is the only writer of the owner
/// half, while other CPUs take tickets with an atomic add on the whole word. The architecture
/// makes a halfword store single-copy atomic and orders it like any other release; a store to
/// the word also clears every other CPU's exclusive monitor on it, so a waiter's `LDAXR`+`WFE`
/// wakes and a ticket-taker's `STXR` retries. Rust's memory model has no rule for atomic
/// accesses of different sizes that overlap, so the portable algorithms never do this
/// themselves: they call this hook through src/sync/shim.rs, which on the host and under loom
/// is a compare-exchange loop over the whole word with the same effect.
pub fn store_release_low_half(word: &core::sync::atomic::AtomicU32, half: u16) {
    // SAFETY: `word` is a valid, aligned 32-bit atomic; on little-endian AArch64 its low half
    // is its first two bytes. The store is atomic and ordered as a release (see above).
    unsafe {
        asm!(
            "stlrh {half:w}, [{p}]",
            half = in(reg) u32::from(half),
            p = in(reg) word.as_ptr(),
            options(nostack, preserves_flags),
        )
    };
}
