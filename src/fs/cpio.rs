//! Unpacking a "newc" cpio archive into the ramfs: the initramfs (chapter 22, "A file system
//! in memory").
//!
//! An archive is a sequence of entries, each a 110-byte ASCII header, the entry's name, and its
//! data. The header is the magic `070701` (or `070702`, whose `check` field is the sum of the
//! data bytes) and thirteen 8-digit hexadecimal fields: ino, mode, uid, gid, nlink, mtime,
//! filesize, devmajor, devminor, rdevmajor, rdevminor, namesize (with the NUL), check. Header
//! and name together are padded to a multiple of 4 bytes, and so is the data. The entry named
//! `TRAILER!!!` ends the archive.
//!
//! Regular files and directories are unpacked (parents made as needed); symbolic links, device
//! nodes, FIFOs and sockets are skipped with a warning, since the ramfs has none. Anything
//! malformed stops the unpacking with a `CpioError` naming the problem and its offset; what was
//! unpacked before it stays, and the error says how much that was. Names are taken relative to
//! the root (a leading `/` or `./` is dropped); one whose `..` would climb out of the root is
//! refused.

use alloc::string::String;
use core::fmt;

use super::ramfs::RamFs;
use crate::errno::Errno;

const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

/// What an unpacking made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnpackReport {
    pub files: usize,
    pub directories: usize,
    /// Entries of kinds the ramfs does not have (links, devices, FIFOs, sockets).
    pub skipped: usize,
    /// Bytes of file contents written.
    pub bytes: usize,
}

/// What is wrong with an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpioProblem {
    /// The header does not start with 070701 or 070702.
    BadMagic([u8; 6]),
    /// A header field is not 8 hexadecimal digits.
    NotHex {
        field: &'static str,
    },
    /// The archive ends inside something.
    Truncated {
        what: &'static str,
        needed: usize,
        left: usize,
    },
    /// The name's last byte (namesize counts the NUL) is not NUL, or namesize is 0.
    NameNotTerminated,
    NameNotUtf8,
    /// A name whose `..` climbs out of the root.
    EscapesRoot {
        name: String,
    },
    /// A file bigger than one ramfs file may be.
    FileTooBig {
        name: String,
        size: usize,
        limit: usize,
    },
    /// 070702: the data's byte sum is not the header's `check`.
    BadChecksum {
        name: String,
        expected: u32,
        computed: u32,
    },
    /// The archive ends (at an entry boundary) without a TRAILER!!! entry.
    NoTrailer,
    /// The ramfs refused to make an entry.
    Fs {
        name: String,
        errno: Errno,
    },
}

/// A refused archive: what, where, and what was unpacked before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpioError {
    /// Byte offset in the archive of the entry (or field) at fault.
    pub offset: usize,
    pub problem: CpioProblem,
    pub unpacked: UnpackReport,
}

impl fmt::Display for CpioProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpioProblem::BadMagic(m) => write!(
                f,
                "bad magic {:?} (a newc archive's headers start with 070701 or 070702)",
                String::from_utf8_lossy(m)
            ),
            CpioProblem::NotHex { field } => {
                write!(f, "header field {field} is not 8 hexadecimal digits")
            }
            CpioProblem::Truncated { what, needed, left } => write!(
                f,
                "truncated: the {what} needs {needed} bytes, the archive has {left} left"
            ),
            CpioProblem::NameNotTerminated => {
                write!(f, "name not NUL-terminated within its namesize")
            }
            CpioProblem::NameNotUtf8 => write!(f, "name is not UTF-8"),
            CpioProblem::EscapesRoot { name } => {
                write!(f, "name {name:?} climbs out of the root with ..")
            }
            CpioProblem::FileTooBig { name, size, limit } => write!(
                f,
                "file {name:?} has {size} bytes; a file may have at most {limit}"
            ),
            CpioProblem::BadChecksum {
                name,
                expected,
                computed,
            } => write!(
                f,
                "file {name:?}: data sums to {computed:#x}, its header says {expected:#x}"
            ),
            CpioProblem::NoTrailer => write!(f, "archive ends without a TRAILER!!! entry"),
            CpioProblem::Fs { name, errno } => write!(f, "cannot make {name:?}: {errno}"),
        }
    }
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at offset {:#x}: {}; kept what came before: {} files, {} directories",
            self.offset, self.problem, self.unpacked.files, self.unpacked.directories
        )
    }
}

/// The fields of one header that unpacking uses.
struct Header {
    mode: u32,
    filesize: usize,
    namesize: usize,
    check: u32,
    with_checksum: bool,
}

const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];

