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
fn pi_tree_memory_of_size_zero_falls_back_to_the_board_default() {
    let blob = pi_dtb();
    let p = parse_ok("bcm2711-rpi-4-b", &blob, PI_DTB_AT, Board::RaspberryPi4);
    // memory@0 is reg <0 0 0>: the firmware fills the size in at boot, this file has none.
    assert_eq!(
        p.memory.as_slice(),
        Platform::defaults(Board::RaspberryPi4).memory.as_slice()
    );
    assert_eq!(p.memory.as_slice(), &[Region::new(0, 0x3b40_0000)]);
    // And that is the tree's only shortcoming.
    assert_eq!(
        p.problems.as_slice(),
        &[Problem::Missing("memory node with a non-zero size")]
    );
    assert_eq!(p.bootargs, "");
    assert_sane(&p, &|| "bcm2711-rpi-4-b".into());
}
