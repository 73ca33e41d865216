//! Reading and writing user memory from the kernel (chapter 19, "User mode and system calls":
//! "Touching user memory").
//!
//! A system call hands the kernel addresses the user chose. The kernel must never trust them:
//! an address may point into the kernel, at nothing, or at a region that ends halfway through
//! the buffer. Every copy goes through here, in two steps:
//!
//! 1. The range check, before any access: a range not entirely inside `[0, USER_TOP)`, or
//!    whose end overflows, is `EFAULT` at once. That alone keeps the kernel half out of reach.
//! 2. The copy itself, by an assembly routine (src/arch/aarch64/uaccess.rs) whose loads and
//!    stores are the *unprivileged* LDTR/STTR: the MMU checks them with EL0's permissions, and
//!    a fault in them does not kill the kernel: the exception table sends the fault to a fixup
//!    that returns how many bytes were left. Before taking the fixup, the fault handler asks the
//!    resolver the process layer installed (a demand-zero page, a copy-on-write break) whether
//!    the page can be made present; if so, the access is retried.
//!
//! On the host there is no MMU to ask, so a small stand-in (`fake_user`) plays user memory:
//! tests map byte buffers at user addresses, and any byte outside them "faults".

use alloc::string::String;
use alloc::vec::Vec;

use crate::errno::{Errno, SysResult};

/// The first address above user space: TTBR0 covers `[0, 2^39)` (39-bit virtual addresses).
pub const USER_TOP: usize = 1 << 39;

/// Page size used to split string reads, so a read never runs into a page it does not need.
const PAGE_SIZE: usize = 4096;
/// Bytes a string read copies at a time (on the stack).
const STRING_CHUNK: usize = 256;

/// The kind of access that faulted, as the page-fault handler needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Exec,
}

/// True if `[addr, addr + len)` lies entirely in user space (and does not wrap around).
pub fn is_user_range(addr: usize, len: usize) -> bool {
    addr.checked_add(len).is_some_and(|end| end <= USER_TOP)
}

