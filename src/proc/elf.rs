//! Checking an ELF executable before exec maps it (chapter 23, "User programs and the
//! initramfs").
//!
//! A program file is input from outside the kernel, so the loader trusts nothing in it: every
//! number that becomes an address, a length or a permission is checked here, once, and what
//! comes out ([`ElfImage`]) is a list of segments the address-space code can map without
//! further thought. The rules are the ones a static Linux arm64 executable already obeys:
//!
//! - ELF64, little-endian, machine AArch64, type ET_EXEC: static executables only. A
//!   position-independent or dynamically linked file (ET_DYN, PT_INTERP, PT_DYNAMIC) would need
//!   a dynamic linker, which quartet does not have; it is refused with a message saying so.
//! - Every PT_LOAD segment lies inside user space, [0x1000, 1<<39): page 0 stays unmapped so a
//!   null pointer faults, and 1<<39 is the top of TTBR0's 39-bit range.
//! - Its file bytes lie inside the file, and filesz <= memsz (the rest is zero-filled .bss).
//! - No segment is both writable and executable (W^X): code that can be rewritten is what
//!   an exploit wants.
//! - Segments do not share a page: each page gets exactly one segment's permissions.
//! - vaddr and file offset agree modulo the page size, as any loader that maps file pages in
//!   place needs (quartet copies, but the same file must load on Linux too).
//! - The entry point lies in the file bytes of an executable segment.
//!
//! The parsing underneath is the `elf` crate (cole14/rust-elf), chosen over `xmas-elf` and
//! `goblin` because it is no_std with no allocation and no unsafe code of its own, returns
//! errors rather than panicking on malformed input (it is fuzzed for that), and is maintained.
//! `xmas-elf` indexes slices with numbers from the file and can panic on a damaged header;
//! `goblin` is larger than this needs. The damage sweeps in the tests below hold the crate to
//! that promise on our own files.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use elf::ElfBytes;
use elf::abi;
use elf::endian::LittleEndian;

/// The granule quartet maps user memory with.
pub const PAGE_SIZE: usize = 4096;
/// The lowest address a segment may use: page 0 stays unmapped so NULL faults.
pub const USER_MIN: usize = 0x1000;
/// One past the highest user address: TTBR0 covers 39 bits of virtual address.
pub const USER_END: usize = 1 << 39;
/// More program headers than any real static executable has (ours have 2 or 3).
pub const MAX_PROGRAM_HEADERS: usize = 64;

/// A checked executable: where to start, and what to map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfImage {
    pub entry: usize,
    /// The loadable segments, sorted by address, none sharing a page with another.
    pub segments: Vec<Segment>,
}

/// One PT_LOAD segment: `file_len` bytes from `file_offset` at `vaddr`, then zeros up to
/// `mem_len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: usize,
    pub file_offset: usize,
    pub file_len: usize,
    pub mem_len: usize,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Segment {
    /// One past the segment's last byte in memory.
    pub fn end(&self) -> usize {
        self.vaddr + self.mem_len
    }

    /// The segment's bytes in `file` (checked by [`parse`] to lie inside it).
    pub fn bytes<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        &file[self.file_offset..self.file_offset + self.file_len]
    }
}

impl ElfImage {
    /// One past the highest byte any segment uses, rounded up to a page: where the heap (brk)
    /// starts.
    pub fn end(&self) -> usize {
        let end = self
            .segments
            .iter()
            .map(Segment::end)
            .max()
            .unwrap_or(USER_MIN);
        end.next_multiple_of(PAGE_SIZE)
    }
}

