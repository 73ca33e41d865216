//! The board as the device tree describes it (chapter 2, "The device tree, the UART and logging").
//!
//! `Platform` is everything the kernel needs to know about the machine: RAM, reserved ranges,
//! CPUs with their MPIDRs and start methods, PSCI, the UART, the GIC, the timer interrupts,
//! bootargs. It comes from the DTB the loader passes in x0; whatever the tree lacks, or all of it
//! when there is no valid tree, comes from the compiled-in defaults for the board quartet was
//! built for, and each such fallback is recorded as a `Problem` that boot logs.
//!
//! Building a `Platform` allocates nothing, because the boot CPU does it on the early map
//! (src/arch/aarch64/boot.rs), before the kernel's map and the heap exist. Every address it
//! records is physical; the kernel reaches them through `mm::phys_to_virt`.

pub mod dt;
pub mod memory_check;
pub mod revision;
pub mod validate;

pub use crate::arch::aarch64::PsciConduit;
use crate::config::MAX_CPUS;

/// A physical address range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub size: u64,
}

impl Region {
    pub const fn new(start: u64, size: u64) -> Self {
        Region { start, size }
    }
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr < self.end()
    }
    pub fn overlaps(&self, other: &Region) -> bool {
        self.start < other.end() && other.start < self.end()
    }
}

/// A list with a fixed capacity, so a `Platform` needs no heap.
#[derive(Clone, Copy, Debug)]
pub struct FixedList<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
    /// Items offered after the list was full.
    dropped: usize,
}

impl<T: Copy + Default, const N: usize> Default for FixedList<T, N> {
    fn default() -> Self {
        FixedList {
            items: [T::default(); N],
            len: 0,
            dropped: 0,
        }
    }
}

impl<T: Copy + Default, const N: usize> FixedList<T, N> {
    /// Append; returns false (and counts the item as dropped) when full.
    pub fn push(&mut self, item: T) -> bool {
        if self.len == N {
            self.dropped += 1;
            return false;
        }
        self.items[self.len] = item;
        self.len += 1;
        true
    }
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }
    /// Remove the item at `index`, keeping the order of the rest.
    pub fn remove(&mut self, index: usize) {
        if index < self.len {
            self.items.copy_within(index + 1..self.len, index);
            self.len -= 1;
        }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    /// Keep only the first `len` items.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

/// The boards quartet knows defaults for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    QemuVirt,
    RaspberryPi4,
}

impl Board {
    /// The board this kernel was built for (`--features board-rpi4` selects the Pi 4).
    pub const fn compiled() -> Board {
        if cfg!(feature = "board-rpi4") {
            Board::RaspberryPi4
        } else {
            Board::QemuVirt
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Board::QemuVirt => "QEMU virt",
            Board::RaspberryPi4 => "Raspberry Pi 4",
        }
    }
    /// The root `compatible` entry every tree of this board's family has: the boards whose
    /// devices sit where the compiled-in defaults say (the Pi 4 B, 400 and CM4 all carry
    /// "brcm,bcm2711"; a Pi 5 carries "brcm,bcm2712").
    pub fn family_compatible(self) -> &'static str {
        match self {
            Board::QemuVirt => "linux,dummy-virt",
            Board::RaspberryPi4 => "brcm,bcm2711",
        }
    }
}

/// How a CPU is started, from its `enable-method`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EnableMethod {
    /// PSCI CPU_ON through the `/psci` conduit.
    Psci,
    /// Write the entry address to `release_addr`, clean it to memory, `sev`.
    SpinTable { release_addr: u64 },
    /// Missing or not one quartet knows: the CPU is skipped.
    #[default]
    Unknown,
}

/// One CPU node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuDesc {
    /// MPIDR affinity fields, as in the node's `reg`.
    pub mpidr: u64,
    pub method: EnableMethod,
}

