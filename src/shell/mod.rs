//! The interactive shell: where an ordinary boot ends (chapter 13, "The shell").
//!
//! When bootargs ask for no test, bench or demo, the boot CPU ends `kernel_main` here: it prints
//! `quartet> ` on the console, reads a line with echo and editing, runs the command the line
//! names, and prompts again, forever. The other CPUs stay in their idle loop and are put to
//! work only by commands that need them (`test`, `bench`).
//!
//! Three parts, so the parts that can be tested on the host are:
//! - `line`: the line editor (bytes in, echo out, a finished line), portable;
//! - `command`: the command table, the parser and `help`, portable;
//! - `commands` (kernel only): the commands themselves and the read-eval loop. Input comes from
//!   `console::read_byte_blocking` alone, which sleeps until the UART's receive interrupt has
//!   queued a byte, or polls where there is no such interrupt; the shell cannot tell which.

pub mod command;
pub mod line;

#[cfg(target_os = "none")]
mod commands;
#[cfg(target_os = "none")]
mod files;
#[cfg(target_os = "none")]
mod lockstat;
#[cfg(target_os = "none")]
mod programs;
#[cfg(target_os = "none")]
mod tasks;

#[cfg(target_os = "none")]
pub use commands::{CPU_COLUMNS, Cell, CpuColumn, run};

/// `"a, b or c"` from string literals, at compile time, so that a `&'static str` (the `demo`
/// command's help line) can be made from the same literals as a list.
macro_rules! names_joined {
    ($only:literal) => { $only };
    ($first:literal, $last:literal) => { concat!($first, " or ", $last) };
    ($first:literal, $($rest:literal),+) => { concat!($first, ", ", names_joined!($($rest),+)) };
}

/// The demos, each failing on purpose to show what the kernel does then: one list, for the
/// `demo` command, its help line, and the `demo=` bootarg (src/main.rs `run_demo` runs them).
macro_rules! demos {
    ($($name:literal),+ $(,)?; then $about:literal) => {
        /// Every demo's name.
        pub const DEMOS: &[&str] = &[$($name),+];
        /// The same names for a reader: "fault, oom, ... or lock-order".
        pub const DEMO_NAMES: &str = names_joined!($($name),+);
        /// The `demo` command's line in `help`: the names, then what a demo does.
        pub const DEMO_ABOUT: &str = concat!(names_joined!($($name),+), $about);
    };
}

demos!(
    "fault",
    "oom",
    "overflow",
    "task-overflow",
    "panic",
    "irq-deadlock",
    "uaccess-nofixup",
    "lock-order";
    then ": fail on purpose; ENDS THE SESSION (lock-order only reports)"
);

/// What the shell shows when it waits for a command.
pub const PROMPT: &str = "quartet> ";

/// The longest command line, in characters; a key beyond it rings the bell.
pub const LINE_MAX: usize = 120;

#[cfg(test)]
mod tests {
    use super::{DEMO_ABOUT, DEMO_NAMES, DEMOS};

    /// The names `run_demo` in src/main.rs matches on: the `"name" =>` arms of its `match`.
    fn run_demo_arms() -> Vec<&'static str> {
        let main = include_str!("../main.rs");
        let start = main.find("fn run_demo(").expect("src/main.rs has run_demo");
        let body = &main[start..];
        let end = body.find("\n    }\n").expect("run_demo ends");
        body[..end]
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"')?.split_once("\" =>"))
            .map(|(name, _)| name)
            .collect()
    }

    #[test]
    fn every_demo_listed_is_one_run_demo_runs_and_no_other() {
        let mut arms = run_demo_arms();
        let mut listed = DEMOS.to_vec();
        arms.sort_unstable();
        listed.sort_unstable();
        assert_eq!(
            arms, listed,
            "src/main.rs run_demo's arms against shell::DEMOS"
        );
    }

    #[test]
    fn the_help_line_names_every_demo_in_the_lists_order() {
        let named: Vec<&str> = DEMO_NAMES
            .split(", ")
            .flat_map(|part| part.split(" or "))
            .collect();
        assert_eq!(named, DEMOS, "{DEMO_NAMES}");
        assert!(DEMO_ABOUT.starts_with(DEMO_NAMES), "{DEMO_ABOUT}");
    }
}
