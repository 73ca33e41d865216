//! Compile-time limits, in one place so the reader sees what the kernel assumes.

/// The most CPUs quartet brings up; more in the device tree are reported and left off. CPU
/// masks (src/cpumask.rs), per-CPU arrays, lockdep and RCU are sized from it.
pub const MAX_CPUS: usize = 8;

/// How long the boot CPU waits for a started CPU to report in, in milliseconds of counter time.
pub const CPU_START_TIMEOUT_MS: u64 = 1000;

/// Translation tables reserved for the kernel's map, TTBR1 (4 KiB each).
pub const PAGE_TABLE_POOL: usize = 32;

/// The cache line size the per-CPU layout pads to (Cortex-A72: 64 bytes).
pub const CACHE_LINE: usize = 64;

/// The kernel heap gets one in this many bytes of free RAM (the first ones); the page-frame
/// allocator (src/mm/frames.rs) gets the rest, for user pages and page tables.
pub const HEAP_SHARE_DIVISOR: u64 = 4;
