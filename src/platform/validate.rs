//! Checking a flattened device tree's structure before anything trusts it (chapter 2).
//!
//! The `fdt` crate assumes a well-formed blob and panics on a malformed one. A kernel must not
//! panic because firmware handed it a truncated or corrupted tree, so this pass walks the header,
//! the memory-reservation block and every token of the structure block with bounds checks first.
//! Only a blob that passes is given to `fdt`.

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
const HEADER_SIZE: usize = 40;
/// Deeper nesting than this is treated as corruption (real trees are under 10 deep).
pub const MAX_DEPTH: usize = 16;

/// What is wrong with a blob, in words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobError {
    TooShort,
    BadMagic(u32),
    /// The header's totalsize is larger than the bytes we have (a truncated blob).
    Truncated {
        total_size: usize,
        available: usize,
    },
    UnsupportedVersion(u32),
    BlockOutOfBounds(&'static str),
    BadToken {
        offset: usize,
        token: u32,
    },
    BadName {
        offset: usize,
    },
    PropertyOutOfBounds {
        offset: usize,
    },
    /// A `#...-cells` property that is not exactly one 32-bit cell.
    BadCells {
        offset: usize,
    },
    TooDeep,
    Unbalanced,
    /// The header puts the blocks further from the start than quartet reads before it knows
    /// where RAM ends (`MAX_DTB_DATA`).
    BlocksTooFar {
        data_end: usize,
        limit: usize,
    },
}

impl core::fmt::Display for BlobError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            BlobError::TooShort => write!(f, "shorter than a device tree header"),
            BlobError::BadMagic(m) => write!(f, "bad magic {m:#010x} (expected 0xd00dfeed)"),
            BlobError::Truncated {
                total_size,
                available,
            } => {
                write!(
                    f,
                    "truncated: header says {total_size} bytes, only {available} present"
                )
            }
            BlobError::UnsupportedVersion(v) => write!(f, "unsupported version {v}"),
            BlobError::BlockOutOfBounds(which) => {
                write!(f, "the {which} block lies outside the blob")
            }
            BlobError::BadToken { offset, token } => {
                write!(
                    f,
                    "unexpected token {token:#x} at structure offset {offset:#x}"
                )
            }
            BlobError::BadName { offset } => {
                write!(f, "malformed name at structure offset {offset:#x}")
            }
            BlobError::PropertyOutOfBounds { offset } => {
                write!(
                    f,
                    "property at structure offset {offset:#x} runs past its block"
                )
            }
            BlobError::BadCells { offset } => {
                write!(
                    f,
                    "#...-cells property at structure offset {offset:#x} is not one 32-bit cell"
                )
            }
            BlobError::TooDeep => write!(f, "nodes nested deeper than {MAX_DEPTH}"),
            BlobError::Unbalanced => write!(f, "node begin/end tokens do not balance"),
            BlobError::BlocksTooFar { data_end, limit } => write!(
                f,
                "its header puts the blocks up to byte {data_end}, past the {limit} bytes quartet reads before it knows where RAM ends"
            ),
        }
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The header's `totalsize`, after checking the magic: how many bytes the blob claims.
fn claimed_size(header: &[u8]) -> Result<usize, BlobError> {
    let magic = be32(header, 0).ok_or(BlobError::TooShort)?;
    if magic != FDT_MAGIC {
        return Err(BlobError::BadMagic(magic));
    }
    Ok(be32(header, 4).ok_or(BlobError::TooShort)? as usize)
}

/// How far into a blob its blocks reach at most, for any tree quartet accepts.
///
/// This bounds what is read, not what the tree may claim: a blob's `totalsize` may include free
/// space after its blocks, which libfdt leaves so the tree can be edited in place. QEMU, given a
/// tree with `-dtb`, doubles it that way: its own 1 MiB dump comes back as 2 x (1 MiB + 10000)
/// bytes, of which 8 KiB are the tree. The free space is never read. The blocks are read through
/// the early map (which holds this much from the tree's start), before the tree has said where
/// RAM ends, so a header that points further than this is taken for damage rather than followed
/// off the end of RAM or of the map. Real trees' blocks are tens of
/// KiB; the Pi 4's are 40 KiB.
pub const MAX_DTB_DATA: usize = 2 << 20;

/// What the header says about a blob's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// `totalsize`: the blob with any free space after its blocks.
    pub total_size: usize,
    /// Where the last of its blocks ends: what parsing reads.
    pub data_end: usize,
}

