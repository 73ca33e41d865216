//! The kernel's map of memory (TTBR1), planned from the platform and the kernel layout
//! (chapter 4, "Why the MMU must be on before the first lock").
//!
//! Everything is mapped in the linear map, at `phys_to_virt(physical address)`: RAM is Normal
//! write-back cacheable memory, read-write and never executable, except the kernel image (which
//! the linker placed inside the linear map), mapped section by section: text read-only and
//! executable, rodata read-only, data and BSS read-write. Each CPU's stack is mapped on its own
//! with the guard page below it left out, so a stack overflow faults instead of silently
//! overwriting the next stack. MMIO ranges are Device-nGnRE. Nothing is mapped in the low half:
//! that belongs to user processes (TTBR0). The plan is pure data so the host tests it; `build`
//! turns it into tables.

use crate::arch::aarch64::layout::{KernelLayout, STACK_SLOTS};
use crate::arch::aarch64::pagetable::{Attributes, Builder, Half, MapError, Table};
use crate::mm::{phys_to_virt, virt_to_phys};
use crate::platform::{FixedList, Platform, Region, Source};

/// One mapping of the plan: `phys` appears at virtual address `virt` with `attrs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub virt: u64,
    pub phys: Region,
    pub attrs: Attributes,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            virt: 0,
            phys: Region::default(),
            attrs: Attributes::READ_ONLY,
        }
    }
}

/// Room for the RAM ranges, the image's sections, MMIO and one stack slot per CPU.
pub type Plan = FixedList<Mapping, { STACK_SLOTS + 40 }>;

/// Stack slots a machine with the platform's CPUs uses: the boot stack's and one per CPU.
pub fn stack_slots_in_use(platform: &Platform<'_>) -> usize {
    (platform.cpus.len() + 1).min(STACK_SLOTS)
}

/// Everything the kernel maps, in the order to map it.
pub fn plan(platform: &Platform<'_>, kernel: &KernelLayout) -> Plan {
    let mut plan = Plan::default();
    // Map physical [start, end) at its linear-map address.
    let mut map = |start: usize, end: usize, attrs: Attributes| {
        if end > start {
            plan.push(Mapping {
                virt: phys_to_virt(start) as u64,
                phys: Region::new(start as u64, (end - start) as u64),
                attrs,
            });
        }
    };
    // The image's parts by physical address (the layout holds their virtual addresses).
    let pa = virt_to_phys;
    let image = Region::new(
        pa(kernel.kernel_start) as u64,
        (kernel.kernel_end - kernel.kernel_start) as u64,
    );
    for ram in platform.memory.as_slice() {
        // RAM around the kernel image; the image itself is mapped piece by piece below.
        let (start, end) = (ram.start as usize, ram.end() as usize);
        if ram.overlaps(&image) {
            map(start, pa(kernel.kernel_start), Attributes::READ_WRITE);
            map(pa(kernel.kernel_end), end, Attributes::READ_WRITE);
        } else {
            map(start, end, Attributes::READ_WRITE);
        }
    }
    map(pa(kernel.text.0), pa(kernel.text.1), Attributes::TEXT);
    map(
        pa(kernel.rodata.0),
        pa(kernel.rodata.1),
        Attributes::READ_ONLY,
    );
    map(
        pa(kernel.data_bss.0),
        pa(kernel.data_bss.1),
        Attributes::READ_WRITE,
    );
    // The boot page tables and the empty TTBR0 table (linker.ld's .boot_tables).
    map(
        pa(kernel.data_bss.1),
        pa(kernel.stacks.0),
        Attributes::READ_WRITE,
    );
    // The stack slots of the CPUs the platform lists, each stack with its emergency stack
    // above it and its guard page left out; the slots above, for CPUs this machine does not
    // have, are plain RAM that boot gives the heap.
    let slots_in_use = stack_slots_in_use(platform);
    for slot in 0..slots_in_use {
        let (bottom, _) = kernel.stack_slot(slot);
        let (_, top) = kernel.emergency_slot(slot);
        map(pa(bottom), pa(top), Attributes::READ_WRITE);
    }
    map(
        pa(kernel.stacks_in_use_end(platform.cpus.len())),
        pa(kernel.kernel_end),
        Attributes::READ_WRITE,
    );
    for mmio in platform.mmio_regions().as_slice() {
        map(mmio.start as usize, mmio.end() as usize, Attributes::DEVICE);
    }
    // The DTB must stay readable even where a loader put it outside the RAM the tree lists.
    if let Source::DeviceTree { address, size } = platform.source {
        let dtb = Region::new(address, size);
        if !platform
            .memory
            .as_slice()
            .iter()
            .any(|r| r.contains(address) && r.contains(dtb.end() - 1))
        {
            map(address as usize, dtb.end() as usize, Attributes::READ_ONLY);
        }
    }
    plan
}

