//! ls [dir]: list a directory (default: the working directory) with getdents64, one entry per
//! line, directories with a trailing '/'. Order is the kernel's.
#![no_std]
#![no_main]

use ulib::dirent::{DT_DIR, Dirents};
use ulib::{eprintln, println, sys};

ulib::entry!(main);

fn main(args: ulib::Args) -> i32 {
    let dir = args.get(1).unwrap_or(".");
    let fd = match sys::open(dir, sys::O_RDONLY | sys::O_DIRECTORY, 0) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("ls: {dir}: {e}");
            return 1;
        }
    };
    let mut buf = [0u8; 1024];
    loop {
        let n = match sys::getdents64(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                eprintln!("ls: {dir}: getdents64: {e}");
                return 1;
            }
        };
        for entry in Dirents::new(&buf[..n]) {
            if entry.name == b"." || entry.name == b".." {
                continue;
            }
            let name = core::str::from_utf8(entry.name).unwrap_or("<not utf-8>");
            let slash = if entry.kind == DT_DIR { "/" } else { "" };
            println!("{name}{slash}");
        }
    }
    let _ = sys::close(fd);
    0
}
