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

/// What the shell shows when it waits for a command.
pub const PROMPT: &str = "quartet> ";

/// The longest command line, in characters; a key beyond it rings the bell.
pub const LINE_MAX: usize = 120;
