//! The BCM2711 GPIO block, just enough to route the PL011 to the Pi 4's header (chapter 2).
//!
//! Out of reset GPIO14/15 are inputs; `dtoverlay=disable-bt` frees the PL011 from Bluetooth, and
//! this driver selects alternate function 0 (TXD0/RXD0) on both pins and turns their pulls off.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

register_structs! {
    pub GpioRegisters {
        (0x00 => _gpfsel0: ReadWrite<u32>),
        (0x04 => gpfsel1: ReadWrite<u32>),
        (0x08 => _reserved0),
        (0xe4 => pup_pdn_cntrl0: ReadWrite<u32>),
        (0xe8 => @END),
    }
}

/// Function-select value for alternate function 0.
const ALT0: u32 = 0b100;

/// GPFSEL1 with pins 14 and 15 switched to ALT0, other pins untouched.
pub fn fsel1_with_uart_pins(fsel1: u32) -> u32 {
    // Pin n of GPFSEL1 (pins 10..19) sits at bits 3 * (n - 10).
    let mut v = fsel1;
    for pin in [14u32, 15] {
        let shift = 3 * (pin - 10);
        v = (v & !(0b111 << shift)) | (ALT0 << shift);
    }
    v
}

/// Route the PL011 to GPIO14/15 with no pull-up or pull-down.
///
/// # Safety
/// `base` must be the mapped BCM2711 GPIO register block.
pub unsafe fn route_uart0_to_header(base: usize) {
    // SAFETY: the caller guarantees the mapping.
    let r = unsafe { &*(base as *const GpioRegisters) };
    r.gpfsel1.set(fsel1_with_uart_pins(r.gpfsel1.get()));
    // Two bits per pin; 0b00 = no pull. Pins 14, 15 are bits 28..31 of the first register.
    r.pup_pdn_cntrl0.set(r.pup_pdn_cntrl0.get() & !(0xf << 28));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pins_14_and_15_change() {
        let all_ones = u32::MAX >> 2; // pins 10..19 set to 0b111
        let v = fsel1_with_uart_pins(all_ones);
        assert_eq!((v >> 12) & 0b111, ALT0);
        assert_eq!((v >> 15) & 0b111, ALT0);
        assert_eq!(v & !(0b111_111 << 12), all_ones & !(0b111_111 << 12));
    }
}
