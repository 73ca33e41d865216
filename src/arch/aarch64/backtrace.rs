//! Walking the stack through frame pointers (the IPI chapter: what a panic prints).
//!
//! quartet is built with frame pointers (.cargo/config.toml): every function's prologue pushes
//! the caller's frame pointer (x29) and its return address (x30) as a pair and points x29 at
//! that pair. Following x29 from frame to frame lists the return addresses of every active
//! call. The walk trusts nothing: each frame must lie inside the given stack, be 16-byte
//! aligned, and be above the previous one, or the walk stops.

use core::ops::Range;

/// Frames printed at most.
pub const MAX_FRAMES: usize = 24;

/// The caller's frame pointer.
#[inline(always)]
pub fn frame_pointer() -> usize {
    let fp: usize;
    // SAFETY: reads a register, no memory access.
    unsafe {
        core::arch::asm!("mov {0}, x29", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    fp
}

/// Call `visit(return_address)` for each frame from `fp` outward, within `stack`.
pub fn walk(mut fp: usize, stack: Range<usize>, mut visit: impl FnMut(usize)) -> usize {
    let mut frames = 0;
    while frames < MAX_FRAMES
        && fp.is_multiple_of(16)
        && stack.contains(&fp)
        && fp.checked_add(16).is_some_and(|end| end <= stack.end)
    {
        // SAFETY: `fp..fp + 16` lies inside the current CPU's mapped stack (checked above);
        // the prologue stored the caller's x29 and x30 there.
        let (next, return_address) = unsafe {
            let pair = fp as *const usize;
            (pair.read_volatile(), pair.add(1).read_volatile())
        };
        if return_address == 0 {
            break;
        }
        visit(return_address);
        frames += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    frames
}
