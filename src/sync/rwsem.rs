//! The reader-writer semaphore: many readers or one writer, and whoever must wait sleeps
//! (chapter 17, "Spin or block").
//!
//! The sleeping cousin of the reader-writer spin lock (src/sync/rwlock.rs), for read-mostly data
//! whose holders may sleep: Linux's `mmap_lock`, which page faults take for reading, is one.
//!
//! That spin lock lets readers in whenever no writer holds it, so a steady stream of readers
//! keeps a writer out for ever. Here writers are not starved: **once a writer waits, new
//! readers queue behind it.** The price is the reverse risk, readers waiting while writers
//! follow one another; Linux's rwsem avoids both by handing the lock to the front of one FIFO
//! queue. This version keeps the simpler writer preference.
//!
//! One word holds the state, so a reader's "no writer holds it and none waits" is one atomic
//! check-and-add:
//!
//! ```text
//!   bit 0       WRITER           a writer holds it
//!   bit 1       READERS_WAITING  a reader may sleep in `readers` (set after queueing)
//!   bits 2-15   waiting writers  how many writers wait (counted before they queue)
//!   bits 16-    readers          how many readers hold it
//! ```
//!
//! Readers and writers sleep in two wait queues. Whoever lets go wakes whoever can go next:
//! the last reader out wakes one writer; a writer wakes the next writer if one waits, and
//! otherwise every waiting reader. The wakeup reasoning is the mutex's (src/sync/mutex.rs):
//! waiters announce themselves (queue, then count or flag) before their last check, and wakers
//! change the word before they look in a queue.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use super::shim::{Ordering, const_unless_loom};
use super::sleep::{AtomicUsize, Sleeper};
use super::waitqueue::WaitQueue;

const WRITER: usize = 1;
const READERS_WAITING: usize = 1 << 1;
const WAITING_WRITER: usize = 1 << 2;
const WAITING_WRITERS: usize = ((1 << 16) - 1) & !(WAITING_WRITER - 1);
const READER: usize = 1 << 16;
const READERS: usize = !(READER - 1);

/// Data of type `T` shared by any number of readers or one writer; waiters sleep.
pub struct RwSemaphore<T: ?Sized, S: Sleeper> {
    state: AtomicUsize,
    readers: WaitQueue<S>,
    writers: WaitQueue<S>,
    data: UnsafeCell<T>,
}

// SAFETY: readers share `&T` across tasks (T: Sync); the writer gets `&mut T`, possibly on
// another task than the last one (T: Send).
unsafe impl<T: ?Sized + Send + Sync, S: Sleeper> Sync for RwSemaphore<T, S> {}

impl<T, S: Sleeper> RwSemaphore<T, S> {
    const_unless_loom! {
        pub const fn new(data: T) -> Self {
            RwSemaphore {
                state: AtomicUsize::new(0),
                readers: WaitQueue::named("rwsem readers"),
                writers: WaitQueue::named("rwsem writers"),
                data: UnsafeCell::new(data),
            }
        }
    }

    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized, S: Sleeper> RwSemaphore<T, S> {
    /// Share the data, sleeping while a writer holds it or waits for it.
    pub fn read(&self) -> RwSemReadGuard<'_, T, S> {
        S::might_sleep();
        if !self.try_read_raw() {
            self.readers.wait_until(|| self.read_or_flag());
        }
        RwSemReadGuard {
            sem: self,
            _not_send: PhantomData,
        }
    }