/// The interrupt controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gic {
    V2 {
        distributor: Region,
        cpu_interface: Region,
    },
    V3 {
        distributor: Region,
        /// The redistributor regions (`#redistributor-regions` of them in `reg`), unused
        /// entries of size 0. QEMU virt has one, and a second past 123 CPUs.
        redistributors: [Region; MAX_REDISTRIBUTOR_REGIONS],
    },
}

/// CPUs a GICv2 can deliver interrupts to: its target fields are 8-bit masks.
pub const GICV2_MAX_CPUS: usize = 8;

/// Redistributor regions quartet keeps; a tree with more is reported and the rest ignored.
pub const MAX_REDISTRIBUTOR_REGIONS: usize = 4;

/// The redistributor regions of a GICv3 that are in use.
pub fn redistributor_regions(
    regions: &[Region; MAX_REDISTRIBUTOR_REGIONS],
) -> impl Iterator<Item = Region> + '_ {
    regions.iter().copied().filter(|r| r.size != 0)
}

/// The generic timer's interrupts (GIC INTIDs: PPI number + 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerIrqs {
    pub secure_phys: u32,
    pub phys: u32,
    pub virt: u32,
    pub hyp: u32,
}

/// The PL011 UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart {
    pub regs: Region,
    /// Its SPI as a GIC INTID, if the tree says.
    pub irq: Option<u32>,
    /// The UART reference clock, for the baud-rate divisor.
    pub clock_hz: u32,
}

impl Uart {
    /// False when neither the tree nor (on a board of another family) the defaults gave one:
    /// then there is no console.
    pub fn is_present(&self) -> bool {
        self.regs.size != 0
    }
}

/// How a device on a bus sees ARM memory: the bus's `dma-ranges`. ARM physical
/// [phys, phys + size) appears to the device at bus address `bus`. The Pi 4's VideoCore sees the
/// low 1 GiB of RAM at 0xc000_0000.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaWindow {
    pub bus: u64,
    pub phys: u64,
    pub size: u64,
}

impl DmaWindow {
    /// A bus with no `dma-ranges` (or an empty one): devices see physical addresses unchanged.
    pub const IDENTITY: DmaWindow = DmaWindow {
        bus: 0,
        phys: 0,
        size: 1 << 32,
    };

    /// The 32-bit bus address of physical [phys, phys + len), if the window holds all of it.
    pub fn bus_address(&self, phys: u64, len: u64) -> Option<u32> {
        let offset = phys.checked_sub(self.phys)?;
        if offset.checked_add(len)? > self.size {
            return None;
        }
        u32::try_from(self.bus.checked_add(offset)?).ok()
    }
}

/// The VideoCore mailbox (compatible brcm,bcm2835-mbox), through which the firmware answers
/// questions about the board (src/drivers/mailbox).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub regs: Region,
    /// How the VideoCore sees the RAM the message buffer is in.
    pub dma: DmaWindow,
}

/// Where the platform description came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    DeviceTree { address: u64, size: u64 },
    BoardDefaults,
}

