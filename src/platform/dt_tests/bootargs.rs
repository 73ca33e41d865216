//! Device-tree tests, part 4: bootargs from /chosen (chapter 2, "The device tree, the UART and
//! logging").

use super::*;

/// A QEMU tree whose /chosen has bootargs: QEMU's trees have none (no -append), so this renames
/// /chosen's `stdout-path` to `bootargs` in the strings block and rewrites its value in place.
fn qemu_tree_with_bootargs(args: &str) -> Vec<u8> {
    let mut copy = GICV2_SMP4.to_vec();
    let value = find_prop(GICV2_SMP4, "chosen", "stdout-path");
    assert!(args.len() < value.len, "test helper: bootargs too long");
    copy[value.value..value.value + value.len].fill(0);
    copy[value.value..value.value + args.len()].copy_from_slice(args.as_bytes());
    let strings = be32(GICV2_SMP4, 12) as usize;
    let name_at = strings + be32(GICV2_SMP4, value.token + 8) as usize;
    assert_eq!(&copy[name_at..name_at + 12], b"stdout-path\0");
    copy[name_at..name_at + 12].copy_from_slice(b"bootargs\0\0\0\0");
    copy
}

#[test]
fn bootargs_are_read_from_chosen() {
    let blob = qemu_tree_with_bootargs("test smp=2");
    let p = parse_ok("bootargs", &blob, QEMU_DTB_AT, Board::QemuVirt);
    // The value's trailing NULs (the padding left by the shorter string) are not part of it.
    assert_eq!(p.bootargs, "test smp=2");
    assert!(p.has_bootarg("test"));
    assert_eq!(p.bootarg_value("smp"), Some("2"));
    assert_eq!(p.problems.as_slice(), &[]);
}

#[test]
fn bootargs_are_read_even_after_a_node_deleted_in_place() {
    // fdt's own find_node("/chosen") stops at the NOPs a deleted top-level node leaves behind.
    let blob = qemu_tree_with_bootargs("smp=2");
    let edited = nop_node(&blob, "pl061@9030000");
    let p = parse_ok("bootargs", &edited, QEMU_DTB_AT, Board::QemuVirt);
    assert_eq!(p.bootargs, "smp=2");
}

fn with_bootargs(args: &'static str) -> Platform<'static> {
    let mut p = Platform::defaults(Board::QemuVirt);
    p.bootargs = args;
    p
}

#[test]
fn bootargs_match_whole_words_and_keys() {
    let p = with_bootargs("test smp=4 log=debug");
    assert!(p.has_bootarg("test"));
    assert!(
        p.has_bootarg("smp"),
        "a key=value argument counts as present"
    );
    assert!(p.has_bootarg("log"));
    assert_eq!(p.bootarg_value("smp"), Some("4"));
    assert_eq!(p.bootarg_value("log"), Some("debug"));
    assert_eq!(
        p.bootarg_value("test"),
        Some(""),
        "a bare word has an empty value"
    );
}

#[test]
fn bootargs_do_not_match_prefixes_suffixes_or_values() {
    let p = with_bootargs("test smp=4 log=debug");
    for absent in [
        "tests", "tes", "est", "sm", "smp4", "debug", "4", "lo", "logs", "absent", "",
    ] {
        assert!(!p.has_bootarg(absent), "{absent:?} matched");
        assert_eq!(p.bootarg_value(absent), None, "{absent:?}");
    }
    let p = with_bootargs("tests smpx=2");
    assert!(
        !p.has_bootarg("test"),
        "\"tests\" must not satisfy \"test\""
    );
    assert!(!p.has_bootarg("smp"));
}

#[test]
fn bootargs_handle_odd_spacing_empty_values_and_equals_in_values() {
    let p = with_bootargs("  \tquiet\n log=  root=LABEL=boot  ");
    assert!(p.has_bootarg("quiet"));
    assert_eq!(p.bootarg_value("log"), Some(""));
    assert_eq!(
        p.bootarg_value("root"),
        Some("LABEL=boot"),
        "only the first '=' splits"
    );
    let p = with_bootargs("smp=2 smp=4");
    assert_eq!(
        p.bootarg_value("smp"),
        Some("2"),
        "the first occurrence wins"
    );
    let p = with_bootargs("");
    assert!(!p.has_bootarg("test"));
    assert_eq!(p.bootarg_value("smp"), None);
}
