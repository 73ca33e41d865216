//! The kernel log: `[    0.012345] cpu2 INFO  smp: message` (chapter 2).
//!
//! The timestamp is the generic counter in seconds, the CPU comes from the per-CPU area, the
//! prefix before the colon is the logging module. Each line is formatted completely into a
//! buffer on the caller's stack first, and only then written to the console under its lock:
//! the lock is held for the copy alone, and lines from different CPUs never interleave.
//!
//! Every printed line is also kept in `History`, a small ring of the most recent log text that
//! the shell's `log` command reads back (chapter 13).

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

/// The most recent log text: a byte ring that keeps the last `N` bytes of whole lines written to
/// it. Old lines fall off the front as new ones arrive; nothing is allocated.
pub struct History<const N: usize> {
    bytes: [u8; N],
    /// Bytes ever written; the ring holds the last `min(written, N)` of them.
    written: usize,
}

impl<const N: usize> Default for History<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> History<N> {
    pub const fn new() -> Self {
        History {
            bytes: [0; N],
            written: 0,
        }
    }

    /// Append one line (it should end in '\n'). A line longer than the ring keeps its tail.
    pub fn push(&mut self, line: &str) {
        let line = line.as_bytes();
        let line = &line[line.len().saturating_sub(N)..];
        for &b in line {
            self.bytes[self.written % N] = b;
            self.written += 1;
        }
    }

    /// Copy the last `n` complete lines, oldest first, into `out` (which the caller sized: at
    /// most `N` bytes are copied). Returns how many bytes were copied.
    pub fn copy_last_lines(&self, n: usize, out: &mut [u8]) -> usize {
        if n == 0 {
            return 0;
        }
        let held = self.written.min(N);
        // Walk back from the newest byte, counting line ends, to where the wanted lines start.
        let newest = self.written;
        let mut start = newest;
        let mut lines = 0;
        while start > newest - held {
            let b = self.bytes[(start - 1) % N];
            if b == b'\n' && start != newest {
                lines += 1;
                if lines == n {
                    break;
                }
            }
            start -= 1;
        }
        // A ring that has wrapped may begin in the middle of a line: skip that fragment.
        if start == newest - held && self.written > N {
            while start < newest && self.bytes[start % N] != b'\n' {
                start += 1;
            }
            start = (start + 1).min(newest);
        }
        let len = (newest - start).min(out.len());
        for (i, slot) in out[..len].iter_mut().enumerate() {
            *slot = self.bytes[(start + i) % N];
        }
        len
    }
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
    use crate::sync::IrqSafeSpinLock;

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

    /// How much recent log text the kernel keeps for the shell's `log` command.
    pub const HISTORY_BYTES: usize = 16 * 1024;
    /// IRQ-safe, as the console is: interrupt handlers log too.
    static HISTORY: IrqSafeSpinLock<History<HISTORY_BYTES>> = IrqSafeSpinLock::new(History::new());
    /// How long a CPU tries to get the history lock before it gives up on keeping its line.
    const HISTORY_PATIENCE_US: u64 = 20_000;

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
        remember(line.as_str());
    }

    /// Keep a printed line in the history. Never waits for long and never deadlocks: not with
    /// the MMU off (no locks then), not when this CPU already holds the history lock (a fault or
    /// panic inside `push`), and not when another CPU holds it and is stuck (after a panic);
    /// in those cases the line was printed but is not kept.
    fn remember(line: &str) {
        if !crate::arch::aarch64::mmu::is_enabled() || HISTORY.is_held_by_current_cpu() {
            return;
        }
        let start = crate::arch::counter();
        let patience = crate::arch::counter_frequency() * HISTORY_PATIENCE_US / 1_000_000;
        loop {
            if let Some(mut history) = HISTORY.try_lock() {
                history.push(line);
                return;
            }
            if crate::arch::counter().wrapping_sub(start) > patience {
                return;
            }
            core::hint::spin_loop();
        }
    }

    /// Copy the last `n` log lines, oldest first, into `out`; returns the bytes copied. Give it
    /// `HISTORY_BYTES` of room to be sure to get them all.
    pub fn recent_lines(n: usize, out: &mut [u8]) -> usize {
        HISTORY.lock().copy_last_lines(n, out)
    }
}

#[cfg(target_os = "none")]
pub use backend::{HISTORY_BYTES, init_early, log_always, recent_lines, set_level};

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

    fn last(h: &History<64>, n: usize) -> String {
        let mut out = [0u8; 64];
        let len = h.copy_last_lines(n, &mut out);
        String::from_utf8(out[..len].to_vec()).unwrap()
    }

    #[test]
    fn history_gives_back_the_last_lines_oldest_first() {
        let mut h = History::<64>::new();
        assert_eq!(last(&h, 5), "");
        h.push("one\n");
        h.push("two\n");
        h.push("three\n");
        assert_eq!(last(&h, 2), "two\nthree\n");
        assert_eq!(last(&h, 10), "one\ntwo\nthree\n");
        assert_eq!(last(&h, 0), "");
    }

    #[test]
    fn history_drops_old_lines_and_never_shows_half_a_line() {
        let mut h = History::<64>::new();
        for i in 0..100 {
            h.push(&format!("line {i:03}\n")); // 9 bytes each: the ring holds 7 and a bit
        }
        assert_eq!(last(&h, 2), "line 098\nline 099\n");
        let all = last(&h, 100);
        assert!(all.starts_with("line 0"), "{all:?}");
        assert!(all.lines().all(|l| l.len() == 8), "{all:?}");
        assert_eq!(all.lines().count(), 7);
        // A line longer than the ring keeps its tail.
        h.push(&format!("{}\n", "x".repeat(100)));
        assert_eq!(last(&h, 1), "");
    }

    #[test]
    fn history_survives_random_lines() {
        let mut h = History::<64>::new();
        let mut state = 7u64;
        for _ in 0..10_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (state >> 58) as usize;
            h.push(&format!("{}\n", "y".repeat(len)));
            let n = (state >> 20) as usize % 12;
            let got = last(&h, n);
            assert!(got.lines().count() <= n);
            assert!(got.is_empty() || got.ends_with('\n'));
        }
    }

    #[test]
    fn loglevel_bootarg() {
        assert_eq!(level_from_bootarg(Some("debug")), log::LevelFilter::Debug);
        assert_eq!(level_from_bootarg(Some("nonsense")), log::LevelFilter::Info);
        assert_eq!(level_from_bootarg(None), log::LevelFilter::Info);
    }
}