/// Something the device tree lacked or got wrong, and what quartet did instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Problem {
    #[default]
    None,
    /// x0 did not hold the address of a device tree at all.
    NoDeviceTree { x0: u64 },
    /// x0 was 0 (an ELF kernel) and the start of RAM, where QEMU would have put the tree had it
    /// fitted below the kernel, holds none either.
    NoDeviceTreeAtRamStart { ram_start: u64, kernel_start: u64 },
    /// x0 pointed at something that failed validation.
    InvalidBlob { x0: u64, error: validate::BlobError },
    /// A node (described in words) was missing; the board default was used.
    Missing(&'static str),
    /// A node was there but unusable (described in words); the board default was used.
    Unusable(&'static str),
    /// A device (described in words) the tree lacks, on a board whose tree names another
    /// model: the compiled-in address belongs to a different machine, so none is used.
    NotOnThisBoard(&'static str),
    /// More CPUs than quartet supports.
    TooManyCpus { in_tree: usize },
    /// More CPUs than a GICv2 can reach: its SGI and SPI targets are 8-bit CPU masks.
    GicV2CpuLimit { in_tree: usize },
    /// A CPU whose enable-method is missing or unknown.
    UnknownEnableMethod { mpidr: u64 },
    /// More items of a kind than the fixed lists hold.
    Overflow(&'static str),
    /// A memory range of size 0 at `at`: the Raspberry Pi's firmware fills the size in, and a
    /// tree passed on unfilled (by U-Boot from its own copy, say) still has the 0.
    MemoryLeftEmpty { at: u64 },
    /// With no tree to say it, something read off the CPU instead (described in words).
    FromTheCpu(&'static str),
    /// /chosen's linux,initrd-start and -end do not make a range: one is missing, is not one
    /// or two cells, or the end lies before the start.
    InitrdUnusable {
        start: Option<u64>,
        end: Option<u64>,
    },
    /// With no tree listing the CPUs, PSCI AFFINITY_INFO said which candidate MPIDRs exist.
    CpusFromPsci { found: usize, tried: usize },
}

impl core::fmt::Display for Problem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let board = Board::compiled().name();
        match *self {
            Problem::None => Ok(()),
            Problem::NoDeviceTree { x0 } => write!(
                f,
                "no device tree: x0 = {x0:#x} does not point at one; using the compiled-in {board} defaults"
            ),
            Problem::NoDeviceTreeAtRamStart {
                ram_start,
                kernel_start,
            } => write!(
                f,
                "no device tree: x0 = 0x0 and none at the start of RAM ({ram_start:#x}), where QEMU writes one for an ELF kernel only if it fits below the kernel at {kernel_start:#x}; using the compiled-in {board} defaults"
            ),
            Problem::InvalidBlob { x0, error } => write!(
                f,
                "device tree at {x0:#x} rejected: {error}; using the compiled-in {board} defaults"
            ),
            Problem::Missing(what) => {
                write!(f, "device tree has no {what}; using the {board} default")
            }
            Problem::Unusable(what) => {
                write!(
                    f,
                    "device tree's {what} is unusable; using the {board} default"
                )
            }
            Problem::NotOnThisBoard(what) => write!(
                f,
                "device tree has no {what}, and its root compatible names a board other than the {board} this kernel was built for: none is used, rather than the {board}'s address"
            ),
            Problem::TooManyCpus { in_tree } => write!(
                f,
                "device tree lists {in_tree} CPUs; quartet supports {MAX_CPUS}, the rest stay off"
            ),
            Problem::GicV2CpuLimit { in_tree } => write!(
                f,
                "device tree lists {in_tree} CPUs, but a GICv2 addresses at most {GICV2_MAX_CPUS} (its interrupt targets are 8-bit CPU masks): starting the first {GICV2_MAX_CPUS}"
            ),
            Problem::UnknownEnableMethod { mpidr } => write!(
                f,
                "CPU with MPIDR {mpidr:#x} has no enable-method quartet knows (psci, spin-table); it will stay off"
            ),
            Problem::Overflow(what) => write!(
                f,
                "device tree has more {what} than quartet keeps; extra ones ignored"
            ),
            Problem::MemoryLeftEmpty { at } => write!(
                f,
                "memory node at {at:#x} has size 0: firmware that fills in the size (the Raspberry Pi's does) left it empty; that range is left out"
            ),
            Problem::InitrdUnusable { start, end } => {
                // Printed before the heap exists: no format!, one write per piece.
                f.write_str("device tree's /chosen linux,initrd-start (")?;
                match start {
                    Some(v) => write!(f, "{v:#x}")?,
                    None => f.write_str("missing or not 1-2 cells")?,
                }
                f.write_str(") and linux,initrd-end (")?;
                match end {
                    Some(v) => write!(f, "{v:#x}")?,
                    None => f.write_str("missing or not 1-2 cells")?,
                }
                f.write_str(") make no range; no initramfs")
            }
            Problem::FromTheCpu(what) => write!(f, "with no device tree to say: {what}"),
            Problem::CpusFromPsci { found, tried } => write!(
                f,
                "with no device tree listing the CPUs: PSCI AFFINITY_INFO knows {found} of {tried} candidate MPIDRs (QEMU virt's numbering, 16 to a cluster); starting only those"
            ),
        }
    }
}

/// What the firmware's answers changed in the platform (`Platform::take_firmware_answers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareEffects {
    /// The device tree's RAM held against the firmware's ARM memory.
    pub memory: Option<memory_check::Verdict>,
    /// The UART clock used before the firmware's replaced it.
    pub uart_clock_before: Option<u32>,
}

/// The console's baud rate (src/console.rs).
pub const CONSOLE_BAUD: u32 = 115_200;

/// A UART clock that can make the console's baud rate: the PL011's divisor, clock / (16 x baud),
/// must be at least 1.
pub fn uart_clock_usable(hz: u32) -> bool {
    hz as u64 >= 16 * CONSOLE_BAUD as u64
}

/// The machine, as the kernel knows it.
#[derive(Clone, Copy, Debug)]
pub struct Platform<'dt> {
    pub board: Board,
    pub source: Source,
    pub model: &'dt str,
    /// RAM, from the memory nodes.
    pub memory: FixedList<Region, 8>,
    /// Ranges of RAM that must not be handed out: /memreserve/, /reserved-memory, the DTB itself.
    pub reserved: FixedList<Region, 16>,
    /// CPUs in tree order; index = logical CPU id.
    pub cpus: FixedList<CpuDesc, MAX_CPUS>,
    /// CPU nodes in the tree, including ones beyond MAX_CPUS.
    pub cpus_in_tree: usize,
    /// `cpus` are candidates from the board defaults, not CPUs a tree listed: some may not
    /// exist (`keep_cpus_psci_knows` asks the firmware).
    pub cpus_guessed: bool,
    pub psci: Option<PsciConduit>,
    pub uart: Uart,
    pub gic: Option<Gic>,
    pub timer: Option<TimerIrqs>,
    /// The BCM2711 GPIO block (the Pi's UART pins are muxed there).
    pub gpio: Option<Region>,
    pub bootargs: &'dt str,
    /// The initial RAM file system the loader put in RAM (`/chosen` `linux,initrd-start` and
    /// `-end`); also in `reserved`. None when there is none, or it could not be reserved.
    pub initrd: Option<Region>,
    /// The VideoCore mailbox, when the tree lists one (a Raspberry Pi).
    pub mailbox: Option<Mailbox>,
    /// What the firmware said about the board through the mailbox; asked once the kernel's
    /// map has the mailbox (src/main.rs).
    pub firmware: crate::drivers::mailbox::BoardQuery,
    pub problems: FixedList<Problem, 8>,
}

