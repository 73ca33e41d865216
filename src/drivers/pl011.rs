//! The ARM PL011 UART: quartet's console on QEMU virt and on the Pi 4 (chapter 2).
//!
//! On QEMU the UART works without set-up; on a real Pi 4 the firmware may leave it off or at
//! another baud rate, so `init` programs it fully: disable, wait until idle, set the divisors for
//! 115200 baud from the reference clock, 8N1 with FIFOs, enable. The driver is not locked itself:
//! src/console.rs puts it behind a lock so lines from different CPUs never interleave.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields! {
    u32,
    FR [
        /// Receive FIFO full.
        RXFF OFFSET(6) NUMBITS(1) [],
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// UART busy sending.
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    LCR_H [
        /// Word length: 0b11 = 8 bits.
        WLEN OFFSET(5) NUMBITS(2) [EightBit = 0b11],
        /// FIFOs on.
        FEN OFFSET(4) NUMBITS(1) []
    ],
    CR [
        RXE OFFSET(9) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ],
    /// Interrupt bits, the same in the mask (IMSC) and clear (ICR) registers.
    INT [
        /// Receive timeout: bytes wait in the FIFO but fewer than the trigger level arrived.
        RT OFFSET(6) NUMBITS(1) [],
        /// Receive: the FIFO reached its trigger level.
        RX OFFSET(4) NUMBITS(1) []
    ]
}

register_structs! {
    pub Pl011Registers {
        (0x00 => dr: ReadWrite<u32>),
        (0x04 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _reserved1),
        (0x24 => ibrd: ReadWrite<u32>),
        (0x28 => fbrd: ReadWrite<u32>),
        (0x2c => lcr_h: ReadWrite<u32, LCR_H::Register>),
        (0x30 => cr: ReadWrite<u32, CR::Register>),
        (0x34 => _reserved2),
        (0x38 => imsc: ReadWrite<u32, INT::Register>),
        (0x3c => _reserved3),
        (0x44 => icr: WriteOnly<u32, INT::Register>),
        (0x48 => @END),
    }
}

/// The integer and fractional baud-rate divisors for `clock_hz` and `baud`:
/// divisor = clock / (16 * baud), the fraction in 64ths, rounded to nearest.
pub fn baud_divisors(clock_hz: u32, baud: u32) -> (u32, u32) {
    let sixty_fourths = (clock_hz as u64 * 4 + baud as u64 / 2) / baud as u64;
    ((sixty_fourths / 64) as u32, (sixty_fourths % 64) as u32)
}

/// A PL011 at a fixed MMIO address.
pub struct Pl011 {
    regs: *const Pl011Registers,
}

// SAFETY: the driver holds only an MMIO address; whoever shares it (the console lock) serialises
// use, and the registers themselves may be accessed from any CPU.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// # Safety
    /// `base` must be the address of a PL011's registers, mapped as Device memory (or the MMU
    /// off), and nothing else may drive the same UART concurrently.
    pub const unsafe fn new(base: usize) -> Self {
        Pl011 {
            regs: base as *const Pl011Registers,
        }
    }

    fn regs(&self) -> &Pl011Registers {
        // SAFETY: `new`'s contract: the address is a mapped PL011 register block.
        unsafe { &*self.regs }
    }

    /// Program 8N1 at `baud` from a `clock_hz` reference clock, FIFOs on, TX and RX enabled.
    pub fn init(&self, clock_hz: u32, baud: u32) {
        let r = self.regs();
        r.cr.set(0);
        while r.fr.is_set(FR::BUSY) {}
        r.icr.set(0x7ff);
        let (ibrd, fbrd) = baud_divisors(clock_hz, baud);
        r.ibrd.set(ibrd);
        r.fbrd.set(fbrd);
        // The divisors latch on the LCR_H write, so it must come after them.
        r.lcr_h.write(LCR_H::WLEN::EightBit + LCR_H::FEN::SET);
        r.cr.write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
    }

    pub fn write_byte(&self, byte: u8) {
        let r = self.regs();
        while r.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        r.dr.set(byte as u32);
    }

    /// Write a string, turning "\n" into "\r\n" for terminals.
    pub fn write_str(&self, s: &str) {
        self.write_bytes(s.as_bytes());
    }

    /// Write bytes that need not be UTF-8 (what a user program writes), "\n" as "\r\n".
    pub fn write_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
    }

    /// A received byte, if one is waiting.
    pub fn read_byte(&self) -> Option<u8> {
        let r = self.regs();
        (!r.fr.is_set(FR::RXFE)).then(|| r.dr.get() as u8)
    }

    /// The next received byte, without looking whether there is one: for a caller that knows
    /// (the FIFO said it was full).
    pub fn take_byte(&self) -> u8 {
        self.regs().dr.get() as u8
    }

    /// Whether a received byte waits in the FIFO.
    pub fn has_received(&self) -> bool {
        !self.regs().fr.is_set(FR::RXFE)
    }

    /// Whether the receive FIFO is full (the chainloader waits for that to read in bursts).
    pub fn receive_fifo_full(&self) -> bool {
        self.regs().fr.is_set(FR::RXFF)
    }

    /// Interrupt when bytes arrive: at the FIFO's trigger level, or when fewer have waited for
    /// a few character times (the receive timeout), so a single keystroke is not held back.
    pub fn enable_receive_interrupts(&self) {
        let r = self.regs();
        r.icr.write(INT::RX::SET + INT::RT::SET);
        r.imsc.write(INT::RX::SET + INT::RT::SET);
    }

    /// Clear the receive and receive-timeout conditions. Call before draining the FIFO: a byte
    /// that arrives during the drain then raises a fresh interrupt instead of being cleared.
    pub fn clear_receive_interrupts(&self) {
        self.regs().icr.write(INT::RX::SET + INT::RT::SET);
    }

    /// Wait until everything written has left the wire.
    pub fn flush(&self) {
        while self.regs().fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}

impl core::fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        Pl011::write_str(self, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pi4_divisors_match_the_bcm2711_clock() {
        // 48 MHz reference clock (config.txt pins it): IBRD/FBRD from the PL011 baud formula.
        assert_eq!(baud_divisors(48_000_000, 115_200), (26, 3));
        assert_eq!(baud_divisors(48_000_000, 921_600), (3, 16));
    }

    #[test]
    fn qemu_virt_divisors() {
        // 24 MHz apb_pclk: 24e6 / (16 * 115200) = 13.02 -> 13 + 1/64.
        assert_eq!(baud_divisors(24_000_000, 115_200), (13, 1));
    }
}
