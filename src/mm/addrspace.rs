//! A user address space: one TTBR0 translation table, the regions (VMAs) that say which
//! addresses may be used and how, and the page faults that fill the table in on demand
//! (chapters 20, "Address spaces, ASIDs and TLB maintenance on several CPUs", and 21, "The
//! page allocator and page faults").
//!
//! Nothing is mapped when a region is made (`map_zeroed`, `set_stack`, `brk`, `mmap_anon`):
//! the first touch of a page faults, `handle_fault` finds the region, allocates a zeroed page
//! and maps it, and the instruction is retried. `fork` copies no page: parent and child map the
//! same pages read-only, marked copy-on-write (a software bit of the descriptor) with the
//! page's refcount raised; the first write on either side faults, and `handle_fault` copies the
//! page, or, if the writer turns out to be its last holder, just makes it writable again.
//!
//! The table editing is plain Rust over an `MmEnv` (where pages come from, how the kernel
//! reaches a physical page, how TLB entries are invalidated), so host tests run all of it over
//! fake memory; the kernel's `KernelMm` plugs in src/mm/frames.rs, the linear map and
//! src/arch/aarch64/tlb.rs.

use alloc::vec::Vec;
use core::fmt;

use crate::arch::aarch64::pagetable::{
    ACCESS_FLAG, ADDRESS_MASK, AP_READ_ONLY, ATTR_INDEX_SHIFT, ENTRIES, MAIR_NORMAL_WB, PXN,
    SH_INNER, TABLE_OR_PAGE, UXN, VA_BITS, VALID,
};
use crate::cpumask::{AtomicCpuMask, CpuMask};
use crate::errno::{Errno, SysResult};
use crate::sync::shim::{AtomicU64, Ordering};

pub const PAGE_SIZE: usize = 4096;
/// User addresses are [0, USER_END): TTBR0's half with 39-bit addresses.
pub const USER_END: usize = 1 << VA_BITS;
/// Where `mmap_anon` looks for room when the hint does not fit.
pub const MMAP_BASE: usize = 0x10_0000_0000;

/// AP[1]: EL0 may access the page (with AP[2], `AP_READ_ONLY`, read-only at both levels).
const AP_EL0: u64 = 1 << 6;
/// nG: the translation belongs to one ASID, not to every address space.
const NOT_GLOBAL: u64 = 1 << 11;
/// Software bit (bits 55-58 are the OS's): a page of a writable region, shared read-only until
/// the next write copies it.
const SW_COW: u64 = 1 << 55;
const LEVEL_SHIFTS: [u32; 3] = [30, 21, 12];

/// What a region allows, as the user asked with PROT_READ/WRITE/EXEC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Prot(u8);

impl Prot {
    pub const NONE: Prot = Prot(0);
    pub const READ: Prot = Prot(1);
    pub const WRITE: Prot = Prot(2);
    pub const EXEC: Prot = Prot(4);
    pub const RW: Prot = Prot(3);
    pub const RX: Prot = Prot(5);

    pub const fn union(self, other: Prot) -> Prot {
        Prot(self.0 | other.0)
    }
    pub const fn contains(self, other: Prot) -> bool {
        self.0 & other.0 == other.0
    }
    /// Linux's PROT_* bits (PROT_READ 1, PROT_WRITE 2, PROT_EXEC 4) are the same values.
    pub const fn from_linux(bits: u32) -> Prot {
        Prot((bits & 7) as u8)
    }
}

impl core::ops::BitOr for Prot {
    type Output = Prot;
    fn bitor(self, rhs: Prot) -> Prot {
        self.union(rhs)
    }
}

/// The access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Exec,
}

/// What kind of region a range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Anonymous memory: demand-zero (mmap, map_zeroed) or filled at creation (map_copy).
    Anon,
    /// The user stack; the page below it is an unmapped guard page.
    Stack,
    /// The heap that brk moves.
    Heap,
}

/// One region (Linux's VMA): [start, end), page-aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: usize,
    pub end: usize,
    pub prot: Prot,
    pub kind: RegionKind,
}