impl Platform<'static> {
    /// The compiled-in description of `board`, used when there is no usable device tree.
    pub fn defaults(board: Board) -> Platform<'static> {
        let mut p = Platform::empty(board, Source::BoardDefaults);
        p.model = board.name();
        p.timer = Some(TimerIrqs {
            secure_phys: 29,
            phys: 30,
            virt: 27,
            hyp: 26,
        });
        match board {
            Board::QemuVirt => {
                // QEMU's smallest default RAM; the real size is only known from the tree.
                p.memory.push(Region::new(0x4000_0000, 128 << 20));
                p.psci = Some(PsciConduit::Hvc);
                // Unknown CPU count: the first eight MPIDRs are candidates, for PSCI to confirm
                // (eight: the default GIC is a GICv2; `defaults_for` offers more on a GICv3).
                p.guess_virt_cpus(GICV2_MAX_CPUS);
                p.uart = Uart {
                    regs: Region::new(0x0900_0000, 0x1000),
                    irq: Some(33),
                    clock_hz: 24_000_000,
                };
                p.gic = Some(Gic::V2 {
                    distributor: Region::new(0x0800_0000, 0x1_0000),
                    cpu_interface: Region::new(0x0801_0000, 0x1_0000),
                });
            }
            Board::RaspberryPi4 => {
                // The low RAM every Pi 4 model has; the firmware's tree gives the rest.
                p.memory.push(Region::new(0, 0x3b40_0000));
                p.reserved.push(Region::new(0, 0x1000)); // the armstub and its spin table
                for (mpidr, release) in [(0, 0xd8), (1, 0xe0), (2, 0xe8), (3, 0xf0)] {
                    p.cpus.push(CpuDesc {
                        mpidr,
                        method: EnableMethod::SpinTable {
                            release_addr: release,
                        },
                    });
                }
                p.cpus_in_tree = 4;
                p.uart = Uart {
                    regs: Region::new(0xfe20_1000, 0x200),
                    irq: Some(153),
                    clock_hz: 48_000_000,
                };
                p.gic = Some(Gic::V2 {
                    distributor: Region::new(0xff84_1000, 0x1000),
                    cpu_interface: Region::new(0xff84_2000, 0x2000),
                });
                p.gpio = Some(Region::new(0xfe20_0000, 0x100));
            }
        }
        p
    }
}

