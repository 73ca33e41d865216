//! The sequence lock (the source texts' "frlock"): readers never wait and never block the writer
//! (the reader-writer chapter).
//!
//! A writer takes the writer lock, makes the sequence odd, writes, and makes it even again.
//! A reader notes the sequence, copies the data, and checks that the sequence is the same even
//! number: if a writer was active or finished meanwhile, the copy may be torn and the reader
//! retries. Good for small, often-read, rarely-written data (Linux's jiffies, the time).
//!
//! The data is copied in 64-bit words with atomic loads and stores on both sides, so a
//! concurrent copy yields a possibly torn value that the sequence check throws away, never a
//! data race in Rust's sense. Hence `T: SeqData`: plain words, 8-byte aligned, with no padding
//! (padding bytes are uninitialised, and reading them as a `u64` is undefined behaviour) and no
//! invalid bit patterns (a torn `bool` or enum is undefined behaviour the moment it exists,
//! even if the retry check would have thrown it away).
//!
//! Under loom (src/sync/shim.rs) the sequence and the data words are loom's atomics, and the
//! same `read` and `write` run in the models at the bottom. Only where the words live differs.

#[cfg(not(loom))]
use core::cell::UnsafeCell;
#[cfg(loom)]
use core::marker::PhantomData;
use core::mem::{MaybeUninit, align_of, size_of};

use super::SpinLock;
use crate::sync::shim::{AtomicU32, AtomicU64, Ordering, cpu_relax, fence};

/// Data a `SeqLock` may hold: copied word by word, and possibly torn before the retry check.
///
/// # Safety
/// The type must be 8-byte aligned, a multiple of 8 bytes, contain no padding, and every bit
/// pattern must be a valid value: in practice, `#[repr(C)]` structs and arrays of `u64`/`i64`.
pub unsafe trait SeqData: Copy {}

// SAFETY: 8 bytes, no padding, every bit pattern valid.
unsafe impl SeqData for u64 {}
// SAFETY: as for u64.
unsafe impl SeqData for i64 {}
// SAFETY: an array of valid SeqData has no padding between elements and no invalid patterns.
unsafe impl<T: SeqData, const N: usize> SeqData for [T; N] {}

pub struct SeqLock<T: SeqData> {
    sequence: AtomicU32,
    writer: SpinLock<()>,
    #[cfg(not(loom))]
    data: UnsafeCell<T>,
    /// Loom's atomics cannot be laid over a `T`'s bytes, so under loom the words live apart.
    #[cfg(loom)]
    data: Box<[AtomicU64]>,
    #[cfg(loom)]
    _value: PhantomData<T>,
}

// SAFETY: the data is only accessed as atomic words (see `copy_in`/`copy_out`); writers are
// serialised by `writer`; readers only copy.
unsafe impl<T: SeqData + Send> Sync for SeqLock<T> {}

impl<T: SeqData> SeqLock<T> {
    const WORDS: usize = size_of::<T>() / 8;
    const LAYOUT_OK: () = assert!(
        size_of::<T>().is_multiple_of(8) && align_of::<T>() >= 8,
        "SeqLock data must be 8-byte aligned and a multiple of 8 bytes"
    );

