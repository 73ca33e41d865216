//! The serial chainloader's protocol: how a kernel crosses the serial line from the host to the
//! loader waiting on the board, and how the loader decides whether what arrived may run
//! (chapter 29, "The chainloader loop").
//!
//! One exchange, all of it on the UART, the loader speaking first:
//!
//! 1. loader: [`READY`], repeated every [`ANNOUNCE_EVERY_MS`] while nobody answers.
//! 2. host:   [`ANSWER`], then the kernel's size in bytes (u32, little-endian).
//! 3. loader: a line starting with [`ACCEPTED`] if the size fits, else one with [`REFUSED`].
//! 4. host:   the kernel's bytes, then their CRC-32 (u32, little-endian).
//! 5. loader: checks the CRC, then the arm64 Image header. Only a kernel that passes every check
//!    is run (after a line starting with [`STARTING`]); anything else is refused with a line
//!    saying why, and the loader waits again.
//!
//! A transfer that stops (no byte for [`BYTE_TIMEOUT_MS`]) is refused as truncated: the loader
//! never waits forever for a byte that will not come, and never runs a kernel that did not
//! fully arrive.
//!
//! The checksum is CRC-32 (the one in Ethernet, zip and PNG), computed here from its polynomial.
//! A plain sum of the bytes would miss two bytes swapped, and any pair of errors that cancel;
//! CRC-32 catches every error burst up to 32 bits long, and any other damage but for one
//! pattern in 2^32. That is strong enough for a serial line, where the usual damage is a
//! dropped or garbled byte, and cheap enough for a CPU with its data cache off.
//!
//! This file is self-contained (no `crate::` paths): the loader (src/bin/chainloader.rs) and
//! the host tool (tools/push) compile it too, so both ends of the line share one definition.

use core::fmt;

/// What the loader prints when it waits for a kernel. Human-readable on a plain terminal, and
/// the exact bytes the host looks for before it sends anything.
pub const READY: &[u8] = b"[quartet chainloader: send a kernel]\r\n";
/// The host's answer to [`READY`]: the four bytes before the size.
pub const ANSWER: &[u8; 4] = b"QKRN";
/// The start of the loader's line that accepts a size: the host sends the image after it.
pub const ACCEPTED: &str = "chainloader: receiving ";
/// The start of every refusal line.
pub const REFUSED: &str = "chainloader: refused: ";
/// The start of the loader's last line: the kernel passed every check and runs next.
pub const STARTING: &str = "chainloader: checksum ok";

/// How long the loader waits for an answer before it announces itself again.
pub const ANNOUNCE_EVERY_MS: u32 = 2000;
/// Once a transfer has begun, a gap this long means the host has stopped: the transfer is
/// truncated. Far longer than any pause a working sender makes (a byte takes 87 us at
/// 115200 baud), short enough that a person at the board is not left wondering.
pub const BYTE_TIMEOUT_MS: u32 = 2000;
/// After a refusal the loader discards what still arrives until the line is this quiet, so
/// the rest of a refused transfer is not read as a new request.
pub const QUIET_MS: u32 = 500;

/// An arm64 Image starts with a 64-byte header; anything shorter is not a kernel.
pub const IMAGE_HEADER_LEN: usize = 64;
/// Where the Image header keeps its magic, `ARM\x64`.
const IMAGE_MAGIC_OFFSET: usize = 0x38;
const IMAGE_MAGIC: &[u8; 4] = b"ARM\x64";

/// The serial line as the loader sees it.
pub trait Line {
    /// The next byte, or `None` if none arrives within `ms` milliseconds.
    fn read_byte_within(&mut self, ms: u32) -> Option<u8>;
    /// Send `bytes` as they are (no newline translation).
    fn write(&mut self, bytes: &[u8]);
}

/// Where a kernel goes: `memory` starts at physical `address`, and its end is the first thing
/// that must not be overwritten, `bounded_by` (the loader itself, or the device tree).
pub struct Destination<'a> {
    pub memory: &'a mut [u8],
    pub address: usize,
    /// The physical start of RAM: the Image header's text_offset counts from it.
    pub ram_base: usize,
    pub bounded_by: &'static str,
}

/// A kernel that arrived whole and passed every check.
#[derive(Debug, PartialEq, Eq)]
pub struct Loaded {
    pub size: usize,
    pub crc: u32,
}

