//! CPU masks: a set of logical CPU ids as a bitmap sized from `MAX_CPUS` (chapter 3, "Waking
//! the other cores", "Past eight CPUs").
//!
//! A task's affinity, the targets of an IPI and the CPUs online are all sets of CPUs. With eight
//! CPUs a `u8` holds one, and code writes `1 << cpu`; that stops working at the width of the
//! integer, and nothing warns when it does (`1u32 << 40` is a debug panic or a wrong bit). A
//! `CpuMask` is an array of 64-bit words, as many as `MAX_CPUS` needs, so raising the limit
//! changes one constant. Walking a mask costs one step per word plus one per CPU in it
//! (`trailing_zeros` finds the next set bit), never one per possible CPU: on a 4-CPU boot of a
//! kernel built for 64, `for cpu in online.iter()` runs four times.
//!
//! `AtomicCpuMask` is the shared form: each word an `AtomicU64`, so setting or clearing one CPU
//! is one atomic read-modify-write on its word, and a CPU marking itself never disturbs another
//! CPU's bit. A whole-mask `load` or `store` is atomic word by word only: a reader racing a
//! writer that changes several words can see some words old and some new. Uses where that would
//! matter say why it cannot happen (task affinity: only the running task writes its own, and
//! only a queued task is placed by it).
//!
//! Shown as a CPU list, the way Linux prints `cpus_allowed_list`: `0-3,8`.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::config::MAX_CPUS;

/// 64-bit words a mask needs for `MAX_CPUS` bits.
pub const MASK_WORDS: usize = MAX_CPUS.div_ceil(64);

const fn word_and_bit(cpu: usize) -> (usize, u64) {
    (cpu / 64, 1u64 << (cpu % 64))
}

/// The bits of word `w` that stand for CPUs below `n`.
const fn low_bits(w: usize, n: usize) -> u64 {
    let start = w * 64;
    if n <= start {
        0
    } else if n - start >= 64 {
        u64::MAX
    } else {
        (1u64 << (n - start)) - 1
    }
}

/// A set of logical CPU ids below `MAX_CPUS`.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CpuMask {
    words: [u64; MASK_WORDS],
}

impl CpuMask {
    /// No CPU.
    pub const EMPTY: CpuMask = CpuMask {
        words: [0; MASK_WORDS],
    };
    /// Every CPU quartet can run.
    pub const ALL: CpuMask = CpuMask::all(MAX_CPUS);

    /// CPUs `0..n` (all of them if `n` is `MAX_CPUS` or more).
    pub const fn all(n: usize) -> CpuMask {
        let mut words = [0; MASK_WORDS];
        let mut w = 0;
        while w < MASK_WORDS {
            words[w] = low_bits(w, if n < MAX_CPUS { n } else { MAX_CPUS });
            w += 1;
        }
        CpuMask { words }
    }

    /// Just `cpu`.
    ///
    /// # Panics
    /// If `cpu` is `MAX_CPUS` or more: the mask has no bit for it.
    pub const fn only(cpu: usize) -> CpuMask {
        let mut m = CpuMask::EMPTY;
        m.set(cpu);
        m
    }

    /// Add `cpu`.
    ///
    /// # Panics
    /// If `cpu` is `MAX_CPUS` or more.
    pub const fn set(&mut self, cpu: usize) {
        assert!(cpu < MAX_CPUS, "CPU id beyond MAX_CPUS in a CpuMask");
        let (w, b) = word_and_bit(cpu);
        self.words[w] |= b;
    }

    /// Remove `cpu` (nothing happens if it is not there, or beyond `MAX_CPUS`).
    pub const fn clear(&mut self, cpu: usize) {
        if cpu < MAX_CPUS {
            let (w, b) = word_and_bit(cpu);
            self.words[w] &= !b;
        }
    }

    /// This mask with `cpu` added.
    pub const fn with(mut self, cpu: usize) -> CpuMask {
        self.set(cpu);
        self
    }

    /// This mask with `cpu` removed.
    pub const fn without(mut self, cpu: usize) -> CpuMask {
        self.clear(cpu);
        self
    }

    pub const fn contains(&self, cpu: usize) -> bool {
        if cpu >= MAX_CPUS {
            return false;
        }
        let (w, b) = word_and_bit(cpu);
        self.words[w] & b != 0
    }

