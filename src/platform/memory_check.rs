//! The device tree's RAM against the firmware's word for it (chapter 29, "Asking the VideoCore").
//!
//! On a Pi the VideoCore keeps the top of the low 1 GiB for itself (its `gpu_mem`) and tells the
//! Arm side, through the mailbox, which part is left: the "ARM memory", 0 to just under 1 GiB.
//! The device tree lists all RAM, the gigabytes above 1 GiB too, and the Pi's firmware writes the
//! same low range into it before it starts the kernel. A tree from anywhere else (copied from
//! a kernel package, passed on by a boot loader) may still list the whole first gigabyte, and
//! then the kernel would hand out the VideoCore's memory as heap.
//!
//! So the tree's ranges are kept (the mailbox never reports RAM above 1 GiB), and whatever of the
//! tree's range around the ARM memory lies past its end is reserved for the VideoCore. The
//! decision and its reason are one `Verdict`, which the boot log prints.

use core::fmt;

use super::Region;

/// What the firmware's ARM memory says about the tree's ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A range of the tree is exactly the firmware's.
    Agree { arm: Region },
    /// The tree's range reaches past the firmware's ARM memory: `videocore` is the VideoCore's
    /// and gets reserved.
    VideoCoreOwns { arm: Region, videocore: Region },
    /// The firmware's ARM memory is not a start-aligned part of the tree's range around it (it
    /// reaches past it, or starts inside it): the tree is used unchanged, since the firmware
    /// gave no reason to think the difference is the VideoCore's.
    Differ { arm: Region, tree: Region },
    /// No range of the tree holds the start of the firmware's ARM memory: the tree is used.
    NotInTree { arm: Region },
}

/// Compare `tree` (the memory nodes) with `arm` (the mailbox's ARM memory).
pub fn compare(tree: &[Region], arm: Region) -> Verdict {
    let Some(around) = tree.iter().find(|r| r.contains(arm.start)).copied() else {
        return Verdict::NotInTree { arm };
    };
    if around.end() > arm.end() && around.start == arm.start {
        Verdict::VideoCoreOwns {
            arm,
            videocore: Region::new(arm.end(), around.end() - arm.end()),
        }
    } else if around == arm {
        Verdict::Agree { arm }
    } else {
        Verdict::Differ { arm, tree: around }
    }
}

impl Verdict {
    /// The firmware's range.
    pub fn arm(&self) -> Region {
        match *self {
            Verdict::Agree { arm }
            | Verdict::VideoCoreOwns { arm, .. }
            | Verdict::Differ { arm, .. }
            | Verdict::NotInTree { arm } => arm,
        }
    }

    /// The verdict in a few words, for a table.
    pub fn short(&self) -> &'static str {
        match self {
            Verdict::Agree { .. } => "the same as the device tree's",
            Verdict::VideoCoreOwns { .. } => {
                "the rest of the tree's range is the VideoCore's, reserved"
            }
            Verdict::Differ { .. } => "differs; the device tree's ranges are used",
            Verdict::NotInTree { .. } => "in no device-tree range; the tree's are used",
        }
    }

    /// The range to reserve, if any.
    pub fn reserve(&self) -> Option<Region> {
        match *self {
            Verdict::VideoCoreOwns { videocore, .. } => Some(videocore),
            _ => None,
        }
    }
}

fn range(f: &mut fmt::Formatter<'_>, r: Region) -> fmt::Result {
    write!(f, "{:#x}..{:#x} ({} MiB)", r.start, r.end(), r.size >> 20)
}

/// One line for the log: the firmware's range, the tree's, which is used and why.
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("firmware's ARM memory ")?;
        match *self {
            Verdict::Agree { arm } => {
                range(f, arm)?;
                f.write_str(
                    " is a device-tree range as it stands; the device tree's ranges are used",
                )
            }
            Verdict::VideoCoreOwns { arm, videocore } => {
                range(f, arm)?;
                f.write_str(" ends inside the device tree's range: ")?;
                range(f, videocore)?;
                f.write_str(" is the VideoCore's and is reserved")
            }
            Verdict::Differ { arm, tree } => {
                range(f, arm)?;
                f.write_str(" does not fit the device tree's range ")?;
                range(f, tree)?;
                f.write_str("; the device tree's ranges are used unchanged")
            }
            Verdict::NotInTree { arm } => {
                range(f, arm)?;
                f.write_str(" is in no device-tree range; the device tree's ranges are used")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_pi_firmwares_own_tree_agrees_and_keeps_the_ram_above_1_gib() {
        // A 4 GiB Pi 4 with the default gpu_mem: the firmware writes its ARM memory into the tree.
        let tree = [
            Region::new(0, 0x3b40_0000),
            Region::new(0x4000_0000, 0xbc00_0000),
            Region::new(0x1_0000_0000, 0x4000_0000),
        ];
        let v = compare(&tree, Region::new(0, 0x3b40_0000));
        assert_eq!(v, Verdict::Agree { arm: tree[0] });
        assert_eq!(v.reserve(), None);
    }

    #[test]
    fn a_tree_listing_the_whole_first_gib_leaves_the_videocores_part_reserved() {
        let tree = [Region::new(0, 1024 * MIB)];
        let v = compare(&tree, Region::new(0, 948 * MIB));
        assert_eq!(v.reserve(), Some(Region::new(948 * MIB, 76 * MIB)));
        assert_eq!(
            v.to_string(),
            "firmware's ARM memory 0x0..0x3b400000 (948 MiB) ends inside the device tree's range: 0x3b400000..0x40000000 (76 MiB) is the VideoCore's and is reserved"
        );
    }

    #[test]
    fn a_tree_smaller_than_the_firmware_says_wins() {
        let tree = [Region::new(0, 512 * MIB)];
        let v = compare(&tree, Region::new(0, 948 * MIB));
        assert_eq!(
            v,
            Verdict::Differ {
                arm: Region::new(0, 948 * MIB),
                tree: tree[0]
            }
        );
        assert_eq!(v.reserve(), None);
        assert_eq!(
            v.to_string(),
            "firmware's ARM memory 0x0..0x3b400000 (948 MiB) does not fit the device tree's range 0x0..0x20000000 (512 MiB); the device tree's ranges are used unchanged"
        );
    }

    #[test]
    fn firmware_memory_outside_every_range_changes_nothing() {
        let tree = [Region::new(0x4000_0000, 512 * MIB)];
        let v = compare(&tree, Region::new(0, 948 * MIB));
        assert!(matches!(v, Verdict::NotInTree { .. }));
        assert_eq!(v.reserve(), None);
        assert!(
            v.to_string()
                .ends_with("is in no device-tree range; the device tree's ranges are used")
        );
    }

    #[test]
    fn a_firmware_range_starting_inside_a_tree_range_reserves_nothing_below_it() {
        // Odd firmware: ARM memory from 16 MiB. The part below is not the VideoCore's to claim
        // by this rule, and the part above is not the Arm's by the tree: use the tree.
        let tree = [Region::new(0, 1024 * MIB)];
        let v = compare(&tree, Region::new(16 * MIB, 512 * MIB));
        assert!(matches!(v, Verdict::Differ { .. }), "{v:?}");
        assert_eq!(v.reserve(), None);
    }
}
