//! Linux-style atomic counters and bit operations (the atomics chapter).
//!
//! `AtomicCounter` is Linux's `atomic_t`: `inc`, `dec`, `add`, `sub` change the value with no
//! ordering; `add_return`, `sub_return`, `inc_and_test`, `dec_and_test`, `sub_and_test`, `xchg`
//! and `cmpxchg` return a value and are fully ordered (a barrier on both sides), with
//! `_relaxed`, `_acquire` and `_release` forms where a caller needs less. `AtomicBits` is
//! Linux's bitops: `set_bit`, `clear_bit`, `change_bit` and their `test_and_` forms.
//!
//! Every operation goes through `crate::arch::atomic`: on the target, the hand-written LL/SC
//! loops or LSE instructions of src/arch/aarch64/atomic.rs; on the host, `core::sync::atomic`,
//! so the API is unit-tested here and exercised on four CPUs by the in-kernel tests.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::atomic as arch;

/// A signed 64-bit counter shared between CPUs.
#[repr(transparent)]
pub struct AtomicCounter(AtomicU64);

impl AtomicCounter {
    pub const fn new(value: i64) -> Self {
        AtomicCounter(AtomicU64::new(value as u64))
    }

    /// The value (`atomic_read`): a plain load, no ordering.
    pub fn read(&self) -> i64 {
        self.0.load(Ordering::Relaxed) as i64
    }

    /// Set the value (`atomic_set`): a plain store, no ordering.
    pub fn set(&self, value: i64) {
        self.0.store(value as u64, Ordering::Relaxed);
    }

    pub fn inc(&self) {
        arch::fetch_add(&self.0, 1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        arch::fetch_add(&self.0, u64::MAX, Ordering::Relaxed);
    }

    pub fn add(&self, i: i64) {
        arch::fetch_add(&self.0, i as u64, Ordering::Relaxed);
    }

    pub fn sub(&self, i: i64) {
        arch::fetch_add(&self.0, (i as u64).wrapping_neg(), Ordering::Relaxed);
    }

    /// Add and return the new value, fully ordered.
    pub fn add_return(&self, i: i64) -> i64 {
        self.add_return_ordered(i, Ordering::SeqCst)
    }
    pub fn add_return_relaxed(&self, i: i64) -> i64 {
        self.add_return_ordered(i, Ordering::Relaxed)
    }
    pub fn add_return_acquire(&self, i: i64) -> i64 {
        self.add_return_ordered(i, Ordering::Acquire)
    }
    pub fn add_return_release(&self, i: i64) -> i64 {
        self.add_return_ordered(i, Ordering::Release)
    }

    fn add_return_ordered(&self, i: i64, ord: Ordering) -> i64 {
        (arch::fetch_add(&self.0, i as u64, ord) as i64).wrapping_add(i)
    }

    /// Subtract and return the new value, fully ordered.
    pub fn sub_return(&self, i: i64) -> i64 {
        self.add_return(i.wrapping_neg())
    }

    /// Increment; true if the result is zero.
    pub fn inc_and_test(&self) -> bool {
        self.add_return(1) == 0
    }

    /// Decrement; true if the result is zero: the "last reference dropped" test the source texts'
    /// racy `release_resource` needs done as one atomic step.
    pub fn dec_and_test(&self) -> bool {
        self.add_return(-1) == 0
    }

    /// Subtract `i`; true if the result is zero.
    pub fn sub_and_test(&self, i: i64) -> bool {
        self.sub_return(i) == 0
    }

    /// Store `value`, return the old value, fully ordered.
    pub fn xchg(&self, value: i64) -> i64 {
        arch::swap(&self.0, value as u64, Ordering::SeqCst) as i64
    }

    /// If the value is `old`, make it `new`. Returns the value found (== `old` on success).
    pub fn cmpxchg(&self, old: i64, new: i64) -> i64 {
        self.cmpxchg_ordered(old, new, Ordering::SeqCst)
    }
    pub fn cmpxchg_relaxed(&self, old: i64, new: i64) -> i64 {
        self.cmpxchg_ordered(old, new, Ordering::Relaxed)
    }
    pub fn cmpxchg_acquire(&self, old: i64, new: i64) -> i64 {
        self.cmpxchg_ordered(old, new, Ordering::Acquire)
    }
    pub fn cmpxchg_release(&self, old: i64, new: i64) -> i64 {
        self.cmpxchg_ordered(old, new, Ordering::Release)
    }

    fn cmpxchg_ordered(&self, old: i64, new: i64, ord: Ordering) -> i64 {
        arch::compare_exchange(&self.0, old as u64, new as u64, ord) as i64
    }
}

/// `WORDS * 64` bits, each settable, clearable and flippable atomically.
pub struct AtomicBits<const WORDS: usize>([AtomicU64; WORDS]);

impl<const WORDS: usize> Default for AtomicBits<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const WORDS: usize> AtomicBits<WORDS> {
    pub const BITS: usize = WORDS * 64;

