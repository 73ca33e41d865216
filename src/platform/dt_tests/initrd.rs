//! Device-tree tests, part 6: the initramfs's place, from /chosen's linux,initrd-start and
//! linux,initrd-end (chapter 22, "A file system in memory").

use super::*;
use crate::fs::initrd_range;

/// Where QEMU 10 put the 1000-byte initrd of virt-initrd-smp4.dtb (read with dtc).
const START: u64 = 0x4800_0000;
const END: u64 = 0x4800_03e8;

fn problems(p: &Platform<'_>) -> Vec<Problem> {
    p.problems.as_slice().to_vec()
}

#[test]
fn qemus_initrd_is_found_and_reserved() {
    let p = parse_ok(
        "virt-initrd-smp4",
        INITRD_SMP4,
        QEMU_DTB_AT,
        Board::QemuVirt,
    );
    assert_eq!(p.initrd, Some(Region::new(START, END - START)));
    assert_eq!(initrd_range(&p), Some((START as usize, END as usize)));
    assert!(
        p.reserved
            .as_slice()
            .iter()
            .any(|r| r.start <= START && END <= r.end()),
        "initrd not reserved: {:?}",
        p.reserved.as_slice()
    );
    assert_eq!(problems(&p), vec![]);
    assert_sane(&p, &|| "virt-initrd-smp4".into());
}

#[test]
fn a_tree_without_an_initrd_has_none_and_says_nothing() {
    let p = parse_ok("virt-gicv2-smp4", GICV2_SMP4, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(p.initrd, None);
    assert_eq!(initrd_range(&p), None);
}

/// The tree with `prop`'s two cells made one (its low cell), the freed word a NOP.
fn one_cell(blob: &[u8], prop: &str) -> Vec<u8> {
    let mut copy = blob.to_vec();
    let at = find_prop(blob, "chosen", prop);
    assert_eq!(at.len, 8, "test helper: {prop} has two cells");
    let low = be32(blob, at.value + 4);
    put_be32(&mut copy, at.token + 4, 4);
    put_be32(&mut copy, at.value, low);
    put_be32(&mut copy, at.value + 4, 4); // FDT_NOP
    without_nops(copy)
}

/// What boot does to a tree before parsing it (src/platform/mod.rs `discover_from_tree`).
fn without_nops(mut blob: Vec<u8>) -> Vec<u8> {
    super::super::validate::remove_nops(&mut blob).expect("test helper: NOPs removed");
    blob
}

#[test]
fn one_cell_values_are_read_too() {
    let both = one_cell(
        &one_cell(INITRD_SMP4, "linux,initrd-start"),
        "linux,initrd-end",
    );
    let p = parse_ok("32-bit cells", &both, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(p.initrd, Some(Region::new(START, END - START)));
    // Mixed widths are fine as well.
    let mixed = one_cell(INITRD_SMP4, "linux,initrd-end");
    let p = parse_ok("mixed cells", &mixed, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(p.initrd, Some(Region::new(START, END - START)));
}

#[test]
fn half_an_initrd_or_a_backwards_one_is_reported_and_not_used() {
    let no_start = without_nops(nop_property(INITRD_SMP4, "chosen", "linux,initrd-start"));
    let p = parse_ok("no start", &no_start, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(p.initrd, None);
    assert_eq!(
        problems(&p),
        vec![Problem::InitrdUnusable {
            start: None,
            end: Some(END)
        }]
    );

    let mut backwards = INITRD_SMP4.to_vec();
    let start = find_prop(INITRD_SMP4, "chosen", "linux,initrd-start");
    let end = find_prop(INITRD_SMP4, "chosen", "linux,initrd-end");
    put_be32(&mut backwards, start.value + 4, END as u32);
    put_be32(&mut backwards, end.value + 4, START as u32);
    let p = parse_ok("backwards", &backwards, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(p.initrd, None);
    assert_eq!(
        problems(&p),
        vec![Problem::InitrdUnusable {
            start: Some(END),
            end: Some(START)
        }]
    );
    assert!(
        !p.reserved.as_slice().iter().any(|r| r.contains(START)),
        "a refused initrd was still reserved"
    );
}
