//! GICv3 (QEMU virt with `gic-version=3`): a memory-mapped distributor, one memory-mapped
//! redistributor per CPU for its SGIs and PPIs, and a CPU interface in system registers
//! (src/arch/aarch64/gic_cpuif.rs) (the GIC chapter).
//!
//! SPIs are routed by affinity (IROUTER holds an MPIDR), not by an 8-bit CPU mask, which is how
//! GICv3 gets past GICv2's limit of eight CPUs.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

use super::{Ack, SPURIOUS_FIRST};
use crate::arch::aarch64::gic_cpuif;
use crate::drivers::gic_affinity::{self, FRAME};
use crate::platform::MAX_REDISTRIBUTOR_REGIONS;

register_structs! {
    pub Distributor {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => typer: ReadOnly<u32>),
        (0x0008 => _reserved0),
        (0x0080 => igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => ispendr: [ReadWrite<u32>; 32]),
        (0x0280 => icpendr: [ReadWrite<u32>; 32]),
        (0x0300 => isactiver: [ReadWrite<u32>; 32]),
        (0x0380 => icactiver: [ReadWrite<u32>; 32]),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 1024]),
        (0x0800 => _reserved1),
        (0x0c00 => icfgr: [ReadWrite<u32>; 64]),
        (0x0d00 => _reserved2),
        (0x6000 => irouter: [ReadWrite<u64>; 1020]),
        (0x7fe0 => @END),
    }
}

register_structs! {
    /// A redistributor's control frame (RD_base).
    pub RedistributorControl {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => _iidr: ReadOnly<u32>),
        (0x0008 => typer: ReadOnly<u64>),
        (0x0010 => _reserved0),
        (0x0014 => waker: ReadWrite<u32>),
        (0x0018 => @END),
    }
}

register_structs! {
    /// A redistributor's SGI and PPI frame (SGI_base, 64 KiB after RD_base).
    pub RedistributorSgi {
        (0x0000 => _reserved0),
        (0x0080 => igroupr0: ReadWrite<u32>),
        (0x0084 => _reserved1),
        (0x0100 => isenabler0: ReadWrite<u32>),
        (0x0104 => _reserved2),
        (0x0180 => icenabler0: ReadWrite<u32>),
        (0x0184 => _reserved3),
        (0x0200 => ispendr0: ReadWrite<u32>),
        (0x0204 => _reserved4),
        (0x0280 => icpendr0: ReadWrite<u32>),
        (0x0284 => _reserved5),
        (0x0380 => icactiver0: ReadWrite<u32>),
        (0x0384 => _reserved6),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 32]),
        (0x0420 => _reserved7),
        (0x0c00 => icfgr: [ReadWrite<u32>; 2]),
        (0x0c08 => @END),
    }
}

const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// GICD_CTLR: EnableGrp0, EnableGrp1 (NS view: EnableGrp1), ARE (NS view: ARE_NS), RWP.
const CTLR_ENABLE_GRP0: u32 = 1 << 0;
const CTLR_ENABLE_GRP1: u32 = 1 << 1;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_RWP: u32 = 1 << 31;

/// Why a CPU could not use its redistributor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedistributorError {
    /// No redistributor in the region has this CPU's affinity.
    NotFound { mpidr: u64 },
    /// ChildrenAsleep never cleared after waking it.
    WouldNotWake { mpidr: u64 },
    /// The CPU interface would not switch to system registers.
    NoSystemRegisters,
}

impl core::fmt::Display for RedistributorError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            RedistributorError::NotFound { mpidr } => {
                write!(f, "no GICv3 redistributor for MPIDR {mpidr:#x}")
            }
            RedistributorError::WouldNotWake { mpidr } => {
                write!(f, "the redistributor of MPIDR {mpidr:#x} did not wake up")
            }
            RedistributorError::NoSystemRegisters => {
                write!(f, "the GICv3 CPU interface refused system-register access")
            }
        }
    }
}

pub struct GicV3 {
    distributor: &'static Distributor,
    /// The redistributor regions (virtual base, size); unused entries have size 0.
    redistributors: [(usize, usize); MAX_REDISTRIBUTOR_REGIONS],
}

// SAFETY: as for GicV2: set/clear registers tolerate concurrent writers, SPI configuration is
// done by the boot CPU, and each CPU configures its SGIs and PPIs in its own redistributor.
unsafe impl Sync for GicV3 {}
// SAFETY: the driver holds only addresses of MMIO frames, valid from any CPU.
unsafe impl Send for GicV3 {}

