//! mixed SEED [ROUNDS]: a deterministic mix of system calls for the many-process stress test.
//!
//! From the seed, each round picks one of: getpid (must not change), append pseudo-random bytes
//! to its own file `mixed-SEED.dat` (in the working directory), read the whole file back and
//! compare every byte with what it wrote, grow the heap a page with brk and check the earlier
//! heap pages kept their contents, or sched_yield. Prints one summary line; exits 0 only if every
//! check passed.
#![no_std]
#![no_main]

use core::fmt::Write;
use ulib::rand::Rng;
use ulib::sys::{self, PAGE_SIZE};
use ulib::{eprintln, println};

ulib::entry!(main);

/// The file never grows past this, so the program can keep a copy of what it wrote.
const MAX_FILE: usize = 8192;
const MAX_HEAP_PAGES: usize = 16;

struct Mixed {
    seed: u64,
    rng: Rng,
    pid: i32,
    fd: i32,
    written: [u8; MAX_FILE],
    file_len: usize,
    heap_start: usize,
    heap_pages: usize,
    counts: [u32; 5],
}

impl Mixed {
    fn fail(&self, what: core::fmt::Arguments) -> Result<(), ()> {
        eprintln!("mixed {}: {}", self.seed, what);
        Err(())
    }

    /// Read the whole file from the start and compare every byte with what was written.
    /// Appends continue at the end: the read leaves the offset there.
    fn read_back(&mut self) -> Result<(), ()> {
        if let Err(e) = sys::lseek(self.fd, 0, sys::SEEK_SET) {
            return self.fail(format_args!("lseek: {e}"));
        }
        let mut buf = [0u8; MAX_FILE + 1];
        let mut got = 0;
        loop {
            match sys::read(self.fd, &mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return self.fail(format_args!("read: {e}")),
            }
        }
        if got != self.file_len {
            return self.fail(format_args!(
                "read back {got} bytes, wrote {}",
                self.file_len
            ));
        }
        if let Some(i) = (0..got).find(|&i| buf[i] != self.written[i]) {
            return self.fail(format_args!(
                "byte {i} reads {:#04x}, wrote {:#04x}",
                buf[i], self.written[i]
            ));
        }
        Ok(())
    }

    fn round(&mut self) -> Result<(), ()> {
        let op = self.rng.below(5) as usize;
        self.counts[op] += 1;
        match op {
            0 => {
                let pid = sys::getpid();
                if pid != self.pid {
                    return self.fail(format_args!("getpid said {pid}, earlier {}", self.pid));
                }
            }
            1 => {
                let len = (1 + self.rng.below(300) as usize).min(MAX_FILE - self.file_len);
                if len == 0 {
                    return Ok(());
                }
                let start = self.file_len;
                for b in &mut self.written[start..start + len] {
                    *b = self.rng.next_u64() as u8;
                }
                match sys::write(self.fd, &self.written[start..start + len]) {
                    Ok(n) if n == len => self.file_len += len,
                    Ok(n) => return self.fail(format_args!("wrote {n} of {len} bytes")),
                    Err(e) => return self.fail(format_args!("write: {e}")),
                }
            }
            2 => self.read_back()?,
            3 => {
                if self.heap_pages == MAX_HEAP_PAGES {
                    return Ok(());
                }
                let end = self.heap_start + (self.heap_pages + 1) * PAGE_SIZE;
                if sys::brk(end) < end {
                    return self.fail(format_args!("brk to {end:#x} failed"));
                }
                let page = (self.heap_start + self.heap_pages * PAGE_SIZE) as *mut u64;
                // SAFETY: brk just made [heap_start, end) ours; nothing else uses it.
                unsafe { page.write_volatile(self.seed ^ self.heap_pages as u64) };
                self.heap_pages += 1;
                for i in 0..self.heap_pages {
                    let p = (self.heap_start + i * PAGE_SIZE) as *const u64;
                    // SAFETY: as above; every page below `end` was written by an earlier round.
                    let value = unsafe { p.read_volatile() };
                    if value != self.seed ^ i as u64 {
                        return self.fail(format_args!("heap page {i} reads {value:#x}"));
                    }
                }
            }
            _ => sys::sched_yield(),
        }
        Ok(())
    }
}

/// "mixed-SEED.dat" in a stack buffer.
struct Name {
    buf: [u8; 40],
    len: usize,
}

impl Write for Name {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn main(args: ulib::Args) -> i32 {
    let Some(seed) = args.get(1).and_then(ulib::parse_u64) else {
        eprintln!("usage: mixed SEED [ROUNDS]");
        return 2;
    };
    let rounds = args.number_or(2, 200);
    let mut name = Name {
        buf: [0; 40],
        len: 0,
    };
    let _ = write!(name, "mixed-{seed}.dat");
    let path = core::str::from_utf8(&name.buf[..name.len]).unwrap_or("mixed.dat");
    let fd = match sys::open(path, sys::O_RDWR | sys::O_CREAT | sys::O_TRUNC, 0o644) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("mixed {seed}: open {path}: {e}");
            return 1;
        }
    };
    let heap_start = (sys::brk(0) + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
    let mut m = Mixed {
        seed,
        rng: Rng::new(seed),
        pid: sys::getpid(),
        fd,
        written: [0; MAX_FILE],
        file_len: 0,
        heap_start,
        heap_pages: 0,
        counts: [0; 5],
    };
    let mut result = (0..rounds)
        .try_for_each(|_| m.round())
        .and_then(|()| m.read_back());
    let _ = sys::close(fd);
    if let Err(e) = sys::unlinkat(path, 0) {
        eprintln!("mixed {seed}: unlink {path}: {e}");
        result = Err(());
    }
    let [getpid, write, read, brk, yields] = m.counts;
    match result {
        Ok(()) => {
            println!(
                "mixed {seed}: pid {}: {rounds} rounds ({getpid} getpid, {write} write, {read} read-back, {brk} brk, {yields} yield), {} bytes written and read back, all right",
                m.pid, m.file_len
            );
            0
        }
        Err(()) => {
            println!("mixed {seed}: pid {}: FAILED", m.pid);
            1
        }
    }
}
