//! The identity map every CPU runs on, planned from the platform and the kernel layout
//! (chapter 4, "Why the MMU must be on before the first lock").
//!
//! RAM is Normal write-back cacheable memory, read-write and never executable, except the kernel
//! image, which is mapped section by section: text read-only and executable, rodata read-only,
//! data and BSS read-write. Each CPU's stack is mapped on its own with the guard page below it
//! left out, so a stack overflow faults instead of silently overwriting the next stack. MMIO
//! ranges are Device-nGnRE. The plan is pure data so the host tests it; `build` turns it into
//! tables.

use crate::arch::aarch64::layout::{KernelLayout, STACK_SLOTS};
use crate::arch::aarch64::pagetable::{Attributes, Builder, MapError, Table};
use crate::platform::{FixedList, Platform, Region, Source};

/// One mapping of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub region: Region,
    pub attrs: Attributes,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            region: Region::default(),
            attrs: Attributes::READ_ONLY,
        }
    }
}

pub type Plan = FixedList<Mapping, 64>;

/// Everything the kernel maps, in the order to map it.
pub fn plan(platform: &Platform<'_>, kernel: &KernelLayout) -> Plan {
    let mut plan = Plan::default();
    let mut map = |start: usize, end: usize, attrs: Attributes| {
        if end > start {
            plan.push(Mapping {
                region: Region::new(start as u64, (end - start) as u64),
                attrs,
            });
        }
    };
    let image = Region::new(
        kernel.kernel_start as u64,
        (kernel.kernel_end - kernel.kernel_start) as u64,
    );
    for ram in platform.memory.as_slice() {
        // RAM around the kernel image; the image itself is mapped piece by piece below.
        let (start, end) = (ram.start as usize, ram.end() as usize);
        if ram.overlaps(&image) {
            map(start, kernel.kernel_start, Attributes::READ_WRITE);
            map(kernel.kernel_end, end, Attributes::READ_WRITE);
        } else {
            map(start, end, Attributes::READ_WRITE);
        }
    }
    map(kernel.text.0, kernel.text.1, Attributes::TEXT);
    map(kernel.rodata.0, kernel.rodata.1, Attributes::READ_ONLY);
    map(kernel.data_bss.0, kernel.data_bss.1, Attributes::READ_WRITE);
    for slot in 0..STACK_SLOTS {
        let (bottom, top) = kernel.stack_slot(slot);
        map(bottom, top, Attributes::READ_WRITE);
    }
    map(kernel.stacks.1, kernel.kernel_end, Attributes::READ_WRITE);
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

/// Build translation tables for `plan` in `tables`; returns the root address for TTBR0_EL1.
pub fn build(plan: &Plan, tables: &mut [Table]) -> Result<(u64, usize), MapError> {
    let mut builder = Builder::new(tables);
    for m in plan.as_slice() {
        builder.map(m.region.start, m.region.end(), m.attrs)?;
    }
    Ok((builder.root_address(), builder.tables_used()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::aarch64::layout::{PAGE_SIZE, STACK_SIZE};
    use crate::platform::Board;

    fn virt_layout() -> KernelLayout {
        let start = 0x4008_0000;
        let stacks = 0x4010_0000;
        let stacks_end = stacks + STACK_SLOTS * (PAGE_SIZE + STACK_SIZE);
        KernelLayout {
            kernel_start: start,
            text: (start, 0x400a_0000),
            rodata: (0x400a_0000, 0x400b_0000),
            data_bss: (0x400b_0000, 0x400c_0800),
            stacks: (stacks, stacks_end),
            kernel_end: stacks_end,
            image_end: 0x400b_1000,
        }
    }

    fn built(platform: &Platform<'_>, layout: &KernelLayout) -> (Vec<Table>, u64) {
        let mut tables = vec![Table::EMPTY; crate::config::PAGE_TABLE_POOL];
        let (root, _) = build(&plan(platform, layout), &mut tables).expect("pool is large enough");
        (tables, root)
    }

    #[test]
    fn kernel_sections_get_their_permissions_and_guards_stay_unmapped() {
        let platform = Platform::defaults(Board::QemuVirt);
        let layout = virt_layout();
        let mut tables = vec![Table::EMPTY; crate::config::PAGE_TABLE_POOL];
        let p = plan(&platform, &layout);
        let mut builder = Builder::new(&mut tables);
        for m in p.as_slice() {
            builder
                .map(m.region.start, m.region.end(), m.attrs)
                .unwrap();
        }
        let attrs = |a: usize| builder.lookup(a as u64).map(|(attrs, _)| attrs);
        assert_eq!(attrs(layout.text.0), Some(Attributes::TEXT));
        assert_eq!(attrs(layout.rodata.0 + 8), Some(Attributes::READ_ONLY));
        assert_eq!(attrs(layout.data_bss.1 - 1), Some(Attributes::READ_WRITE));
        for slot in 0..STACK_SLOTS {
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
        assert_eq!(
            attrs(0x4000_0000),
            Some(Attributes::READ_WRITE),
            "RAM below the kernel"
        );
        assert_eq!(
            attrs(0x4700_0000),
            Some(Attributes::READ_WRITE),
            "RAM above the kernel"
        );
        assert_eq!(attrs(0x4800_0000), None, "past the end of RAM");
        assert_eq!(attrs(0x0900_0000), Some(Attributes::DEVICE), "the UART");
        assert_eq!(
            attrs(0x0801_0000),
            Some(Attributes::DEVICE),
            "the GIC CPU interface"
        );
    }

    #[test]
    fn the_pi_map_fits_the_table_pool() {
        let platform = Platform::defaults(Board::RaspberryPi4);
        let mut layout = virt_layout();
        let shift = 0x4008_0000 - 0x8_0000;
        for r in [
            &mut layout.text,
            &mut layout.rodata,
            &mut layout.data_bss,
            &mut layout.stacks,
        ] {
            r.0 -= shift;
            r.1 -= shift;
        }
        layout.kernel_start -= shift;
        layout.kernel_end -= shift;
        let (tables, root) = built(&platform, &layout);
        assert_eq!(root, tables.as_ptr() as u64);
    }
}
