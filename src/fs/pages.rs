//! Where file contents live: page-sized chunks from a `PageSource` (chapter 22, "A file system
//! in memory").
//!
//! The ramfs does not care where a page comes from, only that it gets one zeroed page at a time
//! and gives each back exactly once. In the kernel the source is the page-frame allocator (a
//! physical address, reached through `crate::mm::phys_to_virt`); in host tests, and in the
//! kernel until it has a frame allocator, it is the heap. Keeping this seam narrow is what lets
//! every fs test run on the host.

use core::sync::atomic::{AtomicUsize, Ordering};

/// The size of one chunk of file contents.
pub const PAGE_SIZE: usize = 4096;

/// A page as its source names it: a physical address for page frames, a heap address for
/// `HeapPages`. Only the source that handed it out can turn it into bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page(pub usize);

/// A supply of zeroed, page-sized, page-aligned chunks of memory.
pub trait PageSource: Send + Sync {
    /// One zeroed page, or None when memory is exhausted.
    fn alloc_zeroed(&self) -> Option<Page>;
    /// Give `page` back. Called exactly once per page `alloc_zeroed` returned, after its last use.
    fn free(&self, page: Page);
    /// Where the kernel reads and writes the page's `PAGE_SIZE` bytes.
    fn bytes(&self, page: Page) -> *mut u8;
    /// Pages handed out and not yet freed (for the leak checks of the tests).
    fn outstanding(&self) -> usize;
}

/// Pages from the kernel heap (or the host's allocator in unit tests).
///
/// The frame allocator replaces it in the kernel: an adapter whose `alloc_zeroed` is
/// `mm::frames::alloc_zeroed_page`, `free` is `mm::frames::put_page` and `bytes` is
/// `mm::phys_to_virt`, passed to `fs::init` before the first file is created.
pub struct HeapPages {
    outstanding: AtomicUsize,
}

impl HeapPages {
    pub const fn new() -> Self {
        HeapPages {
            outstanding: AtomicUsize::new(0),
        }
    }

    fn layout() -> core::alloc::Layout {
        // A power of two, non-zero: this cannot fail.
        core::alloc::Layout::from_size_align(PAGE_SIZE, PAGE_SIZE).expect("page layout")
    }
}

impl Default for HeapPages {
    fn default() -> Self {
        Self::new()
    }
}

impl PageSource for HeapPages {
    fn alloc_zeroed(&self) -> Option<Page> {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc::alloc_zeroed(Self::layout()) };
        if ptr.is_null() {
            return None;
        }
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        Some(Page(ptr as usize))
    }

    fn free(&self, page: Page) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: `page` came from `alloc_zeroed` with this layout, and the ramfs frees each
        // page once, after its last use (the trait's contract).
        unsafe { alloc::alloc::dealloc(page.0 as *mut u8, Self::layout()) };
    }

    fn bytes(&self, page: Page) -> *mut u8 {
        page.0 as *mut u8
    }

    fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }
}

/// Pages from the page-frame allocator (src/mm/frames.rs), reached through the linear map:
/// what the kernel's file system stores file contents in.
pub struct FramePages {
    outstanding: AtomicUsize,
}

impl FramePages {
    pub const fn new() -> Self {
        FramePages {
            outstanding: AtomicUsize::new(0),
        }
    }
}

impl Default for FramePages {
    fn default() -> Self {
        Self::new()
    }
}

impl PageSource for FramePages {
    fn alloc_zeroed(&self) -> Option<Page> {
        let pa = crate::mm::frames::alloc_zeroed_page()?;
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        Some(Page(pa))
    }
    fn free(&self, page: Page) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
        crate::mm::frames::put_page(page.0);
    }
    fn bytes(&self, page: Page) -> *mut u8 {
        crate::mm::phys_to_virt(page.0) as *mut u8
    }
    fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }
}
