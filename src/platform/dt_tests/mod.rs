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

//!
//! This file holds what every group of tests shares: the trees, small FDT editing tools (what
//! firmware does to a tree in place), and the invariants every `Platform` must satisfy. The
//! tests are grouped by what they read: `qemu` (the QEMU trees), `rpi4` (the Raspberry Pi 4
//! tree), `damaged` (truncated, corrupted and edited trees), `bootargs` (/chosen's bootargs) and
//! `messages` (what boot prints about each problem).

mod bootargs;
mod damaged;
mod initrd;
mod messages;
mod no_tree;
mod pi5;
mod qemu;
mod rpi4;

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::dt::parse;
use super::validate::BlobError;
use super::*;

const GICV2_SMP1: &[u8] = include_bytes!("../../../tests/data/dtb/virt-gicv2-smp1.dtb");
const GICV2_SMP2: &[u8] = include_bytes!("../../../tests/data/dtb/virt-gicv2-smp2.dtb");
const GICV2_SMP4: &[u8] = include_bytes!("../../../tests/data/dtb/virt-gicv2-smp4.dtb");
const GICV2_SMP8: &[u8] = include_bytes!("../../../tests/data/dtb/virt-gicv2-smp8.dtb");
const GICV3_SMP4: &[u8] = include_bytes!("../../../tests/data/dtb/virt-gicv3-smp4.dtb");
const GICV3_SMP16: &[u8] = include_bytes!("../../../tests/data/dtb/virt-gicv3-smp16.dtb");
/// `-smp 64` (dumped, then compacted by `dtc -O dtb`): four clusters of 16.
const GICV3_SMP64: &[u8] = include_bytes!("../../../tests/data/dtb/virt-gicv3-smp64.dtb");
/// `-smp 200` (compacted likewise): QEMU adds a second redistributor region past 123 CPUs.
const GICV3_SMP200: &[u8] = include_bytes!("../../../tests/data/dtb/virt-gicv3-smp200.dtb");
/// The `-smp 8` GICv2 tree with cpu@8..cpu@11 added by hand (QEMU refuses GICv2 past 8).
const GICV2_SMP12_EDITED: &[u8] =
    include_bytes!("../../../tests/data/dtb/virt-gicv2-smp12-edited.dtb");
const EL2_SMP4: &[u8] = include_bytes!("../../../tests/data/dtb/virt-el2-smp4.dtb");
/// `-M virt,secure=on`: devices and RAM for the secure world, each with status = "disabled".
const SECURE_SMP4: &[u8] = include_bytes!("../../../tests/data/dtb/virt-secure-smp4.dtb");
/// A tree shaped like a Raspberry Pi 5's (bcm2712), written for these tests: pi5-like.dts.
const PI5_LIKE: &[u8] = include_bytes!("../../../tests/data/dtb/pi5-like.dtb");

/// `-initrd` with a 1000-byte file: /chosen has linux,initrd-start/-end, two cells each.
const INITRD_SMP4: &[u8] = include_bytes!("../../../tests/data/dtb/virt-initrd-smp4.dtb");

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
