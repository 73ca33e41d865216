//! The kernel's memory layout as the linker placed it (chapter 1, "The code").
//!
//! linker.ld defines the symbols; this module turns them into addresses and owns the numbers the
//! linker script must agree with (stack size and slot count), so boot can check the two match.

/// One page: the unit of the MMU's finest mapping and of the stack guard gaps.
pub const PAGE_SIZE: usize = 4096;
/// Bytes of stack for each CPU. Must equal STACK_SIZE in linker.ld (the test below checks).
pub const STACK_SIZE: usize = 64 * 1024;
/// Bytes of each CPU's emergency stack (exception.rs says what runs there). EMERGENCY_SIZE in
/// linker.ld.
pub const EMERGENCY_STACK_SIZE: usize = 32 * 1024;
/// Stack slots: slot 0 is the boot stack, slot `i + 1` belongs to logical CPU `i`.
pub const STACK_SLOTS: usize = crate::config::MAX_CPUS + 1;
/// One slot: its guard page, its stack, then its emergency stack.
pub const STACK_SLOT_SIZE: usize = PAGE_SIZE + STACK_SIZE + EMERGENCY_STACK_SIZE;

/// Address ranges of the kernel image's parts, read from linker symbols.
#[derive(Clone, Copy, Debug)]
pub struct KernelLayout {
    pub kernel_start: usize,
    pub text: (usize, usize),
    pub rodata: (usize, usize),
    /// Data and BSS: read-write, never executable.
    pub data_bss: (usize, usize),
    pub stacks: (usize, usize),
    pub kernel_end: usize,
    /// End of the bytes the loader copies (the flat image): everything after is NOLOAD.
    pub image_end: usize,
}

impl KernelLayout {
    /// The [bottom, top) of stack slot `slot`. Its guard page lies just below `bottom`.
    pub fn stack_slot(&self, slot: usize) -> (usize, usize) {
        let bottom = self.stacks.0 + slot * STACK_SLOT_SIZE + PAGE_SIZE;
        (bottom, bottom + STACK_SIZE)
    }

    /// The [bottom, top) of the emergency stack in slot `slot`, just above its stack.
    pub fn emergency_slot(&self, slot: usize) -> (usize, usize) {
        let bottom = self.stack_slot(slot).1;
        (bottom, bottom + EMERGENCY_STACK_SIZE)
    }

    /// Where the slots that a machine with `cpus` CPUs uses end (the boot slot and one per CPU):
    /// the slots above belong to CPUs it does not have, and their memory is free RAM.
    pub fn stacks_in_use_end(&self, cpus: usize) -> usize {
        self.stacks.0 + (cpus + 1).min(STACK_SLOTS) * STACK_SLOT_SIZE
    }

    /// The guard page under stack slot `slot`.
    pub fn guard_page(&self, slot: usize) -> usize {
        self.stack_slot(slot).0 - PAGE_SIZE
    }
}

#[cfg(target_os = "none")]
pub fn kernel_layout() -> KernelLayout {
    unsafe extern "C" {
        static __kernel_start: u8;
        static __text_start: u8;
        static __text_end: u8;
        static __rodata_start: u8;
        static __rodata_end: u8;
        static __data_start: u8;
        static __bss_end: u8;
        static __stacks_start: u8;
        static __stacks_end: u8;
        static __kernel_end: u8;
        static __image_end: u8;
    }
    // Only the addresses of these linker symbols are used, never their contents.
    let a = |s: &u8| s as *const u8 as usize;
    // SAFETY: taking the address of an extern static reads nothing; the linker defines them all.
    unsafe {
        KernelLayout {
            kernel_start: a(&__kernel_start),
            text: (a(&__text_start), a(&__text_end)),
            rodata: (a(&__rodata_start), a(&__rodata_end)),
            data_bss: (a(&__data_start), a(&__bss_end)),
            stacks: (a(&__stacks_start), a(&__stacks_end)),
            kernel_end: a(&__kernel_end),
            image_end: a(&__image_end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value linker.ld assigns to `name`, evaluating simple `a * b` products.
    fn linker_constant(name: &str) -> usize {
        let script = include_str!("../../../linker.ld");
        let line = script
            .lines()
            .find(|l| l.trim_start().starts_with(name) && l.contains('='))
            .unwrap_or_else(|| panic!("linker.ld defines no {name}"));
        let value = line.split('=').nth(1).unwrap().trim().trim_end_matches(';');
        value
            .split('*')
            .map(|f| f.trim().parse::<usize>().unwrap())
            .product()
    }

    #[test]
    fn linker_script_agrees_with_the_rust_layout() {
        assert_eq!(linker_constant("PAGE_SIZE"), PAGE_SIZE);
        assert_eq!(linker_constant("STACK_SIZE"), STACK_SIZE);
        assert_eq!(linker_constant("EMERGENCY_SIZE"), EMERGENCY_STACK_SIZE);
        assert_eq!(linker_constant("STACK_SLOTS"), STACK_SLOTS);
    }
}