/// Why a fault cannot be resolved: the process gets SIGSEGV, and the message says why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// No region contains the address.
    NoRegion { addr: usize },
    /// The guard page below the stack: the stack overflowed.
    StackOverflow { addr: usize },
    /// A write to a region without PROT_WRITE.
    WriteToReadOnly { addr: usize },
    /// An instruction fetch from a region without PROT_EXEC.
    ExecOfNonExec { addr: usize },
    /// A read of a region without PROT_READ.
    ReadOfNoAccess { addr: usize },
    /// No page frame left to map.
    OutOfMemory { addr: usize },
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FaultError::NoRegion { addr } => write!(f, "no mapping at {addr:#x}"),
            FaultError::StackOverflow { addr } => {
                write!(
                    f,
                    "stack overflow: {addr:#x} is the guard page below the stack"
                )
            }
            FaultError::WriteToReadOnly { addr } => write!(f, "write to read-only {addr:#x}"),
            FaultError::ExecOfNonExec { addr } => {
                write!(f, "execution of non-executable {addr:#x}")
            }
            FaultError::ReadOfNoAccess { addr } => write!(f, "read of inaccessible {addr:#x}"),
            FaultError::OutOfMemory { addr } => {
                write!(f, "out of memory mapping a page at {addr:#x}")
            }
        }
    }
}

/// What an address space needs from the rest of the kernel.
pub trait MmEnv {
    /// A zeroed page frame (refcount 1), by physical address.
    fn alloc_zeroed_page(&self) -> Option<usize>;
    fn get_page(&self, pa: usize);
    fn put_page(&self, pa: usize);
    fn page_refcount(&self, pa: usize) -> u32;
    /// Where the kernel reaches physical page `pa`.
    fn page_ptr(&self, pa: usize) -> *mut u8;
    /// A valid last-level entry for `va` changed or went: drop it from the TLB of every CPU in
    /// `ran_on` (a bit per CPU that ever ran the space; see `flush_scope`).
    fn flush_page(&self, asid: u16, va: usize, ran_on: &CpuMask);
    /// The address space with this ASID is gone: drop all its entries on every CPU in `ran_on`.
    fn flush_asid(&self, asid: u16, ran_on: &CpuMask);
}

/// Which TLBs an invalidation must reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushScope {
    /// Only this CPU ever ran the space: no other TLB can hold its entries, and a local TLBI
    /// (no broadcast, no waiting for the other CPUs) is enough.
    ThisCpu,
    /// Other CPUs ran it too (or nobody knows): the broadcast (`IS`) form.
    EveryCpu,
}

/// The scope of an invalidation for a space that ran on the CPUs in `ran_on`, decided on
/// `this_cpu` (with preemption off, so that "this CPU" stays true until the TLBI).
///
/// A CPU caches translations only by walking the tables of the space it runs (speculative
/// walks too use the current TTBR0 and ASID), so a CPU that never ran the space holds none of
/// its entries. A bit is never cleared: a CPU the space left may still hold entries (quartet
/// does not flush at a switch), so "ever ran" is the safe question. Linux on x86 keeps the same
/// record (`mm_cpumask`) to send its shoot-down IPIs only to CPUs that need them.
pub fn flush_scope(ran_on: &CpuMask, this_cpu: usize) -> FlushScope {
    if ran_on.count() == 1 && ran_on.contains(this_cpu) {
        FlushScope::ThisCpu
    } else {
        FlushScope::EveryCpu
    }
}

fn page_down(a: usize) -> usize {
    a & !(PAGE_SIZE - 1)
}

fn page_up(a: usize) -> Option<usize> {
    a.checked_add(PAGE_SIZE - 1).map(page_down)
}

fn index(va: usize, level: usize) -> usize {
    (va >> LEVEL_SHIFTS[level]) & (ENTRIES - 1)
}

/// The last-level descriptor of a user page at `pa` with `prot` (read-only if `cow`).
fn page_descriptor(pa: usize, prot: Prot, cow: bool) -> u64 {
    let mut d = pa as u64
        | VALID
        | TABLE_OR_PAGE
        | ACCESS_FLAG
        | SH_INNER
        | (MAIR_NORMAL_WB << ATTR_INDEX_SHIFT)
        | NOT_GLOBAL
        | AP_EL0
        // The kernel never executes user memory.
        | PXN;
    if !prot.contains(Prot::WRITE) || cow {
        d |= AP_READ_ONLY;
    }
    if cow {
        d |= SW_COW;
    }
    if !prot.contains(Prot::EXEC) {
        d |= UXN;
    }
    d
}

