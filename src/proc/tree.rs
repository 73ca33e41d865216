//! The family tree of user processes: who is whose parent, who has exited but not been waited
//! for (a zombie), and how many processes a user may have (chapter 19, "User mode and system
//! calls").
//!
//! This is the data behind `fork`, `exit` and `wait4`, kept apart from the machinery that runs
//! processes so the host tests can drive every rule: a parent reaps only its own children; a
//! child that exits stays a zombie holding its status until its parent waits; when a parent
//! exits first, its children become orphans, and an orphan that exits (or a zombie whose parent
//! exits) is handed to the kernel's reaper instead of lingering for ever; and a fork that would
//! take a user past its process limit fails with `EAGAIN`, which is what stops a fork bomb.
//!
//! The tree is one structure behind one lock (`PROCESS_TREE` in src/proc/mod.rs): every
//! operation here is a short walk over a few entries, done with the lock held, and returns what
//! the caller must do afterwards (whom to wake, what to reap) instead of doing it under the lock.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::errno::{Errno, SysResult};
use crate::task::Pid;

/// The parent of processes started by the kernel itself (the shell's `run`, the tests): it
/// never waits through `wait4`, the kernel does, by pid.
pub const KERNEL_PARENT: Pid = 0;

/// How a process ended, in the terms `wait4` reports (Linux's encoding in `as_wait_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called `exit(code)`; only the low 8 bits reach the parent, as on Linux.
    Exited(i32),
    /// A signal ended it (killed, or a fault the kernel turned into a signal).
    Signaled(u32),
}

impl ExitStatus {
    /// The `wstatus` word `wait4` stores: `code << 8` for an exit, the signal number for a
    /// signal death (what WIFEXITED/WEXITSTATUS/WIFSIGNALED/WTERMSIG decode).
    pub fn as_wait_status(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => (code & 0xff) << 8,
            ExitStatus::Signaled(sig) => (sig & 0x7f) as i32,
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    parent: Pid,
    user: u32,
    children: Vec<Pid>,
    /// Set when the process has exited and not yet been reaped.
    zombie: Option<ExitStatus>,
}

/// What `exit` leaves for the caller to do once the tree's lock is released.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExitEffects {
    /// The parent to wake (it may be sleeping in `wait4`), unless the parent is the kernel.
    pub wake_parent: Option<Pid>,
    /// Processes nobody will wait for any more: the exiting process itself if it was an
    /// orphan, and its children that were already zombies. The reaper frees them.
    pub reap: Vec<(Pid, ExitStatus)>,
}

/// Which children a `wait4` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    Any,
    Pid(Pid),
}

/// The process tree. See the module doc.
#[derive(Debug)]
pub struct ProcessTree {
    entries: BTreeMap<Pid, Entry>,
    per_user_limit: usize,
}

/// Pid of the parent an orphan is given: nobody waits for it, the reaper frees it at exit.
pub const ORPHAN: Pid = u32::MAX;

impl ProcessTree {
    pub const fn new(per_user_limit: usize) -> Self {
        ProcessTree {
            entries: BTreeMap::new(),
            per_user_limit,
        }
    }

