//! ulib: the smallest runtime a quartet user program needs (chapter 23, "User programs and the
//! initramfs").
//!
//! Every program here is an ordinary static AArch64 Linux executable: it talks to the kernel
//! only through the Linux arm64 system-call ABI (`svc #0`, number in x8, arguments in x0-x5,
//! result in x0, failure as `-errno`), and it starts the way Linux starts a process (SP points
//! at argc, then the argv pointers, NULL, the envp pointers, NULL, the auxiliary vector). So the
//! same file runs on quartet and under `qemu-aarch64` on a Linux host, and the host tests
//! compare the two.
//!
//! A program is `#![no_std] #![no_main]`, and names its `main` with [`entry!`]:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! ulib::entry!(main);
//! fn main(args: ulib::Args) -> i32 { ulib::println!("hello"); 0 }
//! ```
#![no_std]

pub mod clock;
pub mod dirent;
pub mod io;
pub mod rand;
pub mod sys;

pub use sys::Errno;

use core::arch::global_asm;

/// The command line as Linux lays it out on the initial stack: `argc` pointers to
/// NUL-terminated strings.
#[derive(Clone, Copy)]
pub struct Args {
    argc: usize,
    argv: *const *const u8,
}

impl Args {
    /// How many arguments, the program name included.
    pub fn len(&self) -> usize {
        self.argc
    }

    /// True when even the program name is missing (a caller passed an empty argv).
    pub fn is_empty(&self) -> bool {
        self.argc == 0
    }

    /// Argument `i` as bytes (without its NUL), if there is one.
    pub fn get_bytes(&self, i: usize) -> Option<&'static [u8]> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: the kernel (or Linux) put argc valid pointers to NUL-terminated strings in
        // argv before starting the program, and nothing frees them: they live on the initial
        // stack for the whole run.
        unsafe {
            let p = *self.argv.add(i);
            if p.is_null() {
                return None;
            }
            let mut len = 0;
            while *p.add(len) != 0 {
                len += 1;
            }
            Some(core::slice::from_raw_parts(p, len))
        }
    }

    /// Argument `i` as text; None if it is missing or not UTF-8.
    pub fn get(&self, i: usize) -> Option<&'static str> {
        self.get_bytes(i).and_then(|b| core::str::from_utf8(b).ok())
    }

    /// Argument `i` as a decimal number, or `default` if it is missing; exits with a message
    /// naming the argument if it is present but not a number.
    pub fn number_or(&self, i: usize, default: u64) -> u64 {
        match self.get(i) {
            None => default,
            Some(text) => parse_u64(text).unwrap_or_else(|| {
                eprintln!("{}: argument {i} '{text}' is not a number", self.program());
                sys::exit(2)
            }),
        }
    }

    /// The program's name (argv[0]), or "?" if the caller gave none.
    pub fn program(&self) -> &'static str {
        self.get(0).unwrap_or("?")
    }

    /// For execve: the argv array from argument `first` on (still NULL-terminated, as the
    /// kernel laid it out) and the envp array after it.
    pub fn exec_vectors(&self, first: usize) -> (*const *const u8, *const *const u8) {
        let first = first.min(self.argc);
        // SAFETY: argv has argc entries and a NULL; envp starts right after that NULL.
        unsafe { (self.argv.add(first), self.argv.add(self.argc + 1)) }
    }

    /// Arguments 1.. (the program name left out).
    pub fn rest(&self) -> impl Iterator<Item = &'static str> + '_ {
        (1..self.argc).filter_map(|i| self.get(i))
    }
}

/// A decimal (or 0x-prefixed hexadecimal) number.
pub fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Name the program's `fn main(args: Args) -> i32`; `_start` calls it and exits with its result.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "Rust" fn __ulib_main(args: $crate::Args) -> i32 {
            let main: fn($crate::Args) -> i32 = $main;
            main(args)
        }
    };
}

unsafe extern "Rust" {
    fn __ulib_main(args: Args) -> i32;
}

// The process entry point. Linux (and quartet) enter at EL0 with SP 16-byte aligned and
// pointing at argc; there is no return address, so the frame chain is ended with zeros.
global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    ".type _start, %function",
    "_start:",
    "    mov x29, #0",
    "    mov x30, #0",
    "    mov x0, sp",
    "    bl {start}",
    "    udf #0",
    start = sym start_rust,
);

/// Read argc/argv off the initial stack and run the program.
extern "C" fn start_rust(stack: *const usize) -> ! {
    // SAFETY: `stack` is the initial SP, which the ABI says points at argc followed by argc
    // argv pointers.
    let args = unsafe {
        Args {
            argc: *stack,
            argv: stack.add(1) as *const *const u8,
        }
    };
    // SAFETY: every program defines __ulib_main through `entry!`.
    let status = unsafe { __ulib_main(args) };
    sys::exit(status)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    eprintln!("panic: {info}");
    sys::exit(101)
}
