//! User processes: the family tree, signals, checking and loading ELF programs, the programs
//! embedded in the kernel image, and running them on every CPU (chapters 19 and 23).

pub mod elf;
pub mod embedded;
pub mod locking;
pub mod signal;
pub mod tree;

#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod process;
#[cfg(target_os = "none")]
pub mod reaper;
#[cfg(target_os = "none")]
pub mod run;

#[cfg(target_os = "none")]
pub use state::*;

#[cfg(target_os = "none")]
mod state {
    use alloc::collections::BTreeMap;
    use alloc::sync::Arc;

    use super::process::Process;
    use super::reaper::Reaper;
    use super::tree::ProcessTree;
    use crate::sync::IrqSafeSpinLock;
    use crate::task::Pid;

    /// Processes a user may have at once, zombies included: what stops a fork bomb.
    pub const PER_USER_PROCESS_LIMIT: usize = 64;

    /// Parents, children, zombies: see src/proc/tree.rs.
    pub static PROCESS_TREE: IrqSafeSpinLock<ProcessTree> =
        IrqSafeSpinLock::named("process tree", ProcessTree::new(PER_USER_PROCESS_LIMIT));

    /// Every process not yet freed, by pid: how `kill`, `ps` and the reaper find one.
    pub static PROCESSES: IrqSafeSpinLock<BTreeMap<Pid, Arc<Process>>> =
        IrqSafeSpinLock::named("process table", BTreeMap::new());

    pub static REAPER: Reaper = Reaper::new();

    /// A snapshot of the live processes (for `ps` and `mem`).
    pub fn processes() -> alloc::vec::Vec<Arc<Process>> {
        PROCESSES.lock().values().cloned().collect()
    }
}