/// Which part of a transfer was cut short.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Part {
    Size,
    Image,
    Checksum,
}

/// Why the loader did not run what it received.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Nobody answered [`READY`] in time: not an error; the loader announces itself again.
    Idle,
    TooSmall {
        size: u32,
    },
    TooBig {
        size: u32,
        room: usize,
        bounded_by: &'static str,
    },
    /// No byte for [`BYTE_TIMEOUT_MS`] after `received` of `expected` bytes of `part`.
    Stopped {
        part: Part,
        received: usize,
        expected: usize,
    },
    Checksum {
        sent: u32,
        computed: u32,
    },
    NotAnImage,
    /// The header asks to be loaded at another offset from RAM (a kernel built for another
    /// board, such as QEMU virt's at 2 MiB).
    WrongOffset {
        text_offset: u64,
        expected: u64,
    },
    /// The header's image size (BSS and stacks included) reaches past the room.
    ImageTooBig {
        image_size: u64,
        room: usize,
        bounded_by: &'static str,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::Idle => write!(f, "nobody answered"),
            Refusal::TooSmall { size } => write!(
                f,
                "a kernel of {size} bytes is shorter than an arm64 Image header ({IMAGE_HEADER_LEN} bytes)"
            ),
            Refusal::TooBig {
                size,
                room,
                bounded_by,
            } => write!(
                f,
                "a kernel of {size} bytes does not fit: at most {room} bytes fit below {bounded_by}"
            ),
            Refusal::Stopped {
                part,
                received,
                expected,
            } => {
                let what = match part {
                    Part::Size => "size",
                    Part::Image => "kernel",
                    Part::Checksum => "checksum",
                };
                write!(
                    f,
                    "the transfer stopped after {received} of {expected} {what} bytes (nothing for {} ms)",
                    BYTE_TIMEOUT_MS
                )
            }
            Refusal::Checksum { sent, computed } => write!(
                f,
                "checksum mismatch: the host sent crc32 {sent:#010x}, the bytes received give {computed:#010x}"
            ),
            Refusal::NotAnImage => write!(
                f,
                "not an arm64 Image (no \"ARM\\x64\" at offset {IMAGE_MAGIC_OFFSET:#x}): the ELF, or another file? Send kernel8.img"
            ),
            Refusal::WrongOffset {
                text_offset,
                expected,
            } => write!(
                f,
                "the Image asks for text_offset {text_offset:#x}, this board loads at {expected:#x}: a kernel built for another board?"
            ),
            Refusal::ImageTooBig {
                image_size,
                room,
                bounded_by,
            } => write!(
                f,
                "the Image needs {image_size} bytes with its BSS and stacks: at most {room} fit below {bounded_by}"
            ),
        }
    }
}

/// The CRC-32 lookup table for the reflected polynomial 0xEDB88320 (x^32 + x^26 + ... + 1, bit
/// order reversed), built by the compiler: entry `i` is the remainder of byte `i` shifted
/// through eight steps of the division.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut rem = i as u32;
        let mut bit = 0;
        while bit < 8 {
            rem = if rem & 1 != 0 {
                (rem >> 1) ^ 0xEDB8_8320
            } else {
                rem >> 1
            };
            bit += 1;
        }
        table[i] = rem;
        i += 1;
    }
    table
};

/// A CRC-32 computed as the bytes go by, so the loader needs no second pass over the kernel.
#[derive(Clone, Copy)]
pub struct Crc32(u32);

impl Crc32 {
    pub const fn new() -> Crc32 {
        Crc32(!0)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 >> 8) ^ CRC_TABLE[((self.0 ^ b as u32) & 0xff) as usize];
        }
    }

    pub fn finish(self) -> u32 {
        !self.0
    }
}

impl Default for Crc32 {
    fn default() -> Crc32 {
        Crc32::new()
    }
}

/// The CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.finish()
}

/// What the host sends after [`READY`]: [`ANSWER`] and the size.
pub fn request(size: u32) -> [u8; 8] {
    let mut r = [0u8; 8];
    r[..4].copy_from_slice(ANSWER);
    r[4..].copy_from_slice(&size.to_le_bytes());
    r
}

/// `fmt::Write` onto a [`Line`], for the loader's messages.
pub struct LineWriter<'a, L: Line>(pub &'a mut L);