fn entry_pa(d: u64) -> usize {
    (d & ADDRESS_MASK) as usize
}

/// An address space over the environment `E`. The kernel's is `AddressSpace`.
pub struct AddressSpaceIn<E: MmEnv> {
    env: E,
    /// Physical address of the level-1 table, for TTBR0.
    root: usize,
    /// The ASID context id (src/mm/asid.rs); 0 until the space first runs.
    context: AtomicU64,
    /// A bit per CPU that ever ran the space (set by `activate`, never cleared): where its
    /// TLB entries may be (`flush_scope`).
    ran_on: AtomicCpuMask,
    /// Sorted by start, never overlapping.
    regions: Vec<Region>,
    /// Guard pages: touching one is a stack overflow.
    guards: Vec<usize>,
    /// Where brk's heap starts, and the current break (not page-aligned, as Linux's).
    heap_start: Option<usize>,
    brk: usize,
    /// Leaf pages mapped (each shared page counted by every space that maps it).
    resident: usize,
    /// Table pages below the root, plus the root.
    tables: usize,
}

impl<E: MmEnv> AddressSpaceIn<E> {
    /// An empty address space: a root table and no regions.
    pub fn new_in(env: E) -> SysResult<Self> {
        let root = env.alloc_zeroed_page().ok_or(Errno::ENOMEM)?;
        Ok(AddressSpaceIn {
            env,
            root,
            context: AtomicU64::new(0),
            ran_on: AtomicCpuMask::new(CpuMask::EMPTY),
            regions: Vec::new(),
            guards: Vec::new(),
            heap_start: None,
            brk: 0,
            resident: 0,
            tables: 1,
        })
    }

