//! System calls: the numbers user programs use and the table that maps them to handlers
//! (chapter 19, "User mode and system calls").

pub mod numbers;

#[cfg(target_os = "none")]
pub mod table;
#[cfg(target_os = "none")]
pub use table::dispatch;
