//! cat file...: copy each file to standard output.
#![no_std]
#![no_main]

use ulib::{eprintln, sys};

ulib::entry!(main);

fn cat(path: &str) -> Result<(), sys::Errno> {
    let fd = sys::open(path, sys::O_RDONLY, 0)?;
    let mut buf = [0u8; 512];
    let result = loop {
        match sys::read(fd, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = sys::write_all(1, &buf[..n]) {
                    break Err(e);
                }
            }
            Err(e) => break Err(e),
        }
    };
    let _ = sys::close(fd);
    result
}

fn main(args: ulib::Args) -> i32 {
    if args.len() < 2 {
        eprintln!("usage: cat file...");
        return 2;
    }
    let mut status = 0;
    for path in args.rest() {
        if let Err(e) = cat(path) {
            eprintln!("cat: {path}: {e}");
            status = 1;
        }
    }
    status
}
