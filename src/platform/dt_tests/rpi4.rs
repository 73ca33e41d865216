//! Device-tree tests, part 2: the mainline Raspberry Pi 4 tree (chapter 2, "The device tree,
//! the UART and logging").

use super::*;

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

#[test]
fn pi_tree_mailbox_is_found_by_compatible_with_the_videocores_view_of_ram() {
    // mailbox@7e00b880 (brcm,bcm2835-mbox), reg <0x7e00b880 0x40>, through /soc's ranges; /soc's
    // dma-ranges <0xc0000000 0x0 0x0 0x40000000>: the VideoCore sees the low 1 GiB at 0xc0000000.
    // mailbox@7e00b840 (brcm,bcm2835-vchiq) is another device and must not be taken for it.
    for (name, file) in [
        ("Pi 4 B", "bcm2711-rpi-4-b.dtb"),
        ("Pi 400", "bcm2711-rpi-400.dtb"),
        ("CM4 IO", "bcm2711-rpi-cm4-io.dtb"),
    ] {
        let path = format!("{}/build/dtb/{file}", env!("CARGO_MANIFEST_DIR"));
        let blob = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}; run `tools/setup --rpi-dtb`"));
        let p = parse_ok(name, &blob, PI_DTB_AT, Board::RaspberryPi4);
        let mailbox = p.mailbox.unwrap_or_else(|| panic!("{name}: no mailbox"));
        assert_eq!(mailbox.regs, Region::new(0xfe00_b880, 0x40), "{name}");
        assert_eq!(
            mailbox.dma,
            DmaWindow {
                bus: 0xc000_0000,
                phys: 0,
                size: 0x4000_0000
            },
            "{name}"
        );
        assert!(
            p.mmio_regions().as_slice().contains(&mailbox.regs),
            "{name}: the mailbox is not mapped as MMIO"
        );
    }
}

#[test]
fn the_videocore_window_translates_only_the_low_gib() {
    let window = DmaWindow {
        bus: 0xc000_0000,
        phys: 0,
        size: 0x4000_0000,
    };
    assert_eq!(window.bus_address(0x8_0000, 256), Some(0xc008_0000));
    assert_eq!(window.bus_address(0x3fff_ff00, 256), Some(0xffff_ff00));
    // Straddling or beyond the end of the window: the VideoCore cannot reach it.
    assert_eq!(window.bus_address(0x3fff_ff80, 256), None);
    assert_eq!(window.bus_address(0x4000_0000, 4), None);
    assert_eq!(DmaWindow::IDENTITY.bus_address(0x8_0000, 4), Some(0x8_0000));
}

#[test]
fn a_pi_tree_without_dma_ranges_gives_the_mailbox_the_identity_view() {
    let blob = pi_dtb();
    let edited = patch_all(&blob, b"dma-ranges", b"dma-rangez");
    let p = parse_ok(
        "rpi4 without dma-ranges",
        &edited,
        PI_DTB_AT,
        Board::RaspberryPi4,
    );
    assert_eq!(p.mailbox.map(|m| m.dma), Some(DmaWindow::IDENTITY));
}

#[test]
fn a_pi_tree_without_the_mailbox_has_none_and_no_address_is_invented() {
    let blob = pi_dtb();
    let edited = patch_all(&blob, b"brcm,bcm2835-mbox", b"brcm,bcm2835-xbox");
    let p = parse_ok(
        "rpi4 without mailbox",
        &edited,
        PI_DTB_AT,
        Board::RaspberryPi4,
    );
    assert_eq!(p.mailbox, None);
    assert!(
        !p.mmio_regions()
            .as_slice()
            .iter()
            .any(|r| r.contains(0xfe00_b880))
    );
}
