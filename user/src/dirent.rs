//! The records getdents64 fills a buffer with (`struct linux_dirent64`): inode (u64), offset
//! (i64), record length (u16), type (u8), then the NUL-terminated name; records are 8-aligned.

pub const DT_DIR: u8 = 4;
pub const DT_REG: u8 = 8;

/// One directory entry borrowed from a getdents64 buffer.
pub struct Dirent<'a> {
    pub ino: u64,
    pub kind: u8,
    pub name: &'a [u8],
}

/// Walk the records in `buf[..len]`; stops (rather than reading past the end) at a record whose
/// length is impossible.
pub struct Dirents<'a> {
    buf: &'a [u8],
}

impl<'a> Dirents<'a> {
    pub fn new(buf: &'a [u8]) -> Dirents<'a> {
        Dirents { buf }
    }
}

impl<'a> Iterator for Dirents<'a> {
    type Item = Dirent<'a>;

    fn next(&mut self) -> Option<Dirent<'a>> {
        const HEADER: usize = 19;
        if self.buf.len() < HEADER {
            return None;
        }
        let reclen = u16::from_le_bytes([self.buf[16], self.buf[17]]) as usize;
        if reclen < HEADER || reclen > self.buf.len() {
            return None;
        }
        let ino = u64::from_le_bytes(self.buf[0..8].try_into().ok()?);
        let kind = self.buf[18];
        let name_area = &self.buf[HEADER..reclen];
        let name_len = name_area
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(name_area.len());
        let entry = Dirent {
            ino,
            kind,
            name: &name_area[..name_len],
        };
        self.buf = &self.buf[reclen..];
        Some(entry)
    }
}