/// Check a header before anything past it is read: the magic, the blocks inside `totalsize`,
/// and the blocks within `MAX_DTB_DATA` of the start.
pub fn extent(header: &[u8]) -> Result<Extent, BlobError> {
    let total_size = claimed_size(header)?;
    let h = |i: usize| {
        be32(header, i * 4)
            .map(|v| v as usize)
            .ok_or(BlobError::TooShort)
    };
    let (off_struct, off_strings, off_rsvmap) = (h(2)?, h(3)?, h(4)?);
    let (size_strings, size_struct) = (h(8)?, h(9)?);
    // The reservation block has no size in the header; it ends with an empty entry at least.
    let data_end = [
        (off_struct, size_struct),
        (off_strings, size_strings),
        (off_rsvmap, 16),
        (0, HEADER_SIZE),
    ]
    .iter()
    .map(|&(off, size)| off.saturating_add(size))
    .max()
    .unwrap_or(HEADER_SIZE);
    if data_end > MAX_DTB_DATA {
        return Err(BlobError::BlocksTooFar {
            data_end,
            limit: MAX_DTB_DATA,
        });
    }
    // Blocks past `totalsize` are found by `validate`, which names the block.
    Ok(Extent {
        total_size,
        data_end,
    })
}

/// Check the whole blob. On success, `fdt` can parse it without panicking.
pub fn validate(blob: &[u8]) -> Result<(), BlobError> {
    check(blob, NopPolicy::WhereFdtCopes).map(|_| ())
}

/// Where NOP tokens may stand.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NopPolicy {
    /// Anywhere, as the specification allows (for `remove_nops`).
    Anywhere,
    /// Only where fdt 0.1.5 skips them (see `nops_allowed`).
    WhereFdtCopes,
}

/// Remove every NOP token from the structure block, in place, and shrink its size in the
/// header. QEMU's raspi4b deletes the nodes it cannot emulate with libfdt's fdt_nop_node, which
/// leaves NOPs where fdt 0.1.5 would panic; after this pass the same tree parses. Returns how
/// many NOP tokens were removed.
pub fn remove_nops(blob: &mut [u8]) -> Result<usize, BlobError> {
    let (off_struct, size_struct) = check(blob, NopPolicy::Anywhere)?;
    let s = &mut blob[off_struct..off_struct + size_struct];
    let (mut read, mut write, mut removed) = (0usize, 0usize, 0usize);
    // The structure was just checked, so every length below stays inside the block.
    while read < s.len() {
        let token = be32(s, read).unwrap_or(FDT_END);
        let len = match token {
            FDT_NOP => {
                read += 4;
                removed += 1;
                continue;
            }
            FDT_BEGIN_NODE => 4 + ((c_string(s, read + 4).unwrap_or(0) + 1 + 3) & !3),
            FDT_PROP => 12 + ((be32(s, read + 4).unwrap_or(0) as usize + 3) & !3),
            _ => 4, // FDT_END_NODE, FDT_END
        };
        s.copy_within(read..read + len, write);
        read += len;
        write += len;
        if token == FDT_END {
            break;
        }
    }
    blob[36..40].copy_from_slice(&(write as u32).to_be_bytes());
    Ok(removed)
}

/// The checks behind `validate`; returns the structure block's offset and size.
fn check(blob: &[u8], nops: NopPolicy) -> Result<(usize, usize), BlobError> {
    if blob.len() < HEADER_SIZE {
        return Err(BlobError::TooShort);
    }
    let total = extent(blob)?.total_size;
    if total > blob.len() || total < HEADER_SIZE {
        return Err(BlobError::Truncated {
            total_size: total,
            available: blob.len(),
        });
    }
    let blob = &blob[..total];
    let h = |i: usize| be32(blob, i * 4).unwrap_or(0) as usize;
    let (off_struct, off_strings, off_rsvmap) = (h(2), h(3), h(4));
    let version = h(5) as u32;
    let (size_strings, size_struct) = (h(8), h(9));
    if version < 16 {
        return Err(BlobError::UnsupportedVersion(version));
    }
    let in_bounds = |off: usize, size: usize| off.checked_add(size).is_some_and(|end| end <= total);
    if !in_bounds(off_struct, size_struct) || off_struct % 4 != 0 {
        return Err(BlobError::BlockOutOfBounds("structure"));
    }
    if !in_bounds(off_strings, size_strings) {
        return Err(BlobError::BlockOutOfBounds("strings"));
    }
    // Its end is not in the header: the walk stops where `extent` promised reading stops.
    validate_reservations(&blob[..total.min(MAX_DTB_DATA)], off_rsvmap)?;
    let structure = &blob[off_struct..off_struct + size_struct];
    let strings = &blob[off_strings..off_strings + size_strings];
    validate_structure(structure, strings, nops)?;
    Ok((off_struct, size_struct))
}

