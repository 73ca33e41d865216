//! Building AArch64 translation tables for quartet's kernel map (chapter 4, "Why the MMU must
//! be on before the first lock").
//!
//! 4 KiB granule, 39-bit addresses in each half: a level-1 table of 1 GiB entries, level-2
//! tables of 2 MiB entries, level-3 tables of 4 KiB pages. A table tree serves one half of the
//! address space: the kernel's (TTBR1, virtual addresses from `KERNEL_VA_BASE` up) or a
//! process's (TTBR0, from 0 up to 2^39). The builder uses the largest block that fits and
//! splits a block into a finer table when a later mapping needs finer control. It is plain
//! Rust over an array of tables, so the host tests it. Descriptors hold physical addresses:
//! the builder reaches its tables through the linear map and stores `virt_to_phys` of them.

/// Entries in one translation table.
pub const ENTRIES: usize = 512;
/// Addresses each half of the address space covers: 2^39 bytes (512 GiB).
pub const VA_BITS: u32 = 39;
/// The lowest address of the kernel's half (TTBR1 with T1SZ = 64 - VA_BITS): the top 2^39 bytes.
pub const KERNEL_VA_BASE: u64 = !((1u64 << VA_BITS) - 1);
/// The top of the user half (TTBR0): addresses below it are translated by the process's table.
pub const USER_VA_END: u64 = 1 << VA_BITS;
const PAGE: u64 = 4096;
const LEVEL_SHIFT: [u32; 4] = [39, 30, 21, 12];

/// MAIR_EL1 attribute indices quartet uses.
pub const MAIR_DEVICE_NGNRE: u64 = 0;
pub const MAIR_NORMAL_WB: u64 = 1;
/// MAIR_EL1 value: index 0 Device-nGnRE (0x04), index 1 Normal write-back read/write-allocate.
pub const MAIR_VALUE: u64 = 0x04 | (0xff << 8);

pub const VALID: u64 = 1 << 0;
pub const TABLE_OR_PAGE: u64 = 1 << 1;
pub const ATTR_INDEX_SHIFT: u64 = 2;
pub const AP_READ_ONLY: u64 = 1 << 7;
pub const SH_INNER: u64 = 0b11 << 8;
pub const ACCESS_FLAG: u64 = 1 << 10;
pub const PXN: u64 = 1 << 53;
pub const UXN: u64 = 1 << 54;
pub const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;
/// The attribute bits a block passes on to the pages it is split into.
const ATTRIBUTE_MASK: u64 = !ADDRESS_MASK & !0b11;

/// What kind of memory a range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Device-nGnRE: no speculation, no merging; for MMIO registers.
    Device,
    /// Normal write-back cacheable, inner shareable: RAM, where exclusives work.
    Normal,
}

/// The attributes of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub kind: MemoryKind,
    pub writable: bool,
    pub executable: bool,
}

impl Attributes {
    pub const TEXT: Attributes = Attributes {
        kind: MemoryKind::Normal,
        writable: false,
        executable: true,
    };
    pub const READ_ONLY: Attributes = Attributes {
        kind: MemoryKind::Normal,
        writable: false,
        executable: false,
    };
    pub const READ_WRITE: Attributes = Attributes {
        kind: MemoryKind::Normal,
        writable: true,
        executable: false,
    };
    pub const DEVICE: Attributes = Attributes {
        kind: MemoryKind::Device,
        writable: true,
        executable: false,
    };

    /// Memory the boot code maps before the kernel's real map exists (boot.rs): the image in
    /// 2 MiB blocks, code and data alike. Writable and executable at once, which is allowed
    /// only because the early SCTLR leaves WXN off until the real map is in place.
    pub const EARLY_IMAGE: Attributes = Attributes {
        kind: MemoryKind::Normal,
        writable: true,
        executable: true,
    };

    /// The attribute bits of a block or page descriptor with these attributes (address and
    /// the two type bits left out).
    pub const fn bits(self) -> u64 {
        let mut bits = ACCESS_FLAG | UXN;
        bits |= match self.kind {
            MemoryKind::Device => MAIR_DEVICE_NGNRE << ATTR_INDEX_SHIFT,
            MemoryKind::Normal => (MAIR_NORMAL_WB << ATTR_INDEX_SHIFT) | SH_INNER,
        };
        if !self.writable {
            bits |= AP_READ_ONLY;
        }
        if !self.executable {
            bits |= PXN;
        }
        bits
    }

