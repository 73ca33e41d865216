//! hello: the first program; prints its pid, its parent and the CPU it runs on (getcpu).
#![no_std]
#![no_main]

use ulib::{println, sys};

ulib::entry!(main);

fn main(args: ulib::Args) -> i32 {
    let pid = sys::getpid();
    let ppid = sys::getppid();
    match sys::getcpu() {
        Ok((cpu, _node)) => println!(
            "hello from pid {pid} (parent {ppid}) on cpu {cpu}, argc {}",
            args.len()
        ),
        Err(e) => {
            println!("hello from pid {pid} (parent {ppid}); getcpu failed: {e}");
            return 1;
        }
    }
    for (i, arg) in args.rest().enumerate() {
        println!("  argv[{}] = {arg}", i + 1);
    }
    0
}
