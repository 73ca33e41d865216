//! Device-tree tests, part 5: what boot prints about each problem a tree has (chapter 2, "The
//! device tree, the UART and logging").

use super::*;

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
        Problem::GicV2CpuLimit { .. } => Some("starting the first 8"),
        Problem::UnknownEnableMethod { .. } => Some("it will stay off"),
        Problem::Overflow(_) => Some("extra ones ignored"),
        Problem::MemoryLeftEmpty { .. } => Some("left out"),
        Problem::FromTheCpu(_) => Some("with no device tree to say"),
        Problem::CpusFromPsci { .. } => Some("starting only those"),
        Problem::InitrdUnusable { .. } => Some("no initramfs"),
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
            Problem::GicV2CpuLimit { in_tree: 12 },
            vec!["12 CPUs", "GICv2", "8-bit CPU masks"],
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
            Problem::InitrdUnusable {
                start: Some(0x4800_0000),
                end: None,
            },
            vec!["initrd-start (0x48000000)", "initrd-end (missing"],
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
            Problem::CpusFromPsci {
                found: 4,
                tried: 32,
            },
            vec![
                "AFFINITY_INFO knows 4 of 32 candidate MPIDRs",
                "16 to a cluster",
            ],
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
