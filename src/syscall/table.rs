//! The system-call table: from the number in x8 to the handler (chapter 19, "User mode and
//! system calls").
//!
//! A user program asks the kernel for something with `svc #0`: the number of the call in x8,
//! up to six arguments in x0-x5. The CPU that executed the SVC traps into the kernel on the
//! process's own kernel stack and runs the handler right there, on that CPU: that is the whole
//! SMP model of the source texts. The handler's result goes back in x0, an error as `-errno`.
//!
//! Handlers never trust a user pointer: every byte crosses with `copy_from_user` or
//! `copy_to_user` (src/mm/uaccess.rs), which check the address range and recover from a fault
//! in the middle of a copy, so a bad pointer is `-EFAULT` and never a kernel crash.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::numbers::*;
use crate::arch::aarch64::exception::TrapFrame;
use crate::config::MAX_CPUS;
use crate::errno::{Errno, SysResult};
use crate::mm::addrspace::Prot;
use crate::mm::uaccess::{self, USER_TOP};
use crate::percpu::{CacheAligned, PerCpu};
use crate::proc::locking::{self, Subsystem};
use crate::proc::process::Process;
use crate::proc::run;
use crate::proc::signal;
use crate::proc::tree::{ExitStatus, WaitFor};

/// A handler: the calling process, its registers (x0-x5 are the arguments), the result.
type Handler = fn(&Process, &mut TrapFrame) -> SysResult<u64>;

/// The table, sorted by number. `dispatch` finds a call by binary search.
const TABLE: &[(u64, Handler)] = &[
    (UNLINKAT, sys_unlinkat),
    (OPENAT, sys_openat),
    (CLOSE, sys_close),
    (GETDENTS64, sys_getdents64),
    (LSEEK, sys_lseek),
    (READ, sys_read),
    (WRITE, sys_write),
    (EXIT, sys_exit),
    (EXIT_GROUP, sys_exit),
    (NANOSLEEP, sys_nanosleep),
    (SCHED_YIELD, sys_sched_yield),
    (KILL, sys_kill),
    (GETCPU, sys_getcpu),
    (GETPID, sys_getpid),
    (GETPPID, sys_getppid),
    (BRK, sys_brk),
    (MUNMAP, sys_munmap),
    (CLONE, sys_clone),
    (EXECVE, sys_execve),
    (MMAP, sys_mmap),
    (WAIT4, sys_wait4),
];

/// System calls each CPU has served: any CPU runs the kernel for whichever process trapped on
/// it, and the tests check that all of them did.
static CALLS_ON: PerCpu<AtomicU64> =
    PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);

/// System calls CPU `cpu` has served since boot.
pub fn calls_on(cpu: usize) -> u64 {
    CALLS_ON.for_cpu(cpu).load(Ordering::Relaxed)
}

/// Run the call the frame asks for; the value for x0.
pub fn dispatch(p: &Process, frame: &mut TrapFrame) -> i64 {
    CALLS_ON.get().fetch_add(1, Ordering::Relaxed);
    let nr = frame.x[8];
    match TABLE.binary_search_by_key(&nr, |(n, _)| *n) {
        Ok(i) => match (TABLE[i].1)(p, frame) {
            Ok(v) => v as i64,
            Err(e) => e.as_return(),
        },
        Err(_) => Errno::ENOSYS.as_return(),
    }
}

fn arg(frame: &TrapFrame, i: usize) -> u64 {
    frame.x[i]
}

/// Bytes moved through the kernel per step of a read or write: the bounce buffer's size.
const CHUNK: usize = 4096;
/// The longest path a call accepts (Linux's PATH_MAX).
const PATH_MAX: usize = 4096;
const AT_FDCWD: i64 = -100;
const AT_REMOVEDIR: u64 = 0x200;

fn path_arg(frame: &TrapFrame, dirfd_index: usize, path_index: usize) -> SysResult<String> {
    let dirfd = arg(frame, dirfd_index) as i64 as i32 as i64;
    let path = uaccess::copy_string_from_user(arg(frame, path_index) as usize, PATH_MAX)?;
    if path.starts_with('/') {
        return Ok(path);
    }
    if dirfd != AT_FDCWD {
        return Err(Errno::EBADF); // no directory file descriptors: only the root is a cwd
    }
    // Every process's working directory is the root.
    Ok(alloc::format!("/{path}"))
}

fn fd_arg(frame: &TrapFrame, i: usize) -> i32 {
    arg(frame, i) as i32
}

/// Check `[buf, buf + len)` fits in user space before touching any of it: an absurd length is
/// EFAULT at once, as on Linux, instead of a long walk.
fn check_span(buf: u64, len: u64) -> SysResult<(usize, usize)> {
    let end = buf.checked_add(len).ok_or(Errno::EFAULT)?;
    if end > USER_TOP as u64 {
        return Err(Errno::EFAULT);
    }
    Ok((buf as usize, len as usize))
}

