//! Sleeping until a key arrives: the console reader's wait (chapter 13, "The shell"; built on
//! chapter 16's sleep protocol).
//!
//! The console sits below the scheduler and cannot name a task, so it asks for two hooks
//! (`console::InputSleep`): how a reader waits until input is ready, and how the receive
//! interrupt wakes it. This file is the task side of both, installed when the scheduler starts
//! on the boot CPU (`install`). The reader (the shell) registers itself, announces its sleep,
//! checks the input ring and only then sleeps, exactly the loop of src/task/sched/sleep.rs, so
//! a byte that arrives between the check and the sleep still wakes it. Where a flow cannot
//! sleep (before the scheduler is ready, in the idle task, holding a lock), `wait_for_input`
//! says so and the console waits in WFI instead.

use alloc::sync::Arc;

use super::sched::{Task, can_sleep, current, finish_wait, prepare_to_sleep, sleep, wake};
use crate::sync::IrqSafeSpinLock;

/// Let the console's reader sleep (and its CPU run other tasks) until a key arrives.
pub(crate) fn install() {
    crate::console::set_input_sleep(crate::console::InputSleep {
        wait: wait_for_input,
        wake: input_arrived,
    });
}

/// The task waiting for console input (the shell), if it sleeps.
static INPUT_READER: IrqSafeSpinLock<Option<Arc<Task>>> =
    IrqSafeSpinLock::named("console reader", None);

fn wait_for_input(ready: &dyn Fn() -> bool) -> bool {
    if !can_sleep() {
        return false;
    }
    let me = current();
    loop {
        prepare_to_sleep();
        *INPUT_READER.lock() = Some(me.clone());
        if ready() {
            finish_wait();
            break;
        }
        sleep();
    }
    INPUT_READER.lock().take();
    true
}

fn input_arrived() {
    let reader = INPUT_READER.lock().clone();
    if let Some(t) = reader {
        wake(&t);
    }
}
