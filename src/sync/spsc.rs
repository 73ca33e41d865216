//! A single-producer, single-consumer byte ring: how the UART's interrupt handler hands typed
//! bytes to the shell without a lock (the interrupt-context chapter).
//!
//! The producer only writes `tail`, the consumer only writes `head`. The producer stores the
//! byte, then publishes it by storing `tail` with release; the consumer loads `tail` with
//! acquire before reading the byte, so it never reads a slot before its byte is there. The
//! consumer frees a slot by storing `head` with release after reading it; the producer loads
//! `head` with acquire before reusing it. One free slot tells full from empty.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

pub struct ByteRing<const N: usize> {
    slots: [AtomicU8; N],
    head: AtomicUsize,
    tail: AtomicUsize,
    dropped: AtomicUsize,
}

impl<const N: usize> Default for ByteRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ByteRing<N> {
    pub const fn new() -> Self {
        ByteRing {
            slots: [const { AtomicU8::new(0) }; N],
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
        }
    }

    /// Producer side: false (and counted) if the ring is full.
    pub fn push(&self, byte: u8) -> bool {
        let tail = self.tail.load(Ordering::Relaxed);
        let next = (tail + 1) % N;
        if next == self.head.load(Ordering::Acquire) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.slots[tail].store(byte, Ordering::Relaxed);
        self.tail.store(next, Ordering::Release);
        true
    }

    /// Consumer side.
    pub fn pop(&self) -> Option<u8> {
        let head = self.head.load(Ordering::Relaxed);
        if head == self.tail.load(Ordering::Acquire) {
            return None;
        }
        let byte = self.slots[head].load(Ordering::Relaxed);
        self.head.store((head + 1) % N, Ordering::Release);
        Some(byte)
    }

    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Acquire) == self.tail.load(Ordering::Acquire)
    }

    /// Bytes the producer had to throw away because the consumer fell behind.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fifo_order_and_full_ring_drops_and_counts() {
        let ring: ByteRing<4> = ByteRing::new();
        assert!(ring.pop().is_none() && ring.is_empty());
        assert!(ring.push(1) && ring.push(2) && ring.push(3));
        assert!(!ring.push(4), "a ring of 4 holds 3");
        assert_eq!(ring.dropped(), 1);
        assert_eq!((ring.pop(), ring.pop()), (Some(1), Some(2)));
        assert!(ring.push(5) && ring.push(6));
        assert_eq!(
            (ring.pop(), ring.pop(), ring.pop()),
            (Some(3), Some(5), Some(6))
        );
        assert!(ring.pop().is_none());
    }

    #[test]
    fn a_producer_and_a_consumer_thread_lose_and_reorder_nothing() {
        const BYTES: usize = 200_000;
        let ring: Arc<ByteRing<64>> = Arc::new(ByteRing::new());
        let producer = {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                for i in 0..BYTES {
                    while !ring.push(i as u8) {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let mut expected = 0usize;
        while expected < BYTES {
            match ring.pop() {
                Some(b) => {
                    assert_eq!(b, expected as u8, "byte {expected} out of order");
                    expected += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert!(ring.pop().is_none());
    }
}
