//! exec prog [args...]: replace this process with `prog` (execve), passing the remaining
//! arguments as its argv and this process's environment. Prints why and exits 1 if execve fails.
#![no_std]
#![no_main]

use ulib::{eprintln, sys};

ulib::entry!(main);

fn main(args: ulib::Args) -> i32 {
    let Some(path) = args.get(1) else {
        eprintln!("usage: exec prog [args...]");
        return 2;
    };
    let (argv, envp) = args.exec_vectors(1);
    // SAFETY: argv and envp are the NULL-terminated arrays of NUL-terminated strings the kernel
    // laid out on our initial stack; argv[1] (our `prog`) is NUL-terminated there too.
    let error = unsafe { sys::execve(*argv, argv, envp) };
    eprintln!("exec: {path}: {error}");
    1
}
