//! GICv3 affinity routing as plain arithmetic: how MPIDRs name CPUs in clusters, how the
//! redistributor of each CPU is found, and how one SGI reaches CPUs in several clusters (the GIC
//! chapter; chapter 3, "Waking the other cores", for clusters). The GICv3 driver
//! (src/drivers/gic/v3.rs) reads the registers and writes ICC_SGI1R_EL1; what it computes lives
//! here so the host tests it.
//!
//! An MPIDR names a CPU by four 8-bit affinity levels, Aff3.Aff2.Aff1.Aff0 (bits 39:32, 23:16,
//! 15:8, 7:0). Aff0 is the core within a cluster, Aff1 the cluster: QEMU virt puts 16 CPUs in
//! each Aff1 group (MPIDR 0x000..0x00f, then 0x100..0x10f, ...), and a Pi 5's four cores are
//! 0x000, 0x100, 0x200, 0x300, one per Aff1 value. A GICv3 SGI write names one cluster
//! (Aff3.Aff2.Aff1) and a 16-bit list of Aff0 values in it, so reaching CPUs in four clusters
//! takes four writes.

/// The affinity fields of an MPIDR: Aff3 (39:32) and Aff2.Aff1.Aff0 (23:0).
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;
/// The fields that name a CPU's cluster: Aff3, Aff2, Aff1.
const CLUSTER_MASK: u64 = 0xff_00ff_ff00;

/// The cluster of the CPU with this MPIDR: its affinity with Aff0 cleared.
pub fn cluster(mpidr: u64) -> u64 {
    mpidr & CLUSTER_MASK
}

/// A CPU's cluster as people write it, for the log and `cpus`: Aff1 alone ("2") when Aff3 and
/// Aff2 are 0, else "Aff3.Aff2.Aff1".
pub struct ClusterName(pub u64);

impl core::fmt::Display for ClusterName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        let (aff3, aff2, aff1) = ((m >> 32) & 0xff, (m >> 16) & 0xff, (m >> 8) & 0xff);
        if aff3 == 0 && aff2 == 0 {
            write!(f, "{aff1}")
        } else {
            write!(f, "{aff3}.{aff2}.{aff1}")
        }
    }
}

/// GICR_TYPER.Last: the final redistributor of a contiguous region.
pub const TYPER_LAST: u64 = 1 << 4;
/// GICR_TYPER.VLPIS: a GICv4 redistributor, four 64 KiB frames instead of two.
pub const TYPER_VLPIS: u64 = 1 << 1;
/// One 64 KiB redistributor frame (RD_base, then SGI_base).
pub const FRAME: usize = 0x1_0000;

/// The MPIDR affinity of the CPU a redistributor serves, from its GICR_TYPER: bits 63:32 hold
/// Aff3.Aff2.Aff1.Aff0 packed into 32 bits, which the MPIDR spreads out (Aff3 sits at 39:32).
pub fn typer_mpidr(typer: u64) -> u64 {
    let packed = typer >> 32;
    ((packed >> 24) & 0xff) << 32 | (packed & 0xff_ffff)
}

/// Visit every redistributor of the regions `(base, size)`, in order: `visit(rd_base, typer)`,
/// where `read_typer(rd_base)` reads that redistributor's GICR_TYPER. A region ends at its size or
/// at the redistributor with `Last` set, whichever comes first; a redistributor is two frames, or
/// four on a GICv4 (`VLPIS`). Stops early when `visit` returns `Some`, and returns that.
pub fn walk_redistributors<T>(
    regions: &[(usize, usize)],
    mut read_typer: impl FnMut(usize) -> u64,
    mut visit: impl FnMut(usize, u64) -> Option<T>,
) -> Option<T> {
    for &(base, size) in regions {
        let mut at = base;
        while at + 2 * FRAME <= base + size {
            let typer = read_typer(at);
            if let Some(found) = visit(at, typer) {
                return Some(found);
            }
            if typer & TYPER_LAST != 0 {
                break;
            }
            at += if typer & TYPER_VLPIS != 0 { 4 } else { 2 } * FRAME;
        }
    }
    None
}

/// The RD_base of the redistributor that serves the CPU with MPIDR `mpidr`.
pub fn find_redistributor(
    regions: &[(usize, usize)],
    mpidr: u64,
    read_typer: impl FnMut(usize) -> u64,
) -> Option<usize> {
    let mpidr = mpidr & MPIDR_AFFINITY_MASK;
    walk_redistributors(regions, read_typer, |at, typer| {
        (typer_mpidr(typer) == mpidr).then_some(at)
    })
}

