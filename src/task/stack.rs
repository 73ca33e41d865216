//! A kernel thread's stack, from the heap, with a canary at the bottom (chapter 15,
//! "Processes and the context switch").
//!
//! The CPUs' boot stacks sit in the linker's stack area with an unmapped guard page below each,
//! so an overflow faults at once. A thread's stack comes from the heap, and the heap cannot
//! unmap a page in the middle of its memory: an overflow would quietly write over whatever
//! block lies below. So the lowest `CANARY_WORDS` words hold a known pattern (mixed with the
//! stack's own address, so a stray copy of another stack's canary does not pass), and the
//! scheduler checks it every time it switches a thread out and in. A thread that ran into its
//! canary is reported by name at the next switch instead of corrupting the heap unnoticed.
//!
//! The usable stack starts above the canary: `bottom()` is what the per-CPU area's stack bounds
//! get. The exception vectors (src/arch/aarch64/exception.rs) compare SP with it: an exception
//! taken with less than `EXCEPTION_STACK_RESERVE` (12 KiB) above it runs on the CPU's emergency
//! stack and returns here, and one taken with SP below it reports an overflow and never returns.
//! So no trap frame or handler ever writes into the canary, and a stack much smaller than the
//! reserve takes every interrupt on the emergency stack (and is never preempted by one).

use alloc::alloc::{alloc, dealloc};
use core::alloc::Layout;
use core::ptr::NonNull;

/// Bytes in a thread's stack unless asked otherwise.
pub const DEFAULT_STACK_SIZE: usize = 32 * 1024;
/// Words of canary at the bottom of the stack.
pub const CANARY_WORDS: usize = 8;
/// The pattern; each word is this, XORed with the word's own address.
pub const CANARY: u64 = 0x5ca1_ab1e_dead_c0de;
const ALIGN: usize = 16;

/// A canary word no longer holds its pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanaryDamaged {
    /// Address of the lowest damaged word.
    pub address: usize,
    pub found: u64,
    pub expected: u64,
}

impl core::fmt::Display for CanaryDamaged {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "stack canary at {:#x} holds {:#018x}, expected {:#018x}: the stack overflowed \
             (or something wrote below it)",
            self.address, self.found, self.expected
        )
    }
}

/// A heap-allocated stack; freed on drop.
pub struct Stack {
    base: NonNull<u64>,
    size: usize,
}

// SAFETY: a Stack is an owned block of memory with no thread affinity.
unsafe impl Send for Stack {}
// SAFETY: shared access only reads the canary through raw pointers (volatile); writes need
// `&mut self` or the explicitly unsafe `poke_canary`.
unsafe impl Sync for Stack {}

impl Stack {
    /// A stack of `size` bytes (rounded up to 16), canary written. None if the heap is out of
    /// memory or `size` cannot even hold the canary.
    pub fn new(size: usize) -> Option<Stack> {
        let size = size.checked_next_multiple_of(ALIGN)?;
        if size < CANARY_WORDS * 8 + 256 {
            return None;
        }
        let layout = Layout::from_size_align(size, ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let base = NonNull::new(unsafe { alloc(layout) }.cast::<u64>())?;
        let stack = Stack { base, size };
        for i in 0..CANARY_WORDS {
            // SAFETY: word i < CANARY_WORDS lies inside the block just allocated.
            unsafe { stack.word(i).write_volatile(stack.expected(i)) };
        }
        Some(stack)
    }

    fn word(&self, i: usize) -> *mut u64 {
        debug_assert!(i < CANARY_WORDS);
        self.base.as_ptr().wrapping_add(i)
    }

    fn expected(&self, i: usize) -> u64 {
        CANARY ^ self.word(i) as u64
    }

    /// Lowest address the thread may use (just above the canary).
    pub fn bottom(&self) -> usize {
        self.base.as_ptr() as usize + CANARY_WORDS * 8
    }

    /// One past the highest address: the initial stack pointer.
    pub fn top(&self) -> usize {
        self.base.as_ptr() as usize + self.size
    }

    /// Bytes allocated, canary included.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Ok while every canary word holds its pattern.
    pub fn check(&self) -> Result<(), CanaryDamaged> {
        for i in 0..CANARY_WORDS {
            // SAFETY: the word lies inside our block, which lives as long as `self`.
            let found = unsafe { self.word(i).read_volatile() };
            if found != self.expected(i) {
                return Err(CanaryDamaged {
                    address: self.word(i) as usize,
                    found,
                    expected: self.expected(i),
                });
            }
        }
        Ok(())
    }

    /// Overwrite canary word `i` (what an overflow would do), returning what it held, so a
    /// test can damage and then repair a stack.
    ///
    /// # Safety
    /// Nothing may read or write the word concurrently (its thread is not running, or it is the
    /// caller's own stack, far below the live frames).
    pub unsafe fn poke_canary(&self, i: usize, value: u64) -> u64 {
        assert!(i < CANARY_WORDS);
        // SAFETY: inside our block; exclusive by the caller's contract.
        unsafe { self.word(i).replace(value) }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout (size was validated there).
        unsafe {
            dealloc(
                self.base.as_ptr().cast(),
                Layout::from_size_align_unchecked(self.size, ALIGN),
            )
        };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_new_stack_is_aligned_and_its_canary_intact() {
        let s = Stack::new(4000).unwrap();
        assert_eq!(s.size(), 4000);
        assert_eq!(s.top() % 16, 0);
        assert_eq!(s.top() - s.bottom(), 4000 - CANARY_WORDS * 8);
        assert_eq!(s.check(), Ok(()));
    }

    #[test]
    fn a_damaged_canary_is_caught_and_a_repaired_one_passes() {
        let s = Stack::new(8192).unwrap();
        for i in 0..CANARY_WORDS {
            // SAFETY: nothing runs on this stack.
            let old = unsafe { s.poke_canary(i, 0) };
            let err = s.check().expect_err("a zeroed canary word must be caught");
            assert_eq!(err.found, 0);
            assert_eq!(err.expected, old);
            assert!(err.to_string().contains("overflowed"), "{err}");
            // SAFETY: as above.
            unsafe { s.poke_canary(i, old) };
            assert_eq!(s.check(), Ok(()), "repaired");
        }
    }

    #[test]
    fn one_stacks_canary_does_not_pass_for_another() {
        let a = Stack::new(1024).unwrap();
        let b = Stack::new(1024).unwrap();
        // SAFETY: nothing runs on either stack; the reads are inside a's canary.
        let a0 = unsafe { a.word(0).read() };
        // SAFETY: as above.
        unsafe { b.poke_canary(0, a0) };
        assert!(b.check().is_err(), "the pattern is tied to the address");
    }

    #[test]
    fn too_small_is_refused() {
        assert!(Stack::new(64).is_none());
    }
}
