//! quartet: an educational AArch64 SMP kernel about how four CPUs share one kernel.
//!
//! The module map follows the layers, lowest first; nothing low imports something high:
//! `arch` (instructions and registers) <- `sync`, `percpu` <- `drivers`, `platform` <-
//! `irq`, `smp`, `mm`, `console`, `logger` <- `shell`, `ktest`, `bench`. The boot order lives in src/main.rs.
//! The tutorial in docs/ explains each module; every module's own doc names its chapter.
#![cfg_attr(target_os = "none", no_std)]

extern crate alloc;

pub mod arch;
pub mod bench;
pub mod chainload;
pub mod config;
#[cfg(target_os = "none")]
pub mod console;
pub mod cpumask;
pub mod drivers;
pub mod errno;
#[cfg(target_os = "none")]
pub mod fatal;
pub mod fs;
pub mod irq;
#[cfg(target_os = "none")]
pub mod ktest;
pub mod logger;
pub mod mm;
pub mod percpu;
pub mod platform;
#[cfg(target_os = "none")]
pub mod power;
pub mod proc;
pub mod rcu;
pub mod shell;
#[cfg(target_os = "none")]
pub mod smp;
pub mod sync;
pub mod syscall;
pub mod task;

/// The kernel heap, the global allocator on the target (host tests use the host's allocator).
#[cfg(target_os = "none")]
#[global_allocator]
pub static HEAP: mm::heap::KernelHeap = mm::heap::KernelHeap::new();