/// ICC_SGI1R_EL1 to raise SGI `sgi` on the CPUs of `cluster` (any MPIDR in it) whose Aff0 is
/// `16 * range + n` for each bit n set in `targets`. `range` is the RS field: only CPUs with
/// Aff0 of 16 or more need it (and a GIC that implements it, ICC_CTLR_EL1.RSS).
pub fn sgi1r_listed(sgi: u32, cluster: u64, range: u64, targets: u16) -> u64 {
    let aff1 = (cluster >> 8) & 0xff;
    let aff2 = (cluster >> 16) & 0xff;
    let aff3 = (cluster >> 32) & 0xff;
    ((sgi as u64 & 0xf) << 24)
        | (aff1 << 16)
        | (aff2 << 32)
        | ((range & 0xf) << 44)
        | (aff3 << 48)
        | targets as u64
}

/// ICC_SGI1R_EL1 to raise SGI `sgi` on every CPU but the writer: IRM (bit 40) set, no list.
pub fn sgi1r_all_but_self(sgi: u32) -> u64 {
    ((sgi as u64 & 0xf) << 24) | (1 << 40)
}

/// The ICC_SGI1R_EL1 writes that raise SGI `sgi` on the CPUs with these MPIDRs: CPUs next to
/// each other in `mpidrs` that share a cluster and a range of 16 Aff0 values share one write.
/// Logical ids follow the device tree, which lists a cluster's CPUs together, so sending to
/// CPUs in id order takes one write per cluster; any other order is still delivered, in more
/// writes. Allocates nothing: it runs in every reschedule IPI.
pub fn sgi1r_writes(sgi: u32, mpidrs: impl IntoIterator<Item = u64>, mut write: impl FnMut(u64)) {
    // The group being filled: (cluster, range), and its target list.
    let mut group: Option<((u64, u64), u16)> = None;
    for mpidr in mpidrs {
        let key = (cluster(mpidr), (mpidr & 0xff) / 16);
        let bit = 1u16 << (mpidr & 0xf);
        group = match group {
            Some((k, list)) if k == key => Some((k, list | bit)),
            Some(((cluster, range), list)) => {
                write(sgi1r_listed(sgi, cluster, range, list));
                Some((key, bit))
            }
            None => Some((key, bit)),
        };
    }
    if let Some(((cluster, range), list)) = group {
        write(sgi1r_listed(sgi, cluster, range, list));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU virt's numbering: 16 CPUs to an Aff1 cluster (seen in its generated device tree).
    fn virt_mpidr(id: u64) -> u64 {
        ((id / 16) << 8) | (id % 16)
    }

    fn writes(sgi: u32, mpidrs: &[u64]) -> Vec<u64> {
        let mut out = Vec::new();
        sgi1r_writes(sgi, mpidrs.iter().copied(), |v| out.push(v));
        out
    }

    #[test]
    fn sixty_four_cpus_in_four_clusters_take_one_write_per_cluster() {
        let all: Vec<u64> = (0..64).map(virt_mpidr).collect();
        let w = writes(3, &all);
        assert_eq!(w.len(), 4, "{w:#x?}");
        for (cluster, value) in w.iter().enumerate() {
            assert_eq!(value & 0xffff, 0xffff, "all 16 CPUs of cluster {cluster}");
            assert_eq!((value >> 16) & 0xff, cluster as u64, "Aff1");
            assert_eq!((value >> 24) & 0xf, 3, "the SGI number");
            assert_eq!(value >> 40 & 1, 0, "not IRM");
        }
    }

    #[test]
    fn one_cpu_in_a_far_cluster_is_named_by_its_own_aff1_and_aff0() {
        // cpu 37 on QEMU virt is MPIDR 0x205: cluster 2, core 5.
        assert_eq!(
            writes(1, &[virt_mpidr(37)]),
            [(1 << 24) | (2 << 16) | (1 << 5)]
        );
        // Aff2 and Aff3 go to bits 39:32 and 55:48.
        assert_eq!(
            writes(0, &[0x07_0003_0401]),
            [(0x07 << 48) | (0x03 << 32) | (0x04 << 16) | 0b10]
        );
    }

    #[test]
    fn the_pi5_cores_are_four_clusters_of_one() {
        let w = writes(0, &[0x000, 0x100, 0x200, 0x300]);
        assert_eq!(w, [1, (1 << 16) | 1, (2 << 16) | 1, (3 << 16) | 1]);
    }

    #[test]
    fn targets_out_of_cluster_order_are_all_still_delivered() {
        let order = [virt_mpidr(17), virt_mpidr(1), virt_mpidr(18), virt_mpidr(2)];
        let w = writes(0, &order);
        let mut reached: Vec<u64> = Vec::new();
        for v in &w {
            let aff1 = (v >> 16) & 0xff;
            for n in 0..16 {
                if v & (1 << n) != 0 {
                    reached.push(aff1 << 8 | n);
                }
            }
        }
        reached.sort();
        let mut expected = order.to_vec();
        expected.sort();
        assert_eq!(reached, expected);
        assert_eq!(w.len(), 4, "every change of cluster starts a new write");
    }

    #[test]
    fn aff0_of_sixteen_and_up_uses_the_range_selector() {
        assert_eq!(writes(2, &[0x13]), [(2 << 24) | (1 << 44) | (1 << 3)]);
        assert_eq!(writes(2, &[0x03, 0x13]).len(), 2, "two ranges, two writes");
    }

    #[test]
    fn all_but_self_sets_irm_and_names_nobody() {
        assert_eq!(sgi1r_all_but_self(2), (2 << 24) | (1 << 40));
    }

    #[test]
    fn no_targets_no_write() {
        assert!(writes(0, &[]).is_empty());
    }

    /// Redistributors laid out as QEMU does: `count` of them, 128 KiB apart from `base`, the
    /// last with `Last` set; GICR_TYPER holds the CPU's packed affinity.
    fn frames(base: usize, mpidrs: &[u64], stride_frames: usize) -> Vec<(usize, u64)> {
        mpidrs
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                let packed = ((m >> 32) & 0xff) << 24 | (m & 0xff_ffff);
                let last = if i + 1 == mpidrs.len() { TYPER_LAST } else { 0 };
                let vlpis = if stride_frames == 4 { TYPER_VLPIS } else { 0 };
                (
                    base + i * stride_frames * FRAME,
                    packed << 32 | last | vlpis,
                )
            })
            .collect()
    }

    fn reader(all: &[(usize, u64)]) -> impl FnMut(usize) -> u64 + '_ {
        move |at| {
            all.iter()
                .find(|(a, _)| *a == at)
                .map(|(_, t)| *t)
                .unwrap_or_else(|| panic!("read of {at:#x}, where no redistributor is"))
        }
    }

    #[test]
    fn every_cpu_of_two_regions_finds_its_own_redistributor() {
        // 123 CPUs fit QEMU virt's first region; with more it adds a second one.
        let first: Vec<u64> = (0..123).map(virt_mpidr).collect();
        let second: Vec<u64> = (123..200).map(virt_mpidr).collect();
        let mut all = frames(0x080a_0000, &first, 2);
        all.extend(frames(0x40_0000_0000, &second, 2));
        let regions = [(0x080a_0000, 0xf6_0000), (0x40_0000_0000, 0x400_0000)];
        for id in 0..200u64 {
            let at = find_redistributor(&regions, virt_mpidr(id), reader(&all));
            let expected = if id < 123 {
                0x080a_0000 + id as usize * 2 * FRAME
            } else {
                0x40_0000_0000 + (id as usize - 123) * 2 * FRAME
            };
            assert_eq!(at, Some(expected), "cpu{id}");
        }
        let mut visited = 0;
        walk_redistributors(&regions, reader(&all), |_, _| {
            visited += 1;
            None::<()>
        });
        assert_eq!(visited, 200, "both regions walked to their Last");
    }

    #[test]
    fn the_walk_stops_at_last_and_steps_four_frames_on_gicv4() {
        let mpidrs = [0x0, 0x1, 0x100];
        let all = frames(0x1000_0000, &mpidrs, 4);
        // A region bigger than its redistributors: only Last ends the walk (the reader panics
        // on any read past it).
        let regions = [(0x1000_0000, 0x100_0000)];
        assert_eq!(
            find_redistributor(&regions, 0x100, reader(&all)),
            Some(0x1000_0000 + 8 * FRAME)
        );
        assert_eq!(find_redistributor(&regions, 0x2, reader(&all)), None);
        // MPIDR bits outside the affinity (bit 31, RES1) do not matter.
        assert_eq!(
            find_redistributor(&regions, 0x8000_0001, reader(&all)),
            Some(0x1000_0000 + 4 * FRAME)
        );
    }

    #[test]
    fn a_region_too_small_for_one_redistributor_is_not_read() {
        let regions = [(0x1000_0000, FRAME)];
        assert_eq!(
            find_redistributor(&regions, 0, |at| panic!("read {at:#x}")),
            None
        );
    }

    #[test]
    fn clusters_are_named_by_aff1_or_all_three_upper_levels() {
        let name = |m| ClusterName(m).to_string();
        assert_eq!(name(0x30f), "3");
        assert_eq!(name(0x07_0003_0401), "7.3.4");
        assert_eq!(cluster(0x30f), 0x300);
    }

    #[test]
    fn typer_affinity_unpacks_aff3_above_bit_32() {
        assert_eq!(typer_mpidr(0x0302_0100_0000_0010), 0x03_0002_0100);
    }
}
