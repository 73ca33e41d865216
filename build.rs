//! Link the kernel with linker.ld at the address its board loads it to.
//!
//! A loader that knows the arm64 Image header loads the kernel at RAM base + text_offset, and
//! the header's text_offset is KERNEL_TEXT_OFFSET below. The Raspberry Pi 4 firmware loads
//! kernel8.img at 0x8_0000 (RAM starts at 0). On QEMU virt (RAM at 0x4000_0000) quartet sits
//! 2 MiB into RAM: loaded as an ELF, it gets its device tree only if QEMU can put the tree (1
//! MiB) below the kernel, at the start of RAM. Host builds (unit tests) link normally.
fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "none" {
        return;
    }
    let (ram_base, text_offset): (u64, u64) =
        if std::env::var_os("CARGO_FEATURE_BOARD_RPI4").is_some() {
            (0, 0x8_0000)
        } else {
            (0x4000_0000, 0x20_0000)
        };
    let base = ram_base + text_offset;
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=--defsym=KERNEL_LOAD_ADDRESS={base:#x}");
    println!("cargo:rustc-link-arg-bins=--defsym=KERNEL_TEXT_OFFSET={text_offset:#x}");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=--no-relax");
}
