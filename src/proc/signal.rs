//! Signals, as far as quartet has them (chapter 19, "User mode and system calls"): a number that
//! ends a process. There are no handlers: every signal quartet sends is fatal, as the default
//! action of these signals is on Linux, and the numbers are Linux's so `wait4` statuses and
//! `kill` mean the same as there.
//!
//! A signal is *sent* by setting a bit in the target's pending mask and waking it; it is
//! *delivered* by the target itself, on its way back to user mode (after a system call, a
//! fault or an interrupt from EL0), where it exits with `ExitStatus::Signaled`. A process
//! running user code on another CPU finds the bit at its next interrupt at the latest: the
//! tick bounds how long a killed loop keeps running.

use core::sync::atomic::{AtomicU64, Ordering};

pub const SIGINT: u32 = 2;
pub const SIGILL: u32 = 4;
pub const SIGTRAP: u32 = 5;
pub const SIGBUS: u32 = 7;
pub const SIGKILL: u32 = 9;
pub const SIGSEGV: u32 = 11;
pub const SIGTERM: u32 = 15;
pub const SIGCHLD: u32 = 17;

/// The highest signal number `kill` accepts (Linux's `_NSIG - 1`).
pub const MAX_SIGNAL: u32 = 64;

/// The name of signal `sig`, for the one-line report of how a process ended.
pub fn name(sig: u32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGILL => "SIGILL",
        SIGTRAP => "SIGTRAP",
        SIGBUS => "SIGBUS",
        SIGKILL => "SIGKILL",
        SIGSEGV => "SIGSEGV",
        SIGTERM => "SIGTERM",
        SIGCHLD => "SIGCHLD",
        _ => "signal",
    }
}

/// Does receiving `sig` end the process? SIGCHLD's default action is to be ignored.
pub fn is_fatal(sig: u32) -> bool {
    sig != SIGCHLD
}

/// A process's pending signals: one bit per signal number.
#[derive(Debug, Default)]
pub struct Pending(AtomicU64);

impl Pending {
    pub const fn new() -> Self {
        Pending(AtomicU64::new(0))
    }

    /// Mark `sig` pending. Release: whatever the sender did before is visible to the target
    /// that sees the bit.
    pub fn raise(&self, sig: u32) {
        debug_assert!((1..=MAX_SIGNAL).contains(&sig));
        self.0.fetch_or(1 << (sig - 1), Ordering::Release);
    }

    /// The lowest-numbered pending fatal signal, if any (left pending: the process dies of it).
    pub fn fatal(&self) -> Option<u32> {
        let bits = self.0.load(Ordering::Acquire) & !(1 << (SIGCHLD - 1));
        (bits != 0).then(|| bits.trailing_zeros() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_fatal_signal_is_found_and_sigchld_is_not() {
        let p = Pending::new();
        assert_eq!(p.fatal(), None);
        p.raise(SIGCHLD);
        assert_eq!(p.fatal(), None, "SIGCHLD is ignored by default");
        p.raise(SIGTERM);
        p.raise(SIGKILL);
        assert_eq!(p.fatal(), Some(SIGKILL), "the lowest number comes first");
        p.raise(64);
        assert_eq!(name(SIGSEGV), "SIGSEGV");
    }
}
