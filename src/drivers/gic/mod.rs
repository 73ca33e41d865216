//! The interrupt controller, GICv2 or GICv3 as the device tree says, behind one interface (the
//! GIC chapter).
//!
//! INTIDs 0-15 are SGIs (software-generated: what one CPU sends another, the IPIs), 16-31 are
//! PPIs (private to each CPU, like its timer), 32 and up are SPIs (shared devices, like the
//! UART, routed to one CPU). The distributor is set up once by the boot CPU; each CPU then sets
//! up its own CPU interface (GICv2) or redistributor and system registers (GICv3).

pub mod v2;
pub mod v3;

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::config::MAX_CPUS;
use crate::cpumask::CpuMask;
use crate::mm::phys_to_virt;
use crate::percpu::{self, CacheAligned, PerCpu};
use crate::platform::{Gic, Platform};

/// INTIDs from here on mean "nothing to acknowledge" (spurious, or special).
pub const SPURIOUS_FIRST: u32 = 1020;
/// Priority for every interrupt quartet enables: all equal, so none preempts another.
pub const DEFAULT_PRIORITY: u8 = 0xa0;

/// An acknowledged interrupt: its INTID, and the raw value EOI needs back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub intid: u32,
    pub raw: u32,
}

/// How an SGI picks its targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deliver {
    Listed,
    AllButSelf,
    SelfOnly,
}

pub enum Controller {
    V2(v2::GicV2),
    V3(v3::GicV3),
}

static CONTROLLER: spin::Once<Controller> = spin::Once::new();
/// Per CPU: its GICv2 target mask, or the address of its GICv3 SGI frame; 0 until set up.
static THIS_CPU: PerCpu<AtomicUsize> =
    PerCpu::new([const { CacheAligned(AtomicUsize::new(0)) }; MAX_CPUS]);

/// Create the driver the device tree describes and set up the distributor (boot CPU, once).
pub fn init(platform: &Platform<'_>) -> Result<&'static Controller, &'static str> {
    let gic = platform
        .gic
        .ok_or("the device tree describes no GIC quartet knows (arm,gic-400, arm,cortex-a15-gic, arm,gic-v3)")?;
    let controller = CONTROLLER.call_once(|| match gic {
        Gic::V2 {
            distributor,
            cpu_interface,
        } => {
            // SAFETY: the addresses come from the device tree's GIC node, and the linear map
            // maps them as Device memory (Platform::mmio_regions); only this module drives them.
            Controller::V2(unsafe {
                v2::GicV2::new(
                    phys_to_virt(distributor.start as usize),
                    phys_to_virt(cpu_interface.start as usize),
                )
            })
        }
        Gic::V3 {
            distributor,
            redistributors,
        } => {
            let regions = redistributors.map(|r| (phys_to_virt(r.start as usize), r.size as usize));
            // SAFETY: as above.
            Controller::V3(unsafe {
                v3::GicV3::new(phys_to_virt(distributor.start as usize), regions)
            })
        }
    });
    match controller {
        Controller::V2(g) => g.init_distributor(),
        Controller::V3(g) => g.init_distributor(),
    }
    Ok(controller)
}

/// The controller, once `init` ran.
pub fn get() -> Option<&'static Controller> {
    CONTROLLER.get()
}

impl Controller {
    pub fn version(&self) -> u8 {
        match self {
            Controller::V2(_) => 2,
            Controller::V3(_) => 3,
        }
    }

    /// Interrupt lines the distributor implements.
    pub fn lines(&self) -> u32 {
        match self {
            Controller::V2(g) => g.lines(),
            Controller::V3(g) => g.lines(),
        }
    }

    fn v3_this_cpu() -> v3::PerCpuV3 {
        // The SGI frame address was stored by init_this_cpu; PerCpuV3 is just that address.
        let base = THIS_CPU.get().load(Ordering::Relaxed);
        v3::PerCpuV3::at(base)
    }

