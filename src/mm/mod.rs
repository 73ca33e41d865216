//! Memory management: the kernel's map of memory, the kernel heap, and the conversions between
//! physical addresses and the kernel virtual addresses that reach them.

pub mod addrspace;
pub mod asid;
pub mod frames;
pub mod heap;
pub mod paging;
pub mod uaccess;

/// Offset added to a physical address to get the kernel virtual address that reaches it: the
/// base of the linear map, the bottom of the kernel's half of the address space (TTBR1; with
/// 39-bit addresses, the top 512 GiB). Physical address 0 is at 0xffff_ff80_0000_0000, and the
/// kernel image itself lives inside the linear map (linker.ld links it at this offset plus its
/// load address). Everything below 2^39 belongs to user processes (TTBR0).
pub const LINEAR_MAP_OFFSET: usize = 0xffff_ff80_0000_0000;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_linear_map_starts_the_kernel_half_and_agrees_with_the_linker_script() {
        let script = include_str!("../../linker.ld");
        let line = script
            .lines()
            .find(|l| l.starts_with("LINEAR_MAP_OFFSET"))
            .expect("linker.ld defines LINEAR_MAP_OFFSET");
        let value = line.split('=').nth(1).unwrap().trim().trim_end_matches(';');
        let value = usize::from_str_radix(value.trim_start_matches("0x"), 16).unwrap();
        assert_eq!(value, LINEAR_MAP_OFFSET);
        assert_eq!(
            LINEAR_MAP_OFFSET as u64,
            crate::arch::aarch64::pagetable::KERNEL_VA_BASE
        );
        assert_eq!(phys_to_virt(0x4020_0000), 0xffff_ff80_4020_0000);
        assert_eq!(virt_to_phys(phys_to_virt(0x8_0000)), 0x8_0000);
    }
}