/// What the boot CPU can tell about the machine by itself, for when no tree says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFacts {
    /// ID_AA64PFR0_EL1.GIC: the CPU has the GICv3 system-register interface. A core wired to
    /// a GICv2 reads 0; QEMU sets it exactly when the machine has a GICv3.
    pub gic_system_registers: bool,
    /// The exception level the loader entered the kernel at.
    pub entry_el: u64,
}

/// The GICv3 of QEMU virt (`gic-version=3`): distributor and the redistributor frames.
const VIRT_GICV3: Gic = Gic::V3 {
    distributor: Region::new(0x0800_0000, 0x1_0000),
    redistributors: [
        Region::new(0x080a_0000, 0xf6_0000),
        Region::new(0, 0),
        Region::new(0, 0),
        Region::new(0, 0),
    ],
};

impl Platform<'static> {
    /// The board defaults, corrected by what the CPU says about the machine. On virt the GIC
    /// version is the CPU's (a GICv2 driver on a GICv3 aborts at its first CPU-interface
    /// access), and the PSCI conduit follows the entry level: entered at EL2, the kernel owns
    /// EL2, so only EL3 firmware can answer, through smc.
    pub fn defaults_for(board: Board, facts: CpuFacts) -> Platform<'static> {
        let mut p = Platform::defaults(board);
        if board == Board::QemuVirt {
            if facts.gic_system_registers {
                p.gic = Some(VIRT_GICV3);
                p.guess_virt_cpus(MAX_CPUS);
            }
            if facts.entry_el == 2 {
                p.psci = Some(PsciConduit::Smc);
            }
        }
        p
    }

    /// The whole description from the defaults, because of `problem`: `defaults_for`, with the
    /// problem and every choice the CPU made noted for the log.
    pub fn fallback(board: Board, facts: CpuFacts, problem: Problem) -> Platform<'static> {
        let mut p = Platform::defaults_for(board, facts);
        p.note(problem);
        if board == Board::QemuVirt {
            p.note(Problem::FromTheCpu(if facts.gic_system_registers {
                "GICv3 at the QEMU virt addresses, as this CPU has the GICv3 system-register interface"
            } else {
                "GICv2 at the QEMU virt addresses, as this CPU has no GICv3 system-register interface"
            }));
            p.note(Problem::FromTheCpu(if facts.entry_el == 2 {
                "PSCI through smc, as quartet was entered at EL2 and only EL3 firmware can answer"
            } else {
                "PSCI through hvc, as quartet was entered at EL1"
            }));
        }
        p
    }
}