    /// Physical address of the root table.
    pub fn root(&self) -> usize {
        self.root
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Pages this space holds: mapped pages plus its page tables (for `mem` and `ps`).
    pub fn pages_in_use(&self) -> usize {
        self.resident + self.tables
    }

    pub fn resident_pages(&self) -> usize {
        self.resident
    }

    pub fn table_pages(&self) -> usize {
        self.tables
    }

    fn asid(&self) -> Option<u16> {
        match self.context.load(Ordering::Relaxed) {
            0 => None,
            // Only the low 16 bits can be an ASID; the allocator's width may be 8.
            id => Some(id as u16 & asid_mask()),
        }
    }

    fn flush(&self, va: usize) {
        // A space that never ran has nothing in any TLB.
        if let Some(asid) = self.asid() {
            self.env
                .flush_page(asid, va, &self.ran_on.load(Ordering::Relaxed));
        }
    }

    fn table(&self, pa: usize) -> *mut u64 {
        self.env.page_ptr(pa) as *mut u64
    }

    fn read(&self, table: usize, i: usize) -> u64 {
        // SAFETY: `table` is one of this space's table pages (the root or one reached through
        // it), reachable through `page_ptr`, and `i` < ENTRIES.
        unsafe { self.table(table).add(i).read_volatile() }
    }

    fn write(&self, table: usize, i: usize, value: u64) {
        // SAFETY: as in `read`; `&mut self` callers own the tables. Volatile, so the store is
        // really made before any TLB maintenance that follows it (which orders it for the CPU).
        unsafe { self.table(table).add(i).write_volatile(value) }
    }

    /// The last-level table and index for `va`, creating tables if `create`.
    fn leaf(&mut self, va: usize, create: bool) -> SysResult<Option<(usize, usize)>> {
        let mut table = self.root;
        for level in 0..2 {
            let i = index(va, level);
            let d = self.read(table, i);
            table = if d & VALID != 0 {
                entry_pa(d)
            } else if create {
                let child = self.env.alloc_zeroed_page().ok_or(Errno::ENOMEM)?;
                self.tables += 1;
                self.write(table, i, child as u64 | VALID | TABLE_OR_PAGE);
                child
            } else {
                return Ok(None);
            };
        }
        Ok(Some((table, index(va, 2))))
    }

    /// The last-level descriptor mapping `va`, if any.
    pub fn lookup(&self, va: usize) -> Option<u64> {
        let mut table = self.root;
        for level in 0..2 {
            let d = self.read(table, index(va, level));
            if d & VALID == 0 {
                return None;
            }
            table = entry_pa(d);
        }
        Some(self.read(table, index(va, 2))).filter(|d| d & VALID != 0)
    }

    /// The physical page behind `va` and whether user code may write it now.
    pub fn translate(&self, va: usize) -> Option<(usize, bool)> {
        self.lookup(va)
            .map(|d| (entry_pa(d) + va % PAGE_SIZE, d & AP_READ_ONLY == 0))
    }

    fn region_index(&self, addr: usize) -> Option<usize> {
        self.regions
            .iter()
            .position(|r| r.start <= addr && addr < r.end)
    }

    fn overlaps(&self, start: usize, end: usize) -> bool {
        self.regions.iter().any(|r| r.start < end && start < r.end)
            || self
                .guards
                .iter()
                .any(|&g| g < end && start < g + PAGE_SIZE)
    }

    fn insert_region(&mut self, region: Region) {
        let at = self
            .regions
            .iter()
            .position(|r| r.start > region.start)
            .unwrap_or(self.regions.len());
        self.regions.insert(at, region);
    }

    /// Check a new region's range: page-aligned start, non-empty, inside user space, free.
    fn new_range(&self, start: usize, len: usize) -> SysResult<usize> {
        let end = page_up(start.checked_add(len).ok_or(Errno::EINVAL)?).ok_or(Errno::EINVAL)?;
        if !start.is_multiple_of(PAGE_SIZE) || len == 0 || end > USER_END {
            return Err(Errno::EINVAL);
        }
        if self.overlaps(start, end) {
            return Err(Errno::EEXIST);
        }
        Ok(end)
    }

    /// A demand-zero region [start, start + len) (len rounded up to pages).
    pub fn map_zeroed(&mut self, start: usize, len: usize, prot: Prot) -> SysResult<()> {
        let end = self.new_range(start, len)?;
        self.insert_region(Region {
            start,
            end,
            prot,
            kind: RegionKind::Anon,
        });
        Ok(())
    }

    /// An ELF segment: `bytes` at `start`, then zeros up to `mem_len`, copied in now. `start`
    /// need not be page-aligned; the region covers the pages it touches.
    pub fn map_copy(
        &mut self,
        start: usize,
        bytes: &[u8],
        mem_len: usize,
        prot: Prot,
    ) -> SysResult<()> {
        if bytes.len() > mem_len {
            return Err(Errno::EINVAL);
        }
        let first = page_down(start);
        let end = start.checked_add(mem_len).ok_or(Errno::EINVAL)?;
        self.map_zeroed(first, end - first, prot)?;
        let mut page = first;
        while page < end {
            let pa = match self.populate(page, prot) {
                Ok(pa) => pa,
                Err(e) => {
                    self.unmap_range(first, page_up(end).unwrap_or(end));
                    return Err(e);
                }
            };
            // The part of `bytes` that lands in this page.
            let from = page.max(start);
            let to = (page + PAGE_SIZE).min(start + bytes.len());
            if from < to {
                let src = &bytes[from - start..to - start];
                // SAFETY: `pa` is a page this space just allocated; from - page + len <= PAGE_SIZE.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        src.as_ptr(),
                        self.env.page_ptr(pa).add(from - page),
                        src.len(),
                    )
                };
            }
            page += PAGE_SIZE;
        }
        Ok(())
    }

    /// A demand-zero stack [top - max_len, top) with an unmapped guard page below it.
    pub fn set_stack(&mut self, top: usize, max_len: usize) -> SysResult<()> {
        let max_len = page_up(max_len).ok_or(Errno::EINVAL)?;
        let bottom = top.checked_sub(max_len).ok_or(Errno::EINVAL)?;
        let guard = bottom.checked_sub(PAGE_SIZE).ok_or(Errno::EINVAL)?;
        if !top.is_multiple_of(PAGE_SIZE) || max_len == 0 || top > USER_END {
            return Err(Errno::EINVAL);
        }
        if self.overlaps(guard, top) {
            return Err(Errno::EEXIST);
        }
        self.insert_region(Region {
            start: bottom,
            end: top,
            prot: Prot::RW,
            kind: RegionKind::Stack,
        });
        self.guards.push(guard);
        Ok(())
    }

    /// Where brk's heap begins (after the program's last segment); brk cannot go below it.
    /// Without a call, it begins at the first page above every non-stack region.
    pub fn set_heap_start(&mut self, at: usize) {
        self.heap_start = page_up(at);
        self.brk = self.heap_start.unwrap_or(0);
    }

    fn heap_start(&mut self) -> usize {
        if self.heap_start.is_none() {
            let top = self
                .regions
                .iter()
                .filter(|r| r.kind != RegionKind::Stack)
                .map(|r| r.end)
                .max()
                .unwrap_or(MMAP_BASE / 2);
            self.heap_start = Some(top);
            self.brk = top;
        }
        self.heap_start.unwrap_or(0)
    }

    /// Move the break (Linux's brk): returns the new break, or the old one if it cannot move
    /// there (below the heap's start, into another region, beyond user space).
    pub fn brk(&mut self, new_end: usize) -> usize {
        let start = self.heap_start();
        let old = self.brk;
        if new_end < start {
            return old;
        }
        let (Some(old_top), Some(new_top)) = (page_up(old), page_up(new_end)) else {
            return old;
        };
        if new_top > old_top {
            let clash = self
                .regions
                .iter()
                .any(|r| r.kind != RegionKind::Heap && r.start < new_top && old_top < r.end)
                || self
                    .guards
                    .iter()
                    .any(|&g| g < new_top && old_top < g + PAGE_SIZE);
            if clash || new_top > USER_END {
                return old;
            }
        } else if new_top < old_top {
            self.unmap_range(new_top, old_top);
        }
        self.regions.retain(|r| r.kind != RegionKind::Heap);
        if new_top > start {
            self.insert_region(Region {
                start,
                end: new_top,
                prot: Prot::RW,
                kind: RegionKind::Heap,
            });
        }
        self.brk = new_end;
        new_end
    }

    /// A demand-zero anonymous mapping of `len` bytes at `hint` if that range is free and
    /// page-aligned, else at the first free range from `MMAP_BASE`.
    pub fn mmap_anon(&mut self, hint: usize, len: usize, prot: Prot) -> SysResult<usize> {
        let len = page_up(len).filter(|&l| l > 0).ok_or(Errno::EINVAL)?;
        if hint != 0 && self.new_range(hint, len).is_ok() {
            self.map_zeroed(hint, len, prot)?;
            return Ok(hint);
        }
        let mut at = MMAP_BASE;
        while at.checked_add(len).is_some_and(|end| end <= USER_END) {
            if !self.overlaps(at, at + len) {
                self.map_zeroed(at, len, prot)?;
                return Ok(at);
            }
            // Skip past whatever is in the way.
            at = self
                .regions
                .iter()
                .filter(|r| r.start < at + len && at < r.end)
                .map(|r| r.end)
                .chain(
                    self.guards
                        .iter()
                        .filter(|&&g| g < at + len && at < g + PAGE_SIZE)
                        .map(|&g| g + PAGE_SIZE),
                )
                .max()
                .unwrap_or(at + PAGE_SIZE);
        }
        Err(Errno::ENOMEM)
    }

    /// Unmap [start, start + len): regions are trimmed or split, pages freed, TLBs told.
    pub fn munmap(&mut self, start: usize, len: usize) -> SysResult<()> {
        let end = start
            .checked_add(len)
            .and_then(page_up)
            .filter(|&e| e <= USER_END)
            .ok_or(Errno::EINVAL)?;
        if !start.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let mut kept = Vec::with_capacity(self.regions.len() + 1);
        for r in self.regions.drain(..) {
            if r.end <= start || end <= r.start {
                kept.push(r);
                continue;
            }
            if r.start < start {
                kept.push(Region { end: start, ..r });
            }
            if end < r.end {
                kept.push(Region { start: end, ..r });
            }
        }
        self.regions = kept;
        self.unmap_range(start, end);
        Ok(())
    }

    /// Drop every page mapped in [start, end).
    fn unmap_range(&mut self, start: usize, end: usize) {
        let mut va = start;
        while va < end {
            let Ok(Some((table, i))) = self.leaf(va, false) else {
                // No table here: skip to the next 2 MiB.
                va = (va | ((1 << LEVEL_SHIFTS[1]) - 1)) + 1;
                continue;
            };
            let d = self.read(table, i);
            if d & VALID != 0 {
                self.write(table, i, 0);
                self.flush(va);
                self.env.put_page(entry_pa(d));
                self.resident -= 1;
            }
            va += PAGE_SIZE;
        }
    }

    /// Map a fresh zeroed page at `va` with `prot`; returns its physical address.
    fn populate(&mut self, va: usize, prot: Prot) -> SysResult<usize> {
        let (table, i) = self.leaf(va, true)?.ok_or(Errno::ENOMEM)?;
        let pa = self.env.alloc_zeroed_page().ok_or(Errno::ENOMEM)?;
        self.write(table, i, page_descriptor(pa, prot, false));
        self.resident += 1;
        Ok(pa)
    }

    /// Resolve a fault at `far` for `access`. Ok means the instruction can be retried.
    pub fn handle_fault(&mut self, far: usize, access: Access) -> Result<(), FaultError> {
        let addr = far;
        let va = page_down(far);
        let Some(r) = self.region_index(far).map(|i| self.regions[i]) else {
            if self.guards.iter().any(|&g| g <= far && far < g + PAGE_SIZE) {
                return Err(FaultError::StackOverflow { addr });
            }
            return Err(FaultError::NoRegion { addr });
        };
        match access {
            Access::Write if !r.prot.contains(Prot::WRITE) => {
                return Err(FaultError::WriteToReadOnly { addr });
            }
            Access::Exec if !r.prot.contains(Prot::EXEC) => {
                return Err(FaultError::ExecOfNonExec { addr });
            }
            Access::Read if !r.prot.contains(Prot::READ) => {
                return Err(FaultError::ReadOfNoAccess { addr });
            }
            _ => {}
        }
        let oom = FaultError::OutOfMemory { addr };
        let (table, i) = self.leaf(va, true).map_err(|_| oom)?.ok_or(oom)?;
        let d = self.read(table, i);
        if d & VALID == 0 {
            // Demand-zero: the first touch of the page.
            let pa = self.env.alloc_zeroed_page().ok_or(oom)?;
            self.write(table, i, page_descriptor(pa, r.prot, false));
            self.resident += 1;
            return Ok(());
        }
        if access == Access::Write && d & SW_COW != 0 {
            let old = entry_pa(d);
            if self.env.page_refcount(old) == 1 {
                // Every other holder has copied or gone: the page is ours, make it writable.
                // Only the permission changes, so no break-before-make is needed.
                self.write(table, i, page_descriptor(old, r.prot, false));
                self.flush(va);
                return Ok(());
            }
            let new = self.env.alloc_zeroed_page().ok_or(oom)?;
            // SAFETY: both are whole pages the kernel reaches; `new` is ours alone and `old`
            // is read-only to every holder (COW), so nobody writes it while we copy.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.env.page_ptr(old),
                    self.env.page_ptr(new),
                    PAGE_SIZE,
                )
            };
            // Break before make: a valid entry's output address may only change through an
            // invalid entry and a TLB invalidation, or CPUs could hold both translations.
            self.write(table, i, 0);
            self.flush(va);
            self.write(table, i, page_descriptor(new, r.prot, false));
            self.env.put_page(old);
            return Ok(());
        }
        // Already mapped as allowed: another thread got here first, or a stale TLB entry;
        // drop it and retry.
        self.flush(va);
        Ok(())
    }

    /// EFAULT unless every byte of [start, start + len) lies in regions allowing the access.
    pub fn check_user_range(&self, start: usize, len: usize, write: bool) -> SysResult<()> {
        if len == 0 {
            return Ok(());
        }
        let end = start.checked_add(len).ok_or(Errno::EFAULT)?;
        if end > USER_END {
            return Err(Errno::EFAULT);
        }
        let want = if write { Prot::WRITE } else { Prot::READ };
        let mut at = start;
        while at < end {
            let r = self
                .region_index(at)
                .map(|i| self.regions[i])
                .ok_or(Errno::EFAULT)?;
            if !r.prot.contains(want) {
                return Err(Errno::EFAULT);
            }
            at = r.end;
        }
        Ok(())
    }

    /// A copy-on-write child: the same regions; every mapped page shared, read-only in both
    /// where the region is writable, its refcount raised. Only the child's tables are new.
    pub fn fork_in(&mut self, env: E) -> SysResult<Self> {
        let mut child = AddressSpaceIn::new_in(env)?;
        child.regions = self.regions.clone();
        child.guards = self.guards.clone();
        child.heap_start = self.heap_start;
        child.brk = self.brk;
        for r in self.regions.clone() {
            let mut va = r.start;
            while va < r.end {
                let Ok(Some((table, i))) = self.leaf(va, false) else {
                    va = (va | ((1 << LEVEL_SHIFTS[1]) - 1)) + 1;
                    continue;
                };
                let d = self.read(table, i);
                if d & VALID != 0 {
                    let shared = if r.prot.contains(Prot::WRITE) {
                        let cow = page_descriptor(entry_pa(d), r.prot, true);
                        if d != cow {
                            self.write(table, i, cow);
                            // The parent may have the writable translation cached.
                            self.flush(va);
                        }
                        cow
                    } else {
                        d
                    };
                    let (ct, ci) = child.leaf(va, true)?.ok_or(Errno::ENOMEM)?;
                    self.env.get_page(entry_pa(d));
                    child.write(ct, ci, shared);
                    child.resident += 1;
                }
                va += PAGE_SIZE;
            }
        }
        Ok(child)
    }

    /// Free every page and table; return the ASID (the kernel's Drop calls this).
    fn tear_down(&mut self) {
        let root = self.root;
        for i1 in 0..ENTRIES {
            let d1 = self.read(root, i1);
            if d1 & VALID == 0 {
                continue;
            }
            let l2 = entry_pa(d1);
            for i2 in 0..ENTRIES {
                let d2 = self.read(l2, i2);
                if d2 & VALID == 0 {
                    continue;
                }
                let l3 = entry_pa(d2);
                for i3 in 0..ENTRIES {
                    let d3 = self.read(l3, i3);
                    if d3 & VALID != 0 {
                        self.env.put_page(entry_pa(d3));
                        self.resident -= 1;
                    }
                }
                self.env.put_page(l3);
                self.tables -= 1;
            }
            self.env.put_page(l2);
            self.tables -= 1;
        }
        self.env.put_page(root);
        self.tables -= 1;
        if let Some(asid) = self.asid() {
            // No CPU may keep translations of this ASID once another space can get it.
            self.env
                .flush_asid(asid, &self.ran_on.load(Ordering::Relaxed));
            release_asid(self.context.load(Ordering::Relaxed));
        }
    }
}

