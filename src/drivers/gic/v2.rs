//! GICv2 (the Pi 4's GIC-400, and QEMU virt with `gic-version=2`): a memory-mapped
//! distributor shared by all CPUs, and a memory-mapped CPU interface that each CPU sees at the
//! same address but banked to itself (the GIC chapter).

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

use super::{Ack, Deliver, SPURIOUS_FIRST};
use crate::arch::aarch64::barrier;

register_structs! {
    pub Distributor {
        (0x000 => ctlr: ReadWrite<u32>),
        (0x004 => typer: ReadOnly<u32>),
        (0x008 => _reserved0),
        (0x080 => igroupr: [ReadWrite<u32>; 32]),
        (0x100 => isenabler: [ReadWrite<u32>; 32]),
        (0x180 => icenabler: [ReadWrite<u32>; 32]),
        (0x200 => ispendr: [ReadWrite<u32>; 32]),
        (0x280 => icpendr: [ReadWrite<u32>; 32]),
        (0x300 => isactiver: [ReadWrite<u32>; 32]),
        (0x380 => icactiver: [ReadWrite<u32>; 32]),
        (0x400 => ipriorityr: [ReadWrite<u8>; 1024]),
        (0x800 => itargetsr: [ReadWrite<u8>; 1024]),
        (0xc00 => icfgr: [ReadWrite<u32>; 64]),
        (0xd00 => _reserved1),
        (0xf00 => sgir: WriteOnly<u32>),
        (0xf04 => @END),
    }
}

register_structs! {
    pub CpuInterface {
        (0x000 => ctlr: ReadWrite<u32>),
        (0x004 => pmr: ReadWrite<u32>),
        (0x008 => bpr: ReadWrite<u32>),
        (0x00c => iar: ReadOnly<u32>),
        (0x010 => eoir: WriteOnly<u32>),
        (0x014 => @END),
    }
}

pub struct GicV2 {
    distributor: &'static Distributor,
    cpu: &'static CpuInterface,
}

// SAFETY: the registers are MMIO meant to be used by every CPU at once. Enable, pending and
// SGI registers are write-1-to-set/clear, so concurrent writers never undo each other; the
// read-modify-write ones (ICFGR) are touched by the boot CPU for SPIs and, for SGIs and PPIs,
// in the banked copy of the CPU doing it.
unsafe impl Sync for GicV2 {}
// SAFETY: the driver holds only addresses of MMIO frames, valid from any CPU.
unsafe impl Send for GicV2 {}

impl GicV2 {
    /// # Safety
    /// `distributor` and `cpu_interface` must be the GICv2's register frames, mapped as Device
    /// memory for the kernel's lifetime, and nothing else may drive them.
    pub unsafe fn new(distributor: usize, cpu_interface: usize) -> Self {
        // SAFETY: the caller guarantees both addresses are the mapped register frames.
        unsafe {
            GicV2 {
                distributor: &*(distributor as *const Distributor),
                cpu: &*(cpu_interface as *const CpuInterface),
            }
        }
    }

    /// Interrupt lines the distributor implements (32 * (ITLinesNumber + 1), at most 1020).
    pub fn lines(&self) -> u32 {
        (32 * ((self.distributor.typer.get() & 0x1f) + 1)).min(1020)
    }

    /// The distributor, once, from the boot CPU: every SPI disabled, clear, lowest priority.
    pub fn init_distributor(&self) {
        let d = self.distributor;
        d.ctlr.set(0);
        for word in 1..(self.lines() / 32) as usize {
            d.icenabler[word].set(u32::MAX);
            d.icpendr[word].set(u32::MAX);
            d.icactiver[word].set(u32::MAX);
        }
        // Interrupt groups are left as they are. A GICv2 without security extensions (QEMU
        // virt) resets everything to group 0, which GICC_IAR acknowledges; group 1 would read
        // back as 1022 unless AckCtl were set. On the Pi, firmware has already put everything
        // in group 1, and from the non-secure side IGROUPR cannot be written anyway.
        d.ctlr.set(0b11); // EnableGrp0 | EnableGrp1 (the non-secure view has only bit 0)
    }

    /// This CPU's interface, and its banked SGIs and PPIs. Returns the CPU's GIC target mask
    /// (the bit SGIR and ITARGETSR use for it), read from its own banked ITARGETSR0.
    pub fn init_this_cpu(&self) -> u8 {
        let d = self.distributor;
        d.icenabler[0].set(u32::MAX);
        d.icpendr[0].set(u32::MAX);
        d.icactiver[0].set(u32::MAX);
        self.cpu.pmr.set(0xff);
        self.cpu.bpr.set(0);
        // EnableGrp0 | EnableGrp1; bit 3 (FIQEn) clear, so group 0 arrives as IRQ too.
        self.cpu.ctlr.set(0b11);
        // ITARGETSR0..7 are read-only and banked: each byte is this CPU's own mask.
        d.itargetsr[0].get()
    }

    pub fn disable_this_cpu(&self) {
        self.cpu.ctlr.set(0);
    }

    pub fn set_priority(&self, intid: u32, priority: u8) {
        self.distributor.ipriorityr[intid as usize].set(priority);
    }

    /// Level (`edge == false`) or edge triggered; SGIs are fixed, PPIs often too.
    pub fn set_edge_triggered(&self, intid: u32, edge: bool) {
        if intid < 16 {
            return;
        }
        let reg = &self.distributor.icfgr[intid as usize / 16];
        let bit = 1 << ((intid % 16) * 2 + 1);
        let v = reg.get();
        reg.set(if edge { v | bit } else { v & !bit });
    }

    /// Deliver SPI `intid` to the CPUs in `targets` (GIC target masks, not logical ids).
    pub fn route_spi(&self, intid: u32, targets: u8) {
        if intid >= 32 {
            self.distributor.itargetsr[intid as usize].set(targets);
        }
    }

    pub fn enable(&self, intid: u32) {
        self.distributor.isenabler[intid as usize / 32].set(1 << (intid % 32));
    }

    pub fn disable(&self, intid: u32) {
        self.distributor.icenabler[intid as usize / 32].set(1 << (intid % 32));
    }

    pub fn is_pending(&self, intid: u32) -> bool {
        self.distributor.ispendr[intid as usize / 32].get() & (1 << (intid % 32)) != 0
    }

    /// Take the highest-priority pending interrupt, or None if it was spurious.
    pub fn acknowledge(&self) -> Option<Ack> {
        let raw = self.cpu.iar.get();
        let intid = raw & 0x3ff;
        (intid < SPURIOUS_FIRST).then_some(Ack { intid, raw })
    }

    /// EOIR wants the whole IAR value back: for an SGI it carries the sender's CPU number.
    pub fn end_of_interrupt(&self, ack: Ack) {
        self.cpu.eoir.set(ack.raw);
    }

    pub fn send_sgi(&self, sgi: u32, deliver: Deliver, target_masks: u8) {
        let filter = match deliver {
            Deliver::Listed => 0,
            Deliver::AllButSelf => 1,
            Deliver::SelfOnly => 2,
        };
        // Make this CPU's stores visible before the target can take the SGI and look at them.
        barrier::wmb();
        self.distributor
            .sgir
            .set((filter << 24) | ((target_masks as u32) << 16) | (sgi & 0xf));
    }
}
