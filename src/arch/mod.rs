//! The architecture layer. `aarch64` holds the real thing; `host` stands in for it in unit
//! tests. Portable code uses only the small interface re-exported here.

pub mod aarch64;
#[cfg(not(target_os = "none"))]
pub mod host;

/// Read-modify-write atomics: hand-written LL/SC or LSE on the target, core atomics on the host.
/// The host benchmark on an AArch64 Linux host (`host-bench`) runs the target's own code: user
/// mode may execute LDXR/STXR, the LSE instructions, SEVL and WFE. `native_aarch64_sync` says
/// which (build.rs sets it).
#[cfg(native_aarch64_sync)]
pub use aarch64::atomic;
#[cfg(not(native_aarch64_sync))]
pub use host::atomic;

/// Waiting for another CPU's store: LDAXR + WFE on the target, a spin hint on the host.
#[cfg(native_aarch64_sync)]
pub use aarch64::wait;
#[cfg(not(native_aarch64_sync))]
pub use host::wait;

/// Masking IRQs on this CPU: DAIF on the target, a per-thread flag on the host.
#[cfg(target_os = "none")]
pub use aarch64::irqflags;
#[cfg(not(target_os = "none"))]
pub use host::irqflags;

#[cfg(target_os = "none")]
pub use aarch64::cpu::{
    counter, counter_frequency, cpu_relax, percpu_pointer, send_event, set_percpu_pointer,
    set_task_word, task_word, wait_for_event,
};
#[cfg(not(target_os = "none"))]
pub use host::{
    counter, counter_frequency, cpu_relax, percpu_pointer, send_event, set_percpu_pointer,
    set_task_word, task_word, wait_for_event,
};