    /// Decode the attributes of a block or page descriptor.
    pub fn from_descriptor(d: u64) -> Attributes {
        let kind = if (d >> ATTR_INDEX_SHIFT) & 0b111 == MAIR_DEVICE_NGNRE {
            MemoryKind::Device
        } else {
            MemoryKind::Normal
        };
        Attributes {
            kind,
            writable: d & AP_READ_ONLY == 0,
            executable: d & PXN == 0,
        }
    }
}

/// One 4 KiB translation table.
#[repr(C, align(4096))]
#[derive(Clone)]
pub struct Table(pub [u64; ENTRIES]);

impl Table {
    pub const EMPTY: Table = Table([0; ENTRIES]);
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The table pool is exhausted.
    OutOfTables,
    /// The virtual range lies outside the half of the address space this tree serves.
    OutsideHalf(u64),
    /// The physical range reaches beyond what a descriptor can hold.
    AddressTooHigh(u64),
}

/// Which half of the address space a table tree translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    /// TTBR1: the kernel, at `KERNEL_VA_BASE` and above.
    Kernel,
    /// TTBR0: a process, below `USER_VA_END`.
    User,
}

impl Half {
    /// The lowest virtual address of the half.
    pub const fn base(self) -> u64 {
        match self {
            Half::Kernel => KERNEL_VA_BASE,
            Half::User => 0,
        }
    }
}

/// Builds a map into a caller-provided pool; `tables[0]` is the level-1 root.
pub struct Builder<'a> {
    tables: &'a mut [Table],
    used: usize,
    half: Half,
}

impl<'a> Builder<'a> {
    /// Start a map of `half` in `tables`, clearing the root.
    pub fn new(tables: &'a mut [Table], half: Half) -> Self {
        assert!(!tables.is_empty(), "the table pool needs room for a root");
        for entry in tables[0].0.iter_mut() {
            *entry = 0;
        }
        Builder {
            tables,
            used: 1,
            half,
        }
    }

    /// Physical address of the root table, for TTBR1_EL1 (or TTBR0_EL1).
    pub fn root_address(&self) -> u64 {
        crate::mm::virt_to_phys(self.tables.as_ptr() as usize) as u64
    }

    /// Tables taken from the pool so far.
    pub fn tables_used(&self) -> usize {
        self.used
    }

    /// Map `len` bytes of virtual addresses from `virt` to physical addresses from `phys` with
    /// `attrs`; the range is widened to whole pages. A later mapping of the same virtual
    /// addresses replaces an earlier one.
    pub fn map(
        &mut self,
        virt: u64,
        phys: u64,
        len: u64,
        attrs: Attributes,
    ) -> Result<(), MapError> {
        let misalignment = virt & (PAGE - 1);
        if misalignment != phys & (PAGE - 1) {
            // Unreachable for the linear map; a caller bug otherwise.
            return Err(MapError::OutsideHalf(virt));
        }
        let mut va = virt - misalignment;
        let mut pa = phys - misalignment;
        let base = self.half.base();
        let va_end = match virt.checked_add(len).and_then(|e| e.checked_add(PAGE - 1)) {
            Some(end) => end & !(PAGE - 1),
            None => return Err(MapError::OutsideHalf(virt)),
        };
        if va < base {
            return Err(MapError::OutsideHalf(va));
        }
        if va_end - base > (1 << VA_BITS) {
            // Report the first address outside the half.
            return Err(MapError::OutsideHalf(va.max(base + (1 << VA_BITS))));
        }
        if pa + (va_end - va) > ADDRESS_MASK + PAGE {
            return Err(MapError::AddressTooHigh(pa + (va_end - va)));
        }
        while va < va_end {
            let size = self.map_one(va, pa, va_end, attrs)?;
            va += size;
            pa += size;
        }
        Ok(())
    }

    /// Map the largest block at `va` (to `pa`) that fits below `va_end`; return its size.
    fn map_one(
        &mut self,
        va: u64,
        pa: u64,
        va_end: u64,
        attrs: Attributes,
    ) -> Result<u64, MapError> {
        let mut table = 0;
        for (level, &shift) in LEVEL_SHIFT.iter().enumerate().skip(1) {
            let size = 1u64 << shift;
            let index = ((va >> shift) & (ENTRIES as u64 - 1)) as usize;
            let fits = va.is_multiple_of(size)
                && pa.is_multiple_of(size)
                && va_end.wrapping_sub(va) >= size;
            if level == 3 || fits {
                let kind_bits = if level == 3 {
                    VALID | TABLE_OR_PAGE
                } else {
                    VALID
                };
                self.tables[table].0[index] = pa | attrs.bits() | kind_bits;
                return Ok(size);
            }
            table = self.descend(table, index, level)?;
        }
        unreachable!("level 3 always maps a page")
    }

