//! Link every user program with user.ld: text at 0x400000, read-only+executable and
//! read-write in separate 64 KiB-aligned PT_LOAD segments, so no page is both writable and
//! executable (chapter 23).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=user.ld");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-T{dir}/user.ld");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=0x10000");
    println!("cargo:rustc-link-arg-bins=-static");
    println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
}