    pub const fn is_empty(&self) -> bool {
        let mut w = 0;
        while w < MASK_WORDS {
            if self.words[w] != 0 {
                return false;
            }
            w += 1;
        }
        true
    }

    /// How many CPUs the mask holds.
    pub const fn count(&self) -> usize {
        let mut n = 0;
        let mut w = 0;
        while w < MASK_WORDS {
            n += self.words[w].count_ones() as usize;
            w += 1;
        }
        n
    }

    /// The lowest-numbered CPU in the mask, if any.
    pub const fn first(&self) -> Option<usize> {
        let mut w = 0;
        while w < MASK_WORDS {
            if self.words[w] != 0 {
                return Some(w * 64 + self.words[w].trailing_zeros() as usize);
            }
            w += 1;
        }
        None
    }

    /// CPUs in both masks.
    pub fn and(&self, other: &CpuMask) -> CpuMask {
        self.combine(other, |a, b| a & b)
    }

    /// CPUs in either mask.
    pub fn or(&self, other: &CpuMask) -> CpuMask {
        self.combine(other, |a, b| a | b)
    }

    /// CPUs in this mask but not in `other`.
    pub fn and_not(&self, other: &CpuMask) -> CpuMask {
        self.combine(other, |a, b| a & !b)
    }

    /// True if the masks share a CPU.
    pub fn intersects(&self, other: &CpuMask) -> bool {
        !self.and(other).is_empty()
    }

    fn combine(&self, other: &CpuMask, op: impl Fn(u64, u64) -> u64) -> CpuMask {
        let mut words = [0; MASK_WORDS];
        for (w, out) in words.iter_mut().enumerate() {
            *out = op(self.words[w], other.words[w]);
        }
        CpuMask { words }
    }

    /// The CPUs in the mask, lowest first: one step per word and one per CPU in the mask.
    pub fn iter(&self) -> CpuMaskIter {
        CpuMaskIter {
            words: self.words,
            word: 0,
        }
    }

    /// The raw words, CPU `64 * i + j` at bit `j` of word `i` (for hardware that takes a
    /// bitmap, and for tests).
    pub const fn words(&self) -> &[u64; MASK_WORDS] {
        &self.words
    }

    /// The mask whose words are `words`; bits at or beyond `MAX_CPUS` are dropped.
    pub const fn from_words(mut words: [u64; MASK_WORDS]) -> CpuMask {
        let mut w = 0;
        while w < MASK_WORDS {
            words[w] &= low_bits(w, MAX_CPUS);
            w += 1;
        }
        CpuMask { words }
    }
}

/// The CPUs of a mask, lowest first (see [`CpuMask::iter`]).
pub struct CpuMaskIter {
    words: [u64; MASK_WORDS],
    word: usize,
}

impl Iterator for CpuMaskIter {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.word < MASK_WORDS {
            let bits = self.words[self.word];
            if bits != 0 {
                // Clear the lowest set bit and report it.
                self.words[self.word] = bits & (bits - 1);
                return Some(self.word * 64 + bits.trailing_zeros() as usize);
            }
            self.word += 1;
        }
        None
    }
}

impl IntoIterator for &CpuMask {
    type Item = usize;
    type IntoIter = CpuMaskIter;
    fn into_iter(self) -> CpuMaskIter {
        self.iter()
    }
}

impl IntoIterator for CpuMask {
    type Item = usize;
    type IntoIter = CpuMaskIter;
    fn into_iter(self) -> CpuMaskIter {
        self.iter()
    }
}

impl FromIterator<usize> for CpuMask {
    /// # Panics
    /// If an id is `MAX_CPUS` or more.
    fn from_iter<I: IntoIterator<Item = usize>>(ids: I) -> CpuMask {
        let mut m = CpuMask::EMPTY;
        for cpu in ids {
            m.set(cpu);
        }
        m
    }
}

/// A CPU list: runs of three or more as `first-last`, the rest one by one, `none` when empty.
/// `{0, 1, 2, 3, 8, 10, 11}` prints `0-3,8,10,11`.
impl fmt::Display for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cpus = self.iter().peekable();
        let mut first_item = true;
        while let Some(start) = cpus.next() {
            let mut end = start;
            while cpus.peek() == Some(&(end + 1)) {
                end = cpus.next().unwrap_or(end);
            }
            let sep = if first_item { "" } else { "," };
            first_item = false;
            match end - start {
                0 => write!(f, "{sep}{start}")?,
                1 => write!(f, "{sep}{start},{end}")?,
                _ => write!(f, "{sep}{start}-{end}")?,
            }
        }
        if first_item {
            write!(f, "none")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuMask({self})")
    }
}