    /// The table under entry `index` of `table` (at `level`), creating or splitting as needed.
    fn descend(&mut self, table: usize, index: usize, level: usize) -> Result<usize, MapError> {
        let entry = self.tables[table].0[index];
        if entry & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE {
            return Ok(self.index_of(entry & ADDRESS_MASK));
        }
        let child = self.allocate()?;
        if entry & VALID != 0 {
            // Split a block: the child inherits its attributes at the next level's granularity.
            let child_size = 1u64 << LEVEL_SHIFT[level + 1];
            let kind_bits = if level + 1 == 3 {
                VALID | TABLE_OR_PAGE
            } else {
                VALID
            };
            let base = entry & ADDRESS_MASK;
            for (i, e) in self.tables[child].0.iter_mut().enumerate() {
                *e = (base + i as u64 * child_size) | (entry & ATTRIBUTE_MASK) | kind_bits;
            }
        }
        let child_address = crate::mm::virt_to_phys(self.tables[child].0.as_ptr() as usize) as u64;
        self.tables[table].0[index] = child_address | VALID | TABLE_OR_PAGE;
        Ok(child)
    }

    fn allocate(&mut self) -> Result<usize, MapError> {
        if self.used == self.tables.len() {
            return Err(MapError::OutOfTables);
        }
        let index = self.used;
        self.used += 1;
        for entry in self.tables[index].0.iter_mut() {
            *entry = 0;
        }
        Ok(index)
    }

    /// The pool index of the table at physical address `table_address`.
    fn index_of(&self, table_address: u64) -> usize {
        let base = crate::mm::virt_to_phys(self.tables.as_ptr() as usize) as u64;
        ((table_address - base) / core::mem::size_of::<Table>() as u64) as usize
    }

    /// Walk the tables in software: the attributes virtual address `addr` is mapped with and
    /// the level of the entry that maps it, or None if it is unmapped (or outside this half).
    pub fn lookup(&self, addr: u64) -> Option<(Attributes, usize)> {
        self.translate(addr).map(|(attrs, level, _)| (attrs, level))
    }

