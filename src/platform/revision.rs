//! The Raspberry Pi board revision code, decoded (chapter 29, "Asking the VideoCore").
//!
//! The firmware answers "which board is this?" with one 32-bit number. Since the Pi 2 it is a
//! bit field, the "new-style" code, laid out (most significant bit first) as
//!
//! ```text
//!   N O Q u u u W u F M M M C C C C P P P P T T T T T T T T R R R R
//!  31                23    20      16      12               4       0
//! ```
//!
//! F (bit 23) says the code is new-style. M is the memory size (256 MiB shifted left by M), C the
//! company that made the board, P the processor, T the board type, R the board's revision
//! (printed as "1.R"). N, O, Q and W are the over-voltage, OTP and warranty flags, not identity.
//! Codes without F (0x0002..0x0015) are the first Pis' sequential numbers, which no board that
//! can run this kernel carries; they are reported as numbers, not decoded.
//!
//! The tables below were written from the published field layout, one arm per documented value;
//! a value the table lacks is shown as its number, never guessed.

use core::fmt;

/// A revision code as the firmware gave it, with its fields pulled apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revision(pub u32);

/// The processor field (P).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processor {
    Bcm2835,
    Bcm2836,
    Bcm2837,
    Bcm2711,
    Bcm2712,
    Other(u8),
}

impl Revision {
    /// Bit 23: the code is a bit field, not one of the first Pis' sequential numbers.
    pub fn is_new_style(self) -> bool {
        self.0 & (1 << 23) != 0
    }

    fn field(self, shift: u32, bits: u32) -> u32 {
        (self.0 >> shift) & ((1 << bits) - 1)
    }

    /// The board's own revision (R): 5 on a "rev 1.5" board.
    pub fn board_revision(self) -> u32 {
        self.field(0, 4)
    }

    /// The type field (T).
    pub fn type_code(self) -> u32 {
        self.field(4, 8)
    }

    /// The board type's name, when the table knows the type.
    pub fn type_name(self) -> Option<&'static str> {
        Some(match self.type_code() {
            0x00 => "Raspberry Pi Model A",
            0x01 => "Raspberry Pi Model B",
            0x02 => "Raspberry Pi Model A+",
            0x03 => "Raspberry Pi Model B+",
            0x04 => "Raspberry Pi 2 Model B",
            0x05 => "Raspberry Pi Alpha (prototype)",
            0x06 => "Raspberry Pi Compute Module 1",
            0x08 => "Raspberry Pi 3 Model B",
            0x09 => "Raspberry Pi Zero",
            0x0a => "Raspberry Pi Compute Module 3",
            0x0c => "Raspberry Pi Zero W",
            0x0d => "Raspberry Pi 3 Model B+",
            0x0e => "Raspberry Pi 3 Model A+",
            0x10 => "Raspberry Pi Compute Module 3+",
            0x11 => "Raspberry Pi 4 Model B",
            0x12 => "Raspberry Pi Zero 2 W",
            0x13 => "Raspberry Pi 400",
            0x14 => "Raspberry Pi Compute Module 4",
            0x15 => "Raspberry Pi Compute Module 4S",
            0x17 => "Raspberry Pi 5",
            0x18 => "Raspberry Pi Compute Module 5",
            0x19 => "Raspberry Pi 500",
            0x1a => "Raspberry Pi Compute Module 5 Lite",
            _ => return None,
        })
    }

    pub fn processor(self) -> Processor {
        match self.field(12, 4) {
            0 => Processor::Bcm2835,
            1 => Processor::Bcm2836,
            2 => Processor::Bcm2837,
            3 => Processor::Bcm2711,
            4 => Processor::Bcm2712,
            other => Processor::Other(other as u8),
        }
    }

    /// The company that made the board (C), when the table knows it.
    pub fn manufacturer(self) -> Option<&'static str> {
        Some(match self.field(16, 4) {
            0 => "Sony UK",
            1 => "Egoman",
            2 | 4 => "Embest",
            3 => "Sony Japan",
            5 => "Stadium",
            _ => return None,
        })
    }

    /// The board's RAM in MiB (M): 256 MiB shifted left by the field, up to 16 GiB (M = 6).
    /// None for the one value the layout leaves unassigned.
    pub fn memory_mib(self) -> Option<u64> {
        match self.field(20, 3) {
            7 => None,
            m => Some(256 << m),
        }
    }
}

impl Processor {
    pub fn name(self) -> &'static str {
        match self {
            Processor::Bcm2835 => "BCM2835",
            Processor::Bcm2836 => "BCM2836",
            Processor::Bcm2837 => "BCM2837",
            Processor::Bcm2711 => "BCM2711",
            Processor::Bcm2712 => "BCM2712",
            Processor::Other(_) => "an unknown processor",
        }
    }

    /// The Arm cores the processor has, as a reader would name them.
    pub fn cores(self) -> &'static str {
        match self {
            Processor::Bcm2835 => "1 x ARM1176",
            Processor::Bcm2836 => "4 x Cortex-A7",
            Processor::Bcm2837 => "4 x Cortex-A53",
            Processor::Bcm2711 => "4 x Cortex-A72",
            Processor::Bcm2712 => "4 x Cortex-A76",
            Processor::Other(_) => "unknown cores",
        }
    }
}

/// A size of RAM in MiB as a reader says it: "512 MiB", "2 GiB".
pub struct MemorySize(pub u64);

impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1024 && self.0.is_multiple_of(1024) {
            write!(f, "{} GiB", self.0 / 1024)
        } else {
            write!(f, "{} MiB", self.0)
        }
    }
}