/// A `CpuMask` several CPUs change at once: each word an `AtomicU64`.
pub struct AtomicCpuMask {
    words: [AtomicU64; MASK_WORDS],
}

impl Default for AtomicCpuMask {
    fn default() -> Self {
        Self::new(CpuMask::EMPTY)
    }
}

impl AtomicCpuMask {
    pub const fn new(mask: CpuMask) -> Self {
        let mut words = [const { AtomicU64::new(0) }; MASK_WORDS];
        let mut w = 0;
        while w < MASK_WORDS {
            words[w] = AtomicU64::new(mask.words[w]);
            w += 1;
        }
        AtomicCpuMask { words }
    }

    /// Add `cpu`; true if it was already there. One atomic OR on its word.
    ///
    /// # Panics
    /// If `cpu` is `MAX_CPUS` or more.
    pub fn set(&self, cpu: usize, order: Ordering) -> bool {
        assert!(cpu < MAX_CPUS, "cpu{cpu} is beyond MAX_CPUS ({MAX_CPUS})");
        let (w, b) = word_and_bit(cpu);
        self.words[w].fetch_or(b, order) & b != 0
    }

    /// Remove `cpu`; true if it was there. One atomic AND on its word.
    pub fn clear(&self, cpu: usize, order: Ordering) -> bool {
        if cpu >= MAX_CPUS {
            return false;
        }
        let (w, b) = word_and_bit(cpu);
        self.words[w].fetch_and(!b, order) & b != 0
    }

    pub fn contains(&self, cpu: usize, order: Ordering) -> bool {
        if cpu >= MAX_CPUS {
            return false;
        }
        let (w, b) = word_and_bit(cpu);
        self.words[w].load(order) & b != 0
    }

    /// A copy, word by word (see the module doc on tearing across words).
    pub fn load(&self, order: Ordering) -> CpuMask {
        let mut words = [0; MASK_WORDS];
        for (out, word) in words.iter_mut().zip(&self.words) {
            *out = word.load(order);
        }
        CpuMask { words }
    }

    /// Replace the mask, word by word; returns the old one.
    pub fn swap(&self, mask: CpuMask, order: Ordering) -> CpuMask {
        let mut old = [0; MASK_WORDS];
        for (w, word) in self.words.iter().enumerate() {
            old[w] = word.swap(mask.words[w], order);
        }
        CpuMask { words: old }
    }

    /// Replace the mask, word by word.
    pub fn store(&self, mask: CpuMask, order: Ordering) {
        self.swap(mask, order);
    }
}

