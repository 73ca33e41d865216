//! User processes: the family tree, signals, and (on the target) the processes themselves
//! (chapter 19, "User mode and system calls").

pub mod signal;
pub mod tree;
