//! The system-call benchmark (chapter 19): what entering the kernel from user mode costs.
//!
//! The measuring is done by a user program, bench-syscall (user/src/bin/bench-syscall.rs),
//! because only user code can time a system call from the outside: it reads the virtual
//! counter, which EL0 may, around loops of calls and prints one `bench suite=syscall` line
//! per operation. This side starts it pinned to one CPU (so its `switch` test has two
//! processes on the same CPU) and checks that it finished cleanly. The floor it compares
//! against is quartet's floor probe, answered by the EL0 vector itself.

use alloc::format;
use alloc::string::String;
use alloc::vec;

use super::kernel::Scale;
use crate::proc::run;
use crate::proc::tree::ExitStatus;
use crate::task::CpuMask;

/// Results bench-syscall prints.
const OPERATIONS: usize = 5;

pub fn run(scale: Scale) -> usize {
    let cpu = crate::smp::online_cpus().last().unwrap_or(0);
    let iterations = format!("{}", scale.of(20_000));
    let args = vec![String::from("bench-syscall"), iterations];
    let pid = match run::spawn_on("bench-syscall", args, CpuMask::only(cpu)) {
        Ok(pid) => pid,
        Err(e) => {
            log::error!(target: "bench", "syscall: cannot start bench-syscall: {e}");
            return 0;
        }
    };
    match run::wait_kernel_child(pid, || false) {
        Ok(ExitStatus::Exited(0)) => OPERATIONS,
        other => {
            log::error!(target: "bench", "syscall: bench-syscall ended {other:?}");
            0
        }
    }
}