impl<E: MmEnv> Drop for AddressSpaceIn<E> {
    fn drop(&mut self) {
        self.tear_down();
    }
}

/// The kernel's environment: page frames from src/mm/frames.rs, reached through the linear
/// map, and TLB maintenance by broadcast TLBI.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelMm;

impl MmEnv for KernelMm {
    fn alloc_zeroed_page(&self) -> Option<usize> {
        super::frames::alloc_zeroed_page()
    }
    fn get_page(&self, pa: usize) {
        super::frames::get_page(pa)
    }
    fn put_page(&self, pa: usize) {
        super::frames::put_page(pa)
    }
    fn page_refcount(&self, pa: usize) -> u32 {
        super::frames::page_refcount(pa)
    }
    fn page_ptr(&self, pa: usize) -> *mut u8 {
        super::phys_to_virt(pa) as *mut u8
    }
    fn flush_page(&self, asid: u16, va: usize, ran_on: &CpuMask) {
        #[cfg(target_os = "none")]
        {
            use crate::arch::aarch64::tlb;
            // Preemption off from the decision to the TLBI: a local invalidation must run on
            // the CPU it was decided for.
            crate::sync::preempt::preempt_disable();
            match flush_scope(ran_on, crate::percpu::this_cpu().id) {
                FlushScope::ThisCpu => tlb::flush_leaf_local(asid, va),
                FlushScope::EveryCpu => tlb::flush_leaf(asid, va),
            }
            crate::sync::preempt::preempt_enable();
        }
        #[cfg(not(target_os = "none"))]
        let _ = (asid, va, ran_on);
    }
    fn flush_asid(&self, asid: u16, ran_on: &CpuMask) {
        #[cfg(target_os = "none")]
        {
            use crate::arch::aarch64::tlb;
            crate::sync::preempt::preempt_disable();
            match flush_scope(ran_on, crate::percpu::this_cpu().id) {
                FlushScope::ThisCpu => tlb::flush_asid_local(asid),
                FlushScope::EveryCpu => tlb::flush_asid(asid),
            }
            crate::sync::preempt::preempt_enable();
        }
        #[cfg(not(target_os = "none"))]
        let _ = (asid, ran_on);
    }
}

