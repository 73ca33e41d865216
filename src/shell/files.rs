//! The shell's file commands, `ls` and `cat`, over the kernel's ramfs (chapter 22, "A file
//! system in memory").

use super::command::{Outcome, print};
use super::commands::Shell;
use super::line::Terminal;
use crate::fs::{self, FileKind};

/// The most of a file `cat` shows: the console is slow, and a program's bytes are no text.
const CAT_MAX: usize = 16 * 1024;

/// `ls [path]`: a directory's entries (kind, size, name), or one file's.
pub fn ls(sh: &mut Shell, args: &[&str]) -> Outcome {
    let path = args.first().copied().unwrap_or("/");
    match fs::list(path) {
        Ok(entries) => {
            if entries.is_empty() {
                print(sh, format_args!("{path}: empty\n"));
            }
            for (name, kind, size) in entries {
                let (letter, slash) = match kind {
                    FileKind::Directory => ('d', "/"),
                    FileKind::Regular => ('-', ""),
                    FileKind::CharDevice => ('c', ""),
                };
                print(sh, format_args!("{letter} {size:>9} {name}{slash}\n"));
            }
        }
        Err(e) => print(sh, format_args!("ls: {path}: {e}\n")),
    }
    Ok(())
}

/// `cat path`: a file's bytes as text (invalid UTF-8 shown as U+FFFD), at most `CAT_MAX`.
pub fn cat(sh: &mut Shell, args: &[&str]) -> Outcome {
    let path = args[0];
    let bytes = match fs::read_all(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            print(sh, format_args!("cat: {path}: {e}\n"));
            return Ok(());
        }
    };
    let shown = &bytes[..bytes.len().min(CAT_MAX)];
    let text = alloc::string::String::from_utf8_lossy(shown);
    sh.write(&text);
    if !text.ends_with('\n') && !text.is_empty() {
        sh.write("\n");
    }
    if bytes.len() > CAT_MAX {
        print(
            sh,
            format_args!("cat: {path}: showed {CAT_MAX} of {} bytes\n", bytes.len()),
        );
    }
    Ok(())
}
