//! The Linux arm64 system calls the programs use: raw `svc #0` and one typed wrapper each.
//! The numbers are Linux's (include/uapi/asm-generic/unistd.h, which arm64 uses).

use core::arch::asm;
use core::fmt;

pub const SYS_UNLINKAT: usize = 35;
pub const SYS_OPENAT: usize = 56;
pub const SYS_CLOSE: usize = 57;
pub const SYS_GETDENTS64: usize = 61;
pub const SYS_LSEEK: usize = 62;
pub const SYS_READ: usize = 63;
pub const SYS_WRITE: usize = 64;
pub const SYS_EXIT: usize = 93;
pub const SYS_EXIT_GROUP: usize = 94;
pub const SYS_NANOSLEEP: usize = 101;
pub const SYS_SCHED_YIELD: usize = 124;
pub const SYS_KILL: usize = 129;
pub const SYS_GETCPU: usize = 168;
pub const SYS_GETPID: usize = 172;
pub const SYS_GETPPID: usize = 173;
pub const SYS_BRK: usize = 214;
pub const SYS_MUNMAP: usize = 215;
pub const SYS_CLONE: usize = 220;
pub const SYS_EXECVE: usize = 221;
pub const SYS_MMAP: usize = 222;
pub const SYS_WAIT4: usize = 260;

pub const AT_FDCWD: isize = -100;
pub const O_RDONLY: u32 = 0;
pub const O_WRONLY: u32 = 1;
pub const O_RDWR: u32 = 2;
pub const O_CREAT: u32 = 0o100;
pub const O_TRUNC: u32 = 0o1000;
pub const O_APPEND: u32 = 0o2000;
/// arm64's value (x86 uses 0o200000 too; some architectures differ).
pub const O_DIRECTORY: u32 = 0o40000;
pub const AT_REMOVEDIR: u32 = 0x200;
pub const SEEK_SET: u32 = 0;
pub const SEEK_CUR: u32 = 1;
pub const SEEK_END: u32 = 2;
pub const PROT_READ: usize = 1;
pub const PROT_WRITE: usize = 2;
pub const PROT_EXEC: usize = 4;
pub const MAP_PRIVATE: usize = 0x02;
pub const MAP_ANONYMOUS: usize = 0x20;
pub const SIGKILL: i32 = 9;
pub const SIGCHLD: usize = 17;
pub const PAGE_SIZE: usize = 4096;

/// A Linux error number, as a failed system call returns it (negated) in x0.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(1);
    pub const ENOENT: Errno = Errno(2);
    pub const ESRCH: Errno = Errno(3);
    pub const EINTR: Errno = Errno(4);
    pub const EBADF: Errno = Errno(9);
    pub const ECHILD: Errno = Errno(10);
    pub const EAGAIN: Errno = Errno(11);
    pub const ENOMEM: Errno = Errno(12);
    pub const EACCES: Errno = Errno(13);
    pub const EFAULT: Errno = Errno(14);
    pub const EEXIST: Errno = Errno(17);
    pub const ENOTDIR: Errno = Errno(20);
    pub const EISDIR: Errno = Errno(21);
    pub const EINVAL: Errno = Errno(22);
    pub const EMFILE: Errno = Errno(24);
    pub const ENOSPC: Errno = Errno(28);
    pub const ESPIPE: Errno = Errno(29);
    pub const ENAMETOOLONG: Errno = Errno(36);
    pub const ENOSYS: Errno = Errno(38);
    pub const ENOTEMPTY: Errno = Errno(39);

    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            4 => "EINTR",
            9 => "EBADF",
            10 => "ECHILD",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            17 => "EEXIST",
            20 => "ENOTDIR",
            21 => "EISDIR",
            22 => "EINVAL",
            24 => "EMFILE",
            28 => "ENOSPC",
            29 => "ESPIPE",
            36 => "ENAMETOOLONG",
            38 => "ENOSYS",
            39 => "ENOTEMPTY",
            _ => "E?",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

pub type SysResult<T> = Result<T, Errno>;

/// Any system call: number `n`, six arguments, the raw x0 it returns.
///
/// # Safety
/// The call may read or write memory the arguments point at, or end the process: the caller
/// vouches for what it passes (the adversarial programs pass bad pointers on purpose; a
/// correct kernel answers those with -EFAULT, never by touching them).
#[inline(always)]
pub unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller's contract above; `svc #0` clobbers nothing but x0 in the Linux ABI.
    unsafe {
        asm!(
            "svc #0",
            in("x8") n,
            inlateout("x0") a[0] => ret,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack),
        );
    }
    ret
}

