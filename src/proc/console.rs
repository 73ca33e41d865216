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
