//! Device-tree tests, part 1: the QEMU virt trees, one per GIC version, CPU count and EL2
//! setting (chapter 2, "The device tree, the UART and logging").

use super::*;

#[test]
fn every_qemu_tree_parses_without_problems() {
    for (name, blob, smp) in QEMU_TREES {
        let p = parse_ok(name, blob, QEMU_DTB_AT, Board::QemuVirt);
        // A tree with more CPUs than MAX_CPUS says so; every other tree has nothing to say.
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
        // clusters are 16 wide, so no tree here reaches Aff1; the 64-CPU test below does).
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
fn sixteen_cpu_tree_keeps_every_cpu_in_cluster_zero() {
    let p = parse_ok(
        "virt-gicv3-smp16",
        GICV3_SMP16,
        QEMU_DTB_AT,
        Board::QemuVirt,
    );
    assert_eq!(p.cpus_in_tree, 16);
    assert_eq!(p.cpus.len(), 16.min(MAX_CPUS));
    let mpidrs: Vec<u64> = p.cpus.as_slice().iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs, (0..16.min(MAX_CPUS) as u64).collect::<Vec<u64>>());
}

#[test]
fn sixty_four_cpu_tree_numbers_cpus_in_tree_order_across_four_clusters() {
    let p = parse_ok(
        "virt-gicv3-smp64",
        GICV3_SMP64,
        QEMU_DTB_AT,
        Board::QemuVirt,
    );
    assert_eq!(p.cpus_in_tree, 64);
    let kept = 64.min(MAX_CPUS);
    assert_eq!(p.cpus.len(), kept);
    // QEMU virt: 16 CPUs to an Aff1 cluster, listed cluster by cluster; the logical id is the
    // position in the tree, so cpu16 is MPIDR 0x100 (core 0 of cluster 1), not 0x10.
    for (id, cpu) in p.cpus.as_slice().iter().enumerate() {
        let expected = (((id / 16) << 8) | (id % 16)) as u64;
        assert_eq!(cpu.mpidr, expected, "cpu{id}");
        assert_eq!(p.logical_id(expected), Some(id));
        assert_eq!(cpu.method, EnableMethod::Psci);
    }
    let expected: &[Problem] = if 64 > MAX_CPUS {
        &[Problem::TooManyCpus { in_tree: 64 }]
    } else {
        &[]
    };
    assert_eq!(p.problems.as_slice(), expected);
    assert_sane(&p, &|| "virt-gicv3-smp64".into());
}

#[test]
fn past_123_cpus_qemu_adds_a_second_redistributor_region_and_both_are_kept() {
    let p = parse_ok(
        "virt-gicv3-smp200",
        GICV3_SMP200,
        QEMU_DTB_AT,
        Board::QemuVirt,
    );
    let Some(Gic::V3 { redistributors, .. }) = p.gic else {
        panic!("a GICv3 tree gave {:?}", p.gic);
    };
    // dtc shows #redistributor-regions = <2> and reg = <dist> <0x80a0000 0xf60000>
    // <0x40_0000_0000 0x400_0000>.
    let regions: Vec<Region> = redistributor_regions(&redistributors).collect();
    assert_eq!(
        regions,
        [
            Region::new(0x080a_0000, 0xf6_0000),
            Region::new(0x40_0000_0000, 0x400_0000)
        ]
    );
    let mmio = p.mmio_regions();
    for region in &regions {
        assert!(mmio.as_slice().contains(region), "{region:x?} is mapped");
    }
    assert_eq!(p.cpus_in_tree, 200);
    assert_eq!(
        p.problems.as_slice(),
        &[Problem::TooManyCpus { in_tree: 200 }]
    );
}

#[test]
fn a_gicv2_tree_with_twelve_cpus_starts_eight_and_says_why() {
    let p = parse_ok(
        "virt-gicv2-smp12-edited",
        GICV2_SMP12_EDITED,
        QEMU_DTB_AT,
        Board::QemuVirt,
    );
    assert_eq!(p.cpus_in_tree, 12);
    assert_eq!(p.cpus.len(), GICV2_MAX_CPUS);
    let mpidrs: Vec<u64> = p.cpus.as_slice().iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs, (0..8).collect::<Vec<u64>>());
    assert_eq!(
        p.problems.as_slice(),
        &[Problem::GicV2CpuLimit { in_tree: 12 }]
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
        redistributors: [
            Region::new(0x080a_0000, 0xf6_0000),
            Region::default(),
            Region::default(),
            Region::default(),
        ],
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
    assert_eq!(p.mailbox, None, "QEMU virt has no VideoCore mailbox");
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