fn parse_header(bytes: &[u8]) -> Result<Header, CpioProblem> {
    let magic: [u8; 6] = bytes[..6].try_into().expect("6 bytes");
    let with_checksum = match &magic {
        b"070701" => false,
        b"070702" => true,
        _ => return Err(CpioProblem::BadMagic(magic)),
    };
    let mut values = [0u32; 13];
    for (i, (value, field)) in values.iter_mut().zip(FIELDS).enumerate() {
        let digits = &bytes[6 + 8 * i..6 + 8 * (i + 1)];
        // from_str_radix would accept a leading '+'; the format allows hex digits only.
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(CpioProblem::NotHex { field });
        }
        let text = core::str::from_utf8(digits).map_err(|_| CpioProblem::NotHex { field })?;
        *value = u32::from_str_radix(text, 16).map_err(|_| CpioProblem::NotHex { field })?;
    }
    Ok(Header {
        mode: values[1],
        filesize: values[6] as usize,
        namesize: values[11] as usize,
        check: values[12],
        with_checksum,
    })
}

/// `name` as a path under the root ("/a/b"), or None if it climbs out; "" for the root itself.
fn normalise(name: &str) -> Option<String> {
    let mut parts: alloc::vec::Vec<&str> = alloc::vec::Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    let mut path = String::new();
    for p in parts {
        path.push('/');
        path.push_str(p);
    }
    Some(path)
}

/// Unpack `archive` into `fs`.
pub fn unpack(fs: &RamFs, archive: &[u8]) -> Result<UnpackReport, CpioError> {
    let mut report = UnpackReport::default();
    let mut at = 0;
    let fail = |offset, problem, unpacked| {
        Err(CpioError {
            offset,
            problem,
            unpacked,
        })
    };
    loop {
        let left = archive.len() - at;
        if left == 0 {
            return fail(at, CpioProblem::NoTrailer, report);
        }
        if left < HEADER_LEN {
            let problem = CpioProblem::Truncated {
                what: "header",
                needed: HEADER_LEN,
                left,
            };
            return fail(at, problem, report);
        }
        let header = match parse_header(&archive[at..at + HEADER_LEN]) {
            Ok(h) => h,
            Err(problem) => return fail(at, problem, report),
        };
        let name_at = at + HEADER_LEN;
        if header.namesize > archive.len() - name_at {
            let problem = CpioProblem::Truncated {
                what: "name",
                needed: header.namesize,
                left: archive.len() - name_at,
            };
            return fail(name_at, problem, report);
        }
        let raw_name = &archive[name_at..name_at + header.namesize];
        let Some((&0, name)) = raw_name.split_last() else {
            return fail(name_at, CpioProblem::NameNotTerminated, report);
        };
        let Ok(name) = core::str::from_utf8(name) else {
            return fail(name_at, CpioProblem::NameNotUtf8, report);
        };
        // Header and name padded to 4; the data likewise (the archive's end may cut padding
        // after the trailer or the last data short, which harms nothing).
        let data_at = (name_at + header.namesize)
            .next_multiple_of(4)
            .min(archive.len());
        if name == TRAILER {
            return Ok(report);
        }
        let data_left = archive.len() - data_at;
        if header.filesize > data_left {
            let problem = CpioProblem::Truncated {
                what: "data",
                needed: header.filesize,
                left: data_left,
            };
            return fail(data_at, problem, report);
        }
        let data = &archive[data_at..data_at + header.filesize];
        let Some(path) = normalise(name) else {
            let problem = CpioProblem::EscapesRoot { name: name.into() };
            return fail(name_at, problem, report);
        };
        let fs_error = |errno| CpioProblem::Fs {
            name: name.into(),
            errno,
        };
        match header.mode & S_IFMT {
            S_IFDIR => {
                if !path.is_empty() {
                    if let Err(e) = fs.mkdir_all(&path) {
                        return fail(at, fs_error(e), report);
                    }
                    report.directories += 1;
                }
            }
            S_IFREG => {
                let limit = fs.limits().max_file_size;
                if data.len() > limit {
                    let problem = CpioProblem::FileTooBig {
                        name: name.into(),
                        size: data.len(),
                        limit,
                    };
                    return fail(at, problem, report);
                }
                if header.with_checksum {
                    let computed = data.iter().fold(0u32, |s, &b| s.wrapping_add(b as u32));
                    if computed != header.check {
                        let problem = CpioProblem::BadChecksum {
                            name: name.into(),
                            expected: header.check,
                            computed,
                        };
                        return fail(at, problem, report);
                    }
                }
                if let Err(e) = write_file(fs, &path, data) {
                    return fail(at, fs_error(e), report);
                }
                report.files += 1;
                report.bytes += data.len();
            }
            kind => {
                log::warn!(target: "fs",
                    "initramfs: skipping {name:?} at offset {at:#x}: file type {:#o} (only regular files and directories are unpacked)",
                    kind
                );
                report.skipped += 1;
            }
        }
        at = (data_at + header.filesize)
            .next_multiple_of(4)
            .min(archive.len());
    }
}

/// Make file `path` with `data`, and the directories above it.
fn write_file(fs: &RamFs, path: &str, data: &[u8]) -> Result<(), Errno> {
    if let Some((parent, _)) = path.rsplit_once('/')
        && !parent.is_empty()
    {
        fs.mkdir_all(parent)?;
    }
    fs.write_all(path, data)
}

#[cfg(test)]
#[path = "cpio_tests.rs"]
mod tests;
