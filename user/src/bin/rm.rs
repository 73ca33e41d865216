//! rm file...: remove each file (unlinkat).
#![no_std]
#![no_main]

use ulib::{eprintln, sys};

ulib::entry!(main);

fn main(args: ulib::Args) -> i32 {
    if args.len() < 2 {
        eprintln!("usage: rm file...");
        return 2;
    }
    let mut status = 0;
    for path in args.rest() {
        if let Err(e) = sys::unlinkat(path, 0) {
            eprintln!("rm: {path}: {e}");
            status = 1;
        }
    }
    status
}
