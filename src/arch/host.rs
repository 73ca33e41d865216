//! The host stand-in for the few CPU operations portable code needs, so that `src/sync`,
//! `src/percpu` and friends run in host unit tests and under loom.
//!
//! A host thread plays a CPU: `set_percpu_pointer` records which per-CPU area it owns.

use std::cell::Cell;
use std::time::Instant;

std::thread_local! {
    static PERCPU_POINTER: Cell<usize> = const { Cell::new(0) };
}

/// The per-CPU area this thread plays, or 0.
pub fn percpu_pointer() -> usize {
    PERCPU_POINTER.with(|p| p.get())
}

/// Make this thread play the CPU whose area is at `area`.
pub fn set_percpu_pointer(area: usize) {
    PERCPU_POINTER.with(|p| p.set(area));
}

/// Waiting for an event is a spin hint on the host.
pub fn wait_for_event() {
    std::hint::spin_loop();
}

/// Nothing to wake on the host: waiters spin.
pub fn send_event() {}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// A nanosecond counter standing in for the generic counter.
pub fn counter() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The stand-in counter ticks in nanoseconds.
pub fn counter_frequency() -> u64 {
    1_000_000_000
}