fn validate_reservations(blob: &[u8], mut at: usize) -> Result<(), BlobError> {
    if !at.is_multiple_of(8) {
        return Err(BlobError::BlockOutOfBounds("memory reservation"));
    }
    loop {
        let entry = blob
            .get(
                at..at
                    .checked_add(16)
                    .ok_or(BlobError::BlockOutOfBounds("memory reservation"))?,
            )
            .ok_or(BlobError::BlockOutOfBounds("memory reservation"))?;
        if entry.iter().all(|&b| b == 0) {
            return Ok(());
        }
        at += 16;
    }
}

/// A NUL-terminated UTF-8 string starting at `at`; returns its length without the NUL.
fn c_string(bytes: &[u8], at: usize) -> Option<usize> {
    let rest = bytes.get(at..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&rest[..len]).ok()?;
    Some(len)
}

fn validate_structure(s: &[u8], strings: &[u8], nops: NopPolicy) -> Result<(), BlobError> {
    let mut at = 0usize;
    let mut depth = 0usize;
    let mut seen_root = false;
    loop {
        let token = be32(s, at).ok_or(BlobError::Unbalanced)?;
        let token_at = at;
        at += 4;
        match token {
            FDT_BEGIN_NODE => {
                if depth == 0 && seen_root {
                    return Err(BlobError::BadToken {
                        offset: token_at,
                        token,
                    });
                }
                seen_root = true;
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(BlobError::TooDeep);
                }
                let len = c_string(s, at).ok_or(BlobError::BadName { offset: token_at })?;
                at = (at + len + 1 + 3) & !3;
                // A property may only come before a node's children; fdt relies on it.
                skip_properties(s, strings, &mut at, depth, nops)?;
            }
            FDT_END_NODE => {
                depth = depth.checked_sub(1).ok_or(BlobError::Unbalanced)?;
            }
            // Inside a node, see `nops_allowed`.
            FDT_NOP if nops == NopPolicy::WhereFdtCopes && !nops_allowed(s, token_at, depth) => {
                return Err(BlobError::BadToken {
                    offset: token_at,
                    token,
                });
            }
            FDT_NOP => {}
            FDT_END => {
                return if depth == 0 && seen_root {
                    Ok(())
                } else {
                    Err(BlobError::Unbalanced)
                };
            }
            _ => {
                return Err(BlobError::BadToken {
                    offset: token_at,
                    token,
                });
            }
        }
    }
}

/// Whether fdt 0.1.5 copes with the FDT_NOP tokens starting at `at`, in a node `depth` deep.
///
/// NOPs are legal anywhere in a structure block (libfdt's fdt_nop_property and fdt_nop_node
/// leave them where something was deleted), but fdt 0.1.5 skips them in only a few places:
/// skipping over a node, it accepts them only right before the node's FDT_END_NODE and panics
/// ("bad node") on any other; listing the root's children, it also skips them between children
/// (but would silently stop at NOPs between the root's properties). A tree with NOPs anywhere
/// else is rejected rather than allowed to panic.
fn nops_allowed(s: &[u8], mut at: usize, depth: usize) -> bool {
    while be32(s, at) == Some(FDT_NOP) {
        at += 4;
    }
    match be32(s, at) {
        _ if depth == 0 => true, // before the root, or between it and FDT_END
        Some(FDT_END_NODE) => true,
        Some(FDT_BEGIN_NODE) => depth == 1,
        _ => false,
    }
}

