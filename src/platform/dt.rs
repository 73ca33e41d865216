//! Reading a `Platform` out of a flattened device tree (chapter 2).
//!
//! The walk visits every node once, carrying the chain of parent buses so that a device's `reg`
//! can be translated through each parent's `ranges` to a physical address: the Pi 4's UART is
//! `serial@7e201000` on the VideoCore bus, at 0xfe20_1000 for the CPU. Nothing is found by path
//! or offset; nodes are recognised by `compatible`, `device_type` and well-known names, because
//! the firmware's tree and the mainline tree for the same board differ in details.

use fdt::Fdt;
use fdt::node::FdtNode;

use super::validate::{self, BlobError, MAX_DEPTH};
use super::*;

/// One level of the bus hierarchy: how its children's addresses are written and translated.
#[derive(Clone, Copy, Default)]
struct Bus<'a> {
    address_cells: usize,
    size_cells: usize,
    /// The bus's `ranges`: None when absent (addresses do not translate past this bus).
    ranges: Option<&'a [u8]>,
    /// The bus's `dma-ranges`: how its devices see memory (None: as the CPU does).
    dma_ranges: Option<&'a [u8]>,
}

/// Parse `blob` (located at physical `address`) for `board`. Pieces the tree lacks come from
/// the board defaults and are recorded in `problems`.
pub fn parse<'dt>(blob: &'dt [u8], address: u64, board: Board) -> Result<Platform<'dt>, BlobError> {
    parse_with(blob, address, &Platform::defaults(board))
}

/// `parse`, with the pieces the tree lacks taken from `defaults` (the board's, as the CPU
/// corrected them: `Platform::defaults_for`).
pub fn parse_with<'dt>(
    blob: &'dt [u8],
    address: u64,
    defaults: &Platform<'static>,
) -> Result<Platform<'dt>, BlobError> {
    validate::validate(blob)?;
    let fdt = Fdt::new(blob).map_err(|_| BlobError::TooShort)?;
    let board = defaults.board;
    let source = Source::DeviceTree {
        address,
        size: fdt.total_size() as u64,
    };
    let mut p = Platform::empty(board, source);
    p.model = defaults.model;
    let mut uart_found = false;
    let root = fdt.find_node("/").ok_or(BlobError::Unbalanced)?;
    if let Some(model) = root.property("model").and_then(|m| m.as_str()) {
        p.model = model;
    }
    // A tree that names a board outside the compiled board's family: its missing devices get
    // no compiled-in address, since on that board the address is something else.
    let other_board = root.property("compatible").is_some_and(|c| {
        !c.value
            .split(|&b| b == 0)
            .any(|entry| entry == board.family_compatible().as_bytes())
    });
    // The DTB first, so a tree with more reservations than `reserved` holds cannot push it out:
    // the Platform borrows its strings (model, bootargs), so it must never become heap.
    reserve(&mut p, Region::new(address, fdt.total_size() as u64));
    let mut buses = [Bus::default(); MAX_DEPTH + 1];
    buses[0] = bus_of(root);
    for child in root.children() {
        visit(&fdt, child, "", &mut buses, 1, &mut p, &mut uart_found);
    }
    for r in fdt.memory_reservations() {
        reserve(&mut p, Region::new(r.address() as u64, r.size() as u64));
    }
    if let Some(initrd) = p.initrd {
        reserve(&mut p, initrd);
        // A full list dropped it: then the heap may hand it out, so nobody may read it.
        let kept = p
            .reserved
            .as_slice()
            .iter()
            .any(|r| r.start <= initrd.start && initrd.end() <= r.end());
        if !kept {
            p.initrd = None;
        }
    }
    fill_gaps(&mut p, defaults, uart_found, other_board);
    Ok(p)
}

/// Add `region` to the reserved ranges, as one range with any it overlaps or touches: trees name
/// the same range several times (the Pi's armstub page is a /memreserve/ and the page of four
/// cpu-release-addr values), and the list is short and should read as the set it is.
pub(super) fn reserve(p: &mut Platform<'_>, region: Region) {
    if region.size == 0 {
        return;
    }
    // The list never holds two ranges that touch, so the ranges `region` touches are all that
    // can join it: their union cannot reach any other.
    let touches = |r: &Region| r.start <= region.end() && region.start <= r.end();
    let mut merged = region;
    let mut first = None;
    let mut i = 0;
    while i < p.reserved.len() {
        let r = p.reserved.as_slice()[i];
        if !touches(&r) {
            i += 1;
            continue;
        }
        let start = merged.start.min(r.start);
        merged = Region::new(start, merged.end().max(r.end()) - start);
        if first.is_none() {
            first = Some(i);
            i += 1;
        } else {
            p.reserved.remove(i);
        }
    }
    match first {
        Some(at) => p.reserved.as_mut_slice()[at] = merged,
        None => {
            if !p.reserved.push(region) {
                p.note(Problem::Overflow("reserved memory ranges"));
            }
        }
    }
}

