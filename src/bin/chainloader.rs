//! The serial chainloader for the Raspberry Pi 4: a small program that goes on the SD card as
//! kernel8.img once, and from then on receives each new kernel over the serial line instead
//! (chapter 29, "The chainloader loop").
//!
//! It moves itself out of the kernel's way (src/arch/aarch64/chainload.rs), puts the PL011 on
//! the GPIO header as the kernel does, and serves the protocol of src/chainload.rs until a
//! kernel arrives whole and checked. Then it jumps to it with the firmware's device tree in x0,
//! at the exception level the firmware entered it at, with the other cores untouched in the
//! firmware's spin table: to the kernel, the firmware might as well have loaded it.
//!
//! A second binary of the quartet package rather than a crate of its own: it shares the
//! kernel's driver files and the protocol file by path, and its build (the Makefile's
//! `chainloader`) reuses the Pi 4 build's target directory and toolchain. It does not link the
//! kernel library: that library carries the kernel's own entry code (its Image header and
//! `_start`), which must not end up in the loader.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the chainloader runs on a Raspberry Pi 4: build it with `make chainloader`.");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
#[path = "../arch/aarch64/chainload.rs"]
mod arch;
// The protocol's host-side helpers (`request`, `crc32`) are for tools/push.
#[cfg(target_os = "none")]
#[allow(dead_code)]
#[path = "../chainload.rs"]
mod protocol;
// The kernel's own drivers; the loader uses only part of each.
#[cfg(target_os = "none")]
#[allow(dead_code)]
#[path = "../drivers/bcm2711_gpio.rs"]
mod gpio;
#[cfg(target_os = "none")]
#[allow(dead_code)]
#[path = "../drivers/pl011.rs"]
mod pl011;

#[cfg(target_os = "none")]
mod loader {
    use core::fmt::Write;

    use super::arch::{self, KERNEL_LOAD_ADDRESS};
    use super::pl011::Pl011;
    use super::protocol::{self, Destination, LineWriter};

    /// The Pi 4's PL011 and GPIO blocks (physical; the MMU is off), the UART's reference clock
    /// as config.txt pins it, and the console's speed: the same values the kernel falls back to
    /// without a device tree.
    const UART_BASE: usize = 0xfe20_1000;
    const GPIO_BASE: usize = 0xfe20_0000;
    const UART_CLOCK_HZ: u32 = 48_000_000;
    const BAUD: u32 = 115_200;
    /// The device tree's magic, read big-endian.
    const FDT_MAGIC: u32 = 0xd00d_feed;

    /// The PL011, polled, with the generic counter for timeouts. Bytes are taken from the
    /// receive FIFO in bursts, into `burst`.
    struct UartLine {
        uart: Pl011,
        ticks_per_ms: u64,
        burst: [u8; 32],
        taken: usize,
        held: usize,
    }

    impl UartLine {
        fn wait_ticks(&self, ticks: u64) {
            let until = arch::counter() + ticks;
            while arch::counter() < until {}
        }

        /// Move what the FIFO holds into `burst`. Once a byte is there, wait a little (at most
        /// 200 us, or until the FIFO is full) so that it fills up first. On the board that is
        /// two bytes' time at 115200 baud, and the FIFO has room for 16. Under QEMU every look
        /// at the UART takes QEMU's big lock, which the thread that feeds the UART from the
        /// host needs too: fewer looks leave that thread more turns. (It still hands over
        /// about one byte per turn, but the transfer ran about half as fast again as with one
        /// look per byte, measured under round-robin TCG.)
        fn fill_burst(&mut self) {
            let tick_200us = self.ticks_per_ms / 5;
            let first_seen = arch::counter();
            while !self.uart.receive_fifo_full() && arch::counter() - first_seen < tick_200us {
                self.wait_ticks(tick_200us / 10);
            }
            self.taken = 0;
            self.held = 0;
            if self.uart.receive_fifo_full() {
                for slot in &mut self.burst[..16] {
                    *slot = self.uart.take_byte();
                }
                self.held = 16;
                return;
            }
            while self.held < self.burst.len() {
                match self.uart.read_byte() {
                    Some(b) => {
                        self.burst[self.held] = b;
                        self.held += 1;
                    }
                    None => break,
                }
            }
        }
    }

