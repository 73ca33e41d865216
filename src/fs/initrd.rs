//! The initial RAM file system (chapter 22, "A file system in memory").
//!
//! A boot loader can load a file next to the kernel and say where in the device tree:
//! `/chosen` gets `linux,initrd-start` and `linux,initrd-end` (one or two 32-bit cells each;
//! QEMU's `-initrd FILE` does exactly this). src/platform/dt.rs reads the two properties into
//! `Platform::initrd` and reserves the range, so neither the heap nor the page allocator hands
//! it out. At boot, `unpack_at_boot` reads the archive there through the linear map and
//! unpacks it into the kernel's ramfs. The range stays reserved afterwards: it is small, and
//! giving it back would need the page allocator to accept ranges after boot.

use crate::platform::Platform;

/// Where the initrd is: (start, end) physical addresses, if the device tree said.
pub fn initrd_range(platform: &Platform<'_>) -> Option<(usize, usize)> {
    platform
        .initrd
        .map(|r| (r.start as usize, r.end() as usize))
}

/// Unpack the initrd, if there is one, into the kernel's file system, and log what happened.
#[cfg(target_os = "none")]
pub fn unpack_at_boot(platform: &Platform<'_>) {
    let Some((start, end)) = initrd_range(platform) else {
        log::info!(target: "fs", "no initramfs (QEMU: -initrd FILE; make run INITRD=FILE)");
        return;
    };
    let len = end - start;
    // SAFETY: the device tree says the loader put `len` bytes at `start` in RAM; dt.rs reserved
    // the range, so nothing has been allocated there, and the linear map covers all RAM. Only
    // read, and only during this call.
    let archive =
        unsafe { core::slice::from_raw_parts(crate::mm::phys_to_virt(start) as *const u8, len) };
    match super::unpack_cpio(archive) {
        Ok(report) => {
            log::info!(target: "fs",
                "initramfs {start:#x}-{end:#x} ({len} bytes): {} files, {} directories unpacked",
                report.files,
                report.directories
            );
            if report.skipped > 0 {
                log::warn!(target: "fs",
                    "initramfs: {} entries of kinds the ramfs lacks were skipped", report.skipped
                );
            }
        }
        Err(e) => log::error!(target: "fs",
            "initramfs {start:#x}-{end:#x} ({len} bytes) refused: {e}"
        ),
    }
}