    /// Live and zombie processes of `user`: zombies still count, as they do on Linux, so a
    /// fork bomb cannot escape the limit by exiting fast.
    pub fn count_of_user(&self, user: u32) -> usize {
        self.entries.values().filter(|e| e.user == user).count()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn per_user_limit(&self) -> usize {
        self.per_user_limit
    }

    /// May `user` have one more process? `EAGAIN` at the limit, as `fork` returns it.
    pub fn check_limit(&self, user: u32) -> SysResult<()> {
        if self.count_of_user(user) >= self.per_user_limit {
            Err(Errno::EAGAIN)
        } else {
            Ok(())
        }
    }

    /// Record process `pid` of `user`, child of `parent` (`KERNEL_PARENT` for one the kernel
    /// started). Fails with `EAGAIN` past the user's limit.
    pub fn add(&mut self, pid: Pid, parent: Pid, user: u32) -> SysResult<()> {
        self.check_limit(user)?;
        assert!(
            !self.entries.contains_key(&pid),
            "pid {pid} entered the process tree twice"
        );
        let parent = if parent == KERNEL_PARENT || self.entries.contains_key(&parent) {
            parent
        } else {
            ORPHAN
        };
        if let Some(p) = self.entries.get_mut(&parent) {
            p.children.push(pid);
        }
        self.entries.insert(
            pid,
            Entry {
                parent,
                user,
                children: Vec::new(),
                zombie: None,
            },
        );
        Ok(())
    }

    pub fn contains(&self, pid: Pid) -> bool {
        self.entries.contains_key(&pid)
    }

    /// The parent `getppid` reports: 0 for the kernel's children and for orphans.
    pub fn parent_of(&self, pid: Pid) -> Option<Pid> {
        self.entries
            .get(&pid)
            .map(|e| if e.parent == ORPHAN { 0 } else { e.parent })
    }

    pub fn is_zombie(&self, pid: Pid) -> bool {
        self.entries.get(&pid).is_some_and(|e| e.zombie.is_some())
    }

    /// Process `pid` ended with `status`: it becomes a zombie for its parent to reap, its
    /// children become orphans, and what nobody will ever wait for goes to the reaper.
    pub fn exit(&mut self, pid: Pid, status: ExitStatus) -> ExitEffects {
        let mut effects = ExitEffects::default();
        let Some(entry) = self.entries.get_mut(&pid) else {
            return effects;
        };
        if entry.zombie.is_some() {
            return effects; // already exited: a second report changes nothing
        }
        entry.zombie = Some(status);
        let parent = entry.parent;
        let children = core::mem::take(&mut entry.children);
        for child in children {
            let Some(c) = self.entries.get_mut(&child) else {
                continue;
            };
            c.parent = ORPHAN;
            if let Some(s) = c.zombie {
                self.entries.remove(&child);
                effects.reap.push((child, s));
            }
        }
        if parent == ORPHAN {
            self.entries.remove(&pid);
            effects.reap.push((pid, status));
        } else if parent != KERNEL_PARENT {
            effects.wake_parent = Some(parent);
        }
        effects
    }

    /// `wait4` for `parent`: a zombie child that matches is removed and returned. `Ok(None)`
    /// means matching children exist but none has exited yet (sleep and try again); `ECHILD`
    /// means there is nothing to wait for.
    pub fn reap_child(
        &mut self,
        parent: Pid,
        which: WaitFor,
    ) -> SysResult<Option<(Pid, ExitStatus)>> {
        let children: &[Pid] = match self.entries.get(&parent) {
            Some(p) => &p.children,
            None => &[],
        };
        let mut any = false;
        let mut found = None;
        for &child in children {
            if let WaitFor::Pid(want) = which
                && want != child
            {
                continue;
            }
            any = true;
            if let Some(status) = self.entries.get(&child).and_then(|c| c.zombie) {
                found = Some((child, status));
                break;
            }
        }
        let Some((child, status)) = found else {
            return if any { Ok(None) } else { Err(Errno::ECHILD) };
        };
        self.entries.remove(&child);
        if let Some(p) = self.entries.get_mut(&parent) {
            p.children.retain(|&c| c != child);
        }
        Ok(Some((child, status)))
    }

    /// Reap `pid`, a child of the kernel, once it is a zombie (the shell's `run` waits this
    /// way). `Ok(None)` while it runs; `ECHILD` if it is not the kernel's child.
    pub fn reap_kernel_child(&mut self, pid: Pid) -> SysResult<Option<ExitStatus>> {
        match self.entries.get(&pid) {
            Some(e) if e.parent == KERNEL_PARENT => match e.zombie {
                Some(status) => {
                    self.entries.remove(&pid);
                    Ok(Some(status))
                }
                None => Ok(None),
            },
            _ => Err(Errno::ECHILD),
        }
    }

    /// Give `pid` (a kernel child) to the reaper: nobody will wait for it (a background `run`).
    /// Returns its status if it has already exited, so the caller reaps it now.
    pub fn disown(&mut self, pid: Pid) -> Option<ExitStatus> {
        let e = self.entries.get_mut(&pid)?;
        if e.parent != KERNEL_PARENT {
            return None;
        }
        e.parent = ORPHAN;
        let status = e.zombie?;
        self.entries.remove(&pid);
        Some(status)
    }

    /// Every pid in the tree with its parent (as `getppid` reports it) and whether it is a zombie.
    pub fn snapshot(&self) -> Vec<(Pid, Pid, bool)> {
        self.entries
            .iter()
            .map(|(&pid, e)| {
                let parent = if e.parent == ORPHAN { 0 } else { e.parent };
                (pid, parent, e.zombie.is_some())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: u32 = 1000;

    fn tree() -> ProcessTree {
        ProcessTree::new(8)
    }

    #[test]
    fn a_child_stays_a_zombie_until_its_parent_reaps_it() {
        let mut t = tree();
        t.add(10, KERNEL_PARENT, USER).unwrap();
        t.add(11, 10, USER).unwrap();
        assert_eq!(
            t.reap_child(10, WaitFor::Any),
            Ok(None),
            "the child still runs"
        );
        let fx = t.exit(11, ExitStatus::Exited(3));
        assert_eq!(fx.wake_parent, Some(10));
        assert!(fx.reap.is_empty());
        assert!(t.is_zombie(11));
        assert_eq!(
            t.reap_child(10, WaitFor::Any),
            Ok(Some((11, ExitStatus::Exited(3))))
        );
        assert!(!t.contains(11));
        assert_eq!(t.reap_child(10, WaitFor::Any), Err(Errno::ECHILD));
    }

    #[test]
    fn a_parent_reaps_only_the_child_it_names() {
        let mut t = tree();
        t.add(10, KERNEL_PARENT, USER).unwrap();
        t.add(11, 10, USER).unwrap();
        t.add(12, 10, USER).unwrap();
        t.exit(11, ExitStatus::Exited(1));
        assert_eq!(t.reap_child(10, WaitFor::Pid(12)), Ok(None));
        assert_eq!(t.reap_child(10, WaitFor::Pid(99)), Err(Errno::ECHILD));
        t.add(20, KERNEL_PARENT, USER).unwrap();
        assert_eq!(
            t.reap_child(20, WaitFor::Pid(11)),
            Err(Errno::ECHILD),
            "another process's child is not yours to reap"
        );
        assert_eq!(
            t.reap_child(10, WaitFor::Any),
            Ok(Some((11, ExitStatus::Exited(1))))
        );
    }

    #[test]
    fn orphans_go_to_the_reaper_when_they_exit() {
        let mut t = tree();
        t.add(10, KERNEL_PARENT, USER).unwrap();
        t.add(11, 10, USER).unwrap();
        t.add(12, 10, USER).unwrap();
        t.exit(12, ExitStatus::Exited(0)); // a zombie nobody reaped yet
        let fx = t.exit(10, ExitStatus::Exited(0));
        assert_eq!(
            fx.reap,
            [(12, ExitStatus::Exited(0))],
            "its zombie child is freed"
        );
        assert_eq!(t.parent_of(11), Some(0), "an orphan's parent reads 0");
        let fx = t.exit(11, ExitStatus::Signaled(9));
        assert_eq!(fx.wake_parent, None);
        assert_eq!(fx.reap, [(11, ExitStatus::Signaled(9))]);
        assert!(!t.contains(11));
        assert_eq!(t.reap_kernel_child(10), Ok(Some(ExitStatus::Exited(0))));
        assert!(t.is_empty(), "nothing is left behind: {t:?}");
    }

    #[test]
    fn the_per_user_limit_stops_a_fork_bomb_and_counts_zombies() {
        let mut t = ProcessTree::new(3);
        t.add(1, KERNEL_PARENT, USER).unwrap();
        t.add(2, 1, USER).unwrap();
        t.add(3, 2, USER).unwrap();
        assert_eq!(t.add(4, 3, USER), Err(Errno::EAGAIN));
        t.exit(3, ExitStatus::Exited(0));
        assert_eq!(
            t.add(4, 2, USER),
            Err(Errno::EAGAIN),
            "a zombie still counts"
        );
        assert_eq!(t.reap_child(2, WaitFor::Any).unwrap().unwrap().0, 3);
        t.add(4, 2, USER).unwrap();
        assert_eq!(
            t.add(5, KERNEL_PARENT, 0),
            Ok(()),
            "another user has its own limit"
        );
    }

    #[test]
    fn a_disowned_background_process_is_reaped_at_exit() {
        let mut t = tree();
        t.add(10, KERNEL_PARENT, USER).unwrap();
        assert_eq!(t.disown(10), None);
        let fx = t.exit(10, ExitStatus::Exited(0));
        assert_eq!(fx.reap, [(10, ExitStatus::Exited(0))]);
        t.add(11, KERNEL_PARENT, USER).unwrap();
        t.exit(11, ExitStatus::Exited(4));
        assert_eq!(t.disown(11), Some(ExitStatus::Exited(4)));
        assert!(t.is_empty());
    }

    #[test]
    fn wait_status_uses_linux_encoding() {
        assert_eq!(ExitStatus::Exited(3).as_wait_status(), 0x300);
        assert_eq!(ExitStatus::Exited(256 + 7).as_wait_status(), 0x700);
        assert_eq!(ExitStatus::Signaled(11).as_wait_status(), 11);
    }
}
