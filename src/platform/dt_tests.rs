//! Host tests for the device-tree parser, against real trees.
//!
//! The QEMU trees in tests/data/dtb were dumped from QEMU 10 (`tools/dump-dtbs`); the Raspberry
//! Pi 4 tree is the mainline one from Debian's kernel package, fetched by `tools/setup --rpi-dtb`.
//! Every expected value below was read from the tree with `dtc -I dtb -O dts`, not from QEMU's or
//! the Pi's documentation, so a test failure means the parser and the tree disagree.
//!
//! Besides reading good trees correctly, `parse` must survive bad ones: firmware can hand the
//! kernel a truncated, corrupted or edited tree, and a panic at that point is a kernel that never
//! prints a word. The corruption tests feed it thousands of damaged copies and require that it
//! either rejects them or returns a `Platform` that is still usable.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::dt::parse;
use super::validate::BlobError;
use super::*;

const GICV2_SMP1: &[u8] = include_bytes!("../../tests/data/dtb/virt-gicv2-smp1.dtb");
const GICV2_SMP2: &[u8] = include_bytes!("../../tests/data/dtb/virt-gicv2-smp2.dtb");
const GICV2_SMP4: &[u8] = include_bytes!("../../tests/data/dtb/virt-gicv2-smp4.dtb");
const GICV2_SMP8: &[u8] = include_bytes!("../../tests/data/dtb/virt-gicv2-smp8.dtb");
const GICV3_SMP4: &[u8] = include_bytes!("../../tests/data/dtb/virt-gicv3-smp4.dtb");
const GICV3_SMP16: &[u8] = include_bytes!("../../tests/data/dtb/virt-gicv3-smp16.dtb");
const EL2_SMP4: &[u8] = include_bytes!("../../tests/data/dtb/virt-el2-smp4.dtb");
/// `-M virt,secure=on`: devices and RAM for the secure world, each with status = "disabled".
const SECURE_SMP4: &[u8] = include_bytes!("../../tests/data/dtb/virt-secure-smp4.dtb");
/// A tree shaped like a Raspberry Pi 5's (bcm2712), written for these tests: pi5-like.dts.
const PI5_LIKE: &[u8] = include_bytes!("../../tests/data/dtb/pi5-like.dtb");

/// Every QEMU tree, with its name (for messages) and its `-smp` value.
const QEMU_TREES: [(&str, &[u8], usize); 7] = [
    ("virt-gicv2-smp1", GICV2_SMP1, 1),
    ("virt-gicv2-smp2", GICV2_SMP2, 2),
    ("virt-gicv2-smp4", GICV2_SMP4, 4),
    ("virt-gicv2-smp8", GICV2_SMP8, 8),
    ("virt-gicv3-smp4", GICV3_SMP4, 4),
    ("virt-gicv3-smp16", GICV3_SMP16, 16),
    ("virt-el2-smp4", EL2_SMP4, 4),
];

/// Where QEMU's loader puts the DTB for a bare-metal image: the start of RAM.
const QEMU_DTB_AT: u64 = 0x4000_0000;
/// An arbitrary address in the Pi's low RAM: parse only records it and reserves the range.
const PI_DTB_AT: u64 = 0x2eff_2e00;

const PI_DTB_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/build/dtb/bcm2711-rpi-4-b.dtb");

/// The mainline Raspberry Pi 4 tree. It is not committed (it comes from a Debian kernel
/// package), so a missing file is a setup step to do, and the test fails saying which.
fn pi_dtb() -> Vec<u8> {
    std::fs::read(PI_DTB_PATH).unwrap_or_else(|e| {
        panic!("cannot read {PI_DTB_PATH}: {e}; run `tools/setup --rpi-dtb` to fetch the Raspberry Pi 4 device tree")
    })
}

fn parse_ok<'dt>(name: &str, blob: &'dt [u8], address: u64, board: Board) -> Platform<'dt> {
    parse(blob, address, board).unwrap_or_else(|e| panic!("{name}: rejected: {e}"))
}

/// The timer PPIs every tree here uses (13, 14, 11, 10), as INTIDs.
const ARCH_TIMER: TimerIrqs = TimerIrqs {
    secure_phys: 29,
    phys: 30,
    virt: 27,
    hyp: 26,
};

// ---------------------------------------------------------------------------------------------
// Small FDT tools, so tests can edit a real tree the way firmware does (libfdt's nop/setprop).

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn put_be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// A property found in the structure block.
struct PropAt {
    /// Offset in the blob of its FDT_PROP token.
    token: usize,
    /// Offset in the blob of its value.
    value: usize,
    len: usize,
}

/// A node found in the structure block: `begin..end` covers its FDT_BEGIN_NODE token through
/// its FDT_END_NODE token.
struct NodeAt {
    begin: usize,
    end: usize,
}

/// Walk the structure block of a well-formed blob, calling `on_node(name, NodeAt)` for each node
/// (when it ends) and `on_prop(node name, prop name, PropAt)` for each property.
fn walk(
    blob: &[u8],
    mut on_node: impl FnMut(&str, NodeAt),
    mut on_prop: impl FnMut(&str, &str, PropAt),
) {
    let off_struct = be32(blob, 8) as usize;
    let off_strings = be32(blob, 12) as usize;
    let c_str = |at: usize| {
        let len = blob[at..].iter().position(|&b| b == 0).unwrap();
        std::str::from_utf8(&blob[at..at + len]).unwrap()
    };
    let mut stack: Vec<(&str, usize)> = Vec::new();
    let mut at = off_struct;
    loop {
        let token_at = at;
        match be32(blob, at) {
            1 => {
                let name = c_str(at + 4);
                stack.push((name, token_at));
                at = (at + 4 + name.len() + 1 + 3) & !3;
            }
            2 => {
                let (name, begin) = stack.pop().unwrap();
                at += 4;
                on_node(name, NodeAt { begin, end: at });
            }
            3 => {
                let len = be32(blob, at + 4) as usize;
                let name = c_str(off_strings + be32(blob, at + 8) as usize);
                on_prop(
                    stack.last().unwrap().0,
                    name,
                    PropAt {
                        token: at,
                        value: at + 12,
                        len,
                    },
                );
                at = (at + 12 + len + 3) & !3;
            }
            4 => at += 4,
            9 => return,
            t => panic!("test helper: token {t:#x} at {at:#x}"),
        }
    }
}

fn find_prop(blob: &[u8], node: &str, prop: &str) -> PropAt {
    let mut found = None;
    walk(
        blob,
        |_, _| {},
        |n, p, at| {
            if n == node && p == prop && found.is_none() {
                found = Some(at);
            }
        },
    );
    found.unwrap_or_else(|| panic!("test helper: no {node}/{prop}"))
}

fn find_node(blob: &[u8], node: &str) -> NodeAt {
    let mut found = None;
    walk(
        blob,
        |n, at| {
            if n == node && found.is_none() {
                found = Some(at);
            }
        },
        |_, _, _| {},
    );
    found.unwrap_or_else(|| panic!("test helper: no node {node}"))
}

/// Overwrite `range` of the structure block with FDT_NOP tokens: libfdt's `fdt_nop_property` /
/// `fdt_nop_node`, how firmware deletes something from a tree in place.
fn nop_out(blob: &mut [u8], begin: usize, end: usize) {
    for at in (begin..end).step_by(4) {
        put_be32(blob, at, 4);
    }
}

fn nop_property(blob: &[u8], node: &str, prop: &str) -> Vec<u8> {
    let mut copy = blob.to_vec();
    let p = find_prop(blob, node, prop);
    nop_out(&mut copy, p.token, (p.value + p.len + 3) & !3);
    copy
}

fn nop_node(blob: &[u8], node: &str) -> Vec<u8> {
    let mut copy = blob.to_vec();
    let n = find_node(blob, node);
    nop_out(&mut copy, n.begin, n.end);
    copy
}

