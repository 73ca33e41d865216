//! Synchronisation primitives, written once against the small `arch` interface so the same code
//! runs in host unit tests, under loom, and on four AArch64 CPUs.
//!
//! One file per primitive: atomics, the spin lock family, the IRQ-safe lock and the nesting
//! IRQ disable it rests on, the preempt count, the reader-writer lock and the seqlock.

pub mod atomic;
pub mod irq;
pub mod lockdep;
pub mod preempt;
pub mod rwlock;
pub mod seqlock;
pub mod shim;
pub mod spinlock;
pub mod spsc;

pub use atomic::{AtomicBits, AtomicCounter};
pub use irq::IrqSafeSpinLock;
pub use rwlock::RwLock;
pub use seqlock::{SeqData, SeqLock};
pub use spinlock::{SpinLock, SpinLockGuard};