/// "Raspberry Pi 4 Model B rev 1.5, 2 GiB": the board as its owner would name it. Unknown
/// fields show as their numbers; an old-style code shows as the number alone.
impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_new_style() {
            return write!(
                f,
                "a Raspberry Pi with old-style revision code {:#06x}",
                self.0
            );
        }
        match self.type_name() {
            Some(name) => f.write_str(name)?,
            None => write!(f, "a Raspberry Pi of unknown type {:#x}", self.type_code())?,
        }
        write!(f, " rev 1.{}, ", self.board_revision())?;
        match self.memory_mib() {
            Some(mib) => write!(f, "{}", MemorySize(mib)),
            None => f.write_str("unknown memory size"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes from the published list of boards in use, with what that list says each one is.
    const KNOWN: [(u32, &str, Processor, &str, u64); 12] = [
        (
            0xa03111,
            "Raspberry Pi 4 Model B rev 1.1, 1 GiB",
            Processor::Bcm2711,
            "Sony UK",
            1024,
        ),
        (
            0xb03111,
            "Raspberry Pi 4 Model B rev 1.1, 2 GiB",
            Processor::Bcm2711,
            "Sony UK",
            2048,
        ),
        (
            0xb03115,
            "Raspberry Pi 4 Model B rev 1.5, 2 GiB",
            Processor::Bcm2711,
            "Sony UK",
            2048,
        ),
        (
            0xc03114,
            "Raspberry Pi 4 Model B rev 1.4, 4 GiB",
            Processor::Bcm2711,
            "Sony UK",
            4096,
        ),
        (
            0xd03114,
            "Raspberry Pi 4 Model B rev 1.4, 8 GiB",
            Processor::Bcm2711,
            "Sony UK",
            8192,
        ),
        (
            0xc03130,
            "Raspberry Pi 400 rev 1.0, 4 GiB",
            Processor::Bcm2711,
            "Sony UK",
            4096,
        ),
        (
            0xa03140,
            "Raspberry Pi Compute Module 4 rev 1.0, 1 GiB",
            Processor::Bcm2711,
            "Sony UK",
            1024,
        ),
        (
            0xd03140,
            "Raspberry Pi Compute Module 4 rev 1.0, 8 GiB",
            Processor::Bcm2711,
            "Sony UK",
            8192,
        ),
        (
            0xa02082,
            "Raspberry Pi 3 Model B rev 1.2, 1 GiB",
            Processor::Bcm2837,
            "Sony UK",
            1024,
        ),
        (
            0xa22082,
            "Raspberry Pi 3 Model B rev 1.2, 1 GiB",
            Processor::Bcm2837,
            "Embest",
            1024,
        ),
        (
            0x9000c1,
            "Raspberry Pi Zero W rev 1.1, 512 MiB",
            Processor::Bcm2835,
            "Sony UK",
            512,
        ),
        (
            0xd04170,
            "Raspberry Pi 5 rev 1.0, 8 GiB",
            Processor::Bcm2712,
            "Sony UK",
            8192,
        ),
    ];

    #[test]
    fn published_codes_decode_to_the_boards_they_name() {
        for (code, name, processor, maker, mib) in KNOWN {
            let r = Revision(code);
            assert!(r.is_new_style(), "{code:#x}");
            assert_eq!(r.to_string(), name, "{code:#x}");
            assert_eq!(r.processor(), processor, "{code:#x}");
            assert_eq!(r.manufacturer(), Some(maker), "{code:#x}");
            assert_eq!(r.memory_mib(), Some(mib), "{code:#x}");
        }
    }

    #[test]
    fn each_field_is_read_from_its_own_bits() {
        // Built from the layout, one field at a time, so a wrong shift or width shows which.
        let code = (1 << 23) | (4 << 20) | (3 << 16) | (3 << 12) | (0x14 << 4) | 7;
        let r = Revision(code);
        assert_eq!(r.memory_mib(), Some(4096));
        assert_eq!(r.manufacturer(), Some("Sony Japan"));
        assert_eq!(r.processor(), Processor::Bcm2711);
        assert_eq!(r.type_code(), 0x14);
        assert_eq!(r.board_revision(), 7);
        // The flags above F are not identity: setting them all changes nothing decoded.
        let flagged = Revision(code | 0xff00_0000);
        assert_eq!(flagged.to_string(), r.to_string());
        assert_eq!(flagged.processor(), r.processor());
    }

    #[test]
    fn unknown_values_show_as_numbers_not_guesses() {
        let r = Revision((1 << 23) | (7 << 20) | (9 << 16) | (9 << 12) | (0x7f << 4) | 2);
        assert_eq!(r.type_name(), None);
        assert_eq!(r.manufacturer(), None);
        assert_eq!(r.memory_mib(), None);
        assert_eq!(r.processor(), Processor::Other(9));
        assert_eq!(
            r.to_string(),
            "a Raspberry Pi of unknown type 0x7f rev 1.2, unknown memory size"
        );
    }

    #[test]
    fn old_style_codes_are_not_decoded_as_bit_fields() {
        // 0x000e is a Pi 1 Model B; read as a bit field it would claim to be a type-0 board.
        let r = Revision(0x000e);
        assert!(!r.is_new_style());
        assert_eq!(
            r.to_string(),
            "a Raspberry Pi with old-style revision code 0x000e"
        );
    }

    #[test]
    fn memory_sizes_read_as_a_person_says_them() {
        assert_eq!(MemorySize(512).to_string(), "512 MiB");
        assert_eq!(MemorySize(2048).to_string(), "2 GiB");
        assert_eq!(MemorySize(960).to_string(), "960 MiB");
        assert_eq!(MemorySize(16384).to_string(), "16 GiB");
    }
}