/// Copy `dst.len()` bytes from user address `user_src`. `EFAULT` if the range leaves user
/// space or any byte of it cannot be read by the user; `dst` may then be partly written.
pub fn copy_from_user(dst: &mut [u8], user_src: usize) -> SysResult<()> {
    match copy_from_user_partial(dst, user_src)? {
        n if n == dst.len() => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// Copy `src` to user address `user_dst`. `EFAULT` if the range leaves user space or any
/// byte of it cannot be written by the user; the bytes before the fault are written.
pub fn copy_to_user(user_dst: usize, src: &[u8]) -> SysResult<()> {
    if !is_user_range(user_dst, src.len()) {
        return Err(Errno::EFAULT);
    }
    if src.is_empty() {
        return Ok(());
    }
    // SAFETY: `src` is a valid kernel slice; the destination is checked by the routine itself
    // with EL0's permissions (a fault ends the copy instead of the kernel).
    let left = unsafe { backend::copy_to_user(user_dst, src.as_ptr(), src.len()) };
    if left == 0 {
        Ok(())
    } else {
        Err(Errno::EFAULT)
    }
}

/// Copy as many bytes as the user can read from `user_src`, up to `dst.len()`: the count
/// copied (a short count means the next byte faulted). `EFAULT` at once, with nothing read,
/// if the range leaves user space.
pub fn copy_from_user_partial(dst: &mut [u8], user_src: usize) -> SysResult<usize> {
    if !is_user_range(user_src, dst.len()) {
        return Err(Errno::EFAULT);
    }
    if dst.is_empty() {
        return Ok(0);
    }
    // SAFETY: `dst` is a valid kernel slice; the source is checked by the routine itself.
    let left = unsafe { backend::copy_from_user(dst.as_mut_ptr(), user_src, dst.len()) };
    Ok(dst.len() - left)
}

/// Read a NUL-terminated string at `user_src`, of at most `max` bytes counting the NUL (as a
/// path of at most PATH_MAX bytes). `EFAULT` if a byte before the NUL cannot be read,
/// `ENAMETOOLONG` if there is no NUL among the first `max` bytes, `EINVAL` if the bytes are
/// not UTF-8.
///
/// It reads page by page, so a string that ends just before an unmapped page is found without
/// touching that page.
pub fn copy_string_from_user(user_src: usize, max: usize) -> SysResult<String> {
    let mut bytes = Vec::new();
    let mut addr = user_src;
    while bytes.len() < max {
        let to_page_end = PAGE_SIZE - addr % PAGE_SIZE;
        let chunk_len = to_page_end.min(max - bytes.len()).min(STRING_CHUNK);
        let mut buffer = [0u8; STRING_CHUNK];
        let chunk = &mut buffer[..chunk_len];
        let got = copy_from_user_partial(chunk, addr)?;
        if let Some(nul) = chunk[..got].iter().position(|&b| b == 0) {
            bytes.extend_from_slice(&chunk[..nul]);
            return String::from_utf8(bytes).map_err(|_| Errno::EINVAL);
        }
        if got < chunk_len {
            return Err(Errno::EFAULT);
        }
        bytes.extend_from_slice(chunk);
        addr += chunk_len;
    }
    Err(Errno::ENAMETOOLONG)
}

#[cfg(target_os = "none")]
mod backend {
    pub use crate::arch::aarch64::uaccess::{copy_from_user, copy_to_user};
}

#[cfg(not(target_os = "none"))]
mod backend {
    /// Host stand-in of the assembly routine: copy byte by byte until a byte is not in
    /// `fake_user`'s memory; returns the bytes not copied.
    ///
    /// # Safety
    /// `dst` is valid for `len` bytes.
    pub unsafe fn copy_from_user(dst: *mut u8, src: usize, len: usize) -> usize {
        for i in 0..len {
            match super::fake_user::read_byte(src + i) {
                // SAFETY: i < len, inside the caller's buffer.
                Some(b) => unsafe { *dst.add(i) = b },
                None => return len - i,
            }
        }
        0
    }

    /// # Safety
    /// `src` is valid for `len` bytes.
    pub unsafe fn copy_to_user(dst: usize, src: *const u8, len: usize) -> usize {
        for i in 0..len {
            // SAFETY: i < len, inside the caller's buffer.
            if !super::fake_user::write_byte(dst + i, unsafe { *src.add(i) }) {
                return len - i;
            }
        }
        0
    }
}

/// User memory for host tests: byte buffers mapped at user addresses, per test thread. A byte
/// outside every buffer (or in a read-only one, for a write) "faults".
#[cfg(not(target_os = "none"))]
pub mod fake_user {
    use std::cell::RefCell;
    use std::vec::Vec;

    struct Region {
        base: usize,
        bytes: Vec<u8>,
        writable: bool,
    }

    std::thread_local! {
        static REGIONS: RefCell<Vec<Region>> = const { RefCell::new(Vec::new()) };
    }

    /// Map `bytes` at user address `base` for this thread.
    pub fn map(base: usize, bytes: Vec<u8>, writable: bool) {
        REGIONS.with(|r| {
            r.borrow_mut().push(Region {
                base,
                bytes,
                writable,
            })
        });
    }

    /// Forget every region of this thread.
    pub fn clear() {
        REGIONS.with(|r| r.borrow_mut().clear());
    }

    /// What the region mapped at `base` holds now.
    pub fn contents(base: usize) -> Option<Vec<u8>> {
        REGIONS.with(|r| {
            r.borrow()
                .iter()
                .find(|g| g.base == base)
                .map(|g| g.bytes.clone())
        })
    }

    pub(super) fn read_byte(addr: usize) -> Option<u8> {
        REGIONS.with(|r| {
            r.borrow()
                .iter()
                .find(|g| (g.base..g.base + g.bytes.len()).contains(&addr))
                .map(|g| g.bytes[addr - g.base])
        })
    }

    pub(super) fn write_byte(addr: usize, value: u8) -> bool {
        REGIONS.with(|r| {
            let mut regions = r.borrow_mut();
            match regions
                .iter_mut()
                .find(|g| (g.base..g.base + g.bytes.len()).contains(&addr))
            {
                Some(g) if g.writable => {
                    g.bytes[addr - g.base] = value;
                    true
                }
                _ => false,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn fresh() {
        fake_user::clear();
    }

    #[test]
    fn ranges_leaving_user_space_or_wrapping_are_refused_before_any_access() {
        fresh();
        // Mapped, yet refused: the range check comes first.
        fake_user::map(USER_TOP - 4, vec![1; 4], true);
        let mut buf = [0u8; 8];
        assert_eq!(copy_from_user(&mut buf, USER_TOP - 4), Err(Errno::EFAULT));
        assert_eq!(buf, [0; 8], "nothing was read");
        assert_eq!(copy_from_user(&mut buf[..4], USER_TOP - 4), Ok(()));
        assert_eq!(
            copy_to_user(usize::MAX - 2, &[1, 2, 3, 4]),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            copy_from_user(&mut buf, 0xffff_ff80_0000_0000),
            Err(Errno::EFAULT)
        );
        assert!(is_user_range(USER_TOP, 0));
        assert!(!is_user_range(USER_TOP, 1));
        assert!(!is_user_range(usize::MAX, 2));
    }

    #[test]
    fn a_copy_running_off_a_region_faults_after_the_bytes_it_could_copy() {
        fresh();
        fake_user::map(0x40_0000, (0..16).collect(), true);
        let mut buf = [0xffu8; 20];
        assert_eq!(copy_from_user(&mut buf, 0x40_0000), Err(Errno::EFAULT));
        assert_eq!(copy_from_user_partial(&mut buf, 0x40_0004), Ok(12));
        assert_eq!(&buf[..12], &(4..16).collect::<Vec<u8>>()[..]);
        assert_eq!(copy_to_user(0x40_000c, &[9; 8]), Err(Errno::EFAULT));
        let now = fake_user::contents(0x40_0000).unwrap();
        assert_eq!(
            &now[12..],
            &[9; 4],
            "the bytes before the fault are written"
        );
    }

    #[test]
    fn read_only_user_memory_refuses_writes() {
        fresh();
        fake_user::map(0x1000, vec![7; 8], false);
        assert_eq!(copy_to_user(0x1000, &[1]), Err(Errno::EFAULT));
        let mut b = [0u8; 8];
        assert_eq!(copy_from_user(&mut b, 0x1000), Ok(()));
        assert_eq!(b, [7; 8]);
    }

    #[test]
    fn strings_end_at_their_nul_even_just_before_unmapped_memory() {
        fresh();
        // "hi\0" in the last three bytes of a page; the next page is not mapped.
        let mut page = vec![b'x'; PAGE_SIZE];
        page[PAGE_SIZE - 3..].copy_from_slice(b"hi\0");
        fake_user::map(0x10_0000, page, true);
        assert_eq!(
            copy_string_from_user(0x10_0000 + PAGE_SIZE - 3, 4096).as_deref(),
            Ok("hi")
        );
        // Without the NUL, the read runs into the unmapped page.
        assert_eq!(
            copy_string_from_user(0x10_0000 + PAGE_SIZE - 5, 2),
            Err(Errno::ENAMETOOLONG)
        );
        fake_user::map(0x20_0000, vec![b'a'; 10], true);
        assert_eq!(copy_string_from_user(0x20_0000, 100), Err(Errno::EFAULT));
        assert_eq!(
            copy_string_from_user(0x20_0000, 10),
            Err(Errno::ENAMETOOLONG)
        );
        assert_eq!(copy_string_from_user(0, 10), Err(Errno::EFAULT));
    }

    #[test]
    fn a_string_across_a_page_boundary_is_read_whole() {
        fresh();
        let mut two = vec![b'y'; 2 * PAGE_SIZE];
        two[PAGE_SIZE + 5] = 0;
        fake_user::map(0x30_0000, two, true);
        let s = copy_string_from_user(0x30_0000 + PAGE_SIZE - 7, 64).unwrap();
        assert_eq!(s.len(), 12);
        fake_user::map(0x50_0000, vec![0xff, 0xfe, 0], true);
        assert_eq!(copy_string_from_user(0x50_0000, 8), Err(Errno::EINVAL));
    }
}
