//! write file text...: create (or truncate) the file and write the words, space-separated, with
//! a newline.
#![no_std]
#![no_main]

use ulib::{eprintln, sys};

ulib::entry!(main);

fn write_words(fd: i32, args: &ulib::Args) -> Result<usize, sys::Errno> {
    let mut written = 0;
    for (i, word) in args.rest().skip(1).enumerate() {
        if i > 0 {
            sys::write_all(fd, b" ")?;
            written += 1;
        }
        sys::write_all(fd, word.as_bytes())?;
        written += word.len();
    }
    sys::write_all(fd, b"\n")?;
    Ok(written + 1)
}

fn main(args: ulib::Args) -> i32 {
    let Some(path) = args.get(1) else {
        eprintln!("usage: write file text...");
        return 2;
    };
    let fd = match sys::open(path, sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC, 0o644) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("write: {path}: {e}");
            return 1;
        }
    };
    let result = write_words(fd, &args);
    let _ = sys::close(fd);
    match result {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("write: {path}: {e}");
            1
        }
    }
}
