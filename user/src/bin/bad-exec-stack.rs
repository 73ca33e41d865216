//! bad-exec-stack: put a `ret` instruction in a stack buffer and branch to it. Linux: SIGSEGV
//! (the stack is not executable: PT_GNU_STACK without X, and PXN/UXN in the page tables).
#![no_std]
#![no_main]

use ulib::println;

ulib::entry!(main);

fn main(_args: ulib::Args) -> i32 {
    // `ret`, then padding.
    let code: [u32; 4] = core::hint::black_box([0xd65f_03c0, 0, 0, 0]);
    let address = code.as_ptr() as usize;
    println!("bad-exec-stack: jumping to a `ret` on the stack at {address:#x}");
    // SAFETY: not safe: the stack is not executable and the kernel must refuse with a fault.
    let f: extern "C" fn() = unsafe { core::mem::transmute(address) };
    f();
    println!("bad-exec-stack: the instruction ran: the stack is executable");
    1
}