/// What is wrong with a file that is not a runnable quartet executable. Display gives one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not even an ELF header's worth of bytes.
    Truncated {
        len: usize,
    },
    NotElf,
    Not64Bit,
    NotLittleEndian,
    NotAarch64 {
        machine: u16,
    },
    /// ET_DYN (position-independent or shared object), PT_INTERP or PT_DYNAMIC.
    NotStatic {
        why: &'static str,
    },
    NotExecutable {
        e_type: u16,
    },
    /// The `elf` crate could not read a header or table: its message.
    Malformed(String),
    TooManyProgramHeaders {
        count: usize,
    },
    NoLoadableSegment,
    OutsideUserSpace {
        index: usize,
        start: u64,
        end: u64,
    },
    FileRangeOutsideFile {
        index: usize,
        offset: u64,
        len: u64,
        file_len: usize,
    },
    FileBiggerThanMemory {
        index: usize,
        file_len: u64,
        mem_len: u64,
    },
    WritableAndExecutable {
        index: usize,
        vaddr: u64,
    },
    Overlap {
        first: usize,
        second: usize,
    },
    Misaligned {
        index: usize,
        vaddr: u64,
        offset: u64,
    },
    EntryNotExecutable {
        entry: u64,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::Truncated { len } => write!(
                f,
                "not an executable: only {len} bytes, shorter than an ELF header"
            ),
            ElfError::NotElf => write!(f, "not an ELF file (no \\x7fELF magic)"),
            ElfError::Not64Bit => write!(
                f,
                "a 32-bit ELF file: quartet runs only 64-bit (ELFCLASS64) programs"
            ),
            ElfError::NotLittleEndian => write!(
                f,
                "a big-endian ELF file: quartet runs only little-endian programs"
            ),
            ElfError::NotAarch64 { machine } => write!(
                f,
                "built for machine {machine}, not AArch64 ({})",
                abi::EM_AARCH64
            ),
            ElfError::NotStatic { why } => write!(
                f,
                "{why}: only static executables run on quartet (link with -static, no PIE)"
            ),
            ElfError::NotExecutable { e_type } => {
                write!(f, "ELF type {e_type} is not an executable (ET_EXEC)")
            }
            ElfError::Malformed(e) => write!(f, "malformed ELF headers: {e}"),
            ElfError::TooManyProgramHeaders { count } => write!(
                f,
                "{count} program headers, more than the {MAX_PROGRAM_HEADERS} allowed"
            ),
            ElfError::NoLoadableSegment => write!(f, "no loadable (PT_LOAD) segment"),
            ElfError::OutsideUserSpace { index, start, end } => write!(
                f,
                "segment {index} [{start:#x}, {end:#x}) is outside user space [{USER_MIN:#x}, {USER_END:#x})"
            ),
            ElfError::FileRangeOutsideFile {
                index,
                offset,
                len,
                file_len,
            } => write!(
                f,
                "segment {index}'s file bytes [{offset:#x}, +{len:#x}) run past the end of the {file_len}-byte file (truncated?)"
            ),
            ElfError::FileBiggerThanMemory {
                index,
                file_len,
                mem_len,
            } => write!(
                f,
                "segment {index} has more file bytes ({file_len:#x}) than memory ({mem_len:#x})"
            ),
            ElfError::WritableAndExecutable { index, vaddr } => write!(
                f,
                "segment {index} at {vaddr:#x} is both writable and executable (W^X)"
            ),
            ElfError::Overlap { first, second } => {
                write!(f, "segments {first} and {second} overlap (or share a page)")
            }
            ElfError::Misaligned {
                index,
                vaddr,
                offset,
            } => write!(
                f,
                "segment {index}: address {vaddr:#x} and file offset {offset:#x} differ modulo the page size"
            ),
            ElfError::EntryNotExecutable { entry } => write!(
                f,
                "entry point {entry:#x} is not inside an executable segment's code"
            ),
        }
    }
}

