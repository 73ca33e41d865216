//! Synchronisation primitives, written once against the small `arch` interface so the same code
//! runs in host unit tests, under loom, and on four AArch64 CPUs.
//!
//! One file per primitive: atomics, the spin lock family, the IRQ-safe lock and the nesting
//! IRQ disable it rests on, the preempt count, the reader-writer lock and the seqlock.

pub mod atomic;
pub mod biglock;
pub mod completion;
pub mod irq;
pub mod lockdep;
pub mod lockstat;
pub mod mutex;
pub mod preempt;
pub mod rwlock;
pub mod rwsem;
pub mod semaphore;
pub mod seqlock;
pub mod shim;
pub mod sleep;
pub mod spinlock;
pub mod spsc;
pub mod waitqueue;

pub use atomic::{AtomicBits, AtomicCounter};
pub use biglock::BigLock;
pub use completion::Completion;
pub use irq::IrqSafeSpinLock;
pub use mutex::{Mutex, MutexGuard, RawMutex};
pub use rwlock::RwLock;
pub use rwsem::{RwSemReadGuard, RwSemWriteGuard, RwSemaphore};
pub use semaphore::{Semaphore, SemaphorePermit};
pub use seqlock::{SeqData, SeqLock};
pub use sleep::Sleeper;
pub use spinlock::{SpinLock, SpinLockGuard};
pub use waitqueue::WaitQueue;
