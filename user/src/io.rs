//! `print!`/`println!` to fd 1 and `eprint!`/`eprintln!` to fd 2, one write per line.
//!
//! Each macro call formats into a stack buffer and hands it to the kernel in as few `write`s as
//! it can (one, for lines under 512 bytes), so lines from processes running at once on several
//! CPUs do not interleave mid-line.

use crate::sys;
use core::fmt;

/// A formatting sink that collects bytes and writes them to `fd` when full or dropped.
pub struct LineWriter {
    fd: i32,
    len: usize,
    buf: [u8; 512],
}

impl LineWriter {
    pub fn new(fd: i32) -> LineWriter {
        LineWriter {
            fd,
            len: 0,
            buf: [0; 512],
        }
    }

    pub fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        let mut result = sys::write_all(self.fd, &self.buf[..self.len]);
        // A process started without a stderr still gets its message out on stdout.
        if result == Err(sys::Errno::EBADF) && self.fd == 2 {
            result = sys::write_all(1, &self.buf[..self.len]);
        }
        // Nowhere left to report a failed write to the console; the data is dropped.
        let _ = result;
        self.len = 0;
    }
}

impl fmt::Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

#[doc(hidden)]
pub fn _print(fd: i32, args: fmt::Arguments) {
    let mut w = LineWriter::new(fd);
    // LineWriter::write_str never fails.
    let _ = fmt::Write::write_fmt(&mut w, args);
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::_print(1, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::io::_print(1, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::_print(1, format_args!("{}\n", format_args!($($arg)*))) };
}

#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::io::_print(2, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! eprintln {
    () => { $crate::io::_print(2, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::_print(2, format_args!("{}\n", format_args!($($arg)*))) };
}