impl<'dt> Platform<'dt> {
    /// With no tree to list them, `count` candidate CPUs numbered as QEMU virt numbers its CPUs:
    /// 16 to a cluster (Aff1), so the 17th is MPIDR 0x100. `keep_cpus_psci_knows` asks the
    /// firmware which exist.
    fn guess_virt_cpus(&mut self, count: usize) {
        self.cpus = FixedList::default();
        for id in 0..count.min(MAX_CPUS) as u64 {
            self.cpus.push(CpuDesc {
                mpidr: ((id / 16) << 8) | (id % 16),
                method: EnableMethod::Psci,
            });
        }
        self.cpus_in_tree = self.cpus.len();
        self.cpus_guessed = true;
    }

    /// Keep only the guessed CPUs that PSCI knows: AFFINITY_INFO (`affinity_info`, returning
    /// the PSCI status) answers 0, 1 or 2 (on, off, on its way) for a CPU that exists and
    /// INVALID_PARAMETERS (-2) for an MPIDR no CPU has. Any other answer means PSCI cannot tell,
    /// and the candidates stay as they are (CPU_ON then refuses the ones that do not exist).
    /// Does nothing when a tree listed the CPUs.
    pub fn keep_cpus_psci_knows(&mut self, mut affinity_info: impl FnMut(u64) -> i64) {
        if !self.cpus_guessed {
            return;
        }
        let candidates = self.cpus;
        let mut known = FixedList::<CpuDesc, MAX_CPUS>::default();
        for cpu in candidates.as_slice() {
            match affinity_info(cpu.mpidr) {
                0..=2 => {
                    known.push(*cpu);
                }
                -2 => {}
                _ => return,
            }
        }
        if known.is_empty() {
            return; // not even the boot CPU, which is on: PSCI is not telling the truth
        }
        self.note(Problem::CpusFromPsci {
            found: known.len(),
            tried: candidates.len(),
        });
        self.cpus = known;
        self.cpus_in_tree = known.len();
        self.cpus_guessed = false;
    }

    /// A platform that knows nothing yet: the start for both the device tree and the defaults.
    pub fn empty(board: Board, source: Source) -> Self {
        Platform {
            board,
            source,
            model: "",
            memory: FixedList::default(),
            reserved: FixedList::default(),
            cpus: FixedList::default(),
            cpus_in_tree: 0,
            cpus_guessed: false,
            psci: None,
            uart: Uart {
                regs: Region::default(),
                irq: None,
                clock_hz: 0,
            },
            gic: None,
            timer: None,
            gpio: None,
            bootargs: "",
            initrd: None,
            mailbox: None,
            firmware: crate::drivers::mailbox::BoardQuery::NotAsked,
            problems: FixedList::default(),
        }
    }

    /// True if `bootargs` contains `word` as a whole word (or as `word=...`).
    pub fn has_bootarg(&self, word: &str) -> bool {
        self.bootarg_value(word).is_some()
    }

