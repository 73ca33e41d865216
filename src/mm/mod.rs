//! Memory management: the identity map every CPU runs on, and the kernel heap.

pub mod heap;
pub mod paging;
