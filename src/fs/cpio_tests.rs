//! Host tests of the cpio unpacker, on archives built here, byte by byte.

use super::*;
use crate::fs::Limits;
use crate::fs::file::File;
use crate::fs::file::flags::O_RDONLY;
use crate::fs::pages::HeapPages;
use alloc::vec::Vec;

fn fresh() -> RamFs {
    RamFs::new(Box::leak(Box::new(HeapPages::new())), Limits::default())
}

/// An archive under construction, in the format `unpack` reads.
struct Archive {
    bytes: Vec<u8>,
    magic: &'static str,
}

impl Archive {
    fn new() -> Self {
        Archive {
            bytes: Vec::new(),
            magic: "070701",
        }
    }

    fn entry(mut self, name: &str, mode: u32, data: &[u8]) -> Self {
        let check = if self.magic == "070702" {
            data.iter().map(|&b| b as u32).sum()
        } else {
            0
        };
        let fields = [
            1,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            check,
        ];
        self.bytes.extend_from_slice(self.magic.as_bytes());
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
        self
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name, S_IFREG | 0o644, data)
    }
    fn dir(self, name: &str) -> Self {
        self.entry(name, S_IFDIR | 0o755, b"")
    }
    fn done(self) -> Vec<u8> {
        self.entry(TRAILER, 0, b"").bytes
    }
}

fn sample() -> Vec<u8> {
    Archive::new()
        .dir(".")
        .dir("bin")
        .file("bin/hello", b"hello, world\n")
        .file("./etc/motd", b"odd-length!")
        .entry("bin/sh", 0o120777, b"hello") // a symlink: skipped
        .file("empty", b"")
        .done()
}

#[test]
fn an_archive_unpacks_files_directories_and_skips_links() {
    let fs = fresh();
    let report = unpack(&fs, &sample()).unwrap();
    assert_eq!(
        report,
        UnpackReport {
            files: 3,
            directories: 1,
            skipped: 1,
            bytes: 24
        }
    );
    assert_eq!(fs.read_all("/bin/hello").unwrap(), b"hello, world\n");
    assert_eq!(fs.read_all("/etc/motd").unwrap(), b"odd-length!");
    assert_eq!(fs.read_all("/empty").unwrap(), b"");
    assert_eq!(fs.stat("/bin/sh").err(), Some(Errno::ENOENT));
    assert_eq!(
        fs.stat("/etc").unwrap().0,
        crate::fs::FileKind::Directory,
        "the parent was made"
    );
}

#[test]
fn the_checksummed_variant_is_checked() {
    let mut a = Archive::new();
    a.magic = "070702";
    let good = a.file("f", b"abc").done();
    unpack(&fresh(), &good).unwrap();
    let mut bad = good.clone();
    // Change the data, not the header's check.
    let at = bad.windows(3).position(|w| w == b"abc").unwrap();
    bad[at] = b'x';
    let e = unpack(&fresh(), &bad).unwrap_err();
    assert!(matches!(e.problem, CpioProblem::BadChecksum { .. }), "{e}");
}

#[test]
fn a_bad_second_header_keeps_the_first_file_and_says_where() {
    let mut archive = Archive::new()
        .file("first", b"1234")
        .file("second", b"x")
        .done();
    let at = archive
        .windows(6)
        .enumerate()
        .filter(|(_, w)| *w == b"070701")
        .nth(1)
        .unwrap()
        .0;
    archive[at..at + 6].copy_from_slice(b"070799");
    let fs = fresh();
    let e = unpack(&fs, &archive).unwrap_err();
    assert_eq!(e.offset, at);
    assert_eq!(e.problem, CpioProblem::BadMagic(*b"070799"));
    assert_eq!(e.unpacked.files, 1);
    assert_eq!(fs.read_all("/first").unwrap(), b"1234");
    let text = e.to_string();
    assert!(
        text.contains(&format!("{at:#x}")) && text.contains("bad magic"),
        "{text}"
    );
}