impl GicV3 {
    /// # Safety
    /// The addresses must be the GICv3 distributor and redistributor regions (virtual base,
    /// size), mapped as Device memory for the kernel's lifetime, and nothing else may drive them.
    pub unsafe fn new(
        distributor: usize,
        redistributors: [(usize, usize); MAX_REDISTRIBUTOR_REGIONS],
    ) -> Self {
        GicV3 {
            // SAFETY: the caller guarantees the address is the mapped distributor.
            distributor: unsafe { &*(distributor as *const Distributor) },
            redistributors,
        }
    }

    fn read_typer(rd_base: usize) -> u64 {
        // SAFETY: the walk only passes RD_base addresses inside a mapped redistributor region,
        // at frame boundaries where a redistributor starts.
        let rd = unsafe { &*(rd_base as *const RedistributorControl) };
        rd.typer.get()
    }

    /// How many redistributors the regions hold, walked as `init_this_cpu` walks them (boot
    /// CPU, for the log).
    pub fn redistributor_count(&self) -> usize {
        let mut count = 0;
        gic_affinity::walk_redistributors(&self.redistributors, Self::read_typer, |_, _| {
            count += 1;
            None::<()>
        });
        count
    }

    /// Redistributor regions in use.
    pub fn region_count(&self) -> usize {
        self.redistributors.iter().filter(|r| r.1 != 0).count()
    }

    pub fn lines(&self) -> u32 {
        (32 * ((self.distributor.typer.get() & 0x1f) + 1)).min(1020)
    }

    fn wait_for_distributor_write(&self) {
        // RWP: register writes still propagating. Bounded: a GIC that never finishes is broken.
        for _ in 0..1_000_000 {
            if self.distributor.ctlr.get() & CTLR_RWP == 0 {
                return;
            }
            core::hint::spin_loop();
        }
        log::warn!(target: "gic", "GICD_CTLR.RWP never cleared; continuing");
    }

    pub fn init_distributor(&self) {
        let d = self.distributor;
        d.ctlr.set(0);
        self.wait_for_distributor_write();
        for word in 1..(self.lines() / 32) as usize {
            d.icenabler[word].set(u32::MAX);
            d.icpendr[word].set(u32::MAX);
            d.icactiver[word].set(u32::MAX);
            d.igroupr[word].set(u32::MAX);
        }
        self.wait_for_distributor_write();
        d.ctlr.set(CTLR_ARE | CTLR_ENABLE_GRP1 | CTLR_ENABLE_GRP0);
        self.wait_for_distributor_write();
    }

    /// Find the redistributor whose affinity is `mpidr`: its RD_base address. Each CPU walks
    /// the regions once, for itself, when it brings up its interrupts.
    fn redistributor_of(&self, mpidr: u64) -> Option<usize> {
        gic_affinity::find_redistributor(&self.redistributors, mpidr, Self::read_typer)
    }

    /// This CPU's redistributor (woken, SGIs and PPIs off and in group 1) and CPU interface.
    pub fn init_this_cpu(&self, mpidr: u64) -> Result<PerCpuV3, RedistributorError> {
        let base = self
            .redistributor_of(mpidr)
            .ok_or(RedistributorError::NotFound { mpidr })?;
        // SAFETY: `base` is this CPU's RD_base inside the mapped region; SGI_base follows it.
        let (rd, sgi) = unsafe {
            (
                &*(base as *const RedistributorControl),
                &*((base + FRAME) as *const RedistributorSgi),
            )
        };
        rd.waker.set(rd.waker.get() & !WAKER_PROCESSOR_SLEEP);
        let mut awake = false;
        for _ in 0..1_000_000 {
            if rd.waker.get() & WAKER_CHILDREN_ASLEEP == 0 {
                awake = true;
                break;
            }
            core::hint::spin_loop();
        }
        if !awake {
            return Err(RedistributorError::WouldNotWake { mpidr });
        }
        sgi.icenabler0.set(u32::MAX);
        sgi.icpendr0.set(u32::MAX);
        sgi.icactiver0.set(u32::MAX);
        sgi.igroupr0.set(u32::MAX);
        if !gic_cpuif::enable_system_registers() {
            return Err(RedistributorError::NoSystemRegisters);
        }
        gic_cpuif::init();
        Ok(PerCpuV3 {
            sgi_base: base + FRAME,
        })
    }