    /// Walk the tables in software: attributes, level and physical address for `addr`.
    pub fn translate(&self, addr: u64) -> Option<(Attributes, usize, u64)> {
        if addr.wrapping_sub(self.half.base()) >= (1 << VA_BITS) {
            return None;
        }
        let mut table = 0;
        for (level, &shift) in LEVEL_SHIFT.iter().enumerate().skip(1) {
            let index = ((addr >> shift) & (ENTRIES as u64 - 1)) as usize;
            let entry = self.tables[table].0[index];
            if entry & VALID == 0 {
                return None;
            }
            if level == 3 || entry & TABLE_OR_PAGE == 0 {
                let offset = addr & ((1u64 << shift) - 1);
                let pa = (entry & ADDRESS_MASK & !((1u64 << shift) - 1)) | offset;
                return Some((Attributes::from_descriptor(entry), level, pa));
            }
            table = self.index_of(entry & ADDRESS_MASK);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Vec<Table> {
        vec![Table::EMPTY; n]
    }

    /// Identity-map [start, end) in a user-half tree, as the early tests of this builder did.
    fn map_identity(b: &mut Builder<'_>, start: u64, end: u64, attrs: Attributes) {
        b.map(start, start, end - start, attrs).unwrap();
    }

    #[test]
    fn large_aligned_ranges_use_blocks() {
        let mut tables = pool(8);
        let mut b = Builder::new(&mut tables, Half::User);
        map_identity(&mut b, 0x4000_0000, 0x8000_0000, Attributes::READ_WRITE);
        assert_eq!(b.lookup(0x4000_1234), Some((Attributes::READ_WRITE, 1)));
        assert_eq!(
            b.tables_used(),
            1,
            "a whole aligned GiB needs no table below the root"
        );
        map_identity(&mut b, 0x0900_0000, 0x0900_1000, Attributes::DEVICE);
        assert_eq!(b.lookup(0x0900_0000), Some((Attributes::DEVICE, 3)));
        assert_eq!(b.lookup(0x0900_1000), None);
    }

    #[test]
    fn splitting_a_block_keeps_its_neighbours() {
        let mut tables = pool(8);
        let mut b = Builder::new(&mut tables, Half::User);
        map_identity(&mut b, 0x4000_0000, 0x6000_0000, Attributes::READ_WRITE);
        // Carve a read-only executable page and an unmapped-by-omission guard out of RAM.
        map_identity(&mut b, 0x4008_0000, 0x4008_1000, Attributes::TEXT);
        assert_eq!(b.lookup(0x4008_0000), Some((Attributes::TEXT, 3)));
        assert_eq!(b.lookup(0x4008_1000), Some((Attributes::READ_WRITE, 3)));
        assert_eq!(b.lookup(0x4007_f000), Some((Attributes::READ_WRITE, 3)));
        assert_eq!(b.lookup(0x4020_0000), Some((Attributes::READ_WRITE, 2)));
        assert_eq!(b.lookup(0x5fff_ffff), Some((Attributes::READ_WRITE, 2)));
        assert_eq!(b.lookup(0x6000_0000), None);
        assert_eq!(
            b.translate(0x4008_1234).map(|t| t.2),
            Some(0x4008_1234),
            "a split block keeps pointing at the same physical memory"
        );
    }

    #[test]
    fn unaligned_ends_round_out_to_pages() {
        let mut tables = pool(8);
        let mut b = Builder::new(&mut tables, Half::User);
        b.map(0x1001, 0x1001, 0x1000, Attributes::READ_ONLY)
            .unwrap();
        assert!(b.lookup(0x1000).is_some());
        assert!(b.lookup(0x2000).is_some());
        assert!(b.lookup(0x3000).is_none());
        assert!(b.lookup(0x0).is_none());
    }

    #[test]
    fn the_kernel_half_maps_high_addresses_to_low_physical_memory() {
        let mut tables = pool(8);
        let mut b = Builder::new(&mut tables, Half::Kernel);
        let va = KERNEL_VA_BASE + 0x4000_0000;
        b.map(va, 0x4000_0000, 0x40_0000, Attributes::READ_WRITE)
            .unwrap();
        assert_eq!(
            b.translate(va + 0x20_1234),
            Some((Attributes::READ_WRITE, 2, 0x4020_1234))
        );
        assert_eq!(
            b.lookup(0x4000_0000),
            None,
            "a low address is not in this half"
        );
        // A block needs the virtual and the physical address aligned to its size.
        b.map(
            va + 0x80_0000,
            0x4090_0000,
            0x20_0000,
            Attributes::READ_ONLY,
        )
        .unwrap();
        assert_eq!(
            b.translate(va + 0x80_0000),
            Some((Attributes::READ_ONLY, 3, 0x4090_0000))
        );
    }

    #[test]
    fn each_half_refuses_the_other_halfs_addresses() {
        let mut tables = pool(4);
        let mut b = Builder::new(&mut tables, Half::Kernel);
        assert_eq!(
            b.map(0x40_0000, 0x4000_0000, 0x1000, Attributes::READ_ONLY),
            Err(MapError::OutsideHalf(0x40_0000))
        );
        let mut tables = pool(4);
        let mut b = Builder::new(&mut tables, Half::User);
        assert_eq!(
            b.map(KERNEL_VA_BASE, 0, 0x1000, Attributes::READ_ONLY),
            Err(MapError::OutsideHalf(KERNEL_VA_BASE))
        );
        assert_eq!(
            b.map(USER_VA_END - 0x1000, 0, 0x2000, Attributes::READ_ONLY),
            Err(MapError::OutsideHalf(USER_VA_END))
        );
    }

    #[test]
    fn pool_exhaustion_is_an_error() {
        let mut tables = pool(2);
        let mut b = Builder::new(&mut tables, Half::User);
        assert_eq!(
            b.map(0x1000, 0x1000, 0x1000, Attributes::READ_ONLY),
            Err(MapError::OutOfTables)
        );
    }

    #[test]
    fn descriptors_hold_physical_table_addresses() {
        let mut tables = pool(4);
        let table_phys = crate::mm::virt_to_phys(tables[1].0.as_ptr() as usize) as u64;
        let mut b = Builder::new(&mut tables, Half::Kernel);
        b.map(
            KERNEL_VA_BASE + 0x1000,
            0x1000,
            0x1000,
            Attributes::READ_ONLY,
        )
        .unwrap();
        assert_eq!(tables[0].0[0], table_phys | VALID | TABLE_OR_PAGE);
    }

    #[test]
    fn descriptor_bits_follow_the_architecture() {
        let d = Attributes::TEXT.bits();
        assert_eq!(d & PXN, 0, "text must be executable at EL1");
        assert_ne!(d & UXN, 0, "nothing is executable at EL0");
        assert_ne!(d & AP_READ_ONLY, 0);
        assert_eq!(d & SH_INNER, SH_INNER);
        let d = Attributes::DEVICE.bits();
        assert_eq!((d >> 2) & 7, MAIR_DEVICE_NGNRE);
        assert_ne!(d & PXN, 0, "device memory is never executable");
        assert_eq!(KERNEL_VA_BASE, 0xffff_ff80_0000_0000);
    }
}