/// Use the board default for whatever the tree did not provide, and say so. On `other_board`
/// (the tree names a board of another family) MMIO defaults are left out instead: writing a
/// Pi 4's GPIO address on a Pi 5 reaches whatever the Pi 5 has there.
fn fill_gaps(
    p: &mut Platform<'_>,
    defaults: &Platform<'static>,
    uart_found: bool,
    other_board: bool,
) {
    let missing = |what| {
        if other_board {
            Problem::NotOnThisBoard(what)
        } else {
            Problem::Missing(what)
        }
    };
    if p.memory.is_empty() {
        p.memory = defaults.memory;
        p.note(Problem::Missing("memory node with a non-zero size"));
    }
    if p.cpus.is_empty() {
        p.cpus = defaults.cpus;
        p.cpus_in_tree = defaults.cpus_in_tree;
        p.cpus_guessed = defaults.cpus_guessed;
        p.note(Problem::Missing("/cpus node with CPUs in it"));
    }
    if p.cpus_in_tree > MAX_CPUS {
        p.note(Problem::TooManyCpus {
            in_tree: p.cpus_in_tree,
        });
    }
    // A CPU quartet cannot start stays off: say so. Not for a lone CPU, which is the boot CPU
    // and already running; QEMU's `-smp 1` tree gives it no enable-method, and Linux does not
    // warn about a boot CPU without one either.
    if p.cpus_in_tree > 1 {
        let cpus = p.cpus;
        for cpu in cpus
            .as_slice()
            .iter()
            .filter(|c| c.method == EnableMethod::Unknown)
        {
            p.note(Problem::UnknownEnableMethod { mpidr: cpu.mpidr });
        }
    }
    if !uart_found {
        if !other_board {
            p.uart = defaults.uart;
        }
        p.note(missing("enabled PL011 UART (compatible arm,pl011)"));
    }
    if p.gic.is_none() {
        if !other_board {
            p.gic = defaults.gic;
        }
        p.note(missing(
            "GIC (arm,gic-400, arm,cortex-a15-gic or arm,gic-v3)",
        ));
    }
    // A GICv2 reaches 8 CPUs: a ninth could start, but no interrupt (tick, IPI) would reach it.
    if matches!(p.gic, Some(Gic::V2 { .. })) && p.cpus.len() > GICV2_MAX_CPUS {
        p.note(Problem::GicV2CpuLimit {
            in_tree: p.cpus_in_tree,
        });
        p.cpus.truncate(GICV2_MAX_CPUS);
    }
    if p.timer.is_none() {
        p.timer = defaults.timer;
        p.note(Problem::Missing("timer (arm,armv8-timer)"));
    }
    let needs_psci = p
        .cpus
        .as_slice()
        .iter()
        .any(|c| c.method == EnableMethod::Psci);
    if needs_psci && p.psci.is_none() {
        p.psci = defaults.psci;
        p.note(Problem::Missing(
            "/psci node, though CPUs use enable-method psci",
        ));
    }
    if p.board == Board::RaspberryPi4 && p.gpio.is_none() {
        if !other_board {
            p.gpio = defaults.gpio;
        }
        p.note(missing("GPIO controller (brcm,bcm2711-gpio)"));
    }
    // A spin-table CPU's release address must never be handed out as heap.
    let releases = p.cpus;
    for cpu in releases.as_slice() {
        if let EnableMethod::SpinTable { release_addr } = cpu.method {
            reserve(p, Region::new(release_addr & !0xfff, 0x1000));
        }
    }
}

