//! Device-tree tests, part 3: damaged and edited trees, which `parse` must reject or read into
//! a usable `Platform`, never panic on (chapter 2, "The device tree, the UART and logging").

use super::*;

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
