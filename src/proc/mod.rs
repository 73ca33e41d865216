//! Processes at EL0 (chapters 19 and 23): the ELF loader's checks and the programs embedded in
//! the kernel image.

pub mod elf;
pub mod embedded;