fn sys_write(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    let file = p.files.get(fd_arg(frame, 0))?;
    let (buf, len) = check_span(arg(frame, 1), arg(frame, 2))?;
    let mut chunk = [0u8; CHUNK];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK);
        if let Err(e) = uaccess::copy_from_user(&mut chunk[..n], buf + done) {
            return if done > 0 { Ok(done as u64) } else { Err(e) };
        }
        let wrote = file.write(&chunk[..n])?;
        done += wrote;
        if wrote < n {
            break;
        }
    }
    Ok(done as u64)
}

fn sys_read(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    let file = p.files.get(fd_arg(frame, 0))?;
    let (buf, len) = check_span(arg(frame, 1), arg(frame, 2))?;
    let mut chunk = [0u8; CHUNK];
    let mut done = 0;
    while done < len {
        let want = (len - done).min(CHUNK);
        let got = file.read(&mut chunk[..want])?;
        if got == 0 {
            break;
        }
        if let Err(e) = uaccess::copy_to_user(buf + done, &chunk[..got]) {
            return if done > 0 { Ok(done as u64) } else { Err(e) };
        }
        done += got;
        if got < want {
            break;
        }
    }
    Ok(done as u64)
}

fn sys_openat(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    let path = path_arg(frame, 0, 1)?;
    let file = crate::fs::open(&path, arg(frame, 2) as u32, arg(frame, 3) as u32)?;
    Ok(p.files.alloc(file)? as u64)
}

fn sys_close(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    p.files.close(fd_arg(frame, 0))?;
    Ok(0)
}

fn sys_getdents64(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    let file = p.files.get(fd_arg(frame, 0))?;
    let (buf, len) = check_span(arg(frame, 1), arg(frame, 2))?;
    let mut kbuf = alloc::vec![0u8; len.min(CHUNK)];
    let n = file.getdents64(&mut kbuf)?;
    uaccess::copy_to_user(buf, &kbuf[..n])?;
    Ok(n as u64)
}

fn sys_lseek(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    let file = p.files.get(fd_arg(frame, 0))?;
    file.seek(arg(frame, 1) as i64, arg(frame, 2) as u32)
}

fn sys_unlinkat(_p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    let path = path_arg(frame, 0, 1)?;
    if arg(frame, 2) & AT_REMOVEDIR != 0 {
        crate::fs::rmdir(&path)?;
    } else {
        crate::fs::unlink(&path)?;
    }
    Ok(0)
}

fn sys_exit(_p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    run::exit_current(ExitStatus::Exited(arg(frame, 0) as i32))
}

fn sys_sched_yield(_p: &Process, _frame: &mut TrapFrame) -> SysResult<u64> {
    // The scheduler's calls belong to the scheduler-and-processes subsystem (the lock is let
    // go across the switch itself, as every big lock is).
    let _sched = locking::subsystem(Subsystem::Proc);
    crate::task::yield_now();
    Ok(0)
}

/// nanosleep(req, rem): sleeps in whole ticks (10 ms), rounded up; a fatal signal ends it early.
fn sys_nanosleep(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    let mut ts = [0u8; 16];
    uaccess::copy_from_user(&mut ts, arg(frame, 0) as usize)?;
    let secs = i64::from_le_bytes(ts[..8].try_into().unwrap());
    let nanos = i64::from_le_bytes(ts[8..].try_into().unwrap());
    if secs < 0 || !(0..1_000_000_000).contains(&nanos) {
        return Err(Errno::EINVAL);
    }
    let per_tick = 1_000_000_000 / crate::irq::tick::TICK_HZ as i64;
    let ticks = (secs as u64)
        .saturating_mul(crate::irq::tick::TICK_HZ)
        .saturating_add(((nanos + per_tick - 1) / per_tick) as u64);
    for _ in 0..ticks {
        if p.signals.fatal().is_some() {
            return Err(Errno::EINTR);
        }
        let _sched = locking::subsystem(Subsystem::Proc);
        crate::task::sleep_ticks(1);
    }
    Ok(0)
}

fn sys_kill(_p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    let pid = arg(frame, 0) as i64 as i32;
    if pid <= 0 {
        return Err(Errno::EINVAL); // no process groups
    }
    run::kill(pid as u32, arg(frame, 1) as u32)?;
    Ok(0)
}