    /// This CPU's part of the controller. Every CPU calls it once, before unmasking IRQs.
    pub fn init_this_cpu(&self) -> Result<(), v3::RedistributorError> {
        match self {
            Controller::V2(g) => {
                let mask = g.init_this_cpu();
                THIS_CPU.get().store(mask as usize, Ordering::Relaxed);
            }
            Controller::V3(g) => {
                let mpidr = percpu::this_cpu().mpidr.load(Ordering::Relaxed);
                let me = g.init_this_cpu(mpidr)?;
                THIS_CPU.get().store(me.sgi_base(), Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Stop taking interrupts from the controller on this CPU (stop-all, power off).
    pub fn disable_this_cpu(&self) {
        match self {
            Controller::V2(g) => g.disable_this_cpu(),
            Controller::V3(g) => g.disable_this_cpu(),
        }
    }

    /// Enable an SGI or PPI on this CPU, or an SPI routed to logical CPU `route_to`.
    pub fn enable(&self, intid: u32, edge: bool, route_to: usize) {
        match self {
            Controller::V2(g) => {
                g.set_priority(intid, DEFAULT_PRIORITY);
                g.set_edge_triggered(intid, edge);
                if intid >= 32 {
                    let mask = THIS_CPU.for_cpu(route_to).load(Ordering::Relaxed) as u8;
                    g.route_spi(intid, mask);
                }
                g.enable(intid);
            }
            Controller::V3(g) => {
                let me = Self::v3_this_cpu();
                g.set_priority(&me, intid, DEFAULT_PRIORITY);
                g.set_edge_triggered(&me, intid, edge);
                if intid >= 32 {
                    g.route_spi(intid, percpu::cpu(route_to).mpidr.load(Ordering::Relaxed));
                }
                g.enable(&me, intid);
            }
        }
    }

    pub fn disable(&self, intid: u32) {
        match self {
            Controller::V2(g) => g.disable(intid),
            Controller::V3(g) => g.disable(&Self::v3_this_cpu(), intid),
        }
    }

    pub fn is_pending(&self, intid: u32) -> bool {
        match self {
            Controller::V2(g) => g.is_pending(intid),
            Controller::V3(g) => g.is_pending(&Self::v3_this_cpu(), intid),
        }
    }

    /// Take the highest-priority pending interrupt; None if spurious.
    #[inline]
    pub fn acknowledge(&self) -> Option<Ack> {
        match self {
            Controller::V2(g) => g.acknowledge(),
            Controller::V3(g) => g.acknowledge(),
        }
    }

    #[inline]
    pub fn end_of_interrupt(&self, ack: Ack) {
        match self {
            Controller::V2(g) => g.end_of_interrupt(ack),
            Controller::V3(g) => g.end_of_interrupt(ack),
        }
    }

    /// SGI `sgi` to the logical CPUs in `cpus`, to this one, or to all but this one (then
    /// `cpus` is unused).
    pub fn send_sgi(&self, sgi: u32, deliver: Deliver, cpus: &CpuMask) {
        match deliver {
            Deliver::AllButSelf => self.send_sgi_all_but_self(sgi),
            Deliver::SelfOnly => self.send_sgi_to(sgi, percpu::current_id()),
            Deliver::Listed => self.send_sgi_to(sgi, cpus),
        }
    }

    /// SGI `sgi` to the logical CPUs `cpus`. GICv2: one write with their 8-bit target masks.
    /// GICv3: their MPIDRs, one ICC_SGI1R_EL1 write per cluster; ids in increasing order keep
    /// each cluster's CPUs together (gic_affinity::sgi1r_writes).
    pub fn send_sgi_to(&self, sgi: u32, cpus: impl IntoIterator<Item = usize>) {
        match self {
            Controller::V2(g) => {
                let masks = cpus.into_iter().fold(0u8, |masks, id| {
                    masks | THIS_CPU.for_cpu(id).load(Ordering::Relaxed) as u8
                });
                if masks != 0 {
                    g.send_sgi(sgi, Deliver::Listed, masks);
                }
            }
            Controller::V3(g) => g.send_sgi(
                sgi,
                cpus.into_iter()
                    .map(|id| percpu::cpu(id).mpidr.load(Ordering::Relaxed)),
            ),
        }
    }

    /// SGI `sgi` to every CPU but this one: one write on either GIC.
    pub fn send_sgi_all_but_self(&self, sgi: u32) {
        match self {
            Controller::V2(g) => g.send_sgi(sgi, Deliver::AllButSelf, 0),
            Controller::V3(g) => g.send_sgi_all_but_self(sgi),
        }
    }

    /// For the log: the redistributors the GICv3 regions hold, and how many regions; None on
    /// a GICv2.
    pub fn redistributors(&self) -> Option<(usize, usize)> {
        match self {
            Controller::V2(_) => None,
            Controller::V3(g) => Some((g.redistributor_count(), g.region_count())),
        }
    }
}
