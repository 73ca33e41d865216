//! Device-tree tests, part 6: booting without a tree, when the CPU's ID registers and PSCI's
//! answers stand in for what the tree would have said (chapter 2, "The device tree, the UART and
//! logging", and chapter 3, "Waking the other cores").

use super::*;

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
    assert_eq!(
        p.cpus.len(),
        MAX_CPUS,
        "a GICv3 machine: MAX_CPUS candidates"
    );
    p.keep_cpus_psci_knows(qemu_affinity_info(4));
    let mpidrs: Vec<u64> = p.cpus.as_slice().iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs, [0, 1, 2, 3]);
    // The contract line then says 4/4, not 4/8.
    assert_eq!(p.cpus_in_tree, 4);
    assert!(p.problems.as_slice().contains(&Problem::CpusFromPsci {
        found: 4,
        tried: MAX_CPUS
    }));
    // Asked again, nothing is guessed any more: PSCI is not consulted.
    p.keep_cpus_psci_knows(|_| panic!("asked PSCI about CPUs a list already settled"));
}

#[test]
fn psci_that_cannot_tell_leaves_the_candidates_to_cpu_on() {
    // PSCI 0.1 has no AFFINITY_INFO: NOT_SUPPORTED (-1). Nothing is dropped on its word.
    // The plain defaults have a GICv2: eight candidates.
    let mut p = Platform::defaults(Board::QemuVirt);
    p.keep_cpus_psci_knows(|_| -1);
    assert_eq!(p.cpus.len(), 8);
    assert!(p.problems.is_empty());
    // And an answer that even the asking CPU is absent is not believed.
    p.keep_cpus_psci_knows(|_| -2);
    assert_eq!(p.cpus.len(), 8);
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