    pub const fn new() -> Self {
        AtomicBits([const { AtomicU64::new(0) }; WORDS])
    }

    fn word_and_mask(&self, bit: usize) -> (&AtomicU64, u64) {
        assert!(
            bit < Self::BITS,
            "bit {bit} out of range: this set has {} bits",
            Self::BITS
        );
        (&self.0[bit / 64], 1 << (bit % 64))
    }

    pub fn test_bit(&self, bit: usize) -> bool {
        let (word, mask) = self.word_and_mask(bit);
        word.load(Ordering::Relaxed) & mask != 0
    }

    pub fn set_bit(&self, bit: usize) {
        let (word, mask) = self.word_and_mask(bit);
        arch::fetch_or(word, mask, Ordering::Relaxed);
    }

    pub fn clear_bit(&self, bit: usize) {
        let (word, mask) = self.word_and_mask(bit);
        arch::fetch_clear(word, mask, Ordering::Relaxed);
    }

    pub fn change_bit(&self, bit: usize) {
        let (word, mask) = self.word_and_mask(bit);
        arch::fetch_xor(word, mask, Ordering::Relaxed);
    }

    /// Set the bit; return whether it was set before. Fully ordered.
    pub fn test_and_set_bit(&self, bit: usize) -> bool {
        let (word, mask) = self.word_and_mask(bit);
        arch::fetch_or(word, mask, Ordering::SeqCst) & mask != 0
    }

    /// Clear the bit; return whether it was set before. Fully ordered.
    pub fn test_and_clear_bit(&self, bit: usize) -> bool {
        let (word, mask) = self.word_and_mask(bit);
        arch::fetch_clear(word, mask, Ordering::SeqCst) & mask != 0
    }

    /// Flip the bit; return whether it was set before. Fully ordered.
    pub fn test_and_change_bit(&self, bit: usize) -> bool {
        let (word, mask) = self.word_and_mask(bit);
        arch::fetch_xor(word, mask, Ordering::SeqCst) & mask != 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counter_arithmetic_and_tests() {
        let c = AtomicCounter::new(2);
        c.inc();
        c.add(10);
        c.sub(3);
        c.dec();
        assert_eq!(c.read(), 9);
        assert_eq!(c.add_return(1), 10);
        assert_eq!(c.sub_return(4), 6);
        assert_eq!(c.add_return_relaxed(-6), 0);
        assert!(!c.inc_and_test() && c.read() == 1);
        assert!(c.dec_and_test());
        c.set(5);
        assert!(!c.sub_and_test(4));
        assert!(c.sub_and_test(1));
        assert_eq!(c.add_return_acquire(-1), -1, "the counter is signed");
        assert_eq!(c.add_return_release(1), 0);
    }

    #[test]
    fn xchg_and_cmpxchg_report_what_they_found() {
        let c = AtomicCounter::new(7);
        assert_eq!(c.xchg(3), 7);
        assert_eq!(
            c.cmpxchg(4, 9),
            3,
            "a failed compare returns the value found"
        );
        assert_eq!(c.read(), 3, "and changes nothing");
        assert_eq!(c.cmpxchg(3, 9), 3);
        assert_eq!(c.read(), 9);
        assert_eq!(c.cmpxchg_acquire(9, 1), 9);
        assert_eq!(c.cmpxchg_release(1, 2), 1);
        assert_eq!(c.cmpxchg_relaxed(2, 3), 2);
        assert_eq!(c.read(), 3);
    }

    #[test]
    fn bits_across_words() {
        let b: AtomicBits<2> = AtomicBits::new();
        b.set_bit(3);
        b.set_bit(64 + 5);
        assert!(b.test_bit(3) && b.test_bit(69) && !b.test_bit(4));
        b.change_bit(3);
        assert!(!b.test_bit(3));
        assert!(!b.test_and_set_bit(100));
        assert!(b.test_and_set_bit(100));
        assert!(b.test_and_clear_bit(100));
        assert!(!b.test_and_clear_bit(100));
        assert!(!b.test_and_change_bit(0));
        assert!(b.test_and_change_bit(0));
        b.clear_bit(69);
        assert!((0..128).all(|i| !b.test_bit(i)));
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn bits_out_of_range_are_refused() {
        AtomicBits::<1>::new().set_bit(64);
    }

    #[test]
    fn concurrent_increments_and_bit_claims_are_exact() {
        const THREADS: usize = 4;
        const ROUNDS: i64 = 50_000;
        let counter = Arc::new(AtomicCounter::new(0));
        let bits: Arc<AtomicBits<4>> = Arc::new(AtomicBits::new());
        let claimed = Arc::new(AtomicCounter::new(0));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (counter, bits, claimed) = (counter.clone(), bits.clone(), claimed.clone());
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        counter.inc();
                    }
                    // Every bit is claimed by exactly one thread.
                    for bit in 0..256 {
                        if !bits.test_and_set_bit(bit) {
                            claimed.inc();
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(counter.read(), THREADS as i64 * ROUNDS);
        assert_eq!(claimed.read(), 256);
    }
}