/// A copy with every occurrence of `from` replaced by `to` (same length).
fn patch_all(blob: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut copy = blob.to_vec();
    let mut count = 0;
    let mut i = 0;
    while i + from.len() <= copy.len() {
        if &copy[i..i + from.len()] == from {
            copy[i..i + from.len()].copy_from_slice(to);
            count += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(
        count > 0,
        "test helper: {:?} not in the blob",
        String::from_utf8_lossy(from)
    );
    copy
}

/// A copy with `entries` added to the /memreserve/ block, moving the blocks after it.
fn with_memreserves(blob: &[u8], entries: &[(u64, u64)]) -> Vec<u8> {
    let rsvmap = be32(blob, 16) as usize;
    let extra = entries.len() * 16;
    let mut out = blob[..rsvmap].to_vec();
    for &(addr, size) in entries {
        out.extend_from_slice(&addr.to_be_bytes());
        out.extend_from_slice(&size.to_be_bytes());
    }
    out.extend_from_slice(&blob[rsvmap..]);
    for field in [1, 2, 3] {
        // totalsize, off_dt_struct, off_dt_strings: all lie after the reservation block.
        let v = be32(&out, field * 4);
        put_be32(&mut out, field * 4, v + extra as u32);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Invariants that hold for every Platform parse returns, however bad the tree.

fn assert_sane(p: &Platform<'_>, context: &dyn Fn() -> String) {
    assert!(
        !p.cpus.is_empty() && p.cpus.len() <= MAX_CPUS,
        "{}: {} CPUs kept",
        context(),
        p.cpus.len()
    );
    assert!(
        p.cpus_in_tree >= p.cpus.len(),
        "{}: cpus_in_tree {} < kept",
        context(),
        p.cpus_in_tree
    );
    assert!(
        p.memory.as_slice().iter().any(|r| r.size > 0),
        "{}: no RAM",
        context()
    );
    // A device may be absent only where a tree of another board lacked it (and said so).
    let not_on_this_board = |what: &str| {
        p.problems
            .as_slice()
            .iter()
            .any(|q| matches!(q, Problem::NotOnThisBoard(w) if w.contains(what)))
    };
    assert!(
        p.uart.clock_hz != 0 || (!p.uart.is_present() && not_on_this_board("UART")),
        "{}: UART clock 0 makes the baud divisor divide by zero",
        context()
    );
    assert!(
        p.gic.is_some() || not_on_this_board("GIC"),
        "{}: no GIC",
        context()
    );
    assert!(p.timer.is_some(), "{}: no timer", context());
    let needs_psci = p
        .cpus
        .as_slice()
        .iter()
        .any(|c| c.method == EnableMethod::Psci);
    assert!(
        !needs_psci || p.psci.is_some(),
        "{}: PSCI CPUs without a conduit",
        context()
    );
    if p.board == Board::RaspberryPi4 {
        assert!(
            p.gpio.is_some() || not_on_this_board("GPIO"),
            "{}: Pi without GPIO",
            context()
        );
    }
    assert!(
        matches!(p.source, Source::DeviceTree { .. }),
        "{}: source {:?}",
        context(),
        p.source
    );
    for problem in p.problems.as_slice() {
        assert_ne!(
            *problem,
            Problem::None,
            "{}: Problem::None recorded",
            context()
        );
        assert!(
            !problem.to_string().is_empty(),
            "{}: {problem:?} displays as nothing",
            context()
        );
    }
}

/// Parse `blob` inside catch_unwind and check any Platform it returns. Ok(whether parse
/// accepted the blob); a panic becomes Err(message), so a sweep can report every offset that
/// panics, not just the first.
fn parse_no_panic(blob: &[u8], board: Board, context: &dyn Fn() -> String) -> Result<bool, String> {
    let result = catch_unwind(AssertUnwindSafe(|| match parse(blob, QEMU_DTB_AT, board) {
        Ok(p) => {
            assert_sane(&p, context);
            true
        }
        Err(_) => false,
    }));
    result.map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{}: {msg}", context())
    })
}

fn assert_no_failures(what: &str, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{what}: {} failures, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 1. The QEMU trees.

#[test]
fn every_qemu_tree_parses_without_problems() {
    for (name, blob, smp) in QEMU_TREES {
        let p = parse_ok(name, blob, QEMU_DTB_AT, Board::QemuVirt);
        // The 16-CPU tree has one thing to say, and sixteen_cpu_tree_keeps_max_cpus_and_says_so
        // checks it; every other tree has nothing to say.
        let expected: &[Problem] = if smp > MAX_CPUS {
            &[Problem::TooManyCpus { in_tree: smp }]
        } else {
            &[]
        };
        assert_eq!(p.problems.as_slice(), expected, "{name}");
        assert_eq!(p.problems.dropped(), 0, "{name}");
        assert_eq!(
            p.source,
            Source::DeviceTree {
                address: QEMU_DTB_AT,
                size: blob.len() as u64
            },
            "{name}"
        );
        assert_eq!(p.model, "linux,dummy-virt", "{name}");
        // QEMU was run without -append, so /chosen has no bootargs.
        assert_eq!(p.bootargs, "", "{name}");
        assert_sane(&p, &|| name.to_string());
    }
}

#[test]
fn qemu_cpu_count_matches_smp_and_mpidrs_match_reg() {
    for (name, blob, smp) in QEMU_TREES {
        let p = parse_ok(name, blob, QEMU_DTB_AT, Board::QemuVirt);
        assert_eq!(p.cpus_in_tree, smp, "{name}");
        assert_eq!(p.cpus.len(), smp.min(MAX_CPUS), "{name}");
        // dtc shows cpu@N with reg = <N> for every tree, GICv2 and GICv3 alike (QEMU's affinity
        // clusters are 8 or 16 wide, so no tree here reaches Aff1).
        for (i, cpu) in p.cpus.as_slice().iter().enumerate() {
            assert_eq!(cpu.mpidr, i as u64, "{name}: cpu {i}");
            assert_eq!(p.logical_id(cpu.mpidr), Some(i), "{name}: cpu {i}");
        }
    }
}

#[test]
fn qemu_secondary_cpus_start_with_psci_and_a_lone_cpu_needs_no_method() {
    for (name, blob, smp) in QEMU_TREES {
        let p = parse_ok(name, blob, QEMU_DTB_AT, Board::QemuVirt);
        let methods: Vec<_> = p.cpus.as_slice().iter().map(|c| c.method).collect();
        if smp == 1 {
            // With -smp 1 QEMU writes no enable-method: the one CPU is the boot CPU, already
            // running. Nothing needs starting, so nothing is a problem.
            assert_eq!(methods, [EnableMethod::Unknown], "{name}");
        } else {
            assert!(
                methods.iter().all(|&m| m == EnableMethod::Psci),
                "{name}: {methods:?}"
            );
        }
    }
}

#[test]
fn sixteen_cpu_tree_keeps_max_cpus_and_says_so() {
    let p = parse_ok(
        "virt-gicv3-smp16",
        GICV3_SMP16,
        QEMU_DTB_AT,
        Board::QemuVirt,
    );
    assert_eq!(p.cpus_in_tree, 16);
    assert_eq!(p.cpus.len(), MAX_CPUS);
    assert_eq!(MAX_CPUS, 8, "this test's tree was chosen to exceed 8 CPUs");
    // The first eight in tree order are kept; the rest are counted, not stored.
    let mpidrs: Vec<u64> = p.cpus.as_slice().iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs, (0..8).collect::<Vec<u64>>());
    assert_eq!(
        p.problems.as_slice(),
        &[Problem::TooManyCpus { in_tree: 16 }]
    );
}

#[test]
fn qemu_psci_conduit_is_hvc_except_with_virtualization_on() {
    for (name, blob, _) in QEMU_TREES {
        let p = parse_ok(name, blob, QEMU_DTB_AT, Board::QemuVirt);
        // virtualization=on gives the guest EL2, so PSCI is QEMU's EL3 firmware: method "smc".
        let expected = if blob == EL2_SMP4 {
            PsciConduit::Smc
        } else {
            PsciConduit::Hvc
        };
        assert_eq!(p.psci, Some(expected), "{name}");
    }
}

#[test]
fn qemu_uart_is_the_pl011_at_0x9000000_with_spi_1_and_a_24mhz_clock() {
    for (name, blob, _) in QEMU_TREES {
        let p = parse_ok(name, blob, QEMU_DTB_AT, Board::QemuVirt);
        // pl011@9000000: reg <0 0x9000000 0 0x1000>, interrupts <0 1 4> (SPI 1 = INTID 33),
        // clocks -> apb-pclk, a fixed-clock of 0x16e3600 Hz.
        assert_eq!(
            p.uart,
            Uart {
                regs: Region::new(0x0900_0000, 0x1000),
                irq: Some(33),
                clock_hz: 24_000_000
            },
            "{name}"
        );
    }
}

#[test]
fn qemu_gic_version_and_addresses_match_the_tree() {
    let v2 = Gic::V2 {
        distributor: Region::new(0x0800_0000, 0x1_0000),
        cpu_interface: Region::new(0x0801_0000, 0x1_0000),
    };
    // intc@8000000 with arm,gic-v3: reg <0 0x8000000 0 0x10000 0 0x80a0000 0 0xf60000>.
    let v3 = Gic::V3 {
        distributor: Region::new(0x0800_0000, 0x1_0000),
        redistributors: Region::new(0x080a_0000, 0xf6_0000),
    };
    for (name, blob, _) in QEMU_TREES {
        let p = parse_ok(name, blob, QEMU_DTB_AT, Board::QemuVirt);
        // The EL2 tree is GICv2 too, with the hypervisor and virtual CPU interfaces as reg 2
        // and 3, which quartet does not use.
        let expected = if name.contains("gicv3") { v3 } else { v2 };
        assert_eq!(p.gic, Some(expected), "{name}");
    }
}

#[test]
fn qemu_timer_intids_are_the_architected_ppis() {
    for (name, blob, _) in QEMU_TREES {
        let p = parse_ok(name, blob, QEMU_DTB_AT, Board::QemuVirt);
        assert_eq!(p.timer, Some(ARCH_TIMER), "{name}");
    }
}

#[test]
fn qemu_memory_is_512mib_at_1gib_and_the_dtb_is_reserved() {
    for (name, blob, _) in QEMU_TREES {
        let p = parse_ok(name, blob, QEMU_DTB_AT, Board::QemuVirt);
        assert_eq!(
            p.memory.as_slice(),
            &[Region::new(0x4000_0000, 0x2000_0000)],
            "{name}"
        );
        // No /memreserve/ and no /reserved-memory in QEMU's trees: the DTB is the only range.
        assert_eq!(
            p.reserved.as_slice(),
            &[Region::new(QEMU_DTB_AT, blob.len() as u64)],
            "{name}"
        );
    }
}

#[test]
fn a_disabled_memory_node_is_not_ram() {
    // secram@e000000: device_type "memory", reg <0 0xe000000 0 0x1000000>, status "disabled",
    // secure-status "okay". The normal world must not use it; the heap writing there aborts.
    let p = parse_ok(
        "virt-secure-smp4",
        SECURE_SMP4,
        QEMU_DTB_AT,
        Board::QemuVirt,
    );
    assert_eq!(
        p.memory.as_slice(),
        &[Region::new(0x4000_0000, 0x2000_0000)]
    );
    // Its secure-only PL011 (pl011@9040000, also disabled) is not the console either.
    assert_eq!(p.uart.regs, Region::new(0x0900_0000, 0x1000));
    assert_sane(&p, &|| "virt-secure-smp4".into());
}

#[test]
fn qemu_mmio_regions_are_the_uart_and_gic() {
    let p = parse_ok("virt-gicv3-smp4", GICV3_SMP4, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(
        p.mmio_regions().as_slice(),
        &[
            Region::new(0x0900_0000, 0x1000),
            Region::new(0x0800_0000, 0x1_0000),
            Region::new(0x080a_0000, 0xf6_0000)
        ]
    );
    assert_eq!(p.gpio, None, "QEMU has no BCM2711 GPIO");
}

#[test]
fn a_qemu_tree_parsed_for_the_pi_keeps_the_tree_and_fills_no_mmio_gap() {
    // The tree wins over the board; the board would supply what the tree lacks (here the GPIO
    // block, which QEMU virt does not have), but only on a board of its own family.
    let p = parse_ok(
        "virt-gicv2-smp4",
        GICV2_SMP4,
        QEMU_DTB_AT,
        Board::RaspberryPi4,
    );
    assert_eq!(p.uart.regs, Region::new(0x0900_0000, 0x1000));
    assert_eq!(p.cpus.len(), 4);
    // Not the Pi's GPIO address, though: the tree names another board (linux,dummy-virt), and
    // on it 0xfe20_0000 is not a GPIO block.
    assert_eq!(p.gpio, None);
    assert_eq!(
        p.problems.as_slice(),
        &[Problem::NotOnThisBoard(
            "GPIO controller (brcm,bcm2711-gpio)"
        )]
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The Raspberry Pi 4 tree.

#[test]
fn pi_tree_cpus_use_spin_table_with_their_release_addresses() {
    let blob = pi_dtb();
    let p = parse_ok("bcm2711-rpi-4-b", &blob, PI_DTB_AT, Board::RaspberryPi4);
    assert_eq!(p.model, "Raspberry Pi 4 Model B");
    assert_eq!(p.cpus_in_tree, 4);
    let expected: Vec<CpuDesc> = [(0, 0xd8), (1, 0xe0), (2, 0xe8), (3, 0xf0)]
        .into_iter()
        .map(|(mpidr, release_addr)| CpuDesc {
            mpidr,
            method: EnableMethod::SpinTable { release_addr },
        })
        .collect();
    assert_eq!(p.cpus.as_slice(), expected.as_slice());
    // No CPU uses PSCI and the tree has no /psci: none is invented.
    assert_eq!(p.psci, None);
}

#[test]
fn pi_tree_addresses_are_translated_through_soc_ranges() {
    let blob = pi_dtb();
    let p = parse_ok("bcm2711-rpi-4-b", &blob, PI_DTB_AT, Board::RaspberryPi4);
    // serial@7e201000 on /soc, whose ranges map 0x7e000000 -> 0xfe000000; interrupts <0 0x79 4>
    // is SPI 121 = INTID 153. Its clock is the cprman's, not a fixed-clock, so the rate is the
    // board's 48 MHz.
    assert_eq!(
        p.uart,
        Uart {
            regs: Region::new(0xfe20_1000, 0x200),
            irq: Some(153),
            clock_hz: 48_000_000
        }
    );
    // interrupt-controller@40041000 (gic-400), via 0x40000000 -> 0xff800000.
    assert_eq!(
        p.gic,
        Some(Gic::V2 {
            distributor: Region::new(0xff84_1000, 0x1000),
            cpu_interface: Region::new(0xff84_2000, 0x2000),
        })
    );
    // gpio@7e200000: reg <0x7e200000 0xb4>.
    assert_eq!(p.gpio, Some(Region::new(0xfe20_0000, 0xb4)));
    assert_eq!(p.timer, Some(ARCH_TIMER));
    let mmio = p.mmio_regions();
    for r in [0xfe20_1000, 0xff84_1000, 0xff84_2000, 0xfe20_0000] {
        assert!(
            mmio.as_slice().iter().any(|m| m.start == r),
            "{r:#x} not mapped as MMIO"
        );
    }
}

#[test]
fn pi_tree_reserves_the_spin_table_page_memreserve_and_itself() {
    let blob = pi_dtb();
    let p = parse_ok("bcm2711-rpi-4-b", &blob, PI_DTB_AT, Board::RaspberryPi4);
    let reserved = p.reserved.as_slice();
    // /memreserve/ 0x0 0x1000 in the tree and the page holding cpu-release-addr 0xd8..0xf0 are
    // the same range; the point is that the armstub page can never be handed out.
    assert!(reserved.contains(&Region::new(0, 0x1000)), "{reserved:x?}");
    for release in [0xd8, 0xe0, 0xe8, 0xf0] {
        assert!(
            reserved.iter().any(|r| r.contains(release)),
            "release address {release:#x} not reserved"
        );
    }
    assert!(
        reserved.contains(&Region::new(PI_DTB_AT, blob.len() as u64)),
        "{reserved:x?}"
    );
    // nvram@0 under /reserved-memory has size 0 (and is disabled): nothing to reserve.
    assert!(reserved.iter().all(|r| r.size > 0), "{reserved:x?}");
}

#[test]
fn reserved_ranges_are_listed_once_however_often_the_tree_names_them() {
    // The armstub page is named five times: /memreserve/ 0x0 0x1000, and the page of each of
    // the four cpu-release-addr values.
    let blob = pi_dtb();
    let p = parse_ok("bcm2711-rpi-4-b", &blob, PI_DTB_AT, Board::RaspberryPi4);
    let reserved = p.reserved.as_slice();
    let armstub = Region::new(0, 0x1000);
    assert_eq!(
        reserved.iter().filter(|r| r.overlaps(&armstub)).count(),
        1,
        "{reserved:x?}"
    );
    for (i, a) in reserved.iter().enumerate() {
        for b in &reserved[i + 1..] {
            assert!(
                a.end() < b.start || b.end() < a.start,
                "{a:x?} and {b:x?} overlap or touch: {reserved:x?}"
            );
        }
    }
}

#[test]
fn overlapping_and_touching_reservations_become_one_range() {
    let edited = with_memreserves(
        GICV2_SMP4,
        &[
            (0x4800_1000, 0x2000),
            (0x4800_0000, 0x1000), // touches the first
            (0x4800_0800, 0x100),  // inside
            (0x4800_2800, 0x1800), // overlaps the end
            (0x5000_0000, 0x1000), // apart
        ],
    );
    let p = parse_ok("merging memreserves", &edited, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(
        p.reserved.as_slice(),
        &[
            Region::new(QEMU_DTB_AT, edited.len() as u64),
            Region::new(0x4800_0000, 0x4000),
            Region::new(0x5000_0000, 0x1000),
        ]
    );
}

#[test]
fn a_memory_range_of_size_zero_beside_real_ram_is_left_out_and_noted() {
    // The secure tree's secram node, enabled and with its size zeroed: a memory node a loader
    // left unfilled, next to the RAM QEMU filled in.
    let mut edited = SECURE_SMP4.to_vec();
    let status = find_prop(SECURE_SMP4, "secram@e000000", "status");
    edited[status.value..status.value + status.len].copy_from_slice(b"okay\0\0\0\0\0");
    let reg = find_prop(SECURE_SMP4, "secram@e000000", "reg");
    put_be32(&mut edited, reg.value + 12, 0);
    let p = parse_ok("secram of size 0", &edited, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(
        p.memory.as_slice(),
        &[Region::new(0x4000_0000, 0x2000_0000)]
    );
    assert!(
        p.problems
            .as_slice()
            .contains(&Problem::MemoryLeftEmpty { at: 0x0e00_0000 }),
        "{:?}",
        p.problems
    );
}

#[test]
fn pi_tree_memory_of_size_zero_falls_back_to_the_board_default() {
    let blob = pi_dtb();
    let p = parse_ok("bcm2711-rpi-4-b", &blob, PI_DTB_AT, Board::RaspberryPi4);
    // memory@0 is reg <0 0 0>: the firmware fills the size in at boot, this file has none.
    assert_eq!(
        p.memory.as_slice(),
        Platform::defaults(Board::RaspberryPi4).memory.as_slice()
    );
    assert_eq!(p.memory.as_slice(), &[Region::new(0, 0x3b40_0000)]);
    // And that is the tree's only shortcoming, said twice: which node was left empty (by the
    // loader that passed the tree on unfilled), and what RAM quartet assumes instead.
    assert_eq!(
        p.problems.as_slice(),
        &[
            Problem::MemoryLeftEmpty { at: 0 },
            Problem::Missing("memory node with a non-zero size")
        ]
    );
    assert_eq!(p.bootargs, "");
    assert_sane(&p, &|| "bcm2711-rpi-4-b".into());
}

#[test]
fn a_pi5_tree_gets_no_pi4_address_for_what_it_lacks() {
    // The Pi 4 build on a Pi 5: the tree's own devices are used, translated through its /soc
    // ranges (0x7d001000 -> 0x10_7d00_1000); the BCM2711 GPIO block it lacks must not be
    // assumed at the Pi 4's 0xfe20_0000, which on this board is something else.
    let p = parse_ok("pi5-like", PI5_LIKE, PI_DTB_AT, Board::RaspberryPi4);
    assert_eq!(
        p.uart,
        Uart {
            regs: Region::new(0x10_7d00_1000, 0x200),
            irq: Some(153),
            clock_hz: 9_216_000
        }
    );
    assert_eq!(
        p.gic,
        Some(Gic::V2 {
            distributor: Region::new(0x10_7fff_9000, 0x1000),
            cpu_interface: Region::new(0x10_7fff_a000, 0x2000),
        })
    );
    assert_eq!(p.psci, Some(PsciConduit::Smc));
    let mpidrs: Vec<u64> = p.cpus.as_slice().iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs, [0x000, 0x100, 0x200, 0x300]);
    assert_eq!(p.gpio, None, "the Pi 4's GPIO address on a Pi 5");
    let pi4_gpio = Platform::defaults(Board::RaspberryPi4).gpio.unwrap();
    assert!(
        !p.mmio_regions()
            .as_slice()
            .iter()
            .any(|r| r.overlaps(&pi4_gpio)),
        "{:x?}",
        p.mmio_regions()
    );
    assert_eq!(
        p.problems.as_slice(),
        &[Problem::NotOnThisBoard(
            "GPIO controller (brcm,bcm2711-gpio)"
        )]
    );
}

#[test]
fn a_pi4_family_tree_without_gpio_still_gets_the_pi4_address() {
    // Same family (compatible brcm,bcm2711: the 4 B, the 400, the CM4): the default is right.
    let blob = pi_dtb();
    let edited = patch_all(&blob, b"brcm,bcm2711-gpio", b"brcm,bcm2711-xpio");
    let p = parse_ok("rpi4 without gpio", &edited, PI_DTB_AT, Board::RaspberryPi4);
    assert_eq!(p.gpio, Platform::defaults(Board::RaspberryPi4).gpio);
    assert!(
        p.problems
            .as_slice()
            .contains(&Problem::Missing("GPIO controller (brcm,bcm2711-gpio)"))
    );
}

#[test]
fn a_tree_of_another_board_without_a_uart_or_gic_gets_no_default_address() {
    // The Pi 5 tree with its PL011 and GIC-400 renamed: neither the Pi 4's UART nor its GIC
    // address may be written on it. No console and no interrupts, said in the log, beats
    // writing to whatever lives at 0xfe20_1000 and 0xff84_1000 on this board.
    let edited = patch_all(
        &patch_all(PI5_LIKE, b"arm,pl011", b"arm,xl011"),
        b"arm,gic-400",
        b"arm,xic-400",
    );
    let p = parse_ok(
        "pi5-like, no uart or gic",
        &edited,
        PI_DTB_AT,
        Board::RaspberryPi4,
    );
    assert_eq!(p.uart.regs, Region::default());
    assert_eq!(p.gic, None);
    assert!(p.problems.as_slice().contains(&Problem::NotOnThisBoard(
        "enabled PL011 UART (compatible arm,pl011)"
    )));
    assert!(p.mmio_regions().as_slice().iter().all(|r| r.size == 0));
}

// ---------------------------------------------------------------------------------------------
// 3. Damaged and edited trees.

#[test]
fn every_truncation_is_rejected_by_size() {
    for (name, blob, _) in QEMU_TREES {
        for len in 0..blob.len() {
            let got = parse(&blob[..len], QEMU_DTB_AT, Board::QemuVirt).map(|_| ());
            let expected = if len < 40 {
                BlobError::TooShort
            } else {
                BlobError::Truncated {
                    total_size: blob.len(),
                    available: len,
                }
            };
            assert_eq!(got, Err(expected), "{name} cut to {len} bytes");
        }
    }
}

/// `blob` with free space after its blocks, `total_size` in all: what libfdt's fdt_open_into
/// makes of a tree so it can be edited in place (QEMU does it to every -dtb file).
fn with_free_space(blob: &[u8], total_size: usize) -> Vec<u8> {
    let mut grown = blob.to_vec();
    grown.resize(total_size, 0);
    put_be32(&mut grown, 4, total_size as u32);
    grown
}

#[test]
fn a_tree_grown_past_2_mib_by_qemu_is_accepted_whole() {
    // QEMU's dump is padded to 1 MiB; passed back with -dtb it becomes 2 x (1 MiB + 10000)
    // bytes, a header with totalsize 0x204e20 over 8 KiB of tree.
    let total = 2 * ((1 << 20) + 10000);
    let grown = with_free_space(GICV3_SMP4, total);
    let extent = super::validate::extent(&grown).expect("a valid header");
    assert_eq!(extent.total_size, total);
    assert!(extent.data_end <= GICV3_SMP4.len(), "{extent:?}");
    let p = parse_ok(
        "grown virt-gicv3-smp4",
        &grown,
        QEMU_DTB_AT,
        Board::QemuVirt,
    );
    assert_eq!(p.problems.as_slice(), &[]);
    assert_eq!(p.cpus_in_tree, 4);
    assert!(matches!(p.gic, Some(Gic::V3 { .. })));
    // All of it is the loader's blob: reserved whole, free space included.
    assert_eq!(
        p.source,
        Source::DeviceTree {
            address: QEMU_DTB_AT,
            size: total as u64
        }
    );
    assert_eq!(
        p.reserved.as_slice(),
        &[Region::new(QEMU_DTB_AT, total as u64)]
    );
}

#[test]
fn blocks_beyond_what_quartet_reads_are_refused_by_the_header_alone() {
    // A header whose strings block starts 3 MiB in: the bytes there are never touched (the
    // header is all `extent` reads), and the reason is the distance, not a truncation.
    let mut far = GICV2_SMP4.to_vec();
    put_be32(&mut far, 4, 4 << 20);
    put_be32(&mut far, 12, 3 << 20);
    let error = BlobError::BlocksTooFar {
        data_end: (3 << 20) + be32(GICV2_SMP4, 32) as usize,
        limit: super::validate::MAX_DTB_DATA,
    };
    assert_eq!(super::validate::extent(&far[..40]), Err(error));
    assert_eq!(
        parse(&far, QEMU_DTB_AT, Board::QemuVirt).map(|_| ()),
        Err(error)
    );
    assert!(error.to_string().contains("before it knows where RAM ends"));
}

#[test]
fn truncation_with_a_matching_header_never_panics() {
    // Firmware that copies a tree into a too-small buffer and fixes up the header to match: the
    // header is self-consistent, so validation has to find the damage in the blocks themselves
    // (a structure block cut mid-node, a strings block cut mid-name).
    let pi = pi_dtb();
    let trees = QEMU_TREES
        .iter()
        .map(|&(n, b, _)| (n, b))
        .chain([("rpi4", pi.as_slice())]);
    let mut failures = Vec::new();
    let mut accepted = 0;
    for (name, blob) in trees {
        let (off_struct, off_strings) = (be32(blob, 8) as usize, be32(blob, 12) as usize);
        // dtc lays out header, reservations, structure, strings; the cuts below rely on it.
        assert!(off_struct < off_strings, "{name}: unexpected block order");
        for len in off_struct..blob.len() {
            let mut copy = blob[..len].to_vec();
            put_be32(&mut copy, 4, len as u32);
            if len >= off_strings {
                put_be32(&mut copy, 32, (len - off_strings) as u32);
            } else {
                put_be32(&mut copy, 12, len as u32);
                put_be32(&mut copy, 32, 0);
                put_be32(&mut copy, 36, (len - off_struct) as u32);
            }
            let board = if name == "rpi4" {
                Board::RaspberryPi4
            } else {
                Board::QemuVirt
            };
            match parse_no_panic(&copy, board, &|| format!("{name} cut to {len}")) {
                Ok(ok) => accepted += usize::from(ok),
                Err(e) => failures.push(e),
            }
        }
    }
    assert_no_failures("truncated with fixed header", failures);
    // A cut structure block loses its FDT_END; a cut strings block loses a name, and dtc stores
    // only names some property uses. So every cut must be caught, none accepted.
    assert_eq!(accepted, 0, "a truncated tree was accepted");
}

#[test]
fn bad_magic_and_old_versions_are_rejected() {
    for bit in 0..32 {
        let mut copy = GICV2_SMP4.to_vec();
        let magic = 0xd00d_feed_u32 ^ (1 << bit);
        put_be32(&mut copy, 0, magic);
        assert_eq!(
            parse(&copy, QEMU_DTB_AT, Board::QemuVirt).map(|_| ()),
            Err(BlobError::BadMagic(magic))
        );
    }
    let mut copy = GICV2_SMP4.to_vec();
    put_be32(&mut copy, 20, 15);
    assert_eq!(
        parse(&copy, QEMU_DTB_AT, Board::QemuVirt).map(|_| ()),
        Err(BlobError::UnsupportedVersion(15))
    );
    // A blob of zeros, as from x0 pointing at cleared RAM.
    assert_eq!(
        parse(&[0; 4096], QEMU_DTB_AT, Board::QemuVirt).map(|_| ()),
        Err(BlobError::BadMagic(0))
    );
}

/// Flip every `stride`th byte of `blob` with each of `masks` and parse each copy.
fn flip_sweep(
    name: &str,
    blob: &[u8],
    board: Board,
    stride: usize,
    masks: &[u8],
) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let mut rejected = 0;
    let mut copy = blob.to_vec();
    for at in (0..blob.len()).step_by(stride) {
        for &mask in masks {
            copy[at] ^= mask;
            match parse_no_panic(&copy, board, &|| {
                format!("{name}: byte {at:#x} ^ {mask:#04x}")
            }) {
                Ok(true) => {}
                Ok(false) => rejected += 1,
                Err(e) => failures.push(e),
            }
            copy[at] ^= mask;
        }
    }
    (rejected, failures)
}

#[test]
fn byte_flips_anywhere_in_qemu_trees_never_panic() {
    // 0x01, 0x07 and 0x06 turn tokens into their neighbours (BEGIN_NODE^5, PROP^7 and
    // END_NODE^6 are all FDT_NOP); 0x80 and 0xff make huge lengths, offsets and cell counts.
    // Every byte of one GICv2 and one GICv3 tree with the token-turning masks, a sparser
    // sweep of every tree with other masks: enough to hit every token and header field kind
    // while keeping `make test` fast.
    let masks = [0x01, 0x06, 0x07, 0xff];
    let mut failures = Vec::new();
    for (name, blob, stride) in [
        ("virt-gicv2-smp4", GICV2_SMP4, 1),
        ("virt-gicv3-smp16", GICV3_SMP16, 3),
    ] {
        let (rejected, f) = flip_sweep(name, blob, Board::QemuVirt, stride, &masks);
        failures.extend(f);
        // Header and token damage must be caught, not absorbed: plenty of flips are rejected.
        assert!(
            rejected > 300,
            "{name}: only {rejected} damaged copies rejected"
        );
    }
    for (name, blob, _) in QEMU_TREES {
        failures.extend(flip_sweep(name, blob, Board::QemuVirt, 13, &[0x04, 0x10, 0x5a]).1);
    }
    assert_no_failures("QEMU byte flips", failures);
}

#[test]
fn byte_flips_anywhere_in_the_pi_tree_never_panic() {
    let blob = pi_dtb();
    let (_, mut failures) = flip_sweep("rpi4", &blob, Board::RaspberryPi4, 4, &[0xff]);
    failures.extend(flip_sweep("rpi4", &blob, Board::RaspberryPi4, 11, &[0x01, 0x07, 0x80]).1);
    assert_no_failures("Pi byte flips", failures);
}

#[test]
fn a_tree_without_a_pl011_gets_the_board_default_uart() {
    let pi = pi_dtb();
    for (name, blob, board) in [
        ("virt-gicv2-smp4", GICV2_SMP4, Board::QemuVirt),
        ("virt-gicv3-smp4", GICV3_SMP4, Board::QemuVirt),
        ("rpi4", pi.as_slice(), Board::RaspberryPi4),
    ] {
        let edited = patch_all(blob, b"arm,pl011", b"arm,xl011");
        let p = parse_ok(name, &edited, QEMU_DTB_AT, board);
        assert_eq!(p.uart, Platform::defaults(board).uart, "{name}");
        assert!(
            p.problems.as_slice().contains(&Problem::Missing(
                "enabled PL011 UART (compatible arm,pl011)"
            )),
            "{name}: {:?}",
            p.problems.as_slice()
        );
        assert_sane(&p, &|| name.into());
    }
}

#[test]
fn a_tree_of_another_family_without_a_pl011_gets_no_uart_at_all() {
    // QEMU's tree given to the Pi build: the Pi 4's UART address means nothing on virt.
    let edited = patch_all(GICV2_SMP4, b"arm,pl011", b"arm,xl011");
    let p = parse_ok("virt as Pi", &edited, QEMU_DTB_AT, Board::RaspberryPi4);
    assert!(!p.uart.is_present(), "{:x?}", p.uart);
    assert!(p.problems.as_slice().contains(&Problem::NotOnThisBoard(
        "enabled PL011 UART (compatible arm,pl011)"
    )));
    assert_sane(&p, &|| "virt as Pi".into());
}

#[test]
fn a_tree_without_psci_falls_back_to_the_board_conduit() {
    for (name, blob) in [("virt-gicv2-smp4", GICV2_SMP4), ("virt-el2-smp4", EL2_SMP4)] {
        let edited = patch_all(blob, b"arm,psci", b"arm,xsci");
        let p = parse_ok(name, &edited, QEMU_DTB_AT, Board::QemuVirt);
        // The EL2 tree said smc; without its /psci the board's guess (hvc) is all there is.
        assert_eq!(p.psci, Some(PsciConduit::Hvc), "{name}");
        assert_eq!(
            p.problems.as_slice(),
            &[Problem::Missing(
                "/psci node, though CPUs use enable-method psci"
            )],
            "{name}"
        );
    }
}

#[test]
fn a_psci_method_other_than_hvc_or_smc_is_unusable_and_falls_back() {
    let mut edited = GICV2_SMP4.to_vec();
    let method = find_prop(GICV2_SMP4, "psci", "method");
    assert_eq!(
        &GICV2_SMP4[method.value..method.value + method.len],
        b"hvc\0"
    );
    edited[method.value] = b'x';
    let p = parse_ok("virt-gicv2-smp4", &edited, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(p.psci, Some(PsciConduit::Hvc));
    assert_eq!(
        p.problems.as_slice(),
        &[
            Problem::Unusable("/psci method (neither hvc nor smc)"),
            Problem::Missing("/psci node, though CPUs use enable-method psci"),
        ]
    );
}

#[test]
fn an_unknown_enable_method_on_a_secondary_is_reported() {
    let mut edited = GICV2_SMP4.to_vec();
    let method = find_prop(GICV2_SMP4, "cpu@2", "enable-method");
    assert_eq!(
        &GICV2_SMP4[method.value..method.value + method.len],
        b"psci\0"
    );
    edited[method.value] = b'x';
    let p = parse_ok("virt-gicv2-smp4", &edited, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(
        p.cpus.len(),
        4,
        "the CPU stays listed, so logical ids do not shift"
    );
    assert_eq!(p.cpus.as_slice()[2].method, EnableMethod::Unknown);
    assert_eq!(
        p.problems.as_slice(),
        &[Problem::UnknownEnableMethod { mpidr: 2 }]
    );
}

#[test]
fn nodes_deleted_in_place_fall_back_to_board_defaults() {
    // libfdt's fdt_nop_node overwrites a node with FDT_NOP tokens; firmware deletes nodes so.
    let qemu = Platform::defaults(Board::QemuVirt);
    let cases: [(&str, Problem); 4] = [
        (
            "intc@8000000",
            Problem::Missing("GIC (arm,gic-400, arm,cortex-a15-gic or arm,gic-v3)"),
        ),
        ("timer", Problem::Missing("timer (arm,armv8-timer)")),
        (
            "memory@40000000",
            Problem::Missing("memory node with a non-zero size"),
        ),
        ("cpus", Problem::Missing("/cpus node with CPUs in it")),
    ];
    for (node, problem) in cases {
        let edited = nop_node(GICV3_SMP4, node);
        let p = parse_ok(node, &edited, QEMU_DTB_AT, Board::QemuVirt);
        assert_eq!(p.problems.as_slice(), &[problem], "{node}");
        assert_sane(&p, &|| node.into());
        match node {
            "intc@8000000" => assert_eq!(p.gic, qemu.gic),
            "timer" => assert_eq!(p.timer, qemu.timer),
            "memory@40000000" => assert_eq!(p.memory.as_slice(), qemu.memory.as_slice()),
            _ => {
                assert_eq!(p.cpus.as_slice(), qemu.cpus.as_slice());
                assert_eq!(p.cpus_in_tree, qemu.cpus_in_tree);
            }
        }
    }
}

#[test]
fn properties_and_nodes_deleted_in_place_inside_a_node_never_panic() {
    // NOPs inside a node, between its properties or children, are legal FDT; fdt 0.1.5 asserts
    // on them while skipping the node. parse may reject such a tree, but must not panic, and if
    // it accepts it the result must be right.
    let cases = [
        (
            "pl011 clock-names",
            nop_property(GICV2_SMP4, "pl011@9000000", "clock-names"),
        ),
        (
            "pl031 clock-names",
            nop_property(GICV2_SMP4, "pl031@9010000", "clock-names"),
        ),
        (
            "cpu@1 phandle",
            nop_property(GICV2_SMP4, "cpu@1", "phandle"),
        ),
        (
            "cpu@3 device_type",
            nop_property(GICV2_SMP4, "cpu@3", "device_type"),
        ),
        (
            "apb-pclk compatible",
            nop_property(GICV2_SMP4, "apb-pclk", "compatible"),
        ),
        ("v2m", nop_node(GICV2_SMP4, "v2m@8020000")),
        ("cpu-map", nop_node(GICV2_SMP4, "cpu-map")),
        ("cpu@1", nop_node(GICV2_SMP4, "cpu@1")),
        ("cpu@3", nop_node(GICV2_SMP4, "cpu@3")),
    ];
    let mut accepted = 0;
    for (what, edited) in &cases {
        // Parsed for the Pi, whose default UART clock (48 MHz) differs from the tree's 24 MHz:
        // an accepted tree must still yield the clock from the tree.
        let result = catch_unwind(|| {
            parse(edited, QEMU_DTB_AT, Board::RaspberryPi4).map(|p| (p.uart, p.cpus.len()))
        });
        match result {
            Err(_) => panic!("{what} deleted: parse panicked"),
            Ok(Ok((uart, cpus))) => {
                accepted += 1;
                assert_eq!(
                    uart.regs,
                    Region::new(0x0900_0000, 0x1000),
                    "{what} deleted"
                );
                let clock_hz = if *what == "apb-pclk compatible" {
                    48_000_000
                } else {
                    24_000_000
                };
                assert_eq!(uart.clock_hz, clock_hz, "{what} deleted");
                let expected_cpus = if what.starts_with("cpu@") { 3 } else { 4 };
                assert_eq!(cpus, expected_cpus, "{what} deleted");
            }
            Ok(Err(e)) => assert!(
                matches!(e, BlobError::BadToken { token: 4, .. }),
                "{what} deleted: {e}"
            ),
        }
    }
    // NOPs right before a node's end are what fdt copes with, and those trees are read.
    assert!(
        accepted >= 3,
        "only {accepted} of the edited trees were accepted"
    );
}

#[test]
fn too_many_memreserves_still_reserve_the_dtb() {
    // The DTB must stay reserved whatever else the tree asks for: the Platform borrows its
    // strings (model, bootargs) for the life of the kernel.
    let entries: Vec<(u64, u64)> = (0..40)
        .map(|i| (0x5000_0000 + i * 0x10_0000, 0x1000))
        .collect();
    let edited = with_memreserves(GICV2_SMP4, &entries);
    let p = parse_ok("40 memreserves", &edited, QEMU_DTB_AT, Board::QemuVirt);
    assert!(
        p.reserved
            .as_slice()
            .contains(&Region::new(QEMU_DTB_AT, edited.len() as u64)),
        "{:x?}",
        p.reserved.as_slice()
    );
    assert!(
        p.problems
            .as_slice()
            .contains(&Problem::Overflow("reserved memory ranges"))
    );
}

#[test]
fn memreserves_are_read() {
    let edited = with_memreserves(
        GICV2_SMP4,
        &[(0x4800_0000, 0x2_0000), (0x5000_0000, 0x1000)],
    );
    let p = parse_ok("2 memreserves", &edited, QEMU_DTB_AT, Board::QemuVirt);
    for r in [
        Region::new(0x4800_0000, 0x2_0000),
        Region::new(0x5000_0000, 0x1000),
    ] {
        assert!(
            p.reserved.as_slice().contains(&r),
            "{:x?}",
            p.reserved.as_slice()
        );
    }
    assert_eq!(p.problems.as_slice(), &[]);
}

#[test]
fn a_ranges_entry_that_overflows_makes_the_uart_untranslatable_not_a_panic() {
    let blob = pi_dtb();
    let mut edited = blob.clone();
    // /soc ranges, first entry: child 0x7e000000 -> parent <0x0 0xfe000000>, size 0x1800000.
    let ranges = find_prop(&blob, "soc", "ranges");
    assert_eq!(be32(&blob, ranges.value + 8), 0xfe00_0000);
    put_be32(&mut edited, ranges.value + 4, 0xffff_ffff);
    put_be32(&mut edited, ranges.value + 8, 0xffff_ffff);
    let p = parse_ok("rpi4 bad ranges", &edited, PI_DTB_AT, Board::RaspberryPi4);
    assert_eq!(p.uart, Platform::defaults(Board::RaspberryPi4).uart);
    assert!(
        p.problems.as_slice().contains(&Problem::Unusable(
            "PL011 reg (not translatable to a CPU address)"
        )),
        "{:?}",
        p.problems.as_slice()
    );
}

#[test]
fn an_interrupt_number_that_overflows_is_no_interrupt_not_a_panic() {
    let mut edited = GICV2_SMP4.to_vec();
    let irq = find_prop(GICV2_SMP4, "pl011@9000000", "interrupts");
    assert_eq!(be32(GICV2_SMP4, irq.value + 4), 1);
    put_be32(&mut edited, irq.value + 4, 0xffff_fff0);
    let p = parse_ok("huge SPI", &edited, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(p.uart.irq, None);
    assert_eq!(p.uart.regs, Region::new(0x0900_0000, 0x1000));
}

// ---------------------------------------------------------------------------------------------
// 4. Bootargs.

/// A QEMU tree whose /chosen has bootargs: QEMU's trees have none (no -append), so this renames
/// /chosen's `stdout-path` to `bootargs` in the strings block and rewrites its value in place.
fn qemu_tree_with_bootargs(args: &str) -> Vec<u8> {
    let mut copy = GICV2_SMP4.to_vec();
    let value = find_prop(GICV2_SMP4, "chosen", "stdout-path");
    assert!(args.len() < value.len, "test helper: bootargs too long");
    copy[value.value..value.value + value.len].fill(0);
    copy[value.value..value.value + args.len()].copy_from_slice(args.as_bytes());
    let strings = be32(GICV2_SMP4, 12) as usize;
    let name_at = strings + be32(GICV2_SMP4, value.token + 8) as usize;
    assert_eq!(&copy[name_at..name_at + 12], b"stdout-path\0");
    copy[name_at..name_at + 12].copy_from_slice(b"bootargs\0\0\0\0");
    copy
}

#[test]
fn bootargs_are_read_from_chosen() {
    let blob = qemu_tree_with_bootargs("test smp=2");
    let p = parse_ok("bootargs", &blob, QEMU_DTB_AT, Board::QemuVirt);
    // The value's trailing NULs (the padding left by the shorter string) are not part of it.
    assert_eq!(p.bootargs, "test smp=2");
    assert!(p.has_bootarg("test"));
    assert_eq!(p.bootarg_value("smp"), Some("2"));
    assert_eq!(p.problems.as_slice(), &[]);
}

#[test]
fn bootargs_are_read_even_after_a_node_deleted_in_place() {
    // fdt's own find_node("/chosen") stops at the NOPs a deleted top-level node leaves behind.
    let blob = qemu_tree_with_bootargs("smp=2");
    let edited = nop_node(&blob, "pl061@9030000");
    let p = parse_ok("bootargs", &edited, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(p.bootargs, "smp=2");
}

fn with_bootargs(args: &'static str) -> Platform<'static> {
    let mut p = Platform::defaults(Board::QemuVirt);
    p.bootargs = args;
    p
}

#[test]
fn bootargs_match_whole_words_and_keys() {
    let p = with_bootargs("test smp=4 log=debug");
    assert!(p.has_bootarg("test"));
    assert!(
        p.has_bootarg("smp"),
        "a key=value argument counts as present"
    );
    assert!(p.has_bootarg("log"));
    assert_eq!(p.bootarg_value("smp"), Some("4"));
    assert_eq!(p.bootarg_value("log"), Some("debug"));
    assert_eq!(
        p.bootarg_value("test"),
        Some(""),
        "a bare word has an empty value"
    );
}

#[test]
fn bootargs_do_not_match_prefixes_suffixes_or_values() {
    let p = with_bootargs("test smp=4 log=debug");
    for absent in [
        "tests", "tes", "est", "sm", "smp4", "debug", "4", "lo", "logs", "absent", "",
    ] {
        assert!(!p.has_bootarg(absent), "{absent:?} matched");
        assert_eq!(p.bootarg_value(absent), None, "{absent:?}");
    }
    let p = with_bootargs("tests smpx=2");
    assert!(
        !p.has_bootarg("test"),
        "\"tests\" must not satisfy \"test\""
    );
    assert!(!p.has_bootarg("smp"));
}

#[test]
fn bootargs_handle_odd_spacing_empty_values_and_equals_in_values() {
    let p = with_bootargs("  \tquiet\n log=  root=LABEL=boot  ");
    assert!(p.has_bootarg("quiet"));
    assert_eq!(p.bootarg_value("log"), Some(""));
    assert_eq!(
        p.bootarg_value("root"),
        Some("LABEL=boot"),
        "only the first '=' splits"
    );
    let p = with_bootargs("smp=2 smp=4");
    assert_eq!(
        p.bootarg_value("smp"),
        Some("2"),
        "the first occurrence wins"
    );
    let p = with_bootargs("");
    assert!(!p.has_bootarg("test"));
    assert_eq!(p.bootarg_value("smp"), None);
}

// ---------------------------------------------------------------------------------------------
// 4b. Without a tree: what the CPU and PSCI tell instead.

const GICV3_CPU_AT_EL1: CpuFacts = CpuFacts {
    gic_system_registers: true,
    entry_el: 1,
};
const GICV2_CPU_AT_EL2: CpuFacts = CpuFacts {
    gic_system_registers: false,
    entry_el: 2,
};

/// QEMU's PSCI as the kernel sees it on a machine with `cpus` CPUs (MPIDR = index): CPU 0 is on
/// (it asks), the others off; an MPIDR no CPU has is INVALID_PARAMETERS.
fn qemu_affinity_info(cpus: u64) -> impl FnMut(u64) -> i64 {
    move |mpidr| match mpidr {
        0 => 0,
        m if m < cpus => 1,
        _ => -2,
    }
}

#[test]
fn without_a_tree_the_gic_version_and_psci_conduit_come_from_the_cpu() {
    // The CPU interface a GICv2 driver writes (0x0801_0000) does not exist on a GICv3 virt: a
    // guessed GICv2 aborted every CPU there. The GIC the tree would have named is the one
    // the CPU's ID register announces.
    let problem = Problem::NoDeviceTree { x0: 0 };
    let v3 = Platform::fallback(Board::QemuVirt, GICV3_CPU_AT_EL1, problem);
    let tree_v3 = parse_ok("virt-gicv3-smp4", GICV3_SMP4, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(v3.gic, tree_v3.gic);
    assert_eq!(v3.psci, Some(PsciConduit::Hvc));
    let v2 = Platform::fallback(Board::QemuVirt, GICV2_CPU_AT_EL2, problem);
    let tree_el2 = parse_ok("virt-el2-smp4", EL2_SMP4, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(v2.gic, tree_el2.gic);
    // Entered at EL2, quartet owns EL2: QEMU answers PSCI as EL3 firmware, through smc.
    assert_eq!(v2.psci, tree_el2.psci);
    assert_eq!(v2.psci, Some(PsciConduit::Smc));
    // Each choice is in the log, after the reason there are choices at all.
    assert_eq!(v3.problems.as_slice()[0], problem);
    for (p, words) in [(&v3, ["GICv3", "hvc"]), (&v2, ["GICv2", "smc"])] {
        for word in words {
            assert!(
                p.problems
                    .as_slice()
                    .iter()
                    .any(|q| matches!(q, Problem::FromTheCpu(w) if w.contains(word))),
                "{word}: {:?}",
                p.problems
            );
        }
    }
    // The Pi has a GIC-400 whatever the CPU says, and no PSCI.
    let pi = Platform::fallback(Board::RaspberryPi4, GICV3_CPU_AT_EL1, problem);
    assert_eq!(pi.gic, Platform::defaults(Board::RaspberryPi4).gic);
    assert_eq!(pi.psci, None);
    assert_eq!(pi.problems.as_slice(), &[problem]);
}

#[test]
fn without_a_tree_psci_says_which_candidate_cpus_exist() {
    let mut p = Platform::fallback(
        Board::QemuVirt,
        GICV3_CPU_AT_EL1,
        Problem::NoDeviceTree { x0: 0 },
    );
    assert_eq!(p.cpus.len(), MAX_CPUS, "eight candidates");
    p.keep_cpus_psci_knows(qemu_affinity_info(4));
    let mpidrs: Vec<u64> = p.cpus.as_slice().iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs, [0, 1, 2, 3]);
    // The contract line then says 4/4, not 4/8.
    assert_eq!(p.cpus_in_tree, 4);
    assert!(
        p.problems
            .as_slice()
            .contains(&Problem::CpusFromPsci { found: 4, tried: 8 })
    );
    // Asked again, nothing is guessed any more: PSCI is not consulted.
    p.keep_cpus_psci_knows(|_| panic!("asked PSCI about CPUs a list already settled"));
}

#[test]
fn psci_that_cannot_tell_leaves_the_candidates_to_cpu_on() {
    // PSCI 0.1 has no AFFINITY_INFO: NOT_SUPPORTED (-1). Nothing is dropped on its word.
    let mut p = Platform::defaults(Board::QemuVirt);
    p.keep_cpus_psci_knows(|_| -1);
    assert_eq!(p.cpus.len(), MAX_CPUS);
    assert!(p.problems.is_empty());
    // And an answer that even the asking CPU is absent is not believed.
    p.keep_cpus_psci_knows(|_| -2);
    assert_eq!(p.cpus.len(), MAX_CPUS);
}

#[test]
fn a_tree_s_cpu_list_is_never_second_guessed_but_a_missing_one_is() {
    let mut listed = parse_ok("virt-gicv2-smp2", GICV2_SMP2, QEMU_DTB_AT, Board::QemuVirt);
    listed.keep_cpus_psci_knows(|_| panic!("asked PSCI about CPUs the tree listed"));
    assert_eq!(listed.cpus.len(), 2);
    // A tree whose /cpus was deleted in place: the candidates come from the defaults and are
    // checked like the defaults' own.
    let edited = nop_node(GICV2_SMP2, "cpus");
    let mut p = parse_ok("no cpus", &edited, QEMU_DTB_AT, Board::QemuVirt);
    p.keep_cpus_psci_knows(qemu_affinity_info(2));
    assert_eq!(p.cpus.len(), 2);
    assert_eq!(p.cpus_in_tree, 2);
}

#[test]
fn a_tree_without_a_gic_gets_the_gic_the_cpu_announces() {
    let edited = nop_node(GICV3_SMP4, "intc@8000000");
    let p = super::dt::parse_with(
        &edited,
        QEMU_DTB_AT,
        &Platform::defaults_for(Board::QemuVirt, GICV3_CPU_AT_EL1),
    )
    .unwrap();
    let tree = parse_ok("virt-gicv3-smp4", GICV3_SMP4, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(p.gic, tree.gic);
}

// ---------------------------------------------------------------------------------------------
// 5. What boot prints about each problem.

/// Words each problem's message must contain: what quartet does about it. The match has no
/// wildcard, so a new variant does not compile until its message is checked here.
fn consequence(problem: &Problem) -> Option<&'static str> {
    match problem {
        Problem::None => None,
        Problem::NoDeviceTree { .. }
        | Problem::NoDeviceTreeAtRamStart { .. }
        | Problem::InvalidBlob { .. } => Some("using the compiled-in"),
        Problem::Missing(_) | Problem::Unusable(_) => Some("default"),
        Problem::NotOnThisBoard(_) => Some("none is used"),
        Problem::TooManyCpus { .. } => Some("the rest stay off"),
        Problem::UnknownEnableMethod { .. } => Some("it will stay off"),
        Problem::Overflow(_) => Some("extra ones ignored"),
        Problem::MemoryLeftEmpty { .. } => Some("left out"),
        Problem::FromTheCpu(_) => Some("with no device tree to say"),
        Problem::CpusFromPsci { .. } => Some("starting only those"),
    }
}

#[test]
fn every_problem_says_what_quartet_does_instead() {
    let board = Board::compiled().name();
    let supports = format!("supports {MAX_CPUS}");
    let problems = [
        (Problem::NoDeviceTree { x0: 0x1234 }, vec!["0x1234", board]),
        (
            Problem::NoDeviceTreeAtRamStart {
                ram_start: 0x4000_0000,
                kernel_start: 0x4020_0000,
            },
            vec![
                "x0 = 0x0",
                "0x40000000",
                "fits below the kernel at 0x40200000",
                board,
            ],
        ),
        (
            Problem::InvalidBlob {
                x0: 0x4000_0000,
                error: BlobError::BadMagic(0),
            },
            vec!["0x40000000", "bad magic 0x00000000", board],
        ),
        (
            Problem::Missing("timer (arm,armv8-timer)"),
            vec!["has no timer (arm,armv8-timer)", board],
        ),
        (
            Problem::Unusable("GICv2 reg"),
            vec!["GICv2 reg is unusable", board],
        ),
        (
            Problem::NotOnThisBoard("GPIO controller (brcm,bcm2711-gpio)"),
            vec![
                "has no GPIO controller",
                "names a board other than the",
                board,
            ],
        ),
        (
            Problem::TooManyCpus { in_tree: 16 },
            vec!["16 CPUs", &supports],
        ),
        (
            Problem::UnknownEnableMethod { mpidr: 0x103 },
            vec!["0x103", "psci", "spin-table"],
        ),
        (
            Problem::Overflow("memory ranges"),
            vec!["more memory ranges"],
        ),
        (
            Problem::MemoryLeftEmpty { at: 0 },
            vec!["at 0x0 has size 0", "fills in the size"],
        ),
        (
            Problem::FromTheCpu("GICv3 at the QEMU virt addresses"),
            vec!["GICv3 at the QEMU virt addresses"],
        ),
        (
            Problem::CpusFromPsci { found: 4, tried: 8 },
            vec!["AFFINITY_INFO knows 4 of MPIDRs 0..7"],
        ),
    ];
    for (problem, details) in problems {
        let text = problem.to_string();
        let consequence = consequence(&problem).unwrap();
        assert!(
            text.contains(consequence),
            "{problem:?}: {text:?} does not say {consequence:?}"
        );
        for detail in details {
            assert!(
                text.contains(detail),
                "{problem:?}: {text:?} does not mention {detail:?}"
            );
        }
        // One sentence, as one log line.
        assert!(
            !text.contains('\n') && text.len() > 20,
            "{problem:?}: {text:?}"
        );
    }
    // Problem::None is only the filler of an empty FixedList slot (assert_sane checks parse
    // never records it); it has nothing to say.
    assert_eq!(consequence(&Problem::None), None);
    assert_eq!(Problem::None.to_string(), "");
}

#[test]
fn every_blob_error_names_the_damage() {
    let errors = [
        BlobError::TooShort,
        BlobError::BadMagic(0x1234),
        BlobError::Truncated {
            total_size: 100,
            available: 50,
        },
        BlobError::UnsupportedVersion(3),
        BlobError::BlockOutOfBounds("strings"),
        BlobError::BadToken {
            offset: 8,
            token: 7,
        },
        BlobError::BadName { offset: 8 },
        BlobError::PropertyOutOfBounds { offset: 8 },
        BlobError::BadCells { offset: 8 },
        BlobError::TooDeep,
        BlobError::Unbalanced,
        BlobError::BlocksTooFar {
            data_end: 3 << 20,
            limit: 2 << 20,
        },
    ];
    for e in errors {
        let text = e.to_string();
        assert!(text.len() > 10 && !text.contains('\n'), "{e:?}: {text:?}");
    }
}