#[test]
fn each_malformation_is_named() {
    let good = Archive::new().file("f", b"data").done();
    // A non-hex digit in filesize (field 6, at 6 + 6*8).
    let mut not_hex = good.clone();
    not_hex[6 + 6 * 8 + 3] = b'g';
    assert_eq!(
        unpack(&fresh(), &not_hex).unwrap_err().problem,
        CpioProblem::NotHex { field: "filesize" }
    );
    // The name's NUL replaced.
    let mut unterminated = good.clone();
    unterminated[110 + 1] = b'x';
    assert_eq!(
        unpack(&fresh(), &unterminated).unwrap_err().problem,
        CpioProblem::NameNotTerminated
    );
    // Data cut short.
    // Header 110 + "f\0" = 112, then 4 bytes of data: cut after 2 of them.
    let e = unpack(&fresh(), &good[..114]).unwrap_err();
    assert!(
        matches!(e.problem, CpioProblem::Truncated { what: "data", .. }),
        "{e}"
    );
    // No trailer.
    let no_trailer = Archive::new().file("f", b"data").bytes;
    assert_eq!(
        unpack(&fresh(), &no_trailer).unwrap_err().problem,
        CpioProblem::NoTrailer
    );
    // Climbing out of the root.
    let escape = Archive::new().file("a/../../etc/x", b"").done();
    assert!(matches!(
        unpack(&fresh(), &escape).unwrap_err().problem,
        CpioProblem::EscapesRoot { .. }
    ));
    // `..` that stays inside is fine.
    let inside = Archive::new().file("a/../b", b"ok").done();
    let fs = fresh();
    unpack(&fs, &inside).unwrap();
    assert_eq!(fs.read_all("/b").unwrap(), b"ok");
    // Bigger than a file may be.
    let small = RamFs::new(
        Box::leak(Box::new(HeapPages::new())),
        Limits {
            max_file_size: 3,
            ..Limits::default()
        },
    );
    assert!(matches!(
        unpack(&small, &good).unwrap_err().problem,
        CpioProblem::FileTooBig {
            size: 4,
            limit: 3,
            ..
        }
    ));
    // A file where a directory must go.
    let clash = Archive::new().file("a", b"").file("a/b", b"").done();
    assert_eq!(
        unpack(&fresh(), &clash).unwrap_err().problem,
        CpioProblem::Fs {
            name: "a/b".into(),
            errno: Errno::ENOTDIR
        }
    );
}

/// Damage a small archive at every offset, both by cutting it there and by flipping the byte
/// there: every result must be Ok or an error whose offset lies inside the archive, and
/// nothing may panic (a panic fails the test).
#[test]
fn damage_at_every_offset_is_refused_or_harmless_never_a_panic() {
    let archive = sample();
    let mut refused = 0;
    // Only the padding after the trailer's name may go without harm.
    let trailer_end = archive
        .windows(11)
        .position(|w| w == b"TRAILER!!!\0")
        .unwrap()
        + 11;
    for cut in 0..archive.len() {
        match unpack(&fresh(), &archive[..cut]) {
            Ok(_) => assert!(cut >= trailer_end, "cut at {cut} accepted"),
            Err(e) => {
                assert!(
                    e.offset <= cut,
                    "cut at {cut}: offset {} beyond the end",
                    e.offset
                );
                refused += 1;
            }
        }
    }
    for at in 0..archive.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut damaged = archive.clone();
            damaged[at] ^= flip;
            let fs = fresh();
            match unpack(&fs, &damaged) {
                Ok(_) => {}
                Err(e) => {
                    assert!(e.offset <= damaged.len(), "flip at {at}: {e}");
                    assert!(!e.to_string().is_empty());
                    refused += 1;
                }
            }
            // Whatever happened, the file system is still usable.
            fs.write_all("/after", b"ok").unwrap();
            let f = fs.open("/after", O_RDONLY, 0).unwrap();
            assert_eq!(f.read(&mut [0; 2]), Ok(2));
        }
    }
    assert!(refused > archive.len(), "the damage went unnoticed");
}