impl fmt::Debug for AtomicCpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AtomicCpuMask({})", self.load(Ordering::Relaxed))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec::Vec;

    /// The highest CPU id, and one in the last word when there are several.
    const TOP: usize = MAX_CPUS - 1;

    #[test]
    fn set_clear_and_contains_reach_every_cpu() {
        let mut m = CpuMask::EMPTY;
        for cpu in 0..MAX_CPUS {
            assert!(!m.contains(cpu));
            m.set(cpu);
            assert!(m.contains(cpu), "cpu{cpu}");
            assert_eq!(m.count(), cpu + 1);
        }
        assert_eq!(m, CpuMask::ALL);
        for cpu in 0..MAX_CPUS {
            m.clear(cpu);
            assert!(!m.contains(cpu), "cpu{cpu}");
        }
        assert!(m.is_empty());
        assert!(!CpuMask::ALL.contains(MAX_CPUS), "no bit past the limit");
    }

    #[test]
    fn iteration_visits_exactly_the_members_in_order() {
        let ids = [0, 3, 8, 31, 32, 63, TOP];
        let mut want: Vec<usize> = ids.iter().copied().filter(|&c| c < MAX_CPUS).collect();
        want.dedup();
        let m: CpuMask = want.iter().copied().collect();
        assert_eq!(m.iter().collect::<Vec<_>>(), want);
        assert_eq!(m.count(), want.len());
        assert_eq!(m.first(), Some(0));
        assert_eq!(CpuMask::only(TOP).first(), Some(TOP));
        assert_eq!(CpuMask::EMPTY.first(), None);
        assert_eq!(CpuMask::EMPTY.iter().next(), None);
    }

    #[test]
    fn all_n_holds_the_first_n_cpus() {
        for n in [0, 1, 4, 63, 64, 65, MAX_CPUS, MAX_CPUS + 10] {
            let m = CpuMask::all(n);
            let want: Vec<usize> = (0..n.min(MAX_CPUS)).collect();
            assert_eq!(m.iter().collect::<Vec<_>>(), want, "all({n})");
        }
        assert_eq!(CpuMask::ALL.count(), MAX_CPUS);
    }

    #[test]
    fn set_operations() {
        let a = CpuMask::all(4).with(TOP);
        let b = CpuMask::only(2).with(3).with(5);
        assert_eq!(a.and(&b), CpuMask::only(2).with(3));
        assert_eq!(a.or(&b), CpuMask::all(4).with(5).with(TOP));
        assert_eq!(a.and_not(&b), CpuMask::only(0).with(1).with(TOP));
        assert!(a.intersects(&b));
        assert!(!a.intersects(&CpuMask::only(5)));
        assert_eq!(a.without(TOP), CpuMask::all(4));
    }

    #[test]
    #[should_panic(expected = "beyond MAX_CPUS")]
    fn a_cpu_past_the_limit_is_refused() {
        CpuMask::EMPTY.with(MAX_CPUS);
    }

    #[test]
    fn from_words_drops_bits_past_the_limit() {
        let m = CpuMask::from_words([u64::MAX; MASK_WORDS]);
        assert_eq!(m, CpuMask::ALL);
        assert_eq!(m.words()[0] & 1, 1);
    }

    #[test]
    fn displays_as_a_cpu_list() {
        assert_eq!(format!("{}", CpuMask::EMPTY), "none");
        assert_eq!(format!("{}", CpuMask::only(5)), "5");
        assert_eq!(format!("{}", CpuMask::all(4)), "0-3");
        assert_eq!(
            format!("{}", CpuMask::all(4).with(TOP)),
            format!("0-3,{TOP}")
        );
        assert_eq!(format!("{}", CpuMask::only(1).with(2)), "1,2");
        let m: CpuMask = [0, 2, 3, 4, 6, 7].into_iter().collect();
        assert_eq!(format!("{m}"), "0,2-4,6,7");
        assert_eq!(format!("{m:?}"), "CpuMask(0,2-4,6,7)");
        assert_eq!(
            format!("{}", CpuMask::ALL),
            format!("0-{TOP}"),
            "a run across word boundaries stays one run"
        );
    }

    #[test]
    fn atomic_set_and_clear_say_what_was_there() {
        let m = AtomicCpuMask::default();
        assert!(!m.set(TOP, Ordering::Relaxed));
        assert!(m.set(TOP, Ordering::Relaxed));
        assert!(!m.set(1, Ordering::Relaxed));
        assert!(m.contains(TOP, Ordering::Relaxed) && m.contains(1, Ordering::Relaxed));
        assert_eq!(m.load(Ordering::Relaxed), CpuMask::only(1).with(TOP));
        assert!(m.clear(1, Ordering::Relaxed));
        assert!(!m.clear(1, Ordering::Relaxed));
        assert!(!m.clear(MAX_CPUS, Ordering::Relaxed));
        let old = m.swap(CpuMask::all(3), Ordering::Relaxed);
        assert_eq!(old, CpuMask::only(TOP));
        assert_eq!(m.load(Ordering::Relaxed), CpuMask::all(3));
    }

    /// Every "CPU" sets and clears its own bit many times at once: no update loses another's.
    #[test]
    fn concurrent_updates_of_different_cpus_do_not_interfere() {
        let m = AtomicCpuMask::default();
        let cpus: Vec<usize> = (0..MAX_CPUS).step_by((MAX_CPUS / 8).max(1)).collect();
        std::thread::scope(|s| {
            for &cpu in &cpus {
                let m = &m;
                s.spawn(move || {
                    for _ in 0..2000 {
                        assert!(!m.set(cpu, Ordering::AcqRel), "cpu{cpu} found its bit set");
                        assert!(m.clear(cpu, Ordering::AcqRel), "cpu{cpu} lost its bit");
                    }
                    m.set(cpu, Ordering::AcqRel);
                });
            }
        });
        assert_eq!(m.load(Ordering::Relaxed), cpus.into_iter().collect());
    }
}
