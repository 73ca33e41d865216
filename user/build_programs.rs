//! Build the user programs (chapter 23): the `user/` crate for EL0 and the C program. Shared by
//! the kernel's build.rs (which embeds the results) and the host test tests/user_linux.rs (which
//! runs them under qemu-aarch64), so both test and ship the same files. The Makefile's `user`
//! target runs the same two commands by hand.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The C program's cross compiler (Debian package gcc-aarch64-linux-gnu; tools/setup installs it).
pub const C_COMPILER: &str = "aarch64-linux-gnu-gcc";

/// Static, freestanding, no C library, text at 0x400000 like the Rust programs, a 64 KiB
/// segment alignment, a non-executable stack. The Makefile's USER_CFLAGS are the same.
pub const C_FLAGS: &[&str] = &[
    "-static",
    "-nostdlib",
    "-ffreestanding",
    "-fno-pie",
    "-no-pie",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,-Ttext-segment=0x400000",
    "-Wl,-z,max-page-size=0x10000",
    "-Wl,-z,noexecstack",
    "-Wl,--build-id=none",
];

/// Where the built programs go, under the kernel's directory `root`.
pub fn target_dir(root: &Path) -> PathBuf {
    root.join("target/user")
}

/// Where the Rust program `name` is after [`build_rust`].
pub fn rust_program(root: &Path, name: &str) -> PathBuf {
    target_dir(root)
        .join("aarch64-unknown-none/release")
        .join(name)
}

/// Where the C program is after [`build_c`].
pub fn c_program(root: &Path) -> PathBuf {
    target_dir(root).join("c/hello-c")
}

/// The Rust programs' names: one per file in user/src/bin, sorted.
pub fn rust_program_names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("user/src/bin"))
        .map(|dir| {
            dir.filter_map(|entry| {
                let path = entry.ok()?.path();
                (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(String::from))?
            })
            .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `cargo build --release` of user/ into target/user, with a clean environment: a build script
/// or test runs this inside another cargo, whose rustflags, clippy wrapper, features and
/// profile settings must not leak into the nested build.
pub fn build_rust(root: &Path) -> Result<(), String> {
    let user = root.join("user");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&user)
        .args(["build", "--release", "--target", "aarch64-unknown-none"])
        .arg("--manifest-path")
        .arg(user.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir(root));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let inherited_from_outer_cargo = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || key.starts_with("CLIPPY")
            || [
                "RUSTFLAGS",
                "TARGET",
                "HOST",
                "OUT_DIR",
                "PROFILE",
                "OPT_LEVEL",
                "DEBUG",
                "NUM_JOBS",
            ]
            .contains(&key.as_str());
        if inherited_from_outer_cargo {
            command.env_remove(&key);
        }
    }
    let status = command
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build of user/ failed ({status}); its output is above"
        ))
    }
}

/// Compile user/c/hello.c; Err says why not (most often: the cross compiler is not installed).
pub fn build_c(root: &Path) -> Result<PathBuf, String> {
    let output = c_program(root);
    std::fs::create_dir_all(output.parent().expect("c/hello-c has a parent"))
        .map_err(|e| e.to_string())?;
    let result = Command::new(C_COMPILER)
        .args(C_FLAGS)
        .arg("-o")
        .arg(&output)
        .arg(root.join("user/c/hello.c"))
        .status();
    match result {
        Ok(s) if s.success() => Ok(output),
        Ok(s) => Err(format!("{C_COMPILER} failed ({s})")),
        Err(e) => Err(format!(
            "{C_COMPILER} not found ({e}); tools/setup installs it"
        )),
    }
}