fn skip_properties(
    s: &[u8],
    strings: &[u8],
    at: &mut usize,
    depth: usize,
    nops: NopPolicy,
) -> Result<(), BlobError> {
    loop {
        match be32(s, *at) {
            Some(FDT_NOP) if nops == NopPolicy::Anywhere || nops_allowed(s, *at, depth) => *at += 4,
            Some(FDT_NOP) => {
                return Err(BlobError::BadToken {
                    offset: *at,
                    token: FDT_NOP,
                });
            }
            Some(FDT_PROP) => {
                let prop_at = *at;
                let len = be32(s, prop_at + 4)
                    .ok_or(BlobError::PropertyOutOfBounds { offset: prop_at })?;
                let name_off = be32(s, prop_at + 8)
                    .ok_or(BlobError::PropertyOutOfBounds { offset: prop_at })?;
                let value_end = (prop_at + 12)
                    .checked_add(len as usize)
                    .filter(|&end| end <= s.len())
                    .ok_or(BlobError::PropertyOutOfBounds { offset: prop_at })?;
                let name_len = c_string(strings, name_off as usize)
                    .ok_or(BlobError::BadName { offset: prop_at })?;
                let name = &strings[name_off as usize..name_off as usize + name_len];
                // fdt reads these cell counts as exactly one u32 and panics otherwise.
                if name.starts_with(b"#") && name.ends_with(b"-cells") && len != 4 {
                    return Err(BlobError::BadCells { offset: prop_at });
                }
                *at = (value_end + 3) & !3;
            }
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIRT: &[u8] = include_bytes!("../../tests/data/dtb/virt-gicv2-smp4.dtb");

    /// Overwrite the first property called `name` with NOP tokens, as libfdt's
    /// fdt_nop_property does. Returns how many tokens it wrote.
    fn nop_out_property(blob: &mut [u8], name: &[u8]) -> usize {
        let off_struct = be32(blob, 8).unwrap() as usize;
        let off_strings = be32(blob, 12).unwrap() as usize;
        let mut at = off_struct;
        loop {
            match be32(blob, at).unwrap() {
                FDT_BEGIN_NODE => at += 4 + ((c_string(blob, at + 4).unwrap() + 1 + 3) & !3),
                FDT_PROP => {
                    let len = (be32(blob, at + 4).unwrap() as usize + 3) & !3;
                    let name_at = off_strings + be32(blob, at + 8).unwrap() as usize;
                    if blob[name_at..].starts_with(name) && blob[name_at + name.len()] == 0 {
                        for t in (at..at + 12 + len).step_by(4) {
                            blob[t..t + 4].copy_from_slice(&FDT_NOP.to_be_bytes());
                        }
                        return (12 + len) / 4;
                    }
                    at += 12 + len;
                }
                FDT_END => panic!("no property {name:?}"),
                _ => at += 4,
            }
        }
    }

    #[test]
    fn nops_where_fdt_would_panic_are_rejected_then_removed() {
        let mut blob = VIRT.to_vec();
        // The PL011's first property: NOPs between a node's properties make fdt 0.1.5 panic.
        let nops = nop_out_property(&mut blob, b"clock-names");
        assert!(matches!(
            validate(&blob),
            Err(BlobError::BadToken { token: FDT_NOP, .. })
        ));
        assert_eq!(remove_nops(&mut blob), Ok(nops));
        assert_eq!(validate(&blob), Ok(()));
        let p = crate::platform::dt::parse(&blob, 0x4000_0000, crate::platform::Board::QemuVirt)
            .unwrap();
        assert_eq!(
            p.uart.regs.start, 0x0900_0000,
            "the rest of the node survives compaction"
        );
        assert!(p.problems.is_empty());
        assert_eq!(remove_nops(&mut blob), Ok(0), "a second pass finds nothing");
    }

    #[test]
    fn remove_nops_refuses_a_broken_blob() {
        let mut blob = VIRT[..VIRT.len() - 8].to_vec();
        assert!(remove_nops(&mut blob).is_err());
    }

    #[test]
    fn real_qemu_trees_validate() {
        assert_eq!(validate(VIRT), Ok(()));
    }

    #[test]
    fn header_damage_is_named() {
        assert_eq!(validate(&VIRT[..10]), Err(BlobError::TooShort));
        let mut bad = VIRT.to_vec();
        bad[0] = 0;
        assert_eq!(validate(&bad), Err(BlobError::BadMagic(0x000d_feed)));
        assert_eq!(
            validate(&VIRT[..VIRT.len() - 100]),
            Err(BlobError::Truncated {
                total_size: VIRT.len(),
                available: VIRT.len() - 100
            })
        );
    }

    #[test]
    fn structure_damage_is_caught_not_panicked_on() {
        // Flip each byte of the structure block in turn: validation must either accept the
        // blob (a harmless change such as a value byte) or name the problem; never panic.
        let off_struct = be32(VIRT, 8).unwrap() as usize;
        let size_struct = be32(VIRT, 36).unwrap() as usize;
        let mut rejected = 0;
        for i in (off_struct..off_struct + size_struct).step_by(3) {
            let mut bad = VIRT.to_vec();
            bad[i] ^= 0xa5;
            if validate(&bad).is_err() {
                rejected += 1;
            }
        }
        assert!(rejected > 100, "only {rejected} corruptions were rejected");
    }
}
