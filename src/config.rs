//! Compile-time limits, in one place so the reader sees what the kernel assumes.

/// The most CPUs quartet brings up: a build-time limit that sizes the CPU masks
/// (src/cpumask.rs), the per-CPU arrays (one cache line per CPU each), lockdep, RCU's leaves and
/// the reserved stack slots. Slots of CPUs the device tree does not list go back to the heap at
/// boot, so a 4-CPU machine pays for 4 stacks. A GICv2 reaches only 8 CPUs whatever this says;
/// more in the device tree are reported and left off.
#[cfg(not(loom))]
pub const MAX_CPUS: usize = 64;
/// Under loom, two of RCU's 16-CPU leaves: enough for every cross-leaf interleaving the models
/// explore, and small enough that a failing model's panic fits on loom's coroutine stacks (at
/// 64, the models that must catch a broken grace period overflowed them instead).
#[cfg(loom)]
pub const MAX_CPUS: usize = 32;

/// How long the boot CPU waits for a started CPU to report in, in milliseconds of counter time.
pub const CPU_START_TIMEOUT_MS: u64 = 1000;

/// Translation tables reserved for the kernel's map, TTBR1 (4 KiB each).
pub const PAGE_TABLE_POOL: usize = 32;

/// The cache line size the per-CPU layout pads to (Cortex-A72: 64 bytes).
pub const CACHE_LINE: usize = 64;

/// The kernel heap gets one in this many bytes of free RAM (the first ones); the page-frame
/// allocator (src/mm/frames.rs) gets the rest, for user pages and page tables.
pub const HEAP_SHARE_DIVISOR: u64 = 4;
