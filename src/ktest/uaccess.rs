//! In-kernel tests of the user copies and their exception table (chapter 19, "User mode and
//! system calls": "Touching user memory").
//!
//! A bad user pointer must come back as EFAULT and leave the kernel running: one into the kernel
//! half (refused by the range check, with no access at all), one at the kernel's own data (which
//! EL1 could read: only the unprivileged LDTR/STTR keep it out), a null pointer and an unmapped
//! low address (both fault inside the copy routine and resume at its fixup).

use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};

use super::KTest;
use crate::arch::aarch64::cpu;
use crate::arch::aarch64::uaccess::{FIXED_UP, exception_table};
use crate::ensure;
use crate::errno::Errno;
use crate::mm::uaccess::{USER_TOP, copy_from_user, copy_string_from_user, copy_to_user};
use crate::platform::Platform;

pub static TESTS: &[KTest] = &[
    KTest {
        name: "uaccess_fixup_table_lists_the_copy_routines",
        run: table_lists_the_copy_routines,
    },
    KTest {
        name: "uaccess_kernel_half_address_is_efault_without_an_access",
        run: kernel_half_is_refused_up_front,
    },
    KTest {
        name: "uaccess_kernel_data_is_efault_and_unchanged",
        run: kernel_data_is_out_of_reach,
    },
    KTest {
        name: "uaccess_null_pointer_is_efault",
        run: null_pointer_is_efault,
    },
    KTest {
        name: "uaccess_unmapped_low_address_is_efault",
        run: unmapped_low_address_is_efault,
    },
];

/// Kernel data a user pointer might aim at.
static KERNEL_SECRET: AtomicU64 = AtomicU64::new(0x5ec2_e75e_c2e7_5ec2);

/// An address below USER_TOP that nothing maps, for EL1 or EL0.
const UNMAPPED_LOW: usize = 0x7f_0000_0000;

fn table_lists_the_copy_routines(_: &Platform<'static>) -> Result<(), String> {
    let layout = crate::arch::aarch64::layout::kernel_layout();
    let text = layout.text.0..layout.text.1;
    let mut entries = 0;
    for (insn, fixup) in exception_table() {
        entries += 1;
        ensure!(
            text.contains(&insn) && text.contains(&fixup),
            "entry ({insn:#x}, {fixup:#x}) points outside the kernel text {:#x}..{:#x}",
            text.start,
            text.end
        );
        // SAFETY: `insn` lies in the mapped, readable kernel text (checked above), 4-aligned.
        let opcode = unsafe { core::ptr::read_volatile(insn as *const u32) };
        // LDTR/STTR (and their byte forms) are load/store "unprivileged": bits 29:27 = 0b111,
        // bit 24 = 0, bit 21 = 0, bits 11:10 = 0b10.
        ensure!(
            opcode & 0x3b20_0c00 == 0x3800_0800,
            "entry at {insn:#x} is not an unprivileged load or store (opcode {opcode:#010x})"
        );
    }
    ensure!(
        entries == 4,
        "expected 4 entries (word and byte, each way), found {entries}"
    );
    Ok(())
}

fn kernel_half_is_refused_up_front(_: &Platform<'static>) -> Result<(), String> {
    let fixed_before = FIXED_UP.load(Ordering::Relaxed);
    let mut buf = [0u8; 16];
    for addr in [0xffff_ff80_0000_0000usize, usize::MAX - 7, USER_TOP] {
        ensure!(
            copy_from_user(&mut buf, addr) == Err(Errno::EFAULT),
            "copy_from_user({addr:#x}) was not EFAULT"
        );
        ensure!(
            copy_to_user(addr, &buf) == Err(Errno::EFAULT),
            "copy_to_user({addr:#x}) was not EFAULT"
        );
    }
    // Straddling the top of user space, or wrapping around.
    ensure!(
        copy_from_user(&mut buf, USER_TOP - 8) == Err(Errno::EFAULT),
        "a range crossing USER_TOP was not EFAULT"
    );
    let fixed_after = FIXED_UP.load(Ordering::Relaxed);
    ensure!(
        fixed_after == fixed_before,
        "the range check should refuse these without touching memory, but {} copies faulted",
        fixed_after - fixed_before
    );
    Ok(())
}