impl<L: Line> fmt::Write for LineWriter<'_, L> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// Announce, wait for an answer, receive one kernel into `dest` and check it. Every way out but
/// `Ok` leaves the kernel unrun: the caller jumps only on `Ok`.
pub fn receive(line: &mut impl Line, dest: &mut Destination<'_>) -> Result<Loaded, Refusal> {
    use fmt::Write;
    line.write(READY);
    wait_for_answer(line)?;

    let mut size = [0u8; 4];
    read_exact(line, &mut size, Part::Size, None)?;
    let size = u32::from_le_bytes(size);
    let room = dest.memory.len();
    if (size as usize) < IMAGE_HEADER_LEN {
        return Err(Refusal::TooSmall { size });
    }
    if size as usize > room {
        return Err(Refusal::TooBig {
            size,
            room,
            bounded_by: dest.bounded_by,
        });
    }
    let _ = write!(
        LineWriter(line),
        "{ACCEPTED}{size} bytes at {:#x}\r\n",
        dest.address
    );

    let size = size as usize;
    let mut crc = Crc32::new();
    read_exact(line, &mut dest.memory[..size], Part::Image, Some(&mut crc))?;
    let mut sent = [0u8; 4];
    read_exact(line, &mut sent, Part::Checksum, None)?;
    let sent = u32::from_le_bytes(sent);
    let computed = crc.finish();
    if sent != computed {
        return Err(Refusal::Checksum { sent, computed });
    }
    check_image(&dest.memory[..size], dest.address - dest.ram_base, dest)?;
    Ok(Loaded {
        size,
        crc: computed,
    })
}

/// Receive until a kernel arrives whole and passes every check: each refusal is reported on the
/// line, the rest of the refused transfer is discarded, and the loader announces itself again.
pub fn serve(line: &mut impl Line, dest: &mut Destination<'_>) -> Loaded {
    use fmt::Write;
    loop {
        match receive(line, dest) {
            Ok(loaded) => return loaded,
            Err(Refusal::Idle) => {}
            Err(why) => {
                let _ = write!(LineWriter(line), "{REFUSED}{why}; nothing was run\r\n");
                while line.read_byte_within(QUIET_MS).is_some() {}
            }
        }
    }
}

/// Scan the incoming bytes for [`ANSWER`]; anything else (line noise, keys a person typed) is
/// skipped. `Idle` when the line stays silent for [`ANNOUNCE_EVERY_MS`].
fn wait_for_answer(line: &mut impl Line) -> Result<(), Refusal> {
    let mut window = [0u8; 4];
    loop {
        let byte = line
            .read_byte_within(ANNOUNCE_EVERY_MS)
            .ok_or(Refusal::Idle)?;
        window.rotate_left(1);
        window[3] = byte;
        if &window == ANSWER {
            return Ok(());
        }
    }
}

fn read_exact(
    line: &mut impl Line,
    into: &mut [u8],
    part: Part,
    mut crc: Option<&mut Crc32>,
) -> Result<(), Refusal> {
    let expected = into.len();
    for (received, slot) in into.iter_mut().enumerate() {
        let byte = line
            .read_byte_within(BYTE_TIMEOUT_MS)
            .ok_or(Refusal::Stopped {
                part,
                received,
                expected,
            })?;
        *slot = byte;
        if let Some(crc) = crc.as_deref_mut() {
            crc.update(&[byte]);
        }
    }
    Ok(())
}