    /// For `key=value` in bootargs, the value; for a bare `key`, "".
    pub fn bootarg_value(&self, key: &str) -> Option<&'dt str> {
        self.bootargs
            .split_ascii_whitespace()
            .find_map(|arg| match arg.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                None if arg == key => Some(""),
                _ => None,
            })
    }

    /// MMIO ranges that must be mapped as Device memory.
    pub fn mmio_regions(&self) -> FixedList<Region, 8> {
        let mut list = FixedList::default();
        list.push(self.uart.regs);
        match self.gic {
            Some(Gic::V2 {
                distributor,
                cpu_interface,
            }) => {
                list.push(distributor);
                list.push(cpu_interface);
            }
            Some(Gic::V3 {
                distributor,
                redistributors,
            }) => {
                list.push(distributor);
                for region in redistributor_regions(&redistributors) {
                    list.push(region);
                }
            }
            None => {}
        }
        if let Some(gpio) = self.gpio {
            list.push(gpio);
        }
        if let Some(mailbox) = self.mailbox {
            list.push(mailbox.regs);
        }
        list
    }

    /// The logical id of the CPU with this MPIDR affinity.
    pub fn logical_id(&self, mpidr: u64) -> Option<usize> {
        self.cpus.as_slice().iter().position(|c| c.mpidr == mpidr)
    }

    /// Set the firmware's answers about the board and act on them, before the console and the
    /// heap start: the device tree's RAM is held against the firmware's ARM memory
    /// (memory_check.rs), and a part of the tree's range that the VideoCore kept is reserved;
    /// the UART clock the firmware names replaces the one the tree (or the board default) gave,
    /// when it can make the console's baud rate at all.
    pub fn take_firmware_answers(
        &mut self,
        firmware: crate::drivers::mailbox::BoardQuery,
    ) -> FirmwareEffects {
        self.firmware = firmware;
        let mut effects = FirmwareEffects {
            memory: self.memory_verdict(),
            uart_clock_before: None,
        };
        if let Some(videocore) = effects.memory.and_then(|v| v.reserve()) {
            dt::reserve(self, videocore);
        }
        let firmware_clock = self.firmware.facts().and_then(|f| f.uart_clock_hz.ok());
        if let Some(hz) = firmware_clock.filter(|&hz| {
            uart_clock_usable(hz) && hz != self.uart.clock_hz && self.uart.is_present()
        }) {
            effects.uart_clock_before = Some(self.uart.clock_hz);
            self.uart.clock_hz = hz;
        }
        effects
    }

    /// The device tree's RAM against the firmware's ARM memory, if the firmware said it.
    pub fn memory_verdict(&self) -> Option<memory_check::Verdict> {
        let arm = self.firmware.facts()?.arm_memory.ok()?;
        Some(memory_check::compare(self.memory.as_slice(), arm))
    }

    /// Record a problem for boot to log.
    pub fn note(&mut self, problem: Problem) {
        if !self.problems.push(problem) {
            // The list is full; the count of dropped problems is still reported.
        }
    }
}

/// Whether a boot argument's list of name parts, like `test=`'s value, selects `name`: parts are comma-separated; `!part` leaves out every name containing `part`; the
/// other parts keep a name that contains one of them (with none, every name is kept).
/// `test=user_,irq_` runs two groups; `test=!broken` runs all but the broken-variant checks.
pub fn name_selected(name: &str, filter: &str) -> bool {
    let parts = || filter.split(',').filter(|p| !p.is_empty());
    let left_out = parts().any(|p| p.strip_prefix('!').is_some_and(|p| name.contains(p)));
    let mut wanted = parts().filter(|p| !p.starts_with('!')).peekable();
    !left_out && (wanted.peek().is_none() || wanted.any(|p| name.contains(p)))
}

#[cfg(test)]
mod name_selection_tests {
    use super::name_selected;

    #[test]
    fn parts_keep_names_containing_them_and_bang_parts_leave_names_out() {
        assert!(name_selected("smp_all_listed_cpus_online", ""));
        assert!(name_selected("smp_all_listed_cpus_online", "smp_,irq_"));
        assert!(!name_selected("rcu_torture", "smp_,irq_"));
        assert!(name_selected("rcu_torture", "!broken"));
        assert!(!name_selected(
            "mutex_torture_catches_a_broken_mutex",
            "!broken"
        ));
        assert!(!name_selected("fs_broken_append_is_caught", "fs_,!broken"));
        assert!(name_selected("fs_stress", "fs_,!broken"));
        assert!(!name_selected("user_hello", "fs_,!broken"));
        // An empty part (a trailing comma) selects nothing by itself.
        assert!(!name_selected("rcu_torture", "smp_,"));
    }
}

#[cfg(test)]
mod dt_tests;