    impl protocol::Line for UartLine {
        fn read_byte_within(&mut self, ms: u32) -> Option<u8> {
            let deadline = arch::counter() + u64::from(ms) * self.ticks_per_ms;
            loop {
                if self.taken < self.held {
                    self.taken += 1;
                    return Some(self.burst[self.taken - 1]);
                }
                if self.uart.has_received() {
                    self.fill_burst();
                    continue;
                }
                if arch::counter() >= deadline {
                    return None;
                }
                // Nothing yet: look again a little later, for the same reason as above.
                self.wait_ticks(self.ticks_per_ms / 50);
            }
        }

        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.uart.write_byte(b);
            }
        }
    }

    /// The device tree at `address` as (start, end), if the FDT magic is there. Read only
    /// where RAM can be (below the Pi 4's MMIO at 0xfc000000), 8-byte aligned.
    fn device_tree(address: usize) -> Option<(usize, usize)> {
        if address == 0 || !address.is_multiple_of(8) || address >= 0xfc00_0000 {
            return None;
        }
        // SAFETY: an aligned address in the Pi 4's RAM, read with the MMU off; the firmware
        // (or QEMU) passed it as the tree's address, and reading RAM has no side effects.
        let word = |at: usize| u32::from_be(unsafe { core::ptr::read_volatile(at as *const u32) });
        (word(address) == FDT_MAGIC).then(|| (address, address + word(address + 4) as usize))
    }

    #[unsafe(no_mangle)]
    extern "C" fn chainloader_main(dtb: usize, entry_el: u64) -> ! {
        // SAFETY: the Pi 4's GPIO block, with the MMU off; nothing else runs.
        unsafe { super::gpio::route_uart0_to_header(GPIO_BASE) };
        // SAFETY: the Pi 4's PL011, with the MMU off; nothing else drives it.
        let uart = unsafe { Pl011::new(UART_BASE) };
        uart.init(UART_CLOCK_HZ, BAUD);
        let mut line = UartLine {
            uart,
            ticks_per_ms: arch::counter_frequency() / 1000,
            burst: [0; 32],
            taken: 0,
            held: 0,
        };

        let (loader_start, loader_end) = arch::loader_range();
        let tree = device_tree(dtb);
        let mut out = LineWriter(&mut line);
        let _ = write!(
            out,
            "\r\nchainloader: quartet {} serial chainloader, moved to {loader_start:#x}..{loader_end:#x}, entered at EL{entry_el}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        // The kernel may fill RAM from the load address up to the loader, or up to the device
        // tree if the firmware put it in between: the tree must reach the kernel intact.
        let (mut room_end, mut bounded_by) = (loader_start, "the chainloader");
        match tree {
            Some((start, end)) => {
                let _ = write!(
                    out,
                    "chainloader: device tree at {start:#x} ({} bytes), passed on in x0\r\n",
                    end - start
                );
                if start < loader_end && end > loader_start {
                    let _ = write!(
                        out,
                        "chainloader: WARNING: the device tree overlaps the loader's new place; it may be damaged\r\n"
                    );
                }
                if start >= KERNEL_LOAD_ADDRESS && start < room_end {
                    (room_end, bounded_by) = (start, "the device tree");
                }
            }
            None if (loader_start..loader_end).contains(&dtb) => {
                let _ = write!(
                    out,
                    "chainloader: WARNING: x0 = {dtb:#x} points into the loader's new place: the device tree there was overwritten by the move\r\n"
                );
            }
            None => {
                let _ = write!(
                    out,
                    "chainloader: x0 = {dtb:#x} is no device tree; passed on as it is\r\n"
                );
            }
        }
        let _ = write!(
            out,
            "chainloader: waiting for a kernel on this line (make push TTY=...), up to {} bytes at {KERNEL_LOAD_ADDRESS:#x}\r\n",
            room_end - KERNEL_LOAD_ADDRESS
        );

        // SAFETY: [load address, room_end) is RAM nothing else uses: the loader runs above it
        // (it moved), the device tree lies outside it (see room_end), the firmware's spin table
        // sits below 0x1000, and the other cores only read that table.
        let memory = unsafe {
            core::slice::from_raw_parts_mut(
                KERNEL_LOAD_ADDRESS as *mut u8,
                room_end - KERNEL_LOAD_ADDRESS,
            )
        };
        let mut dest = Destination {
            memory,
            address: KERNEL_LOAD_ADDRESS,
            ram_base: 0,
            bounded_by,
        };
        let loaded = protocol::serve(&mut line, &mut dest);
        let _ = write!(
            LineWriter(&mut line),
            "{} (crc32 {:#010x}); starting the kernel at {KERNEL_LOAD_ADDRESS:#x} with x0 = {dtb:#x}\r\n",
            protocol::STARTING,
            loaded.crc
        );
        // The kernel reprograms the UART at once: let the last line leave first.
        line.uart.flush();
        arch::clean_to_point_of_coherency(KERNEL_LOAD_ADDRESS, KERNEL_LOAD_ADDRESS + loaded.size);
        // SAFETY: serve() returns only a kernel that arrived whole, matched its CRC-32 and has
        // an Image header for this load address whose image fits below room_end; it is cleaned
        // to the point of coherency, and the loader needs nothing from here on.
        unsafe { arch::enter_kernel(KERNEL_LOAD_ADDRESS, dtb) }
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        // SAFETY: the loader's only UART; after a panic nothing else will use it.
        let mut uart = unsafe { Pl011::new(UART_BASE) };
        let _ = write!(uart, "\nchainloader: panic: {info}\n");
        loop {
            core::hint::spin_loop();
        }
    }
}
