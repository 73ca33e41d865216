//! Building AArch64 translation tables for quartet's identity map (chapter 4, "Why the MMU must
//! be on before the first lock").
//!
//! 4 KiB granule, 39-bit addresses: a level-1 table of 1 GiB entries, level-2 tables of 2 MiB
//! entries, level-3 tables of 4 KiB pages. The builder uses the largest block that fits and
//! splits a block into a finer table when a later mapping needs finer control. It is plain
//! Rust over an array of tables, so the host tests it, and so the boot CPU can run it with the
//! MMU off (it only does aligned 64-bit stores, never atomics).

/// Entries in one translation table.
pub const ENTRIES: usize = 512;
/// Addresses the map can cover: 2^39 bytes (512 GiB).
pub const VA_BITS: u32 = 39;
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

    fn bits(self) -> u64 {
        let mut bits = ACCESS_FLAG | UXN;
        match self.kind {
            MemoryKind::Device => bits |= MAIR_DEVICE_NGNRE << ATTR_INDEX_SHIFT,
            MemoryKind::Normal => bits |= (MAIR_NORMAL_WB << ATTR_INDEX_SHIFT) | SH_INNER,
        }
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
    /// The range reaches beyond the 39-bit address space.
    AddressTooHigh(u64),
}

/// Builds an identity map into a caller-provided pool; `tables[0]` is the level-1 root.
pub struct Builder<'a> {
    tables: &'a mut [Table],
    used: usize,
}

impl<'a> Builder<'a> {
    /// Start a map in `tables`, clearing the root.
    pub fn new(tables: &'a mut [Table]) -> Self {
        assert!(!tables.is_empty(), "the table pool needs room for a root");
        for entry in tables[0].0.iter_mut() {
            *entry = 0;
        }
        Builder { tables, used: 1 }
    }

    /// Address of the root table, for TTBR0_EL1.
    pub fn root_address(&self) -> u64 {
        self.tables.as_ptr() as u64
    }

    /// Tables taken from the pool so far.
    pub fn tables_used(&self) -> usize {
        self.used
    }

    /// Identity-map [start, end) with `attrs`; the range is widened to whole pages.
    /// A later mapping of the same addresses replaces an earlier one.
    pub fn map(&mut self, start: u64, end: u64, attrs: Attributes) -> Result<(), MapError> {
        let mut addr = start & !(PAGE - 1);
        let end = (end + PAGE - 1) & !(PAGE - 1);
        if end > (1 << VA_BITS) {
            return Err(MapError::AddressTooHigh(end));
        }
        while addr < end {
            addr = self.map_one(addr, end, attrs)?;
        }
        Ok(())
    }

    /// Map the largest block starting at `addr` that fits below `end`; return where it ends.
    fn map_one(&mut self, addr: u64, end: u64, attrs: Attributes) -> Result<u64, MapError> {
        let mut table = 0;
        for (level, &shift) in LEVEL_SHIFT.iter().enumerate().skip(1) {
            let size = 1u64 << shift;
            let index = ((addr >> shift) & (ENTRIES as u64 - 1)) as usize;
            let fits = addr.is_multiple_of(size) && addr + size <= end;
            if level == 3 || fits {
                let kind_bits = if level == 3 {
                    VALID | TABLE_OR_PAGE
                } else {
                    VALID
                };
                self.tables[table].0[index] = addr | attrs.bits() | kind_bits;
                return Ok(addr + size);
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
        let child_address = self.tables[child].0.as_ptr() as u64;
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

    fn index_of(&self, table_address: u64) -> usize {
        let base = self.tables.as_ptr() as u64;
        ((table_address - base) / core::mem::size_of::<Table>() as u64) as usize
    }

    /// Walk the tables in software: the attributes `addr` is mapped with and the level of the
    /// entry that maps it, or None if it is unmapped.
    pub fn lookup(&self, addr: u64) -> Option<(Attributes, usize)> {
        let mut table = 0;
        for (level, &shift) in LEVEL_SHIFT.iter().enumerate().skip(1) {
            let index = ((addr >> shift) & (ENTRIES as u64 - 1)) as usize;
            let entry = self.tables[table].0[index];
            if entry & VALID == 0 {
                return None;
            }
            if level == 3 || entry & TABLE_OR_PAGE == 0 {
                return Some((Attributes::from_descriptor(entry), level));
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

    #[test]
    fn large_aligned_ranges_use_blocks() {
        let mut tables = pool(8);
        let mut b = Builder::new(&mut tables);
        b.map(0x4000_0000, 0x8000_0000, Attributes::READ_WRITE)
            .unwrap();
        assert_eq!(b.lookup(0x4000_1234), Some((Attributes::READ_WRITE, 1)));
        assert_eq!(
            b.tables_used(),
            1,
            "a whole aligned GiB needs no table below the root"
        );
        b.map(0x0900_0000, 0x0900_1000, Attributes::DEVICE).unwrap();
        assert_eq!(b.lookup(0x0900_0000), Some((Attributes::DEVICE, 3)));
        assert_eq!(b.lookup(0x0900_1000), None);
    }

    #[test]
    fn splitting_a_block_keeps_its_neighbours() {
        let mut tables = pool(8);
        let mut b = Builder::new(&mut tables);
        b.map(0x4000_0000, 0x6000_0000, Attributes::READ_WRITE)
            .unwrap();
        // Carve a read-only executable page and an unmapped-by-omission guard out of RAM.
        b.map(0x4008_0000, 0x4008_1000, Attributes::TEXT).unwrap();
        assert_eq!(b.lookup(0x4008_0000), Some((Attributes::TEXT, 3)));
        assert_eq!(b.lookup(0x4008_1000), Some((Attributes::READ_WRITE, 3)));
        assert_eq!(b.lookup(0x4007_f000), Some((Attributes::READ_WRITE, 3)));
        assert_eq!(b.lookup(0x4020_0000), Some((Attributes::READ_WRITE, 2)));
        assert_eq!(b.lookup(0x5fff_ffff), Some((Attributes::READ_WRITE, 2)));
        assert_eq!(b.lookup(0x6000_0000), None);
    }

    #[test]
    fn unaligned_ends_round_out_to_pages() {
        let mut tables = pool(8);
        let mut b = Builder::new(&mut tables);
        b.map(0x1001, 0x2001, Attributes::READ_ONLY).unwrap();
        assert!(b.lookup(0x1000).is_some());
        assert!(b.lookup(0x2000).is_some());
        assert!(b.lookup(0x3000).is_none());
        assert!(b.lookup(0x0).is_none());
    }

    #[test]
    fn pool_exhaustion_and_range_limits_are_errors() {
        let mut tables = pool(2);
        let mut b = Builder::new(&mut tables);
        assert_eq!(
            b.map(0x1000, 0x2000, Attributes::READ_ONLY),
            Err(MapError::OutOfTables)
        );
        let mut tables = pool(4);
        let mut b = Builder::new(&mut tables);
        assert_eq!(
            b.map(1 << 39, (1 << 39) + 0x1000, Attributes::DEVICE),
            Err(MapError::AddressTooHigh((1 << 39) + 0x1000))
        );
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
    }
}
