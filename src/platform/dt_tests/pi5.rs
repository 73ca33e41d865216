//! Device-tree tests, part 8: the mainline Raspberry Pi 5 tree (BCM2712), as a Pi 4 build would
//! be handed it (chapter 2; the hardware appendix says what a Pi 5 build would still need).
//! Its CPUs are one to a cluster, MPIDR 0x000, 0x100, 0x200, 0x300: the case that logical ids
//! taken from Aff0 would get wrong.

use super::*;

const PI5_DTB_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/build/dtb/bcm2712-rpi-5-b.dtb");

fn pi5_dtb() -> Vec<u8> {
    std::fs::read(PI5_DTB_PATH).unwrap_or_else(|e| {
        panic!("cannot read {PI5_DTB_PATH}: {e}; run `tools/setup --rpi-dtb` to fetch the Raspberry Pi 5 device tree")
    })
}

#[test]
fn pi5_tree_has_four_cpus_one_per_cluster_started_by_psci_over_smc() {
    let blob = pi5_dtb();
    let p = parse_ok("bcm2712-rpi-5-b", &blob, PI_DTB_AT, Board::RaspberryPi4);
    assert_eq!(p.model, "Raspberry Pi 5");
    assert_eq!(p.cpus_in_tree, 4);
    let expected: Vec<CpuDesc> = [0x000, 0x100, 0x200, 0x300]
        .into_iter()
        .map(|mpidr| CpuDesc {
            mpidr,
            method: EnableMethod::Psci,
        })
        .collect();
    assert_eq!(p.cpus.as_slice(), expected.as_slice());
    for (id, cpu) in expected.iter().enumerate() {
        assert_eq!(p.logical_id(cpu.mpidr), Some(id), "MPIDR {:#x}", cpu.mpidr);
    }
    assert_eq!(p.psci, Some(PsciConduit::Smc));
}

#[test]
fn pi5_tree_pl011_and_gic400_are_found_behind_the_soc_ranges() {
    let blob = pi5_dtb();
    let p = parse_ok("bcm2712-rpi-5-b", &blob, PI_DTB_AT, Board::RaspberryPi4);
    // serial@7d001000 on soc@107c000000, whose ranges map 0x0 -> 0x10_0000_0000; interrupts
    // <0 0x79 4> is SPI 121 = INTID 153. Its clock is not a fixed-clock: the board default.
    assert_eq!(p.uart.regs, Region::new(0x10_7d00_1000, 0x200));
    assert_eq!(p.uart.irq, Some(153));
    // interrupt-controller@7fff9000, arm,gic-400: distributor, then CPU interface.
    assert_eq!(
        p.gic,
        Some(Gic::V2 {
            distributor: Region::new(0x10_7fff_9000, 0x1000),
            cpu_interface: Region::new(0x10_7fff_a000, 0x2000),
        })
    );
    assert_eq!(p.timer, Some(ARCH_TIMER));
    // A Pi 4 build on it: the BCM2711 GPIO block is not there, and no Pi 4 address is used.
    assert_eq!(p.gpio, None);
    assert_eq!(
        p.problems.as_slice(),
        &[Problem::NotOnThisBoard(
            "GPIO controller (brcm,bcm2711-gpio)"
        )]
    );
    assert_sane(&p, &|| "bcm2712-rpi-5-b".into());
}