/// Check `bytes` as a static AArch64 executable and describe what to map.
pub fn parse(bytes: &[u8]) -> Result<ElfImage, ElfError> {
    // The identification bytes first, so the common mistakes get their own message rather
    // than the crate's generic one.
    if bytes.len() < 64 {
        return Err(ElfError::Truncated { len: bytes.len() });
    }
    if bytes[..4] != abi::ELFMAGIC {
        return Err(ElfError::NotElf);
    }
    if bytes[abi::EI_CLASS] != abi::ELFCLASS64 {
        return Err(ElfError::Not64Bit);
    }
    if bytes[abi::EI_DATA] != abi::ELFDATA2LSB {
        return Err(ElfError::NotLittleEndian);
    }
    let file = ElfBytes::<LittleEndian>::minimal_parse(bytes)
        .map_err(|e| ElfError::Malformed(e.to_string()))?;
    let header = &file.ehdr;
    if header.e_machine != abi::EM_AARCH64 {
        return Err(ElfError::NotAarch64 {
            machine: header.e_machine,
        });
    }
    if header.e_type == abi::ET_DYN {
        return Err(ElfError::NotStatic {
            why: "a position-independent executable or shared object (ET_DYN)",
        });
    }
    if header.e_type != abi::ET_EXEC {
        return Err(ElfError::NotExecutable {
            e_type: header.e_type,
        });
    }
    let Some(table) = file.segments() else {
        return Err(ElfError::NoLoadableSegment);
    };
    if table.len() > MAX_PROGRAM_HEADERS {
        return Err(ElfError::TooManyProgramHeaders { count: table.len() });
    }

    let mut segments: Vec<(usize, Segment)> = Vec::new();
    for (index, ph) in table.iter().enumerate() {
        match ph.p_type {
            abi::PT_INTERP => {
                return Err(ElfError::NotStatic {
                    why: "it asks for a dynamic linker (PT_INTERP)",
                });
            }
            abi::PT_DYNAMIC => {
                return Err(ElfError::NotStatic {
                    why: "it has dynamic-linking information (PT_DYNAMIC)",
                });
            }
            abi::PT_LOAD => {}
            // PT_GNU_STACK, PT_NOTE, PT_PHDR, ...: nothing to map.
            _ => continue,
        }
        if ph.p_memsz == 0 {
            continue;
        }
        let end = ph.p_vaddr.checked_add(ph.p_memsz);
        if ph.p_vaddr < USER_MIN as u64 || end.is_none_or(|e| e > USER_END as u64) {
            return Err(ElfError::OutsideUserSpace {
                index,
                start: ph.p_vaddr,
                end: end.unwrap_or(u64::MAX),
            });
        }
        if ph.p_filesz > ph.p_memsz {
            return Err(ElfError::FileBiggerThanMemory {
                index,
                file_len: ph.p_filesz,
                mem_len: ph.p_memsz,
            });
        }
        let file_end = ph.p_offset.checked_add(ph.p_filesz);
        if file_end.is_none_or(|e| e > bytes.len() as u64) {
            return Err(ElfError::FileRangeOutsideFile {
                index,
                offset: ph.p_offset,
                len: ph.p_filesz,
                file_len: bytes.len(),
            });
        }
        if ph.p_vaddr % PAGE_SIZE as u64 != ph.p_offset % PAGE_SIZE as u64 {
            return Err(ElfError::Misaligned {
                index,
                vaddr: ph.p_vaddr,
                offset: ph.p_offset,
            });
        }
        let (write, exec) = (ph.p_flags & abi::PF_W != 0, ph.p_flags & abi::PF_X != 0);
        if write && exec {
            return Err(ElfError::WritableAndExecutable {
                index,
                vaddr: ph.p_vaddr,
            });
        }
        // Every value below was just checked to fit in the 39-bit user range or the file.
        segments.push((
            index,
            Segment {
                vaddr: ph.p_vaddr as usize,
                file_offset: ph.p_offset as usize,
                file_len: ph.p_filesz as usize,
                mem_len: ph.p_memsz as usize,
                read: ph.p_flags & abi::PF_R != 0,
                write,
                exec,
            },
        ));
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadableSegment);
    }
    segments.sort_by_key(|(_, s)| s.vaddr);
    for pair in segments.windows(2) {
        let (first, a) = pair[0];
        let (second, b) = pair[1];
        // Page granularity: a page shared by two segments would need two sets of permissions.
        if a.end().next_multiple_of(PAGE_SIZE) > b.vaddr & !(PAGE_SIZE - 1) {
            return Err(ElfError::Overlap { first, second });
        }
    }

    let entry = header.e_entry;
    let runs_code = segments
        .iter()
        .any(|(_, s)| s.exec && entry >= s.vaddr as u64 && entry < (s.vaddr + s.file_len) as u64);
    if !runs_code {
        return Err(ElfError::EntryNotExecutable { entry });
    }
    Ok(ElfImage {
        entry: entry as usize,
        segments: segments.into_iter().map(|(_, s)| s).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A program header for [`elf_file`].
    #[derive(Clone, Copy)]
    struct Ph {
        p_type: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
    }

    const R: u32 = abi::PF_R;
    const W: u32 = abi::PF_W;
    const X: u32 = abi::PF_X;

    fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
        Ph {
            p_type: abi::PT_LOAD,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
        }
    }

    /// A little-endian ELF64 file with these program headers right after the header, padded
    /// so every segment's file bytes exist (filled with a pattern).
    fn elf_file(e_type: u16, machine: u16, entry: u64, phdrs: &[Ph]) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(&abi::ELFMAGIC);
        f[abi::EI_CLASS] = abi::ELFCLASS64;
        f[abi::EI_DATA] = abi::ELFDATA2LSB;
        f[abi::EI_VERSION] = 1;
        f[16..18].copy_from_slice(&e_type.to_le_bytes());
        f[18..20].copy_from_slice(&machine.to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        f[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        f[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        for ph in phdrs {
            f.extend_from_slice(&ph.p_type.to_le_bytes());
            f.extend_from_slice(&ph.flags.to_le_bytes());
            for v in [ph.offset, ph.vaddr, ph.vaddr, ph.filesz, ph.memsz, 0x1000] {
                f.extend_from_slice(&v.to_le_bytes());
            }
        }
        let end = phdrs
            .iter()
            .filter(|p| p.p_type == abi::PT_LOAD)
            .map(|p| p.offset.saturating_add(p.filesz).min(1 << 20) as usize)
            .max()
            .unwrap_or(0);
        while f.len() < end {
            f.push((f.len() * 7) as u8);
        }
        f
    }

    /// Text (R+X) at 0x400000 from offset 0, data (R+W) 64 KiB later from offset 0x200 with
    /// .bss after it, a non-loadable PT_GNU_STACK: the shape of our own programs.
    fn good_phdrs() -> Vec<Ph> {
        vec![
            load(R | X, 0, 0x40_0000, 0x200, 0x200),
            load(R | W, 0x200, 0x41_0200, 0x40, 0x2000),
            Ph {
                p_type: abi::PT_GNU_STACK,
                flags: R | W,
                offset: 0,
                vaddr: 0,
                filesz: 0,
                memsz: 0,
            },
        ]
    }

    fn good() -> Vec<u8> {
        elf_file(abi::ET_EXEC, abi::EM_AARCH64, 0x40_0100, &good_phdrs())
    }

    fn with(change: impl FnOnce(&mut Vec<Ph>)) -> Vec<u8> {
        let mut phdrs = good_phdrs();
        change(&mut phdrs);
        elf_file(abi::ET_EXEC, abi::EM_AARCH64, 0x40_0100, &phdrs)
    }

    #[test]
    fn a_well_formed_static_executable_parses() {
        let image = parse(&good()).unwrap();
        assert_eq!(image.entry, 0x40_0100);
        assert_eq!(
            image.segments,
            [
                Segment {
                    vaddr: 0x40_0000,
                    file_offset: 0,
                    file_len: 0x200,
                    mem_len: 0x200,
                    read: true,
                    write: false,
                    exec: true
                },
                Segment {
                    vaddr: 0x41_0200,
                    file_offset: 0x200,
                    file_len: 0x40,
                    mem_len: 0x2000,
                    read: true,
                    write: true,
                    exec: false
                },
            ]
        );
        assert_eq!(image.end(), 0x41_3000);
        assert_eq!(image.segments[1].bytes(&good()), &good()[0x200..0x240]);
    }

    #[test]
    fn the_identification_is_checked_first() {
        assert_eq!(parse(&good()[..63]), Err(ElfError::Truncated { len: 63 }));
        let mut f = good();
        f[0] = b'M';
        assert_eq!(parse(&f), Err(ElfError::NotElf));
        let mut f = good();
        f[abi::EI_CLASS] = abi::ELFCLASS32;
        assert_eq!(parse(&f), Err(ElfError::Not64Bit));
        let mut f = good();
        f[abi::EI_DATA] = abi::ELFDATA2MSB;
        assert_eq!(parse(&f), Err(ElfError::NotLittleEndian));
        let f = elf_file(abi::ET_EXEC, abi::EM_X86_64, 0x40_0100, &good_phdrs());
        assert_eq!(
            parse(&f),
            Err(ElfError::NotAarch64 {
                machine: abi::EM_X86_64
            })
        );
        let f = elf_file(abi::ET_REL, abi::EM_AARCH64, 0x40_0100, &good_phdrs());
        assert_eq!(
            parse(&f),
            Err(ElfError::NotExecutable {
                e_type: abi::ET_REL
            })
        );
    }

    #[test]
    fn only_static_executables_are_accepted() {
        let pie = elf_file(abi::ET_DYN, abi::EM_AARCH64, 0x40_0100, &good_phdrs());
        let interp = with(|p| {
            p.push(Ph {
                p_type: abi::PT_INTERP,
                flags: R,
                offset: 0x100,
                vaddr: 0x40_0100,
                filesz: 8,
                memsz: 8,
            })
        });
        let dynamic = with(|p| {
            p.push(Ph {
                p_type: abi::PT_DYNAMIC,
                flags: R | W,
                offset: 0x200,
                vaddr: 0x41_0200,
                filesz: 16,
                memsz: 16,
            })
        });
        for f in [pie, interp, dynamic] {
            let e = parse(&f).unwrap_err();
            assert!(matches!(e, ElfError::NotStatic { .. }), "{e:?}");
            assert!(
                e.to_string()
                    .contains("only static executables run on quartet"),
                "{e}"
            );
        }
    }

    #[test]
    fn segments_must_lie_in_user_space() {
        for vaddr in [
            0,
            0xfff,
            (1 << 39) - 0x1000,
            0xffff_0000_0000_0000,
            u64::MAX - 0x100,
        ] {
            let f =
                with(|p| p[1] = load(R | W, 0x200, vaddr / 0x1000 * 0x1000 + 0x200, 0x40, 0x2000));
            assert!(
                matches!(parse(&f), Err(ElfError::OutsideUserSpace { index: 1, .. })),
                "{vaddr:#x}: {:?}",
                parse(&f)
            );
        }
        // Ending exactly at the top is fine.
        let f = with(|p| p[1] = load(R | W, 0x200, (1 << 39) - 0x2000 + 0x200, 0x40, 0x1e00));
        assert!(parse(&f).is_ok(), "{:?}", parse(&f));
    }

    #[test]
    fn file_bytes_must_be_in_the_file_and_fit_in_memory() {
        let mut f = good();
        f.truncate(0x220);
        assert_eq!(
            parse(&f),
            Err(ElfError::FileRangeOutsideFile {
                index: 1,
                offset: 0x200,
                len: 0x40,
                file_len: 0x220
            })
        );
        let f = with(|p| p[1].filesz = u64::MAX);
        assert!(matches!(
            parse(&f),
            Err(ElfError::FileBiggerThanMemory { index: 1, .. })
        ));
        let f = with(|p| {
            p[1].offset = u64::MAX - 0xdff;
            p[1].vaddr = 0x41_0200;
        });
        assert!(matches!(
            parse(&f),
            Err(ElfError::FileRangeOutsideFile { .. })
        ));
        let f = with(|p| p[1].memsz = 0x20);
        assert_eq!(
            parse(&f),
            Err(ElfError::FileBiggerThanMemory {
                index: 1,
                file_len: 0x40,
                mem_len: 0x20
            })
        );
    }

    #[test]
    fn writable_and_executable_is_refused() {
        let f = with(|p| p[1].flags = R | W | X);
        assert_eq!(
            parse(&f),
            Err(ElfError::WritableAndExecutable {
                index: 1,
                vaddr: 0x41_0200
            })
        );
        let f = with(|p| p[0].flags = W | X);
        assert!(matches!(
            parse(&f),
            Err(ElfError::WritableAndExecutable { index: 0, .. })
        ));
    }

    #[test]
    fn segments_may_not_overlap_or_share_a_page() {
        let f = with(|p| p[1].vaddr = 0x40_0200);
        assert_eq!(
            parse(&f),
            Err(ElfError::Overlap {
                first: 0,
                second: 1
            })
        );
        // Apart in bytes (text ends at 0x400200), but on the same page: one page, one set of
        // permissions.
        let f = with(|p| {
            p[1].offset = 0x300;
            p[1].vaddr = 0x40_0300;
        });
        assert_eq!(
            parse(&f),
            Err(ElfError::Overlap {
                first: 0,
                second: 1
            })
        );
        // Listed in the other order, still found.
        let f = with(|p| p.swap(0, 1));
        assert!(parse(&f).is_ok());
        let f = with(|p| {
            p.swap(0, 1);
            p[0].vaddr = 0x40_0200;
        });
        assert_eq!(
            parse(&f),
            Err(ElfError::Overlap {
                first: 1,
                second: 0
            })
        );
    }

    #[test]
    fn address_and_offset_must_agree_modulo_the_page() {
        let f = with(|p| p[1].vaddr = 0x41_0000);
        assert_eq!(
            parse(&f),
            Err(ElfError::Misaligned {
                index: 1,
                vaddr: 0x41_0000,
                offset: 0x200
            })
        );
    }

    #[test]
    fn the_entry_must_be_in_executable_code() {
        for entry in [0x41_0200, 0x40_0200, 0x3f_fffc, 0] {
            let f = elf_file(abi::ET_EXEC, abi::EM_AARCH64, entry, &good_phdrs());
            assert_eq!(
                parse(&f),
                Err(ElfError::EntryNotExecutable { entry }),
                "{entry:#x}"
            );
        }
    }

    #[test]
    fn a_file_with_nothing_to_load_is_refused() {
        let f = with(|p| p.retain(|ph| ph.p_type != abi::PT_LOAD));
        assert_eq!(parse(&f), Err(ElfError::NoLoadableSegment));
        // An empty PT_LOAD maps nothing and is skipped.
        let f = with(|p| p.push(load(R, 0, 0x50_0000, 0, 0)));
        assert_eq!(parse(&f).unwrap().segments.len(), 2);
        let many: Vec<Ph> = (0..65)
            .map(|i| load(R, 0, 0x40_0000 + i * 0x1_0000, 0, 0))
            .collect();
        let f = elf_file(abi::ET_EXEC, abi::EM_AARCH64, 0x40_0100, &many);
        assert_eq!(
            parse(&f),
            Err(ElfError::TooManyProgramHeaders { count: 65 })
        );
    }

    #[test]
    fn every_error_is_one_line() {
        let errors = [
            parse(&good()[..10]).unwrap_err(),
            parse(&with(|p| p[1].flags = R | W | X)).unwrap_err(),
            parse(&with(|p| p[1].vaddr = 0x40_0200)).unwrap_err(),
            parse(&with(|p| p[1].vaddr = 0)).unwrap_err(),
            parse(&elf_file(
                abi::ET_DYN,
                abi::EM_AARCH64,
                0x40_0100,
                &good_phdrs(),
            ))
            .unwrap_err(),
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
        }
    }

    /// What parse promises about anything it accepts, checked independently of how it did so.
    fn assert_sound(image: &ElfImage, file_len: usize) {
        let mut previous_end = 0;
        for s in &image.segments {
            assert!(s.vaddr >= USER_MIN && s.end() <= USER_END, "{s:?}");
            assert!(s.file_offset + s.file_len <= file_len, "{s:?}");
            assert!(s.file_len <= s.mem_len && !(s.write && s.exec), "{s:?}");
            assert!(
                s.vaddr / PAGE_SIZE * PAGE_SIZE >= previous_end,
                "{s:?} overlaps"
            );
            previous_end = s.end().next_multiple_of(PAGE_SIZE);
        }
        assert!(
            image
                .segments
                .iter()
                .any(|s| s.exec && (s.vaddr..s.vaddr + s.file_len).contains(&image.entry))
        );
    }

    /// Truncate at every length and damage every byte three ways: parse must never panic, and
    /// whatever it accepts must still keep its promises.
    fn damage_sweep(file: &[u8]) -> (usize, usize) {
        let (mut accepted, mut refused) = (0, 0);
        let mut tally = |r: Result<ElfImage, ElfError>, len: usize| match r {
            Ok(image) => {
                assert_sound(&image, len);
                accepted += 1;
            }
            Err(_) => refused += 1,
        };
        for len in 0..file.len() {
            tally(parse(&file[..len]), len);
        }
        let mut copy = file.to_vec();
        for i in 0..file.len() {
            for value in [file[i] ^ 0xff, 0, 0x80] {
                copy[i] = value;
                tally(parse(&copy), copy.len());
            }
            copy[i] = file[i];
        }
        (accepted, refused)
    }

    #[test]
    fn damaged_files_never_panic() {
        let (accepted, refused) = damage_sweep(&good());
        // Most damage is caught; some (in the pattern bytes, or harmless fields) is not.
        assert!(
            refused > 0 && accepted > 0,
            "{accepted} accepted, {refused} refused"
        );
    }

    /// The programs user/ builds (target/user, present after `make user`; `make unit` builds
    /// them first).
    fn built_programs() -> Vec<(String, Vec<u8>)> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let bin = root.join("target/user/aarch64-unknown-none/release");
        let mut found = Vec::new();
        let names = std::fs::read_dir(root.join("user/src/bin")).unwrap();
        for entry in names {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            if let Ok(bytes) = std::fs::read(bin.join(&name)) {
                found.push((name, bytes));
            }
        }
        if let Ok(bytes) = std::fs::read(root.join("target/user/c/hello-c")) {
            found.push(("hello-c".into(), bytes));
        }
        if found.is_empty() {
            eprintln!("no built user programs in target/user: run `make user` to test them too");
        }
        found
    }

    #[test]
    fn the_real_programs_parse() {
        for (name, bytes) in built_programs() {
            let image = parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let header_entry = u64::from_le_bytes(bytes[24..32].try_into().unwrap());
            assert_eq!(image.entry as u64, header_entry, "{name}");
            let text = image.segments[0];
            assert_eq!((text.vaddr, text.file_offset), (0x40_0000, 0), "{name}");
            assert!(text.read && text.exec && !text.write, "{name}: {text:?}");
            assert!(image.segments.iter().skip(1).all(|s| !s.exec), "{name}");
            assert_sound(&image, bytes.len());
        }
    }

    #[test]
    fn damaged_real_programs_never_panic() {
        for (name, bytes) in built_programs()
            .into_iter()
            .filter(|(n, _)| n == "hello" || n == "hello-c")
        {
            let (_, refused) = damage_sweep(&bytes);
            assert!(refused > 0, "{name}");
        }
    }
}
