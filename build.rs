//! Link the kernel with linker.ld at the address its board loads it to, and build the user
//! programs it embeds.
//!
//! A loader that knows the arm64 Image header loads the kernel at RAM base + text_offset, and
//! the header's text_offset is KERNEL_TEXT_OFFSET below. The Raspberry Pi 4 firmware loads
//! kernel8.img at 0x8_0000 (RAM starts at 0). On QEMU virt (RAM at 0x4000_0000) quartet sits
//! 2 MiB into RAM: loaded as an ELF, it gets its device tree only if QEMU can put the tree (1
//! MiB) below the kernel, at the start of RAM. Host builds (unit tests) link normally.
//!
//! The user programs (user/, chapter 23) are a separate Cargo package for EL0: this script
//! builds it with a nested `cargo build` into target/user (its own target directory, so the two
//! builds never wait on each other's lock), compiles the C program when the cross compiler is
//! there, and writes the table src/proc/embedded.rs includes: one `include_bytes!` per program.
use std::path::{Path, PathBuf};

#[path = "user/build_programs.rs"]
mod build_programs;

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // `native_aarch64_sync`: the hand-written AArch64 atomics and waits (src/arch/aarch64) are
    // the ones in use: in the kernel, and in the host benchmark on an AArch64 Linux host, whose
    // user mode may run them too (never under loom, which supplies its own atomics).
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let loom = std::env::var_os("CARGO_CFG_LOOM").is_some();
    let host_bench = std::env::var_os("CARGO_FEATURE_HOST_BENCH").is_some();
    if target_os == "none" || (host_bench && arch == "aarch64" && !loom) {
        println!("cargo:rustc-cfg=native_aarch64_sync");
    }
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
    println!("cargo:rustc-link-arg-bin=quartet=--defsym=KERNEL_LOAD_ADDRESS={base:#x}");
    println!("cargo:rustc-link-arg-bin=quartet=--defsym=KERNEL_TEXT_OFFSET={text_offset:#x}");
    println!("cargo:rustc-link-arg-bin=quartet=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=--no-relax");
    // The Pi 4's chainloader (src/bin/chainloader.rs) has a layout of its own.
    if std::env::var_os("CARGO_FEATURE_BOARD_RPI4").is_some() {
        println!("cargo:rerun-if-changed=chainloader.ld");
        println!("cargo:rustc-link-arg-bin=chainloader=-T{dir}/chainloader.ld");
    }

    let root = PathBuf::from(dir);
    let programs = build_user_programs(&root);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut table = String::from("&[\n");
    for (name, path) in &programs {
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    table.push_str("]\n");
    std::fs::write(out.join("user_programs.rs"), table).expect("write the program table");
}

/// Build user/ and user/c/hello.c; return (name, ELF path) for each program, sorted by name.
fn build_user_programs(root: &Path) -> Vec<(String, PathBuf)> {
    println!("cargo:rerun-if-changed={}", root.join("user").display());
    if let Err(why) = build_programs::build_rust(root) {
        panic!("building the user programs failed: {why}");
    }
    let mut programs: Vec<(String, PathBuf)> = build_programs::rust_program_names(root)
        .into_iter()
        .map(|name| {
            let path = build_programs::rust_program(root, &name);
            (name, path)
        })
        .collect();
    match build_programs::build_c(root) {
        Ok(path) => programs.push(("hello-c".into(), path)),
        Err(why) => println!("cargo:warning=hello-c is left out of the kernel: {why}"),
    }
    programs.sort();
    programs
}
