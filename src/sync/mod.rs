//! Synchronisation primitives, written once against the small `arch` interface so the same code
//! runs in host unit tests, under loom, and on four AArch64 CPUs.
//!
//! Issue 2 brings the one lock the foundation needs (a ticket spin lock behind the generic
//! `SpinLock`); the tutorial's chapters on atomics and locks grow this folder.

pub mod atomic;
pub mod rwlock;
pub mod seqlock;
pub mod shim;
pub mod spinlock;

pub use atomic::{AtomicBits, AtomicCounter};
pub use rwlock::RwLock;
pub use seqlock::{SeqData, SeqLock};
pub use spinlock::{SpinLock, SpinLockGuard};
