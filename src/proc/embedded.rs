//! The user programs built into the kernel image (chapter 23, "User programs and the
//! initramfs").
//!
//! build.rs builds the `user/` crate (and the C program) for EL0 and writes a table of
//! `include_bytes!` entries, one per program; this module hands it out. The ELF files are the same
//! bytes `qemu-aarch64` runs on a Linux host. Host builds (unit tests) embed nothing.

/// Every embedded program: its name (the binary's name in user/src/bin, or `hello-c`) and its
/// ELF file, sorted by name.
pub fn programs() -> &'static [(&'static str, &'static [u8])] {
    #[cfg(target_os = "none")]
    {
        include!(concat!(env!("OUT_DIR"), "/user_programs.rs"))
    }
    #[cfg(not(target_os = "none"))]
    {
        &[]
    }
}

/// The embedded program called `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    programs()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}
