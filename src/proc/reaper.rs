//! The reaper: a kernel thread that frees the processes nobody will wait for (chapter 19,
//! "User mode and system calls").
//!
//! A process's thread cannot free itself: its stack is in use until the scheduler has switched
//! away from it. Its parent does that in `wait4`; an orphan has no parent, and a background
//! program started from the shell has nobody waiting. Linux hands such processes to init; quartet
//! has no init, so `exit` hands their pids to this thread, which reaps each once its thread is
//! off every CPU.

use alloc::collections::VecDeque;

use crate::sync::IrqSafeSpinLock;
use crate::task::{Pid, WaitQueue};

pub struct Reaper {
    pending: IrqSafeSpinLock<VecDeque<Pid>>,
    wakeup: WaitQueue,
    started: spin::Once<Pid>,
}

impl Reaper {
    pub const fn new() -> Self {
        Reaper {
            pending: IrqSafeSpinLock::named("reaper queue", VecDeque::new()),
            wakeup: WaitQueue::named("reaper"),
            started: spin::Once::new(),
        }
    }

    /// Hand `pid` over: it is freed once its thread has stopped running.
    pub fn push(&self, pid: Pid) {
        self.pending.lock().push_back(pid);
        self.wakeup.wake_one();
    }

    /// Start the reaper's thread (once).
    pub fn start(&'static self) {
        self.started.call_once(|| {
            crate::task::spawn("reaper", move || {
                loop {
                    let mut next = None;
                    self.wakeup.wait_until(|| {
                        next = self.pending.lock().pop_front();
                        next.is_some()
                    });
                    if let Some(pid) = next {
                        super::run::release(pid);
                    }
                }
            })
            .expect("the reaper thread must start")
        });
    }
}

impl Default for Reaper {
    fn default() -> Self {
        Self::new()
    }
}
