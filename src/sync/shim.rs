//! Everything the model-checked lock algorithms touch: atomics, fences and the ways of waiting
//! (the spin-locks chapter, "Model checking with loom").
//!
//! The ticket lock, the MCS lock and the seqlock take these names from here instead of from
//! `core::sync::atomic` and `crate::arch`. Normally this module is nothing but re-exports of
//! those, so the kernel and the host tests compile exactly the code they always did. Built with
//! `RUSTFLAGS="--cfg loom"` (only `make loom` does that), the same names are loom's instrumented
//! atomics, and waiting becomes a yield to loom's scheduler: loom then runs the unchanged
//! algorithms under every interleaving its preemption bound allows.
//!
//! Two things do not carry over. Loom's atomics cannot be built in a `const`, so constructors
//! are written with `const_unless_loom!`. And the kernel's own statics need a `const` spin
//! lock, which is why `SpinLock`'s default raw lock is a different one under loom (see
//! `DefaultRawLock` in src/sync/spinlock/mod.rs).

#[cfg(not(loom))]
pub use core::sync::atomic::{
    AtomicPtr, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, fence,
};
#[cfg(loom)]
pub use loom::sync::atomic::{
    AtomicPtr, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, fence,
};

/// A spin-loop hint; under loom the host's version yields to loom's scheduler.
pub use crate::arch::cpu_relax;

/// Release-store the low half of a 32-bit word that others change with atomic adds (the ticket
/// lock's unlock). On the target it is one `STLRH` (src/arch/aarch64/atomic.rs).
#[cfg(all(
    any(
        target_os = "none",
        all(feature = "host-bench", target_arch = "aarch64")
    ),
    not(loom)
))]
pub use crate::arch::atomic::store_release_low_half;

/// Elsewhere (host tests, the host benchmark on x86 and loom) Rust cannot express a halfword store into a word that others
/// change with 32-bit atomics, so it is the same effect in Rust's terms: one compare-exchange
/// over the whole word that replaces the low half, with release ordering, retried while other
/// threads change the high half. One definition serves both, over this module's `AtomicU32`.
#[cfg(not(all(
    any(
        target_os = "none",
        all(feature = "host-bench", target_arch = "aarch64")
    ),
    not(loom)
)))]
pub fn store_release_low_half(word: &AtomicU32, half: u16) {
    let mut seen = word.load(Ordering::Relaxed);
    loop {
        let new = (seen & 0xffff_0000) | u32::from(half);
        match word.compare_exchange_weak(seen, new, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => seen = now,
        }
    }
}

/// Sleep until the word may have changed: LDAXR + WFE on the target, a hint on the host.
#[cfg(not(loom))]
pub use crate::arch::wait::{wait_while_u8, wait_while_u16, wait_while_u32};

// Under loom the arch versions would not accept loom's atomic types; and a spinning loom thread
// must give the other threads a turn, or loom reports the model as never finishing.
#[cfg(loom)]
pub fn wait_while_u8(_: &AtomicU8, _: u8) {
    cpu_relax();
}
#[cfg(loom)]
pub fn wait_while_u16(_: &AtomicU16, _: u16) {
    cpu_relax();
}
#[cfg(loom)]
pub fn wait_while_u32(_: &AtomicU32, _: u32) {
    cpu_relax();
}

/// Declares a `const fn` that is a plain `fn` under loom, whose atomics need a running model to
/// be created. The kernel keeps its `const` constructors (its locks live in statics).
macro_rules! const_unless_loom {
    ($(#[$attr:meta])* $vis:vis const fn $($rest:tt)*) => {
        #[cfg(not(loom))]
        $(#[$attr])* $vis const fn $($rest)*
        #[cfg(loom)]
        $(#[$attr])* $vis fn $($rest)*
    };
}
pub(crate) use const_unless_loom;
