//! The console as a file: what a process's file descriptors 0, 1 and 2 are (chapter 19, "User
//! mode and system calls").
//!
//! Writes go to the UART through the console's lock, one `write` call at a time, so two
//! processes' lines do not interleave within a call. The shell owns the keyboard: reading
//! standard input returns end-of-file at once, and the shell's Ctrl-C reaches a foreground
//! program as SIGINT instead.

use crate::errno::SysResult;
use crate::fs::{File, FileKind};

pub struct Console;

impl File for Console {
    fn read(&self, _buf: &mut [u8]) -> SysResult<usize> {
        Ok(0)
    }

    fn write(&self, buf: &[u8]) -> SysResult<usize> {
        let _console = super::locking::subsystem(super::locking::Subsystem::Console);
        crate::console::write_bytes(buf);
        Ok(buf.len())
    }

    fn kind(&self) -> FileKind {
        FileKind::CharDevice
    }
}

/// A new process's descriptors 0, 1 and 2, all the console.
pub fn standard_files() -> crate::fs::FdTable {
    let files = crate::fs::FdTable::new();
    let console: alloc::sync::Arc<dyn File> = alloc::sync::Arc::new(Console);
    for fd in 0..3 {
        files
            .install(fd, console.clone())
            .expect("a new table has descriptors 0-2 free");
    }
    files
}

/// A file that keeps what is written to it: what the in-kernel tests give a program as its
/// standard output and error, so its words are checked instead of mixed into the kernel's log.
pub struct Capture {
    bytes: crate::sync::SpinLock<alloc::vec::Vec<u8>>,
}

impl Capture {
    /// Bytes kept at most; later writes are counted as written and dropped.
    pub const LIMIT: usize = 64 * 1024;

    pub const fn new() -> Self {
        Capture {
            bytes: crate::sync::SpinLock::named("captured output", alloc::vec::Vec::new()),
        }
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> alloc::string::String {
        alloc::string::String::from_utf8_lossy(&self.bytes.lock()).into_owned()
    }
}

impl Default for Capture {
    fn default() -> Self {
        Self::new()
    }
}

impl File for Capture {
    fn read(&self, _buf: &mut [u8]) -> SysResult<usize> {
        Ok(0)
    }

    fn write(&self, buf: &[u8]) -> SysResult<usize> {
        let mut bytes = self.bytes.lock();
        let room = Self::LIMIT.saturating_sub(bytes.len());
        bytes.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }

    fn kind(&self) -> FileKind {
        FileKind::CharDevice
    }
}

/// Descriptors 0-2 for a program whose output goes to `out` (standard input reads as empty).
pub fn files_writing_to(out: alloc::sync::Arc<dyn File>) -> crate::fs::FdTable {
    let files = crate::fs::FdTable::new();
    let input: alloc::sync::Arc<dyn File> = alloc::sync::Arc::new(Console);
    let slots = [input, out.clone(), out];
    for (fd, file) in slots.into_iter().enumerate() {
        files
            .install(fd as i32, file)
            .expect("a new table has descriptors 0-2 free");
    }
    files
}
