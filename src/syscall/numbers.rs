//! System-call numbers: Linux's arm64 numbers (the generic table of include/uapi/asm-generic/
//! unistd.h), so a static AArch64 Linux program's `svc #0` means the same here (chapter 19,
//! "User mode and system calls").
//!
//! Only the calls quartet implements are listed; any other number returns `-ENOSYS`, which is
//! what Linux returns for a number it does not know, so a program can probe for a call.

pub const UNLINKAT: u64 = 35;
pub const OPENAT: u64 = 56;
pub const CLOSE: u64 = 57;
pub const GETDENTS64: u64 = 61;
pub const LSEEK: u64 = 62;
pub const READ: u64 = 63;
pub const WRITE: u64 = 64;
pub const EXIT: u64 = 93;
pub const EXIT_GROUP: u64 = 94;
pub const NANOSLEEP: u64 = 101;
pub const SCHED_YIELD: u64 = 124;
pub const KILL: u64 = 129;
pub const GETCPU: u64 = 168;
pub const GETPID: u64 = 172;
pub const GETPPID: u64 = 173;
pub const BRK: u64 = 214;
pub const MUNMAP: u64 = 215;
pub const CLONE: u64 = 220;
pub const EXECVE: u64 = 221;
pub const MMAP: u64 = 222;
pub const WAIT4: u64 = 260;

/// Every implemented call, by number, with its name (for `strace`-like logs and tests).
pub const NAMES: &[(u64, &str)] = &[
    (UNLINKAT, "unlinkat"),
    (OPENAT, "openat"),
    (CLOSE, "close"),
    (GETDENTS64, "getdents64"),
    (LSEEK, "lseek"),
    (READ, "read"),
    (WRITE, "write"),
    (EXIT, "exit"),
    (EXIT_GROUP, "exit_group"),
    (NANOSLEEP, "nanosleep"),
    (SCHED_YIELD, "sched_yield"),
    (KILL, "kill"),
    (GETCPU, "getcpu"),
    (GETPID, "getpid"),
    (GETPPID, "getppid"),
    (BRK, "brk"),
    (MUNMAP, "munmap"),
    (CLONE, "clone"),
    (EXECVE, "execve"),
    (MMAP, "mmap"),
    (WAIT4, "wait4"),
];

/// The name of call `nr`, if quartet implements it.
pub fn name(nr: u64) -> Option<&'static str> {
    NAMES.iter().find(|(n, _)| *n == nr).map(|(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_and_sorted() {
        for pair in NAMES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{:?} then {:?}", pair[0], pair[1]);
        }
        assert_eq!(name(GETPID), Some("getpid"));
        assert_eq!(name(999), None);
    }
}