/// The arm64 Image header's promises, checked against where the kernel is about to run.
fn check_image(image: &[u8], offset_in_ram: usize, dest: &Destination<'_>) -> Result<(), Refusal> {
    if image[IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4] != IMAGE_MAGIC[..] {
        return Err(Refusal::NotAnImage);
    }
    let field = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().unwrap_or([0; 8]));
    let (text_offset, image_size) = (field(8), field(16));
    let expected = offset_in_ram as u64;
    // An image_size of 0 marks an old header whose text_offset means nothing.
    if image_size != 0 && text_offset != expected {
        return Err(Refusal::WrongOffset {
            text_offset,
            expected,
        });
    }
    if image_size > dest.memory.len() as u64 {
        return Err(Refusal::ImageTooBig {
            image_size,
            room: dest.memory.len(),
            bounded_by: dest.bounded_by,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::vec::Vec;

    /// A line that plays a script: `Some(byte)` arrives, `None` is a silence long enough for any
    /// timeout. An empty script is silence too.
    struct Script {
        input: VecDeque<Option<u8>>,
        output: Vec<u8>,
    }

    impl Script {
        fn new() -> Script {
            Script {
                input: VecDeque::new(),
                output: Vec::new(),
            }
        }
        fn bytes(mut self, bytes: &[u8]) -> Script {
            self.input.extend(bytes.iter().map(|&b| Some(b)));
            self
        }
        fn silence(mut self) -> Script {
            self.input.push_back(None);
            self
        }
        fn said(&self) -> String {
            String::from_utf8_lossy(&self.output).into_owned()
        }
    }

    impl Line for Script {
        fn read_byte_within(&mut self, _ms: u32) -> Option<u8> {
            self.input.pop_front().flatten()
        }
        fn write(&mut self, bytes: &[u8]) {
            self.output.extend_from_slice(bytes);
        }
    }

    const LOAD: usize = 0x8_0000;

    /// A small but well-formed Pi 4 Image: header (text_offset 0x80000, image_size = 2x the
    /// file, as BSS would make it), then a recognisable body.
    fn kernel(len: usize) -> Vec<u8> {
        let mut k: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        k[8..16].copy_from_slice(&(LOAD as u64).to_le_bytes());
        k[16..24].copy_from_slice(&(2 * len as u64).to_le_bytes());
        k[IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4].copy_from_slice(IMAGE_MAGIC);
        k
    }

    fn transfer(kernel: &[u8], crc: u32) -> Vec<u8> {
        let mut t = request(kernel.len() as u32).to_vec();
        t.extend_from_slice(kernel);
        t.extend_from_slice(&crc.to_le_bytes());
        t
    }

    fn receive_into(script: &mut Script, room: usize) -> (Result<Loaded, Refusal>, Vec<u8>) {
        let mut memory = vec![0u8; room];
        let mut dest = Destination {
            memory: &mut memory,
            address: LOAD,
            ram_base: 0,
            bounded_by: "the chainloader at 0x4000000",
        };
        let r = receive(script, &mut dest);
        (r, memory)
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The check value every CRC-32 (IEEE) implementation must give for "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        // Fed in pieces, the same as in one go.
        let mut c = Crc32::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }

    #[test]
    fn crc32_sees_what_a_byte_sum_misses() {
        // Two bytes swapped: the same sum, a different CRC.
        let a = b"quartet kernel";
        let b = b"quartet kenrel";
        let sum = |s: &[u8]| s.iter().map(|&x| x as u32).sum::<u32>();
        assert_eq!(sum(a), sum(b));
        assert_ne!(crc32(a), crc32(b));
    }

    #[test]
    fn a_good_transfer_is_loaded_byte_for_byte() {
        let k = kernel(300);
        let mut line = Script::new()
            .bytes(b"noise before the answer ")
            .bytes(&transfer(&k, crc32(&k)));
        let (r, memory) = receive_into(&mut line, 4096);
        assert_eq!(
            r,
            Ok(Loaded {
                size: 300,
                crc: crc32(&k)
            })
        );
        assert_eq!(&memory[..300], &k[..]);
        let said = line.said();
        assert!(said.starts_with("[quartet chainloader: send a kernel]\r\n"));
        assert!(said.contains("chainloader: receiving 300 bytes at 0x80000\r\n"));
    }

    #[test]
    fn silence_before_an_answer_is_idle_not_an_error() {
        let mut line = Script::new().silence();
        assert_eq!(receive_into(&mut line, 4096).0, Err(Refusal::Idle));
    }

    #[test]
    fn one_flipped_byte_is_refused_as_a_checksum_mismatch() {
        let k = kernel(300);
        let mut bad = k.clone();
        bad[200] ^= 0x10;
        let mut line = Script::new().bytes(&transfer(&bad, crc32(&k)));
        let (r, _) = receive_into(&mut line, 4096);
        assert_eq!(
            r,
            Err(Refusal::Checksum {
                sent: crc32(&k),
                computed: crc32(&bad)
            })
        );
    }

    #[test]
    fn a_transfer_that_stops_is_refused_as_truncated() {
        let k = kernel(300);
        let t = transfer(&k, crc32(&k));
        // The request and 100 of the 300 kernel bytes, then nothing.
        let mut line = Script::new().bytes(&t[..8 + 100]).silence();
        assert_eq!(
            receive_into(&mut line, 4096).0,
            Err(Refusal::Stopped {
                part: Part::Image,
                received: 100,
                expected: 300
            })
        );
        // Cut inside the checksum: still refused, although every kernel byte arrived.
        let mut line = Script::new().bytes(&t[..t.len() - 1]).silence();
        assert_eq!(
            receive_into(&mut line, 4096).0,
            Err(Refusal::Stopped {
                part: Part::Checksum,
                received: 3,
                expected: 4
            })
        );
    }

    #[test]
    fn sizes_that_cannot_be_a_kernel_here_are_refused_before_any_byte_is_stored() {
        let mut line = Script::new().bytes(&request(5000));
        let (r, memory) = receive_into(&mut line, 4096);
        assert_eq!(
            r,
            Err(Refusal::TooBig {
                size: 5000,
                room: 4096,
                bounded_by: "the chainloader at 0x4000000"
            })
        );
        assert!(memory.iter().all(|&b| b == 0));
        assert!(!line.said().contains(ACCEPTED));
        let mut line = Script::new().bytes(&request(12));
        assert_eq!(
            receive_into(&mut line, 4096).0,
            Err(Refusal::TooSmall { size: 12 })
        );
    }

    #[test]
    fn the_image_header_must_fit_this_board() {
        // An ELF (or anything else) with a correct checksum: refused, it is no Image.
        let mut elf = kernel(300);
        elf[IMAGE_MAGIC_OFFSET] = 0;
        let mut line = Script::new().bytes(&transfer(&elf, crc32(&elf)));
        assert_eq!(receive_into(&mut line, 4096).0, Err(Refusal::NotAnImage));
        // A QEMU virt build asks to sit 2 MiB into RAM.
        let mut virt = kernel(300);
        virt[8..16].copy_from_slice(&0x20_0000u64.to_le_bytes());
        let mut line = Script::new().bytes(&transfer(&virt, crc32(&virt)));
        assert_eq!(
            receive_into(&mut line, 4096).0,
            Err(Refusal::WrongOffset {
                text_offset: 0x20_0000,
                expected: 0x8_0000
            })
        );
        // The file fits, but its BSS (image_size = 600) would run into what lies above.
        let k = kernel(300);
        let mut line = Script::new().bytes(&transfer(&k, crc32(&k)));
        assert_eq!(
            receive_into(&mut line, 500).0,
            Err(Refusal::ImageTooBig {
                image_size: 600,
                room: 500,
                bounded_by: "the chainloader at 0x4000000"
            })
        );
    }

    #[test]
    fn serve_reports_each_refusal_and_then_takes_a_good_kernel() {
        let k = kernel(300);
        let mut bad = k.clone();
        bad[100] ^= 1;
        let t = transfer(&k, crc32(&k));
        // Each refusal is followed by the quiet that ends its drain; the truncated transfer
        // needs a silence of its own first, to be cut.
        let mut line = Script::new()
            .silence() // nobody there yet: announce again
            .bytes(&transfer(&bad, crc32(&k)))
            .silence()
            .bytes(&t[..50])
            .silence()
            .silence()
            .bytes(&t);
        let mut memory = vec![0u8; 4096];
        let mut dest = Destination {
            memory: &mut memory,
            address: LOAD,
            ram_base: 0,
            bounded_by: "the chainloader",
        };
        let loaded = serve(&mut line, &mut dest);
        assert_eq!(loaded.size, 300);
        assert_eq!(&memory[..300], &k[..]);
        let said = line.said();
        assert_eq!(
            said.matches("[quartet chainloader: send a kernel]").count(),
            4
        );
        let refusals: Vec<&str> = said.lines().filter(|l| l.starts_with(REFUSED)).collect();
        assert_eq!(refusals.len(), 2, "{said}");
        assert!(refusals[0].contains("checksum mismatch"), "{said}");
        assert!(
            refusals[1].contains("stopped after 42 of 300 kernel bytes"),
            "{said}"
        );
        assert!(refusals.iter().all(|l| l.ends_with("; nothing was run")));
    }
}