    /// Share the data if no writer holds it or waits for it right now.
    pub fn try_read(&self) -> Option<RwSemReadGuard<'_, T, S>> {
        self.try_read_raw().then(|| RwSemReadGuard {
            sem: self,
            _not_send: PhantomData,
        })
    }

    /// Have the data to ourselves, sleeping while anyone holds it.
    pub fn write(&self) -> RwSemWriteGuard<'_, T, S> {
        S::might_sleep();
        if !self.try_write_raw() {
            // Counted before queueing: from this add on, no new reader gets in, and whoever
            // lets go knows to look in `writers`.
            let before = self.state.fetch_add(WAITING_WRITER, Ordering::Relaxed);
            debug_assert!(
                before & WAITING_WRITERS != WAITING_WRITERS,
                "too many waiting writers"
            );
            self.writers.wait_until(|| self.write_as_waiting_writer());
        }
        RwSemWriteGuard {
            sem: self,
            _not_send: PhantomData,
        }
    }

    /// Have the data to ourselves if nobody holds it right now.
    pub fn try_write(&self) -> Option<RwSemWriteGuard<'_, T, S>> {
        self.try_write_raw().then(|| RwSemWriteGuard {
            sem: self,
            _not_send: PhantomData,
        })
    }

    fn try_read_raw(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        // A waiting writer keeps new readers out: that is what saves writers from starving.
        while s & (WRITER | WAITING_WRITERS) == 0 {
            match self.state.compare_exchange_weak(
                s,
                s + READER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
        false
    }

    /// The readers' queue condition: join the readers, or make sure the flag is set before we
    /// sleep, so that the writer who lets go wakes us.
    fn read_or_flag(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            let (new, taken) = if s & (WRITER | WAITING_WRITERS) == 0 {
                (s + READER, true)
            } else if s & READERS_WAITING == 0 {
                (s | READERS_WAITING, false)
            } else {
                return false;
            };
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return taken,
                Err(now) => s = now,
            }
        }
    }

    /// A writer may take it whenever nobody holds it, even ahead of waiting writers (it is
    /// then one of them, served sooner).
    fn try_write_raw(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        while s & (WRITER | READERS) == 0 {
            match self.state.compare_exchange_weak(
                s,
                s | WRITER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
        false
    }

    /// The writers' queue condition: take it, and stop counting ourselves as waiting, in one
    /// step (so no reader slips in between).
    fn write_as_waiting_writer(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        while s & (WRITER | READERS) == 0 {
            match self.state.compare_exchange_weak(
                s,
                s - WAITING_WRITER + WRITER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
        false
    }

    fn read_unlock(&self) {
        // Release: our reads happen before the next writer's writes.
        let after = self.state.fetch_sub(READER, Ordering::Release) - READER;
        // Only the last reader out can let a writer in; while writers wait no reader joins, so
        // exactly one reader sees this.
        if after & READERS == 0 && after & WAITING_WRITERS != 0 {
            self.writers.wake_one();
        }
    }

    fn write_unlock(&self) {
        let after = self.state.fetch_sub(WRITER, Ordering::Release) - WRITER;
        if after & WAITING_WRITERS != 0 {
            // Readers would only find the writer still waiting and sleep again.
            self.writers.wake_one();
        } else if after & READERS_WAITING != 0 {
            self.readers.locked(|readers| {
                // Every queued reader is woken and looks again, setting the flag again if it
                // must sleep; nobody can queue meanwhile. So the flag may go.
                self.state.fetch_and(!READERS_WAITING, Ordering::Relaxed);
                readers.wake_all();
            });
        }
    }

    /// Readers holding it right now (stale as soon as it returns).
    pub fn readers(&self) -> usize {
        (self.state.load(Ordering::Relaxed) & READERS) / READER
    }

    /// True if a writer holds it right now.
    pub fn is_write_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & WRITER != 0
    }

    /// Writers waiting right now (counted as soon as they decide to wait).
    pub fn waiting_writers(&self) -> usize {
        (self.state.load(Ordering::Relaxed) & WAITING_WRITERS) / WAITING_WRITER
    }

    /// Readers asleep (or about to be) right now.
    pub fn waiting_readers(&self) -> usize {
        self.readers.len()
    }

    /// With `&mut self` nobody else can hold it: no locking needed.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

/// Shared access while held for reading; lets go when dropped.
pub struct RwSemReadGuard<'a, T: ?Sized, S: Sleeper> {
    sem: &'a RwSemaphore<T, S>,
    /// Kept with its task, as a mutex guard is (Linux has a separate `up_read_non_owner`).
    _not_send: PhantomData<*const ()>,
}

impl<T: ?Sized, S: Sleeper> Deref for RwSemReadGuard<'_, T, S> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard exists only while no writer holds the semaphore.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T: ?Sized, S: Sleeper> Drop for RwSemReadGuard<'_, T, S> {
    fn drop(&mut self) {
        self.sem.read_unlock();
    }
}

/// Exclusive access while held for writing; lets go when dropped.
pub struct RwSemWriteGuard<'a, T: ?Sized, S: Sleeper> {
    sem: &'a RwSemaphore<T, S>,
    _not_send: PhantomData<*const ()>,
}

impl<T: ?Sized, S: Sleeper> Deref for RwSemWriteGuard<'_, T, S> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a write guard exists only while its task alone holds the semaphore.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T: ?Sized, S: Sleeper> DerefMut for RwSemWriteGuard<'_, T, S> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`, and the guard is not shared.
        unsafe { &mut *self.sem.data.get() }
    }
}

impl<T: ?Sized, S: Sleeper> Drop for RwSemWriteGuard<'_, T, S> {
    fn drop(&mut self) {
        self.sem.write_unlock();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::sleep::ThreadSleeper;
    use std::sync::Arc;
    use std::time::Duration;

    type Rw<T> = RwSemaphore<T, ThreadSleeper>;

    #[test]
    fn readers_share() {
        let sem: Arc<Rw<u32>> = Arc::new(RwSemaphore::new(5));
        let mine = sem.read();
        let other = Arc::clone(&sem);
        let seen = std::thread::spawn(move || {
            let a = other.try_read().map(|g| *g);
            let b = other.read(); // must not block
            (a, *b, other.readers())
        })
        .join()
        .unwrap();
        assert_eq!(seen, (Some(5), 5, 2));
        assert!(sem.try_write().is_none(), "a writer got in beside a reader");
        drop(mine);
        assert!(sem.try_write().is_some());
    }

    #[test]
    fn a_writer_excludes_readers_and_writers() {
        const WRITERS: usize = 2;
        const READERS: usize = 2;
        const ROUNDS: usize = 3_000;
        // Two plain fields a writer keeps equal; a reader or writer beside a writer would see
        // them differ, or lose increments.
        let sem: Arc<Rw<(u64, u64)>> = Arc::new(RwSemaphore::new((0, 0)));
        let mut handles = Vec::new();
        for _ in 0..WRITERS {
            let sem = Arc::clone(&sem);
            handles.push(std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    let mut g = sem.write();
                    assert_eq!(g.0, g.1, "two writers inside");
                    g.0 += 1;
                    if i.is_multiple_of(64) {
                        std::thread::yield_now();
                    }
                    g.1 += 1;
                }
            }));
        }
        for _ in 0..READERS {
            let sem = Arc::clone(&sem);
            handles.push(std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let g = sem.read();
                    assert_eq!(g.0, g.1, "a reader beside a writer");
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        let total = (WRITERS * ROUNDS) as u64;
        assert_eq!(*sem.read(), (total, total));
        assert_eq!(sem.state.load(Ordering::Relaxed) & !READERS_WAITING, 0);
    }

    #[test]
    fn try_write_and_try_read_fail_while_written() {
        let sem: Rw<u8> = RwSemaphore::new(1);
        let mut w = sem.try_write().expect("free");
        *w = 2;
        assert!(sem.is_write_locked());
        assert!(sem.try_write().is_none() && sem.try_read().is_none());
        drop(w);
        assert_eq!(*sem.try_read().expect("free again"), 2);
    }

    /// A reader holds it; a writer comes and must wait; then a new reader comes. Without
    /// writer preference it would join the first reader at once, and a steady stream of such
    /// readers would starve the writer. It must queue behind the writer instead.
    #[test]
    fn a_waiting_writer_blocks_new_readers() {
        let sem: Arc<Rw<Vec<&'static str>>> = Arc::new(RwSemaphore::new(Vec::new()));
        let first = sem.read();
        let writer = {
            let sem = Arc::clone(&sem);
            std::thread::spawn(move || sem.write().push("writer"))
        };
        while sem.waiting_writers() == 0 {
            std::thread::yield_now();
        }
        let late_reader = {
            let sem = Arc::clone(&sem);
            std::thread::spawn(move || sem.read().clone())
        };
        assert!(
            sem.try_read().is_none(),
            "a new reader got in past a waiting writer"
        );
        while sem.waiting_readers() == 0 {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(10));
        assert!(!writer.is_finished() && !late_reader.is_finished());
        drop(first);
        writer.join().unwrap();
        assert_eq!(
            late_reader.join().unwrap(),
            ["writer"],
            "the late reader got in before the waiting writer"
        );
        assert_eq!(sem.waiting_writers(), 0);
    }
}

/// Loom model (`make loom`): a writer and a reader. The reader must see the pair the writer
/// keeps equal whole, loom checks that the writer's accesses are ordered against the reader's,
/// and both must finish.
#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use crate::sync::sleep::ThreadSleeper;
    use loom::cell::UnsafeCell as Cell;
    // std's Arc, not loom's, as in the mutex models (src/sync/mutex.rs says why).
    use std::sync::Arc;

    #[test]
    fn loom_rwsem_writer_excludes_reader_and_both_finish() {
        loom::model(|| {
            let sem = Arc::new(RwSemaphore::<Cell<(u32, u32)>, ThreadSleeper>::new(
                Cell::new((0, 0)),
            ));
            let writer = {
                let sem = Arc::clone(&sem);
                loom::thread::spawn(move || {
                    // SAFETY: the write guard excludes everyone else (loom checks it).
                    sem.write().with_mut(|p| unsafe { *p = (1, 1) });
                })
            };
            // SAFETY: the read guard excludes writers (loom checks it).
            let (a, b) = sem.read().with(|p| unsafe { *p });
            assert_eq!(a, b);
            writer.join().unwrap();
            assert_eq!(sem.readers(), 0);
            assert!(!sem.is_write_locked());
        });
    }

    /// Two writers and a reader: waiting writers count, hand over, and wake the reader.
    #[test]
    fn loom_rwsem_two_writers_and_a_reader_finish() {
        loom::model(|| {
            let sem = Arc::new(RwSemaphore::<Cell<u32>, ThreadSleeper>::new(Cell::new(0)));
            let writers: Vec<_> = (0..2)
                .map(|_| {
                    let sem = Arc::clone(&sem);
                    loom::thread::spawn(move || {
                        // SAFETY: the write guard excludes everyone else (loom checks it).
                        sem.write().with_mut(|c| unsafe { *c += 1 });
                    })
                })
                .collect();
            // SAFETY: the read guard excludes writers (loom checks it).
            let seen = sem.read().with(|c| unsafe { *c });
            assert!(seen <= 2);
            for w in writers {
                w.join().unwrap();
            }
            // SAFETY: every writer has been joined.
            assert_eq!(sem.read().with(|c| unsafe { *c }), 2);
        });
    }
}