fn visit<'b, 'dt>(
    fdt: &'b Fdt<'dt>,
    node: FdtNode<'b, 'dt>,
    parent_name: &str,
    buses: &mut [Bus<'dt>; MAX_DEPTH + 1],
    depth: usize,
    p: &mut Platform<'dt>,
    uart_found: &mut bool,
) {
    let parent = buses[depth - 1];
    let base_name = node.name.split('@').next().unwrap_or("");
    let device_type = node
        .property("device_type")
        .and_then(|d| d.as_str())
        .unwrap_or("");
    let enabled = node
        .property("status")
        .and_then(|s| s.as_str())
        .is_none_or(|s| s == "okay" || s == "ok");
    let first_reg = |index: usize| translated_reg(node, &buses[..depth], index);

    // /chosen is read here, in the walk, not with fdt's find_node: that stops at NOPs between the
    // root's children (a node deleted in place), which validation lets through.
    if depth == 1 && node.name == "chosen" {
        if let Some(args) = node.property("bootargs").and_then(|a| a.as_str()) {
            p.bootargs = args.trim_end_matches('\0');
        }
        p.initrd = initrd(node, p);
    } else if depth == 1 && device_type == "memory" {
        // A disabled memory node is RAM that exists but is not ours: QEMU's secure=on lists
        // the secure world's RAM this way, and a write to it from the normal world aborts.
        // Linux skips such nodes too.
        if let Some(reg) = node.property("reg").filter(|_| enabled) {
            for (start, size) in reg_entries(reg.value, parent.address_cells, parent.size_cells) {
                if size == 0 {
                    // The Pi's firmware writes the size in; a tree passed on without it is
                    // worth a line in the log, not a 0-byte "RAM" range.
                    p.note(Problem::MemoryLeftEmpty { at: start });
                } else if !p.memory.push(Region::new(start, size)) {
                    p.note(Problem::Overflow("memory ranges"));
                }
            }
        }
    } else if depth == 2 && parent_name == "cpus" && device_type == "cpu" && enabled {
        visit_cpu(node, parent, p);
    } else if depth == 2 && parent_name == "reserved-memory" {
        if let Some(region) = first_reg(0) {
            reserve(p, region);
        }
    } else if is_compatible(node, "arm,psci") {
        match node.property("method").and_then(|m| m.as_str()) {
            Some("hvc") => p.psci = Some(PsciConduit::Hvc),
            Some("smc") => p.psci = Some(PsciConduit::Smc),
            _ => p.note(Problem::Unusable("/psci method (neither hvc nor smc)")),
        }
    } else if enabled && !*uart_found && is_compatible(node, "arm,pl011") {
        if let Some(regs) = first_reg(0) {
            p.uart = Uart {
                regs,
                irq: interrupt(node, 0),
                clock_hz: fixed_clock_hz(fdt, node).unwrap_or(0),
            };
            if p.uart.clock_hz == 0 {
                p.uart.clock_hz = Platform::defaults(p.board).uart.clock_hz;
            }
            *uart_found = true;
        } else {
            p.note(Problem::Unusable(
                "PL011 reg (not translatable to a CPU address)",
            ));
        }
    } else if enabled && p.gic.is_none() && is_gic_v2(node) {
        match (first_reg(0), first_reg(1)) {
            (Some(distributor), Some(cpu_interface)) => {
                p.gic = Some(Gic::V2 {
                    distributor,
                    cpu_interface,
                })
            }
            _ => p.note(Problem::Unusable("GICv2 reg")),
        }
    } else if enabled && p.gic.is_none() && is_compatible(node, "arm,gic-v3") {
        // reg: the distributor, then `#redistributor-regions` redistributor regions (default
        // one), then the CPU interfaces' MMIO frames, which quartet does not use.
        let regions = node
            .property("#redistributor-regions")
            .and_then(|v| read_cells(v.value, 0, 1))
            .unwrap_or(1) as usize;
        let mut redistributors = [Region::default(); MAX_REDISTRIBUTOR_REGIONS];
        let mut usable = regions > 0;
        for (i, slot) in redistributors.iter_mut().enumerate().take(regions) {
            match first_reg(1 + i) {
                Some(region) => *slot = region,
                None => usable = false,
            }
        }
        match first_reg(0) {
            Some(distributor) if usable => {
                if regions > MAX_REDISTRIBUTOR_REGIONS {
                    p.note(Problem::Overflow("GICv3 redistributor regions"));
                }
                p.gic = Some(Gic::V3 {
                    distributor,
                    redistributors,
                })
            }
            _ => p.note(Problem::Unusable("GICv3 reg")),
        }
    } else if is_compatible(node, "arm,armv8-timer") || is_compatible(node, "arm,armv7-timer") {
        match (
            interrupt(node, 0),
            interrupt(node, 1),
            interrupt(node, 2),
            interrupt(node, 3),
        ) {
            (Some(secure_phys), Some(phys), Some(virt), Some(hyp)) => {
                p.timer = Some(TimerIrqs {
                    secure_phys,
                    phys,
                    virt,
                    hyp,
                })
            }
            _ => p.note(Problem::Unusable("timer interrupts")),
        }
    } else if enabled && is_compatible(node, "brcm,bcm2711-gpio") {
        p.gpio = first_reg(0);
    } else if enabled && p.mailbox.is_none() && is_compatible(node, "brcm,bcm2835-mbox") {
        match (first_reg(0), dma_window(&buses[..depth])) {
            (Some(regs), Some(dma)) => p.mailbox = Some(Mailbox { regs, dma }),
            (None, _) => p.note(Problem::Unusable(
                "VideoCore mailbox reg (not translatable to a CPU address)",
            )),
            (_, None) => p.note(Problem::Unusable("VideoCore mailbox's bus dma-ranges")),
        }
    }

    if depth < MAX_DEPTH {
        buses[depth] = bus_of(node);
        for child in node.children() {
            visit(fdt, child, base_name, buses, depth + 1, p, uart_found);
        }
    }
}

/// `/chosen`'s `linux,initrd-start` and `linux,initrd-end`: each one or two big-endian cells
/// (the property's length says which), the end exclusive. Both or neither must be there.
fn initrd(chosen: FdtNode<'_, '_>, p: &mut Platform<'_>) -> Option<Region> {
    let cell = |name: &str| {
        chosen.property(name).map(|v| match v.value.len() {
            4 | 8 => read_cells(v.value, 0, v.value.len() / 4),
            _ => None,
        })
    };
    match (cell("linux,initrd-start"), cell("linux,initrd-end")) {
        (None, None) => None,
        (Some(Some(start)), Some(Some(end))) if start < end => {
            Some(Region::new(start, end - start))
        }
        // An empty range: a loader that was given an empty file. Nothing to unpack.
        (Some(Some(start)), Some(Some(end))) if start == end => None,
        (start, end) => {
            p.note(Problem::InitrdUnusable {
                start: start.flatten(),
                end: end.flatten(),
            });
            None
        }
    }
}

fn visit_cpu(node: FdtNode<'_, '_>, cpus_bus: Bus<'_>, p: &mut Platform<'_>) {
    let Some(mpidr) = node
        .property("reg")
        .and_then(|r| read_cells(r.value, 0, cpus_bus.address_cells))
    else {
        p.note(Problem::Unusable("CPU node without reg"));
        return;
    };
    p.cpus_in_tree += 1;
    let method = match node.property("enable-method").and_then(|m| m.as_str()) {
        Some("psci") => EnableMethod::Psci,
        Some("spin-table") => match node.property("cpu-release-addr") {
            Some(addr) => match read_cells(addr.value, 0, addr.value.len() / 4) {
                Some(release_addr) => EnableMethod::SpinTable { release_addr },
                None => EnableMethod::Unknown,
            },
            None => EnableMethod::Unknown,
        },
        _ => EnableMethod::Unknown,
    };
    // An Unknown method is reported by fill_gaps, once the number of CPUs is known.
    // Over MAX_CPUS the CPU is counted but not kept: TooManyCpus reports it once.
    p.cpus.push(CpuDesc { mpidr, method });
}

fn bus_of<'dt>(node: FdtNode<'_, 'dt>) -> Bus<'dt> {
    let cells = |name: &str, default: usize| {
        node.property(name)
            .and_then(|v| read_cells(v.value, 0, 1))
            .map_or(default, |v| v as usize)
    };
    Bus {
        address_cells: cells("#address-cells", 2),
        size_cells: cells("#size-cells", 1),
        ranges: node.property("ranges").map(|r| r.value),
        dma_ranges: node.property("dma-ranges").map(|r| r.value),
    }
}

fn is_compatible(node: FdtNode<'_, '_>, prefix: &str) -> bool {
    node.property("compatible").is_some_and(|c| {
        c.value
            .split(|&b| b == 0)
            .any(|s| s.starts_with(prefix.as_bytes()))
    })
}

fn is_gic_v2(node: FdtNode<'_, '_>) -> bool {
    [
        "arm,gic-400",
        "arm,cortex-a15-gic",
        "arm,cortex-a9-gic",
        "arm,cortex-a7-gic",
    ]
    .iter()
    .any(|c| is_compatible(node, c))
}

/// Big-endian cells `[at, at + count)` of `bytes` as one number (the low 64 bits if longer).
fn read_cells(bytes: &[u8], at: usize, count: usize) -> Option<u64> {
    if count == 0 {
        return Some(0);
    }
    let cells = bytes.get(at * 4..(at + count) * 4)?;
    Some(cells.chunks_exact(4).fold(0u64, |acc, c| {
        (acc << 32) | u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64
    }))
}

/// The (address, size) pairs of a `reg` value.
fn reg_entries(
    value: &[u8],
    address_cells: usize,
    size_cells: usize,
) -> impl Iterator<Item = (u64, u64)> + '_ {
    let stride = (address_cells + size_cells).max(1);
    (0..value.len() / 4 / stride).filter_map(move |i| {
        let at = i * stride;
        Some((
            read_cells(value, at, address_cells)?,
            read_cells(value, at + address_cells, size_cells)?,
        ))
    })
}