    pub fn disable_this_cpu(&self) {
        gic_cpuif::disable();
    }

    fn sgi_frame(this_cpu: &PerCpuV3) -> &'static RedistributorSgi {
        // SAFETY: `sgi_base` was found by `init_this_cpu` inside the mapped region.
        unsafe { &*(this_cpu.sgi_base as *const RedistributorSgi) }
    }

    pub fn set_priority(&self, this_cpu: &PerCpuV3, intid: u32, priority: u8) {
        if intid < 32 {
            Self::sgi_frame(this_cpu).ipriorityr[intid as usize].set(priority);
        } else {
            self.distributor.ipriorityr[intid as usize].set(priority);
        }
    }

    pub fn set_edge_triggered(&self, this_cpu: &PerCpuV3, intid: u32, edge: bool) {
        if intid < 16 {
            return;
        }
        let reg = if intid < 32 {
            &Self::sgi_frame(this_cpu).icfgr[1]
        } else {
            &self.distributor.icfgr[intid as usize / 16]
        };
        let bit = 1 << ((intid % 16) * 2 + 1);
        let v = reg.get();
        reg.set(if edge { v | bit } else { v & !bit });
    }

    /// Deliver SPI `intid` to the CPU with affinity `mpidr`.
    pub fn route_spi(&self, intid: u32, mpidr: u64) {
        if intid >= 32 {
            let affinity = mpidr & 0xff_00ff_ffff; // Aff3 at 39:32, Aff2.Aff1.Aff0 below
            self.distributor.irouter[intid as usize].set(affinity);
        }
    }

    pub fn enable(&self, this_cpu: &PerCpuV3, intid: u32) {
        if intid < 32 {
            Self::sgi_frame(this_cpu).isenabler0.set(1 << intid);
        } else {
            self.distributor.isenabler[intid as usize / 32].set(1 << (intid % 32));
            self.wait_for_distributor_write();
        }
    }

    pub fn disable(&self, this_cpu: &PerCpuV3, intid: u32) {
        if intid < 32 {
            Self::sgi_frame(this_cpu).icenabler0.set(1 << intid);
        } else {
            self.distributor.icenabler[intid as usize / 32].set(1 << (intid % 32));
            self.wait_for_distributor_write();
        }
    }

    pub fn is_pending(&self, this_cpu: &PerCpuV3, intid: u32) -> bool {
        if intid < 32 {
            Self::sgi_frame(this_cpu).ispendr0.get() & (1 << intid) != 0
        } else {
            self.distributor.ispendr[intid as usize / 32].get() & (1 << (intid % 32)) != 0
        }
    }

    pub fn acknowledge(&self) -> Option<Ack> {
        let intid = gic_cpuif::acknowledge();
        (intid < SPURIOUS_FIRST).then_some(Ack { intid, raw: intid })
    }

    pub fn end_of_interrupt(&self, ack: Ack) {
        gic_cpuif::end_of_interrupt(ack.raw);
    }

    /// SGI `sgi` to the CPUs with these MPIDRs: one ICC_SGI1R_EL1 write per cluster
    /// (gic_affinity::sgi1r_writes groups them).
    pub fn send_sgi(&self, sgi: u32, targets: impl IntoIterator<Item = u64>) {
        gic_affinity::sgi1r_writes(sgi, targets, gic_cpuif::send_sgi);
    }

    /// SGI `sgi` to every CPU but this one, in one write whatever the clusters (IRM).
    pub fn send_sgi_all_but_self(&self, sgi: u32) {
        gic_cpuif::send_sgi(gic_affinity::sgi1r_all_but_self(sgi));
    }
}

/// What each CPU remembers about its own redistributor: where its SGI/PPI frame is.
#[derive(Clone, Copy, Debug, Default)]
pub struct PerCpuV3 {
    sgi_base: usize,
}

impl PerCpuV3 {
    /// The frame address, to keep in a per-CPU slot.
    pub fn sgi_base(&self) -> usize {
        self.sgi_base
    }

    /// Back from a per-CPU slot that `sgi_base` filled (0 if this CPU never set up its GIC:
    /// then every SGI/PPI access would hit address 0 and fault loudly, not corrupt anything).
    pub fn at(sgi_base: usize) -> Self {
        PerCpuV3 { sgi_base }
    }
}