/// Discover the platform from the loader's x0 (a physical address). Runs on the early map, which
/// holds the tree's first MAX_DTB_DATA bytes: no heap.
///
/// x0 is checked before it is dereferenced: it must be non-zero, 8-byte aligned and inside the
/// board's RAM window (QEMU raspi4b without -dtb passes 0x100, an ATAGS address), then the blob's
/// magic and how far its blocks reach (`validate::extent`), then its structure, and only then is
/// it parsed. On virt, x0 = 0 means an ELF boot, and the tree is looked for at the start of RAM.
///
/// Whatever no tree says comes from the board defaults as the CPU corrects them (`facts`), and
/// a CPU list that is only a guess is checked with PSCI before anyone tries to start it.
#[cfg(target_os = "none")]
pub fn discover(x0: usize, facts: CpuFacts) -> Platform<'static> {
    let mut platform = discover_from_tree(x0, facts);
    if let Some(conduit) = platform.psci {
        platform.keep_cpus_psci_knows(|mpidr| {
            crate::arch::aarch64::psci::affinity_info(conduit, mpidr)
        });
    }
    platform
}

/// Where QEMU virt puts the device tree for a kernel it passes none to (an ELF given to
/// `-kernel`): the start of RAM, and only if the whole blob fits below the kernel.
pub const VIRT_RAM_START: u64 = 0x4000_0000;

#[cfg(target_os = "none")]
fn discover_from_tree(x0: usize, facts: CpuFacts) -> Platform<'static> {
    let board = Board::compiled();
    let fallback = |problem: Problem| Platform::fallback(board, facts, problem);
    // x0 = 0 on virt: booted as an ELF, which the loader gives no tree in x0. QEMU then writes
    // the tree at the start of RAM, if it fits below the kernel, and writes nothing otherwise.
    let at = if x0 == 0 && board == Board::QemuVirt {
        VIRT_RAM_START as usize
    } else {
        x0
    };
    let no_tree = || {
        if at == x0 {
            Problem::NoDeviceTree { x0: x0 as u64 }
        } else {
            Problem::NoDeviceTreeAtRamStart {
                ram_start: at as u64,
                // The physical address: the one QEMU compares the tree's size against.
                kernel_start: crate::mm::virt_to_phys(
                    crate::arch::aarch64::layout::kernel_layout().kernel_start,
                ) as u64,
            }
        }
    };
    let in_ram_window = match board {
        // Below 2^39: the linear map reaches no further (boot.rs maps the same window).
        Board::QemuVirt => (0x4000_0000..(1 << 39) - (4 << 20)).contains(&at),
        Board::RaspberryPi4 => at < 0xfc00_0000,
    };
    if at == 0 || !at.is_multiple_of(8) || !in_ram_window {
        return fallback(no_tree());
    }
    // The early map (boot.rs) holds MAX_DTB_DATA bytes from `at` in the linear map.
    let virt = crate::mm::phys_to_virt(at);
    // SAFETY: `at` lies in the board's RAM window, and boot.rs mapped the same window's
    // MAX_DTB_DATA bytes from `at`; a header is 40 bytes.
    let header = unsafe { core::slice::from_raw_parts(virt as *const u8, 40) };
    let size = match validate::extent(header) {
        Ok(extent) => extent.total_size,
        Err(validate::BlobError::BadMagic(_)) => return fallback(no_tree()),
        Err(error) => {
            return fallback(Problem::InvalidBlob {
                x0: at as u64,
                error,
            });
        }
    };
    // SAFETY: `size` bytes from `at` are the blob the loader placed in RAM for us; of them only
    // the blocks are ever read, and `extent` checked that they lie within MAX_DTB_DATA of `at`.
    // The range is reserved from the heap, mapped by the early map and then by the kernel's
    // (mm/paging.rs), and after this in-place NOP removal never written again, so the 'static
    // borrows below stay valid.
    let blob = unsafe { core::slice::from_raw_parts_mut(virt as *mut u8, size) };
    // A blob that fails here fails `parse` below with the same error, which is reported there.
    let _ = validate::remove_nops(blob);
    let blob: &'static [u8] = blob;
    dt::parse_with(blob, at as u64, &Platform::defaults_for(board, facts)).unwrap_or_else(|error| {
        fallback(Problem::InvalidBlob {
            x0: at as u64,
            error,
        })
    })
}