/// Entry `index` of the node's `reg`, translated through every parent bus's `ranges`.
/// `buses[last]` is the node's parent; `buses[0]` the root.
fn translated_reg(node: FdtNode<'_, '_>, buses: &[Bus<'_>], index: usize) -> Option<Region> {
    let parent = *buses.last()?;
    let reg = node.property("reg")?;
    let (mut addr, size) =
        reg_entries(reg.value, parent.address_cells, parent.size_cells).nth(index)?;
    for level in (1..buses.len()).rev() {
        addr = translate(addr, buses[level], buses[level - 1].address_cells)?;
    }
    Some(Region::new(addr, size))
}

/// One step up: a child address on `bus` to an address on the bus's parent.
fn translate(addr: u64, bus: Bus<'_>, parent_address_cells: usize) -> Option<u64> {
    let ranges = bus.ranges?;
    if ranges.is_empty() {
        return Some(addr); // empty `ranges`: identity
    }
    let (child, parent, size) = (bus.address_cells, parent_address_cells, bus.size_cells);
    let stride = child + parent + size;
    (0..ranges.len() / 4 / stride.max(1)).find_map(|i| {
        let at = i * stride;
        let child_base = read_cells(ranges, at, child)?;
        let parent_base = read_cells(ranges, at + child, parent)?;
        let len = read_cells(ranges, at + child + parent, size)?;
        if addr >= child_base && addr - child_base < len {
            // checked: a corrupt parent base near 2^64 makes the address untranslatable, not a panic.
            parent_base.checked_add(addr - child_base)
        } else {
            None
        }
    })
}

/// How devices on the bus `buses[last]` see memory: the first entry of its `dma-ranges`
/// (child bus address, parent address, size), the parent address read with the grandparent's
/// cell count. No `dma-ranges`, or an empty one, is the identity. A window whose parent side is
/// itself a bus address is not followed further: the Pi's buses have one level.
fn dma_window(buses: &[Bus<'_>]) -> Option<DmaWindow> {
    let (bus, parent) = match buses {
        [.., parent, bus] => (*bus, *parent),
        _ => return Some(DmaWindow::IDENTITY),
    };
    let ranges = match bus.dma_ranges {
        None | Some([]) => return Some(DmaWindow::IDENTITY),
        Some(r) => r,
    };
    let (child, up, size) = (bus.address_cells, parent.address_cells, bus.size_cells);
    Some(DmaWindow {
        bus: read_cells(ranges, 0, child)?,
        phys: read_cells(ranges, child, up)?,
        size: read_cells(ranges, child + up, size)?,
    })
}

/// Interrupt `index` of a node as a GIC INTID (3-cell GIC specifier: type, number, flags).
fn interrupt(node: FdtNode<'_, '_>, index: usize) -> Option<u32> {
    let value = node.property("interrupts")?.value;
    let kind = read_cells(value, index * 3, 1)?;
    let number = read_cells(value, index * 3 + 1, 1)? as u32;
    // checked: a corrupt interrupt number near 2^32 is no interrupt, not a panic.
    match kind {
        0 => number.checked_add(32), // SPI
        1 => number.checked_add(16), // PPI
        _ => None,
    }
}

/// The node with this phandle, searched for under `node`.
///
/// Not fdt's `find_phandle`: its walk over all nodes stops early at FDT_NOPs before a node's end
/// (a property or last child deleted in place), which validation lets through, and the clock
/// would silently not be found. `children` skips those NOPs.
fn find_phandle<'b, 'dt>(
    node: FdtNode<'b, 'dt>,
    phandle: u32,
    depth: usize,
) -> Option<FdtNode<'b, 'dt>> {
    if node
        .property("phandle")
        .and_then(|v| read_cells(v.value, 0, 1))
        == Some(phandle as u64)
    {
        return Some(node);
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    node.children()
        .find_map(|child| find_phandle(child, phandle, depth + 1))
}

/// The frequency of the node's first clock, when that clock is a `fixed-clock`.
fn fixed_clock_hz(fdt: &Fdt<'_>, node: FdtNode<'_, '_>) -> Option<u32> {
    let phandle = read_cells(node.property("clocks")?.value, 0, 1)? as u32;
    let clock = find_phandle(fdt.find_node("/")?, phandle, 0)?;
    if !is_compatible(clock, "fixed-clock") {
        return None;
    }
    read_cells(clock.property("clock-frequency")?.value, 0, 1).map(|f| f as u32)
}
