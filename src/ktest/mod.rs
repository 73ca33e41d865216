//! The in-kernel test runner (chapter 1, "Test mode").
//!
//! With `test` in bootargs the kernel runs every test here (or those `test=` selects: names
//! containing one of its comma-separated parts, less those containing a `!part`), prints
//! `test <name> ... ok` or `test <name> ... FAILED: <why>` for each, and ends with the line
//! `N passed, M failed`. The host side (tests/boot.rs) boots QEMU in several
//! configurations and checks these lines; the QEMU exit status says whether M was 0.

mod atomics;
pub mod biglock;
pub mod exception;
mod foundation;
mod frames;
mod fs;
mod interrupts;
pub mod irqlock;
mod kernel_half;
pub mod litmus;
mod lockstat;
pub mod locktorture;
mod proclist;
mod rcu;
mod rwseq;
mod sched;
mod sleeplock;
mod task;
pub mod uaccess;
mod user;
mod user_processes;

use alloc::string::String;
use core::fmt::Write;

use crate::logger::LineBuffer;
use crate::platform::Platform;

/// One in-kernel test: it returns why it failed, or Ok.
pub struct KTest {
    pub name: &'static str,
    pub run: fn(&Platform<'static>) -> Result<(), String>,
}

/// Every suite, in the order they run.
fn suites() -> impl Iterator<Item = &'static KTest> {
    foundation::TESTS
        .iter()
        .chain(kernel_half::TESTS.iter())
        .chain(atomics::TESTS.iter())
        .chain(litmus::TESTS.iter())
        .chain(locktorture::TESTS.iter())
        .chain(lockstat::TESTS.iter())
        .chain(biglock::TESTS.iter())
        .chain(rwseq::TESTS.iter())
        .chain(interrupts::TESTS.iter())
        .chain(exception::TESTS.iter())
        .chain(irqlock::TESTS.iter())
        .chain(rcu::TESTS.iter())
        .chain(proclist::TESTS.iter())
        .chain(task::TESTS.iter())
        .chain(sched::TESTS.iter())
        .chain(sleeplock::TESTS.iter())
        .chain(frames::TESTS.iter())
        .chain(uaccess::TESTS.iter())
        .chain(user::TESTS.iter())
        .chain(fs::TESTS.iter())
        .chain(user_processes::TESTS.iter())
}

fn print(args: core::fmt::Arguments<'_>) {
    let mut line = LineBuffer::new();
    let _ = line.write_fmt(args);
    line.finish_line();
    crate::console::write_line(line.as_str());
}

/// Run the tests `filter` selects (`platform::name_selected`: comma-separated parts of names,
/// `!part` to leave some out; all for ""); returns (passed, failed).
pub fn run(platform: &Platform<'static>, filter: &str) -> (usize, usize) {
    let (mut passed, mut failed) = (0, 0);
    for test in suites().filter(|t| crate::platform::name_selected(t.name, filter)) {
        match (test.run)(platform) {
            Ok(()) => {
                passed += 1;
                print(format_args!("test {} ... ok", test.name));
            }
            Err(why) => {
                failed += 1;
                print(format_args!("test {} ... FAILED: {}", test.name, why));
            }
        }
    }
    if passed + failed == 0 {
        print(format_args!("ktest: no test is selected by {filter:?}"));
    }
    print(format_args!("{passed} passed, {failed} failed"));
    (passed, failed)
}

/// Fail with a formatted reason unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(alloc::format!($($why)+));
        }
    };
}