fn kernel_data_is_out_of_reach(_: &Platform<'static>) -> Result<(), String> {
    let addr = KERNEL_SECRET.as_ptr() as usize;
    let before = KERNEL_SECRET.load(Ordering::Relaxed);
    let fixed_before = FIXED_UP.load(Ordering::Relaxed);
    let mut buf = [0u8; 8];
    ensure!(
        copy_from_user(&mut buf, addr) == Err(Errno::EFAULT),
        "reading kernel data at {addr:#x} through copy_from_user was not EFAULT"
    );
    ensure!(
        buf == [0; 8],
        "copy_from_user leaked kernel bytes {buf:02x?}"
    );
    ensure!(
        copy_to_user(addr, &[0xaa; 8]) == Err(Errno::EFAULT),
        "writing kernel data at {addr:#x} through copy_to_user was not EFAULT"
    );
    let after = KERNEL_SECRET.load(Ordering::Relaxed);
    ensure!(
        after == before,
        "copy_to_user changed kernel data: {before:#x} -> {after:#x}"
    );
    // Where the kernel lives in the low half, only LDTR/STTR's EL0 check stops these: each copy
    // faults on its first word, whose fixup retries byte by byte, and faults on the first byte
    // (2 fixups a copy). In the high half the range check refuses them first.
    if addr < USER_TOP {
        let faults = FIXED_UP.load(Ordering::Relaxed) - fixed_before;
        ensure!(
            faults == 4,
            "kernel data below USER_TOP ({addr:#x}): expected a word and a byte fault per copy (4 fixups), saw {faults}"
        );
    }
    Ok(())
}

fn null_pointer_is_efault(_: &Platform<'static>) -> Result<(), String> {
    let fixed_before = FIXED_UP.load(Ordering::Relaxed);
    let mut buf = [0x55u8; 24];
    ensure!(
        copy_from_user(&mut buf, 0) == Err(Errno::EFAULT),
        "copy_from_user(NULL) was not EFAULT"
    );
    ensure!(
        copy_to_user(0, &buf) == Err(Errno::EFAULT),
        "copy_to_user(NULL) was not EFAULT"
    );
    ensure!(
        copy_string_from_user(0, 64) == Err(Errno::EFAULT),
        "copy_string_from_user(NULL) was not EFAULT"
    );
    let faults = FIXED_UP.load(Ordering::Relaxed) - fixed_before;
    ensure!(
        faults >= 3,
        "a null pointer passes the range check, so the copies must fault and be fixed up: saw {faults} fixups"
    );
    Ok(())
}

fn unmapped_low_address_is_efault(_: &Platform<'static>) -> Result<(), String> {
    // The test means something only if EL1 could not read it either: nothing is mapped there.
    ensure!(
        cpu::translate(UNMAPPED_LOW, false) & 1 == 1,
        "{UNMAPPED_LOW:#x} is mapped: pick another address for this test"
    );
    let fixed_before = FIXED_UP.load(Ordering::Relaxed);
    let mut buf = [0u8; 13];
    ensure!(
        copy_from_user(&mut buf, UNMAPPED_LOW + 3) == Err(Errno::EFAULT),
        "copy_from_user of unmapped {:#x} was not EFAULT",
        UNMAPPED_LOW + 3
    );
    ensure!(
        copy_to_user(UNMAPPED_LOW, &buf) == Err(Errno::EFAULT),
        "copy_to_user of unmapped {UNMAPPED_LOW:#x} was not EFAULT"
    );
    let faults = FIXED_UP.load(Ordering::Relaxed) - fixed_before;
    ensure!(
        faults >= 2,
        "expected the copies to fault, saw {faults} fixups"
    );
    Ok(())
}

/// `demo=uaccess-nofixup`: the same bad user pointer twice. Through `copy_from_user` it is
/// EFAULT and the kernel goes on; through a plain load, which the exception table does not
/// list, it is a kernel data abort and the end of the session.
pub fn no_fixup_demo() {
    let user_pointer = 0usize; // what a buggy or hostile program passes to read(2)
    let mut buf = [0u8; 8];
    let checked = match copy_from_user(&mut buf, user_pointer) {
        Ok(()) => "Ok",
        Err(e) => e.name(),
    };
    log::info!(
        "demo uaccess-nofixup: copy_from_user({user_pointer:#x}) = {checked}; the kernel goes on"
    );
    log::info!("demo uaccess-nofixup: now the same copy with a plain load that has no fixup");
    // SAFETY: deliberately unsound: the load faults with no exception-table entry, and the
    // kernel's fatal report is the demo.
    let value = unsafe { core::ptr::read_volatile(user_pointer as *const u64) };
    log::error!("demo uaccess-nofixup: the load returned {value:#x}; page 0 is mapped!");
}