    #[cfg(not(loom))]
    pub const fn new(value: T) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::LAYOUT_OK;
        SeqLock {
            sequence: AtomicU32::new(0),
            writer: SpinLock::new(()),
            data: UnsafeCell::new(value),
        }
    }

    #[cfg(loom)]
    pub fn new(value: T) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::LAYOUT_OK;
        let src = &value as *const T as *const u64;
        SeqLock {
            sequence: AtomicU32::new(0),
            writer: SpinLock::new(()),
            // SAFETY: `src` points to WORDS u64s (the size of T).
            data: (0..Self::WORDS)
                .map(|i| AtomicU64::new(unsafe { src.add(i).read() }))
                .collect(),
            _value: PhantomData,
        }
    }

    #[cfg(not(loom))]
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `T` is 8-aligned and WORDS * 8 bytes long (LAYOUT_OK), and every access to the
        // data goes through these atomic words, so viewing it as [AtomicU64] is sound.
        unsafe { core::slice::from_raw_parts(self.data.get() as *const AtomicU64, Self::WORDS) }
    }

    #[cfg(loom)]
    fn words(&self) -> &[AtomicU64] {
        &self.data
    }

    // lab:seqlock begin
    /// Start a read: the sequence to pass to `read_retry`. Waits while a write is in progress.
    pub fn read_begin(&self) -> u32 {
        loop {
            let s = self.sequence.load(Ordering::Acquire);
            if s & 1 == 0 {
                return s;
            }
            cpu_relax();
        }
    }

    /// True if a write overlapped the read that began with `start`: discard what was read.
    pub fn read_retry(&self, start: u32) -> bool {
        // The data loads before this fence may not be reordered after the sequence check.
        fence(Ordering::Acquire);
        self.sequence.load(Ordering::Relaxed) != start
    }
    // lab:seqlock end

    /// Copy the data out (possibly torn: only trust it if `read_retry` says no).
    pub fn copy_out(&self) -> T {
        let mut out = MaybeUninit::<T>::uninit();
        let dst = out.as_mut_ptr() as *mut u64;
        for (i, w) in self.words().iter().enumerate() {
            // SAFETY: `dst` has room for WORDS u64s (the size of T).
            unsafe { dst.add(i).write(w.load(Ordering::Relaxed)) };
        }
        // SAFETY: every byte was written, and `T: SeqData` promises that any bit pattern, even
        // a torn mix of two writes, is a valid T (the caller's retry check discards such mixes).
        unsafe { out.assume_init() }
    }

    // lab:seqlock begin
    /// A consistent copy, retrying as long as writers interfere. Returns (value, retries).
    pub fn read(&self) -> (T, u32) {
        let mut retries = 0;
        loop {
            let start = self.read_begin();
            let value = self.copy_out();
            if !self.read_retry(start) {
                return (value, retries);
            }
            retries += 1;
        }
    }

    /// Replace the data.
    pub fn write(&self, value: T) {
        let _writer = self.writer.lock();
        let s = self.sequence.load(Ordering::Relaxed);
        self.sequence.store(s.wrapping_add(1), Ordering::Relaxed);
        // The odd sequence must be visible before any data store.
        fence(Ordering::Release);
        let src = &value as *const T as *const u64;
        for (i, w) in self.words().iter().enumerate() {
            // SAFETY: `src` points to WORDS u64s (the size of T).
            w.store(unsafe { src.add(i).read() }, Ordering::Relaxed);
        }
        // Every data store before the even sequence.
        self.sequence.store(s.wrapping_add(2), Ordering::Release);
    }
    // lab:seqlock end

    /// Writes so far.
    pub fn writes(&self) -> u32 {
        self.sequence.load(Ordering::Relaxed) / 2
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Copy, Debug, PartialEq)]
    #[repr(C, align(8))]
    struct Triple {
        a: u64,
        b: u64,
        c: u64,
    }
    // SAFETY: repr(C) u64 fields only: no padding, every bit pattern valid.
    unsafe impl SeqData for Triple {}

    #[test]
    fn readers_never_accept_a_torn_value() {
        let _cpus = crate::percpu::playing_cpus();
        let lock = Arc::new(SeqLock::new(Triple { a: 0, b: 0, c: 0 }));
        let writer = {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || {
                crate::percpu::install(4);
                for i in 1..=20_000u64 {
                    lock.write(Triple { a: i, b: i, c: i });
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    let mut last = 0;
                    for _ in 0..20_000 {
                        let (t, _) = lock.read();
                        assert!(t.a == t.b && t.b == t.c, "torn read accepted: {t:?}");
                        assert!(t.a >= last, "time went backwards");
                        last = t.a;
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(
            lock.read().0,
            Triple {
                a: 20_000,
                b: 20_000,
                c: 20_000
            }
        );
        assert_eq!(lock.writes(), 20_000);
    }

    #[test]
    fn a_read_overlapping_a_write_must_retry() {
        let lock = SeqLock::new(Triple { a: 1, b: 1, c: 1 });
        let start = lock.read_begin();
        let _ = lock.copy_out();
        lock.write(Triple { a: 2, b: 2, c: 2 });
        assert!(lock.read_retry(start), "a write happened during the read");
        let start = lock.read_begin();
        assert!(!lock.read_retry(start));
    }
}

/// Loom models (`make loom`): one writer and one reader, over a pair of words that must match.
#[cfg(all(test, loom))]
mod tests {
    use super::{SeqData, SeqLock};
    use crate::sync::shim::Ordering;
    use loom::sync::Arc;

    #[derive(Clone, Copy, Debug)]
    #[repr(C, align(8))]
    struct Pair {
        a: u64,
        b: u64,
    }
    // SAFETY: repr(C) u64 fields only: no padding, every bit pattern valid.
    unsafe impl SeqData for Pair {}

    /// A writer thread stores (1, 1) and then (2, 2) with `write`; the main thread reads once
    /// with `read`, which must return a matching pair, whatever the interleaving.
    fn reader_sees_whole_pairs(write: fn(&SeqLock<Pair>, Pair), read: fn(&SeqLock<Pair>) -> Pair) {
        loom::model(move || {
            let lock = Arc::new(SeqLock::new(Pair { a: 0, b: 0 }));
            let writer = {
                let lock = Arc::clone(&lock);
                loom::thread::spawn(move || {
                    write(&lock, Pair { a: 1, b: 1 });
                    write(&lock, Pair { a: 2, b: 2 });
                })
            };
            let p = read(&lock);
            assert_eq!(p.a, p.b, "torn read accepted: {p:?}");
            writer.join().unwrap();
            assert_eq!(lock.read().0.a, 2);
        });
    }

    fn write(lock: &SeqLock<Pair>, value: Pair) {
        lock.write(value);
    }

    fn read(lock: &SeqLock<Pair>) -> Pair {
        lock.read().0
    }

    #[test]
    fn loom_seqlock_reader_never_accepts_a_torn_pair() {
        reader_sees_whole_pairs(write, read);
    }

    /// The bug: the writer never makes the sequence odd, so a reader that copies in the middle
    /// of a write finds the sequence unchanged when it checks, and keeps a torn pair.
    #[test]
    #[should_panic(expected = "torn read accepted")]
    fn loom_seqlock_writer_without_the_odd_step_is_caught() {
        fn write_without_odd_step(lock: &SeqLock<Pair>, value: Pair) {
            let _writer = lock.writer.lock();
            let s = lock.sequence.load(Ordering::Relaxed);
            let words = [value.a, value.b];
            for (w, v) in lock.words().iter().zip(words) {
                w.store(v, Ordering::Relaxed);
            }
            lock.sequence.store(s.wrapping_add(2), Ordering::Release);
        }
        reader_sees_whole_pairs(write_without_odd_step, read);
    }

    /// The bug: the reader checks the sequence again without `read_retry`'s acquire fence. Its
    /// relaxed data loads may then see a write whose odd sequence its check does not see.
    #[test]
    #[should_panic(expected = "torn read accepted")]
    fn loom_seqlock_reader_without_the_fence_is_caught() {
        fn read_without_fence(lock: &SeqLock<Pair>) -> Pair {
            loop {
                let start = lock.read_begin();
                let value = lock.copy_out();
                if lock.sequence.load(Ordering::Relaxed) == start {
                    return value;
                }
            }
        }
        reader_sees_whole_pairs(write, read_without_fence);
    }
}
