//! The kernel log: `[    0.012345] cpu2 INFO  smp: message` (chapter 2).
//!
//! The timestamp is the generic counter in seconds, the CPU comes from the per-CPU area, the
//! prefix before the colon is the logging module. Each line is formatted completely into a
//! buffer on the caller's stack first, and only then written to the console under its lock:
//! the lock is held for the copy alone, and lines from different CPUs never interleave.

use core::fmt::{self, Write};

/// A line being built on the stack; text past the capacity is dropped and marked with "...".
pub struct LineBuffer {
    bytes: [u8; Self::CAPACITY],
    len: usize,
    truncated: bool,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    pub const CAPACITY: usize = 480;

    pub const fn new() -> Self {
        LineBuffer {
            bytes: [0; Self::CAPACITY],
            len: 0,
            truncated: false,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are ever copied in (see write_str).
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("<invalid utf-8>")
    }

    /// End the line with a newline, keeping "..." when it was cut short.
    pub fn finish_line(&mut self) {
        if self.truncated {
            // Cut back to a character boundary that leaves room for "...\n".
            let mut cut = self.len.min(Self::CAPACITY - 4);
            while cut > 0 && cut < self.len && self.bytes[cut] & 0xc0 == 0x80 {
                cut -= 1;
            }
            self.len = cut;
            self.bytes[self.len..self.len + 3].copy_from_slice(b"...");
            self.len += 3;
        } else {
            self.len = self.len.min(Self::CAPACITY - 1);
        }
        self.bytes[self.len] = b'\n';
        self.len += 1;
    }
}

impl Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = Self::CAPACITY - 1 - self.len; // keep one byte for the newline
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            self.truncated = true;
        }
        Ok(())
    }
}

/// The last component of a module path: `quartet::smp` -> `smp`.
pub fn subsystem(target: &str) -> &str {
    target.rsplit("::").next().unwrap_or(target)
}

/// Format one complete log line (with its newline) into `line`.
pub fn format_line(
    line: &mut LineBuffer,
    ticks: u64,
    ticks_per_second: u64,
    cpu: Option<usize>,
    level: log::Level,
    target: &str,
    message: &fmt::Arguments<'_>,
) {
    let freq = ticks_per_second.max(1);
    let seconds = ticks / freq;
    let micros = (ticks % freq) * 1_000_000 / freq;
    let _ = write!(line, "[{seconds:5}.{micros:06}] ");
    let _ = match cpu {
        Some(id) => write!(line, "cpu{id} "),
        None => write!(line, "cpu? "),
    };
    let _ = write!(
        line,
        "{:<5} {}: {}",
        level.as_str(),
        subsystem(target),
        message
    );
    line.finish_line();
}

/// The log level bootargs ask for (`loglevel=error|warn|info|debug|trace`), default info.
pub fn level_from_bootarg(value: Option<&str>) -> log::LevelFilter {
    match value {
        Some("error") => log::LevelFilter::Error,
        Some("warn") => log::LevelFilter::Warn,
        Some("debug") => log::LevelFilter::Debug,
        Some("trace") => log::LevelFilter::Trace,
        _ => log::LevelFilter::Info,
    }
}

#[cfg(target_os = "none")]
mod backend {
    use super::*;

    struct KernelLogger;

    impl log::Log for KernelLogger {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::max_level()
        }

        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                log_always(record.level(), record.target(), record.args());
            }
        }

        fn flush(&self) {}
    }

    static LOGGER: KernelLogger = KernelLogger;

    /// Install the logger at the very start of boot, with the MMU still off. `log`'s ordinary
    /// `set_logger` uses a compare-exchange, which may never succeed on Device memory; the racy
    /// variants are plain stores.
    pub fn init_early() {
        // SAFETY: called once, by the boot CPU, before any other CPU runs and before anything
        // logs, which is the "no concurrent use" condition set_logger_racy asks for.
        unsafe {
            let _ = log::set_logger_racy(&LOGGER);
            log::set_max_level_racy(log::LevelFilter::Info);
        }
    }

    /// Set the level bootargs asked for.
    pub fn set_level(level: log::LevelFilter) {
        log::set_max_level(level);
    }

    /// Write a line whatever the log level: for the lines that are contracts (`smp: N/M CPUs
    /// online`) and for panics.
    pub fn log_always(level: log::Level, target: &str, message: &fmt::Arguments<'_>) {
        let mut line = LineBuffer::new();
        format_line(
            &mut line,
            crate::arch::counter(),
            crate::arch::counter_frequency(),
            crate::percpu::current_id(),
            level,
            target,
            message,
        );
        crate::console::write_line(line.as_str());
    }
}

#[cfg(target_os = "none")]
pub use backend::{init_early, log_always, set_level};

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ticks: u64, cpu: Option<usize>, msg: fmt::Arguments<'_>) -> String {
        let mut l = LineBuffer::new();
        format_line(
            &mut l,
            ticks,
            62_500_000,
            cpu,
            log::Level::Info,
            "quartet::smp",
            &msg,
        );
        l.as_str().to_string()
    }

    #[test]
    fn lines_look_like_a_kernel_log() {
        // 770_312 ticks at 62.5 MHz = 12.324992 ms.
        assert_eq!(
            line(770_312, Some(2), format_args!("{}/{} CPUs online", 4, 4)),
            "[    0.012324] cpu2 INFO  smp: 4/4 CPUs online\n"
        );
        assert_eq!(
            line(62_500_000 * 3 + 1, None, format_args!("x")),
            "[    3.000000] cpu? INFO  smp: x\n"
        );
    }

    #[test]
    fn long_lines_are_cut_and_marked_not_overflowed() {
        let long = "é".repeat(400); // 800 bytes of two-byte characters
        let s = line(0, Some(0), format_args!("{long}"));
        assert!(s.len() <= LineBuffer::CAPACITY);
        assert!(s.ends_with("...\n"), "{s:?}");
        assert!(s.is_char_boundary(s.len() - 4));
    }

    #[test]
    fn subsystem_is_the_last_path_component() {
        assert_eq!(subsystem("quartet::platform::dt"), "dt");
        assert_eq!(subsystem("quartet"), "quartet");
    }

    #[test]
    fn loglevel_bootarg() {
        assert_eq!(level_from_bootarg(Some("debug")), log::LevelFilter::Debug);
        assert_eq!(level_from_bootarg(Some("nonsense")), log::LevelFilter::Info);
        assert_eq!(level_from_bootarg(None), log::LevelFilter::Info);
    }
}