/// A process's address space in the kernel.
pub type AddressSpace = AddressSpaceIn<KernelMm>;

/// The kernel's ASID allocator, sized on first use from the CPU's ASID width.
static ASIDS: spin::Once<super::asid::AsidAllocator> = spin::Once::new();

fn asids() -> &'static super::asid::AsidAllocator {
    ASIDS.call_once(|| {
        #[cfg(target_os = "none")]
        let bits = crate::arch::aarch64::tlb::asid_bits();
        #[cfg(not(target_os = "none"))]
        let bits = 8;
        super::asid::AsidAllocator::new(bits, crate::config::MAX_CPUS)
    })
}

fn asid_mask() -> u16 {
    ASIDS
        .get()
        .map_or(u16::MAX, |a| ((1u32 << a.bits()) - 1) as u16)
}

fn release_asid(id: u64) {
    if let Some(a) = ASIDS.get() {
        a.release(id);
    }
}

impl AddressSpace {
    pub fn new() -> SysResult<AddressSpace> {
        AddressSpaceIn::new_in(KernelMm)
    }

    /// A copy-on-write child (see `fork_in`).
    pub fn fork(&mut self) -> SysResult<AddressSpace> {
        self.fork_in(KernelMm)
    }

    /// Run this address space's user half on this CPU: TTBR0 = root | ASID << 48, with the
    /// local TLB flush a new ASID generation asks for. It takes `&self`: it uses only the root,
    /// fixed for the space's life, and the ASID word, which is atomic, so the scheduler's switch
    /// hook can call it with IRQs masked, without the lock around the space.
    #[cfg(target_os = "none")]
    pub fn activate(&self) {
        use crate::arch::aarch64::tlb;
        crate::sync::irq::push_off();
        let cpu = crate::percpu::this_cpu().id;
        // Before TTBR0 names the space here: from then on this CPU may cache its entries.
        self.ran_on.set(cpu, Ordering::Relaxed);
        let switch = asids().switch_to(cpu, &self.context);
        if switch.flush_local_tlb {
            tlb::flush_all_local();
        }
        tlb::set_ttbr0(self.root, switch.asid);
        crate::sync::irq::pop_off();
    }
}

/// ASIDs in use in the current generation, and roll-overs so far (for `mem`).
pub fn asid_stats() -> (usize, usize, u64) {
    let a = asids();
    (a.in_use(), a.count(), a.rollovers())
}

/// Leave user space on this CPU: TTBR0 -> the empty table with ASID 0 (kernel threads).
///
/// Like `activate`, only once the kernel runs from TTBR1 (the high half).
#[cfg(target_os = "none")]
pub fn deactivate_user() {
    // The same empty table boot gave every CPU (src/arch/aarch64/mmu.rs), with ASID 0, which
    // no address space gets.
    let table = crate::arch::aarch64::mmu::empty_table_address() as usize;
    crate::arch::aarch64::tlb::set_ttbr0(table, 0);
    if let Some(a) = ASIDS.get() {
        crate::sync::irq::push_off();
        a.deactivate(crate::percpu::this_cpu().id);
        crate::sync::irq::pop_off();
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