/// The raw return value as a Result: -4095..=-1 are errors (Linux's convention).
pub fn check(ret: isize) -> SysResult<usize> {
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

#[inline(always)]
fn call(n: usize, a: [usize; 6]) -> SysResult<usize> {
    // SAFETY: the typed wrappers below only pass pointers to live Rust objects of the length
    // they name; the kernel reads/writes within them.
    check(unsafe { syscall6(n, a) })
}

/// write(2). Unlike the others, takes raw pointer + length via [`write_raw`] for bad-pointer tests.
pub fn write(fd: i32, buf: &[u8]) -> SysResult<usize> {
    call(
        SYS_WRITE,
        [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
    )
}

/// write(2) with any address and length, for the adversarial programs.
pub fn write_raw(fd: i32, addr: usize, len: usize) -> SysResult<usize> {
    // SAFETY: write only reads user memory; a bad range is the kernel's to refuse.
    check(unsafe { syscall6(SYS_WRITE, [fd as usize, addr, len, 0, 0, 0]) })
}

/// Write all of `buf`, looping over short writes.
pub fn write_all(fd: i32, mut buf: &[u8]) -> SysResult<()> {
    while !buf.is_empty() {
        let n = write(fd, buf)?;
        if n == 0 {
            return Err(Errno::ENOSPC);
        }
        buf = &buf[n..];
    }
    Ok(())
}

pub fn read(fd: i32, buf: &mut [u8]) -> SysResult<usize> {
    call(
        SYS_READ,
        [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
    )
}

/// read(2) into any address, for the adversarial programs.
///
/// # Safety
/// A correct kernel refuses a bad range with EFAULT; a *valid* range is overwritten, so the
/// caller must own it.
pub unsafe fn read_raw(fd: i32, addr: usize, len: usize) -> SysResult<usize> {
    // SAFETY: the caller's contract.
    check(unsafe { syscall6(SYS_READ, [fd as usize, addr, len, 0, 0, 0]) })
}

/// A path as the kernel wants it: NUL-terminated, in a stack buffer.
struct CPath {
    buf: [u8; 256],
}

impl CPath {
    fn new(path: &str) -> SysResult<CPath> {
        let bytes = path.as_bytes();
        if bytes.len() >= 256 {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut buf = [0u8; 256];
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(CPath { buf })
    }
    fn ptr(&self) -> usize {
        self.buf.as_ptr() as usize
    }
}

/// openat(AT_FDCWD, path, flags, mode).
pub fn open(path: &str, flags: u32, mode: u32) -> SysResult<i32> {
    let p = CPath::new(path)?;
    call(
        SYS_OPENAT,
        [
            AT_FDCWD as usize,
            p.ptr(),
            flags as usize,
            mode as usize,
            0,
            0,
        ],
    )
    .map(|fd| fd as i32)
}

pub fn close(fd: i32) -> SysResult<()> {
    call(SYS_CLOSE, [fd as usize, 0, 0, 0, 0, 0]).map(drop)
}

/// getdents64(2): fills `buf` with `struct linux_dirent64` records; 0 at the end.
pub fn getdents64(fd: i32, buf: &mut [u8]) -> SysResult<usize> {
    call(
        SYS_GETDENTS64,
        [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
    )
}

/// unlinkat(AT_FDCWD, path, flags): flags 0 removes a file, AT_REMOVEDIR a directory.
pub fn unlinkat(path: &str, flags: u32) -> SysResult<()> {
    let p = CPath::new(path)?;
    call(
        SYS_UNLINKAT,
        [AT_FDCWD as usize, p.ptr(), flags as usize, 0, 0, 0],
    )
    .map(drop)
}

pub fn lseek(fd: i32, offset: i64, whence: u32) -> SysResult<u64> {
    call(
        SYS_LSEEK,
        [fd as usize, offset as usize, whence as usize, 0, 0, 0],
    )
    .map(|o| o as u64)
}

/// exit_group(2): the whole process ends with `status` (the low 8 bits reach the parent).
pub fn exit(status: i32) -> ! {
    // SAFETY: exit_group touches no memory and does not return.
    unsafe {
        syscall6(SYS_EXIT_GROUP, [status as usize, 0, 0, 0, 0, 0]);
        syscall6(SYS_EXIT, [status as usize, 0, 0, 0, 0, 0]);
    }
    // Neither returns on a correct kernel; make sure nothing after them runs.
    loop {
        core::hint::spin_loop();
    }
}

/// exit(2): ends the calling thread only (the same as exit_group for a one-thread process).
pub fn exit_thread(status: i32) -> ! {
    // SAFETY: exit touches no memory and does not return.
    unsafe { syscall6(SYS_EXIT, [status as usize, 0, 0, 0, 0, 0]) };
    loop {
        core::hint::spin_loop();
    }
}

pub fn sched_yield() {
    // sched_yield cannot fail.
    let _ = call(SYS_SCHED_YIELD, [0; 6]);
}

#[repr(C)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

/// nanosleep(2) for `ns` nanoseconds (no remaining-time report).
pub fn nanosleep(ns: u64) -> SysResult<()> {
    let t = Timespec {
        sec: (ns / 1_000_000_000) as i64,
        nsec: (ns % 1_000_000_000) as i64,
    };
    call(
        SYS_NANOSLEEP,
        [&t as *const Timespec as usize, 0, 0, 0, 0, 0],
    )
    .map(drop)
}

pub fn getpid() -> i32 {
    call(SYS_GETPID, [0; 6]).unwrap_or(0) as i32
}

pub fn getppid() -> i32 {
    call(SYS_GETPPID, [0; 6]).unwrap_or(0) as i32
}

/// getcpu(2): the CPU (and NUMA node) the caller ran on at the moment of the call.
pub fn getcpu() -> SysResult<(u32, u32)> {
    let mut cpu = 0u32;
    let mut node = 0u32;
    call(
        SYS_GETCPU,
        [
            &mut cpu as *mut u32 as usize,
            &mut node as *mut u32 as usize,
            0,
            0,
            0,
            0,
        ],
    )?;
    Ok((cpu, node))
}

/// The raw brk(2): returns the new break, or the old one when it cannot move (never an errno).
pub fn brk(addr: usize) -> usize {
    // SAFETY: brk touches no memory of ours; moving the break down is the caller's business.
    unsafe { syscall6(SYS_BRK, [addr, 0, 0, 0, 0, 0]) as usize }
}

/// An anonymous private mapping, zero-filled.
pub fn mmap_anon(len: usize, prot: usize) -> SysResult<usize> {
    call(
        SYS_MMAP,
        [0, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, usize::MAX, 0],
    )
}

/// munmap(2).
///
/// # Safety
/// Nothing may use memory in the range afterwards.
pub unsafe fn munmap(addr: usize, len: usize) -> SysResult<()> {
    call(SYS_MUNMAP, [addr, len, 0, 0, 0, 0]).map(drop)
}

/// What fork returned in the process that sees it.
pub enum Fork {
    Child,
    Parent(i32),
}

/// fork, as clone(SIGCHLD, 0, 0, 0, 0): a new process with a copy of this one's memory.
pub fn fork() -> SysResult<Fork> {
    call(SYS_CLONE, [SIGCHLD, 0, 0, 0, 0, 0]).map(|pid| match pid {
        0 => Fork::Child,
        pid => Fork::Parent(pid as i32),
    })
}

/// execve(2) with NUL-terminated strings; returns only on failure.
///
/// # Safety
/// `path` must be NUL-terminated and `argv`/`envp` NULL-terminated arrays of such strings.
pub unsafe fn execve(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> Errno {
    // SAFETY: the caller's contract.
    let ret = unsafe {
        syscall6(
            SYS_EXECVE,
            [path as usize, argv as usize, envp as usize, 0, 0, 0],
        )
    };
    check(ret).err().unwrap_or(Errno::EINVAL)
}

/// How a child ended, decoded from wait4's status word as Linux encodes it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExitStatus {
    Exited(u8),
    Signaled(u8),
    Other(u32),
}

impl ExitStatus {
    pub fn from_raw(status: u32) -> ExitStatus {
        match status & 0x7f {
            0 => ExitStatus::Exited(((status >> 8) & 0xff) as u8),
            0x7f => ExitStatus::Other(status),
            sig => ExitStatus::Signaled(sig as u8),
        }
    }
}

/// wait4(pid, &status, 0, NULL): wait for a child (pid -1: any) and say how it ended.
pub fn wait4(pid: i32) -> SysResult<(i32, ExitStatus)> {
    let mut status = 0u32;
    let got = call(
        SYS_WAIT4,
        [pid as usize, &mut status as *mut u32 as usize, 0, 0, 0, 0],
    )?;
    Ok((got as i32, ExitStatus::from_raw(status)))
}

pub fn kill(pid: i32, sig: i32) -> SysResult<()> {
    call(SYS_KILL, [pid as usize, sig as usize, 0, 0, 0, 0]).map(drop)
}
