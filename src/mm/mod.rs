//! Memory management: the kernel's map of memory, the kernel heap, and the conversions between
//! physical addresses and the kernel virtual addresses that reach them.

pub mod heap;
pub mod paging;
pub mod uaccess;

/// Offset added to a physical address to get the kernel virtual address that reaches it.
///
/// Zero while the kernel runs on an identity map; the kernel's move to the high half of the
/// address space (TTBR1) makes it the base of the linear map of physical memory.
pub const LINEAR_MAP_OFFSET: usize = 0;

/// The kernel virtual address through which the kernel reads and writes physical address `pa`
/// (RAM, page tables, page frames, MMIO).
#[inline]
pub const fn phys_to_virt(pa: usize) -> usize {
    pa.wrapping_add(LINEAR_MAP_OFFSET)
}

/// The physical address behind kernel virtual address `va` (an address in the linear map or the
/// kernel image), for page-table entries, DMA and the addresses handed to firmware.
#[inline]
pub const fn virt_to_phys(va: usize) -> usize {
    va.wrapping_sub(LINEAR_MAP_OFFSET)
}
