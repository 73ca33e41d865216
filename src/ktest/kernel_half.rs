//! In-kernel tests of the split address space (chapter 4, "The kernel in the high half"): on
//! every CPU the kernel runs from TTBR1 alone, and TTBR0, which user processes will own, walks
//! nothing while no process runs: no identity map survives boot.

use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};

use super::KTest;
use crate::arch::aarch64::layout;
use crate::arch::aarch64::mmu;
use crate::ensure;
use crate::mm::{phys_to_virt, virt_to_phys};
use crate::platform::Platform;
use crate::smp;

pub static TESTS: &[KTest] = &[
    KTest {
        name: "mm_ttbr0_walks_nothing_on_every_cpu",
        run: ttbr0_walks_nothing,
    },
    KTest {
        name: "mm_ttbr1_maps_the_kernel_on_every_cpu",
        run: ttbr1_maps_the_kernel,
    },
];

/// A bit per CPU that found something wrong, and the first address it tripped over.
struct Failures {
    cpus: AtomicU64,
    address: AtomicU64,
}

impl Failures {
    fn new() -> Self {
        Failures {
            cpus: AtomicU64::new(0),
            address: AtomicU64::new(0),
        }
    }
    fn fail(&self, id: usize, address: usize) {
        self.cpus.fetch_or(1 << id, Ordering::Relaxed);
        self.address.store(address as u64, Ordering::Relaxed);
    }
    fn check(&self, what: &str) -> Result<(), String> {
        let cpus = self.cpus.load(Ordering::Relaxed);
        let address = self.address.load(Ordering::Relaxed);
        ensure!(
            cpus == 0,
            "{what} (e.g. {address:#x}) on CPUs with mask {cpus:#x}"
        );
        Ok(())
    }
}

fn ttbr0_walks_nothing(p: &Platform<'static>) -> Result<(), String> {
    let k = layout::kernel_layout();
    // Low addresses a leftover identity map or a stale TLB entry would still translate: the
    // kernel's own physical addresses (text and stack), the start of RAM, the UART, and where
    // user programs link.
    let (stack, _) = k.stack_slot(0);
    let low = [
        virt_to_phys(k.text.0),
        virt_to_phys(k.data_bss.0),
        virt_to_phys(stack),
        p.memory.as_slice()[0].start as usize,
        p.uart.regs.start as usize,
        0x40_0000,
        0,
    ];
    let empty = mmu::empty_table_address();
    let failures = Failures::new();
    smp::on_each_cpu(&|id| {
        if mmu::table_roots().0 != empty {
            failures.fail(id, mmu::table_roots().0 as usize);
        }
        for &addr in &low {
            if mmu::translate_read(addr).is_some() {
                failures.fail(id, addr);
            }
        }
    });
    failures.check("TTBR0 is not the empty table, or a low address translates")?;
    // SAFETY: the empty table is a page of the image, mapped read-write in the linear map.
    let entries =
        unsafe { core::slice::from_raw_parts(phys_to_virt(empty as usize) as *const u64, 512) };
    ensure!(
        entries.iter().all(|&e| e == 0),
        "the empty table has a valid entry"
    );
    Ok(())
}

fn ttbr1_maps_the_kernel(p: &Platform<'static>) -> Result<(), String> {
    let k = layout::kernel_layout();
    let ram = p.memory.as_slice()[0].start as usize;
    // Each high address must lead to the physical address the linear map promises.
    let high = [
        k.text.0,
        k.rodata.0,
        k.data_bss.0,
        k.stack_slot(0).0,
        phys_to_virt(ram),
    ];
    let root = mmu::table_roots().1;
    let failures = Failures::new();
    smp::on_each_cpu(&|id| {
        if mmu::table_roots().1 != root {
            failures.fail(id, mmu::table_roots().1 as usize);
        }
        for &addr in &high {
            if mmu::translate_read(addr) != Some(virt_to_phys(addr)) {
                failures.fail(id, addr);
            }
        }
    });
    failures
        .check("TTBR1 differs, or a kernel address does not translate to its physical address")?;
    ensure!(
        k.kernel_start >= crate::mm::LINEAR_MAP_OFFSET,
        "the kernel runs at {:#x}, below the high half",
        k.kernel_start
    );
    Ok(())
}