/// getcpu(cpu, node, cache): the CPU this call runs on, as the source texts' "the CPU on which
/// it was made traps to the kernel" promises.
fn sys_getcpu(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    // The CPU the program trapped from: under the leader strategy the call itself runs on
    // CPU 0, but the question is where the program runs.
    let cpu = p.user_cpu.load(core::sync::atomic::Ordering::Relaxed);
    if arg(frame, 0) != 0 {
        uaccess::copy_to_user(arg(frame, 0) as usize, &cpu.to_le_bytes())?;
    }
    if arg(frame, 1) != 0 {
        uaccess::copy_to_user(arg(frame, 1) as usize, &0u32.to_le_bytes())?;
    }
    Ok(0)
}

fn sys_getpid(p: &Process, _frame: &mut TrapFrame) -> SysResult<u64> {
    Ok(p.pid as u64)
}

fn sys_getppid(p: &Process, _frame: &mut TrapFrame) -> SysResult<u64> {
    let _proc = locking::subsystem(Subsystem::Proc);
    let tree = crate::proc::PROCESS_TREE.lock();
    Ok(tree.parent_of(p.pid).unwrap_or(0) as u64)
}

fn sys_brk(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    Ok(p.with_mm(|mm| mm.brk(arg(frame, 0) as usize))? as u64)
}

const PROT_READ: u64 = 1;
const PROT_WRITE: u64 = 2;
const PROT_EXEC: u64 = 4;
const MAP_PRIVATE: u64 = 0x02;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;

/// mmap: private anonymous memory only (no files, no sharing), filled on first touch.
fn sys_mmap(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    let (hint, len, prot, flags) = (arg(frame, 0), arg(frame, 1), arg(frame, 2), arg(frame, 3));
    if len == 0 || flags & MAP_ANONYMOUS == 0 || flags & MAP_PRIVATE == 0 {
        return Err(Errno::EINVAL);
    }
    if flags & MAP_FIXED != 0 {
        return Err(Errno::EINVAL);
    }
    if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let prot = Prot::from_linux(prot as u32);
    let len = usize::try_from(len).map_err(|_| Errno::ENOMEM)?;
    Ok(p.with_mm(|mm| mm.mmap_anon(hint as usize, len, prot))?? as u64)
}

fn sys_munmap(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    p.with_mm(|mm| mm.munmap(arg(frame, 0) as usize, arg(frame, 1) as usize))??;
    Ok(0)
}

/// clone: only what `fork()` asks for (SIGCHLD as the exit signal, no sharing flags).
fn sys_clone(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    let flags = arg(frame, 0);
    if flags & !0xff != 0 || flags & 0xff != signal::SIGCHLD as u64 || arg(frame, 1) != 0 {
        return Err(Errno::EINVAL); // threads and shared address spaces are not supported
    }
    Ok(run::fork(p, frame)? as u64)
}

/// execve(path, argv, envp): the environment is ignored.
fn sys_execve(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    let path = uaccess::copy_string_from_user(arg(frame, 0) as usize, PATH_MAX)?;
    // "/hello" with no such file names the embedded program "hello"; "hello" does too.
    let path = match path.strip_prefix('/') {
        Some(name) if !name.contains('/') && crate::fs::read_all(&path).is_err() => {
            String::from(name)
        }
        _ => path,
    };
    let mut args = Vec::new();
    let argv = arg(frame, 1) as usize;
    if argv != 0 {
        for i in 0..run::MAX_ARGS + 1 {
            let mut word = [0u8; 8];
            uaccess::copy_from_user(&mut word, argv + i * 8)?;
            let ptr = u64::from_le_bytes(word) as usize;
            if ptr == 0 {
                break;
            }
            if i == run::MAX_ARGS {
                return Err(Errno::E2BIG);
            }
            args.push(uaccess::copy_string_from_user(ptr, run::MAX_ARG_BYTES)?);
        }
    }
    run::exec(p, frame, &path, args)?;
    Ok(frame.x[0])
}

const WNOHANG: u64 = 1;

/// wait4(pid, wstatus, options, rusage): pid -1 for any child; WNOHANG is refused (no caller
/// needs it yet), rusage must be null.
fn sys_wait4(p: &Process, frame: &mut TrapFrame) -> SysResult<u64> {
    let pid = arg(frame, 0) as i64 as i32;
    let which = match pid {
        -1 => WaitFor::Any,
        p if p > 0 => WaitFor::Pid(p as u32),
        _ => return Err(Errno::EINVAL),
    };
    if arg(frame, 2) & WNOHANG != 0 || arg(frame, 3) != 0 {
        return Err(Errno::EINVAL);
    }
    let (child, status) = run::wait_child(p, which)?;
    let wstatus = arg(frame, 1) as usize;
    if wstatus != 0 {
        uaccess::copy_to_user(wstatus, &status.as_wait_status().to_le_bytes())?;
    }
    Ok(child as u64)
}
