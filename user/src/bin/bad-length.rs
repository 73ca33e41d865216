//! bad-length: write(1, buf, 1<<62) and read(0, buf, 1<<62) with a small buffer: the kernel must
//! not copy past the buffer. Linux: -EFAULT for both (access_ok fails: buf + len is beyond the
//! top of user space), checked under qemu-user. A length of u64::MAX wraps the end
//! around; Linux says -EFAULT for that too. Exits 0 only if every call got -EFAULT.
#![no_std]
#![no_main]

use ulib::println;
use ulib::sys::{self, Errno};

ulib::entry!(main);

fn main(_args: ulib::Args) -> i32 {
    let mut buf = [0u8; 64];
    let address = buf.as_mut_ptr() as usize;
    let mut all = true;
    for len in [1usize << 62, usize::MAX] {
        let wrote = sys::write_raw(1, address, len);
        // SAFETY: a correct kernel refuses the length before touching `buf`.
        let read = unsafe { sys::read_raw(0, address, len) };
        let ok = wrote == Err(Errno::EFAULT) && read == Err(Errno::EFAULT);
        all &= ok;
        println!(
            "bad-length: write(1, buf, {len:#x}) -> {:?}, read(0, buf, {len:#x}) -> {:?}{}",
            wrote,
            read,
            if ok { "" } else { "  <- expected EFAULT" }
        );
    }
    core::hint::black_box(&buf);
    if all { 0 } else { 1 }
}
