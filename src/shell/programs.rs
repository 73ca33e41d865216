//! The shell's user-program commands: `run` and `progs` (chapter 19, "User mode and system
//! calls"; chapter 23, "User programs").
//!
//! `run` starts a program as a child of the kernel and, in the foreground, waits for it while
//! polling the keyboard: Ctrl-C sends it SIGINT. What it prints goes straight to the console
//! through its own `write` calls; the shell prints how it ended. With a trailing `&` the shell
//! does not wait: the reaper frees the process when it ends.

use alloc::string::String;
use alloc::vec::Vec;

use super::command::{BadUsage, Outcome, print};
use super::commands::Shell;
use super::line::Terminal;
use crate::proc::run::{self, SpawnFailure};
use crate::proc::signal;
use crate::proc::tree::ExitStatus;

/// The byte Ctrl-C sends.
const CTRL_C: u8 = 0x03;

/// `run <program|/path> [args] [&]`.
pub fn run_program(sh: &mut Shell, words: &[&str]) -> Outcome {
    let (background, words) = match words.split_last() {
        Some((&"&", rest)) => (true, rest),
        _ => (false, words),
    };
    let Some(&name) = words.first() else {
        return Err(BadUsage);
    };
    let args: Vec<String> = words.iter().map(|w| String::from(*w)).collect();
    let pid = match run::spawn(name, args) {
        Ok(pid) => pid,
        Err(e) => {
            let hint = match e {
                SpawnFailure::NotFound(_) => "; `progs` lists what there is to run",
                _ => "",
            };
            print(sh, format_args!("run: {name}: {e}{hint}\n"));
            return Ok(());
        }
    };
    if background {
        run::disown(pid);
        print(
            sh,
            format_args!("[{pid}] {name} started in the background\n"),
        );
        return Ok(());
    }
    sh.flush();
    let status = run::wait_kernel_child(pid, || {
        let mut interrupted = false;
        while let Some(byte) = crate::console::poll_byte() {
            interrupted |= byte == CTRL_C;
        }
        interrupted
    });
    match status {
        Ok(ExitStatus::Exited(code)) => print(
            sh,
            format_args!("[{pid}] {name} exited with status {code}\n"),
        ),
        Ok(ExitStatus::Signaled(sig)) => print(
            sh,
            format_args!("[{pid}] {name} killed by {} ({sig})\n", signal::name(sig)),
        ),
        Err(e) => print(
            sh,
            format_args!("[{pid}] {name}: cannot wait for it: {e}\n"),
        ),
    }
    Ok(())
}

/// `progs`: the programs embedded in the kernel image and the executables in the file system.
pub fn progs(sh: &mut Shell, _: &[&str]) -> Outcome {
    sh.write("embedded in the kernel image (run <name>):\n");
    for (name, bytes) in crate::proc::embedded::programs() {
        print(sh, format_args!("  {name:<16} {:>7} bytes\n", bytes.len()));
    }
    sh.write("in the file system (run /path):\n");
    let mut found = 0;
    let mut dirs = alloc::vec![String::from("/")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = crate::fs::list(&dir) else {
            continue;
        };
        for (name, kind, size) in entries {
            let path = if dir == "/" {
                alloc::format!("/{name}")
            } else {
                alloc::format!("{dir}/{name}")
            };
            if kind == crate::fs::FileKind::Directory {
                dirs.push(path);
            } else if crate::fs::read_all(&path)
                .map(|b| b.starts_with(b"\x7fELF"))
                .unwrap_or(false)
            {
                print(sh, format_args!("  {path:<16} {size:>7} bytes\n"));
                found += 1;
            }
        }
    }
    if found == 0 {
        sh.write("  (none: boot with an initramfs, make run INITRD=file.cpio)\n");
    }
    Ok(())
}
