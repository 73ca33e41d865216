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