/// Build the kernel's translation tables (TTBR1) for `plan` in `tables`; returns the root's
/// physical address and the number of tables used.
pub fn build(plan: &Plan, tables: &mut [Table]) -> Result<(u64, usize), MapError> {
    let mut builder = Builder::new(tables, Half::Kernel);
    for m in plan.as_slice() {
        builder.map(m.virt, m.phys.start, m.phys.size, m.attrs)?;
    }
    Ok((builder.root_address(), builder.tables_used()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::aarch64::layout::STACK_SLOT_SIZE;
    use crate::arch::aarch64::pagetable::{KERNEL_VA_BASE, USER_VA_END};
    use crate::platform::Board;

    /// The kernel layout as linker.ld makes it: physical `load` + the linear-map offset.
    fn layout_at(load: usize) -> KernelLayout {
        let v = |pa: usize| phys_to_virt(load + pa);
        let stacks = v(0x8_0000);
        let stacks_end = stacks + STACK_SLOTS * STACK_SLOT_SIZE;
        KernelLayout {
            kernel_start: v(0),
            text: (v(0), v(0x2_0000)),
            rodata: (v(0x2_0000), v(0x3_0000)),
            data_bss: (v(0x3_0000), v(0x4_0800)),
            stacks: (stacks, stacks_end),
            kernel_end: stacks_end,
            image_end: v(0x3_1000),
        }
    }

    fn virt_layout() -> KernelLayout {
        layout_at(0x4020_0000)
    }

    fn builder_for<'a>(
        tables: &'a mut [Table],
        platform: &Platform<'_>,
        layout: &KernelLayout,
    ) -> Builder<'a> {
        let mut builder = Builder::new(tables, Half::Kernel);
        for m in plan(platform, layout).as_slice() {
            builder
                .map(m.virt, m.phys.start, m.phys.size, m.attrs)
                .unwrap();
        }
        builder
    }

    #[test]
    fn kernel_sections_get_their_permissions_and_guards_stay_unmapped() {
        let platform = Platform::defaults(Board::QemuVirt);
        let layout = virt_layout();
        let mut tables = vec![Table::EMPTY; crate::config::PAGE_TABLE_POOL];
        let builder = builder_for(&mut tables, &platform, &layout);
        let attrs = |a: usize| builder.lookup(a as u64).map(|(attrs, _)| attrs);
        assert_eq!(attrs(layout.text.0), Some(Attributes::TEXT));
        assert_eq!(attrs(layout.rodata.0 + 8), Some(Attributes::READ_ONLY));
        assert_eq!(attrs(layout.data_bss.1 - 1), Some(Attributes::READ_WRITE));
        for slot in 0..stack_slots_in_use(&platform) {
            assert_eq!(
                attrs(layout.guard_page(slot)),
                None,
                "guard of slot {slot} must be unmapped"
            );
            assert_eq!(
                attrs(layout.stack_slot(slot).0),
                Some(Attributes::READ_WRITE)
            );
            assert_eq!(
                attrs(layout.stack_slot(slot).1 - 8),
                Some(Attributes::READ_WRITE)
            );
        }
        let linear = |pa: usize| attrs(phys_to_virt(pa));
        assert_eq!(
            linear(0x4000_0000),
            Some(Attributes::READ_WRITE),
            "RAM below the kernel"
        );
        assert_eq!(
            linear(0x4700_0000),
            Some(Attributes::READ_WRITE),
            "RAM above the kernel"
        );
        assert_eq!(linear(0x4800_0000), None, "past the end of RAM");
        assert_eq!(linear(0x0900_0000), Some(Attributes::DEVICE), "the UART");
        assert_eq!(
            linear(0x0801_0000),
            Some(Attributes::DEVICE),
            "the GIC CPU interface"
        );
        // The text is where the linker put it: its physical address + the linear-map offset.
        assert_eq!(
            builder.translate(layout.text.0 as u64).map(|t| t.2),
            Some(0x4020_0000)
        );
    }

    /// The kernel's map must leave the whole low half to user processes: no mapping below the
    /// kernel's half, and in particular no identity map of the image left over from boot.
    #[test]
    fn nothing_is_mapped_in_the_user_half_and_the_image_is_not_identity_mapped() {
        for (board, load) in [
            (Board::QemuVirt, 0x4020_0000),
            (Board::RaspberryPi4, 0x8_0000),
        ] {
            let platform = Platform::defaults(board);
            let layout = layout_at(load);
            for m in plan(&platform, &layout).as_slice() {
                assert!(
                    m.virt >= KERNEL_VA_BASE,
                    "{board:?}: {m:?} lies in the user half"
                );
                assert_eq!(
                    m.virt,
                    phys_to_virt(m.phys.start as usize) as u64,
                    "{board:?}: {m:?} is outside the linear map"
                );
            }
            let mut tables = vec![Table::EMPTY; crate::config::PAGE_TABLE_POOL];
            let builder = builder_for(&mut tables, &platform, &layout);
            // The software walk refuses low addresses; a tree that mapped them could not be
            // built (Builder::map refuses them too), so check the root has nothing a low
            // address would use: with the same root under TTBR0, index 0..511 would be live.
            let low_image = virt_to_phys(layout.kernel_start) as u64;
            assert!(low_image < USER_VA_END);
            assert_eq!(
                builder.lookup(low_image),
                None,
                "{board:?}: image identity-mapped"
            );
            assert!(builder.lookup(layout.kernel_start as u64).is_some());
        }
    }

    #[test]
    fn the_pi_map_fits_the_table_pool() {
        let platform = Platform::defaults(Board::RaspberryPi4);
        let layout = layout_at(0x8_0000);
        let mut tables = vec![Table::EMPTY; crate::config::PAGE_TABLE_POOL];
        let (root, _) =
            build(&plan(&platform, &layout), &mut tables).expect("pool is large enough");
        assert_eq!(root, virt_to_phys(tables.as_ptr() as usize) as u64);
    }

    #[test]
    fn a_machine_with_max_cpus_maps_every_stack_and_fits_the_pool() {
        let mut platform = Platform::defaults(Board::QemuVirt);
        platform.cpus = FixedList::default();
        for id in 0..crate::config::MAX_CPUS as u64 {
            platform.cpus.push(crate::platform::CpuDesc {
                mpidr: ((id / 16) << 8) | (id % 16),
                method: crate::platform::EnableMethod::Psci,
            });
        }
        let layout = virt_layout();
        let planned = plan(&platform, &layout);
        assert_eq!(
            planned.dropped(),
            0,
            "the plan had no room for every mapping"
        );
        let mut tables = vec![Table::EMPTY; crate::config::PAGE_TABLE_POOL];
        let builder = builder_for(&mut tables, &platform, &layout);
        let attrs = |a: usize| builder.lookup(a as u64).map(|(attrs, _)| attrs);
        for slot in 0..STACK_SLOTS {
            assert_eq!(attrs(layout.guard_page(slot)), None, "guard of slot {slot}");
            let (bottom, top) = layout.emergency_slot(slot);
            assert_eq!(attrs(bottom), Some(Attributes::READ_WRITE), "slot {slot}");
            assert_eq!(attrs(top - 8), Some(Attributes::READ_WRITE), "slot {slot}");
        }
    }

    #[test]
    fn the_slots_of_cpus_a_machine_lacks_are_plain_ram() {
        // Four CPUs: slots 0..=4 are stacks with guards, the rest of the section is RAM.
        let mut platform = Platform::defaults(Board::QemuVirt);
        platform.cpus.truncate(4);
        let layout = virt_layout();
        let mut tables = vec![Table::EMPTY; crate::config::PAGE_TABLE_POOL];
        let builder = builder_for(&mut tables, &platform, &layout);
        let attrs = |a: usize| builder.lookup(a as u64).map(|(attrs, _)| attrs);
        assert_eq!(attrs(layout.guard_page(4)), None);
        for slot in 5..STACK_SLOTS {
            assert_eq!(
                attrs(layout.guard_page(slot)),
                Some(Attributes::READ_WRITE),
                "slot {slot} is free RAM"
            );
        }
        assert_eq!(layout.stacks_in_use_end(4), layout.guard_page(5));
    }
}
