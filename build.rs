//! Link the kernel with linker.ld at the address its board loads it to.
//!
//! QEMU virt loads an arm64 Image at RAM base (0x4000_0000) + text_offset; the Raspberry Pi 4
//! firmware loads kernel8.img at 0x8_0000. Host builds (unit tests) link normally.
fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "none" {
        return;
    }
    let base: u64 = if std::env::var_os("CARGO_FEATURE_BOARD_RPI4").is_some() {
        0x8_0000
    } else {
        0x4008_0000
    };
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=--defsym=KERNEL_LOAD_ADDRESS={base:#x}");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=--no-relax");
}
