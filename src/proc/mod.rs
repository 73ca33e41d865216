//! User processes: the family tree, signals, checking and loading ELF programs, the programs
//! embedded in the kernel image, and running them on every CPU (chapters 19 and 23).

pub mod elf;
pub mod embedded;
pub mod signal;
pub mod tree;

// (draft) #[cfg(target_os = "none")]
// (draft) pub mod console;
// (draft) #[cfg(target_os = "none")]
// (draft) pub mod process;
// (draft) #[cfg(target_os = "none")]
// (draft) pub mod reaper;
// (draft) #[cfg(target_os = "none")]
// (draft) pub mod run;

// (draft) #[cfg(target_os = "none")]
// (draft) pub use state::*;

// (draft) #[cfg(target_os = "none")]
// (draft) mod state {
// (draft)     use alloc::collections::BTreeMap;
// (draft)     use alloc::sync::Arc;

// (draft)     use super::process::Process;
// (draft)     use super::reaper::Reaper;
// (draft)     use super::tree::ProcessTree;
// (draft)     use crate::sync::IrqSafeSpinLock;
// (draft)     use crate::task::Pid;

// (draft)     /// Processes a user may have at once, zombies included: what stops a fork bomb.
// (draft)     pub const PER_USER_PROCESS_LIMIT: usize = 64;

// (draft)     /// Parents, children, zombies: see src/proc/tree.rs.
// (draft)     pub static PROCESS_TREE: IrqSafeSpinLock<ProcessTree> =
// (draft)         IrqSafeSpinLock::named("process tree", ProcessTree::new(PER_USER_PROCESS_LIMIT));

// (draft)     /// Every process not yet freed, by pid: how `kill`, `ps` and the reaper find one.
// (draft)     pub static PROCESSES: IrqSafeSpinLock<BTreeMap<Pid, Arc<Process>>> =
// (draft)         IrqSafeSpinLock::named("process table", BTreeMap::new());

// (draft)     pub static REAPER: Reaper = Reaper::new();

// (draft)     /// A snapshot of the live processes (for `ps` and `mem`).
// (draft)     pub fn processes() -> alloc::vec::Vec<Arc<Process>> {
// (draft)         PROCESSES.lock().values().cloned().collect()
// (draft)     }
// (draft) }
