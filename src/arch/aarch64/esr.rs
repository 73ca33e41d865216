//! Decoding the Exception Syndrome Register into words (chapter 1, "What goes wrong without it").
//!
//! Pure logic, so the host tests it: ESR_EL1[31:26] is the exception class (EC), [24:0] the
//! instruction-specific syndrome (ISS). For aborts, ISS[5:0] is the fault status code.

/// The exception class of an ESR value, in words.
pub fn exception_class_name(esr: u64) -> &'static str {
    match exception_class(esr) {
        0x00 => "Unknown reason (undefined instruction)",
        0x01 => "Trapped WFI/WFE",
        0x07 => "Trapped FP/SIMD access",
        0x0e => "Illegal execution state",
        0x15 => "SVC from AArch64",
        0x16 => "HVC from AArch64",
        0x17 => "SMC from AArch64",
        0x18 => "Trapped MSR/MRS/system instruction",
        0x20 => "Instruction Abort from a lower EL",
        0x21 => "Instruction Abort from the same EL",
        0x22 => "PC alignment fault",
        0x24 => "Data Abort from a lower EL",
        0x25 => "Data Abort from the same EL",
        0x26 => "SP alignment fault",
        0x2c => "Trapped floating-point exception",
        0x2f => "SError",
        0x30 | 0x31 => "Breakpoint",
        0x32 | 0x33 => "Software step",
        0x34 | 0x35 => "Watchpoint",
        0x3c => "BRK instruction",
        _ => "Reserved or unhandled exception class",
    }
}

/// ESR_EL1.EC.
pub fn exception_class(esr: u64) -> u64 {
    (esr >> 26) & 0x3f
}

/// True for instruction and data aborts, whose FAR holds the faulting address.
pub fn is_abort(esr: u64) -> bool {
    matches!(exception_class(esr), 0x20 | 0x21 | 0x24 | 0x25)
}

/// The fault status code of an abort, in words (ISS.DFSC/IFSC).
pub fn fault_status_name(esr: u64) -> &'static str {
    let fsc = esr & 0x3f;
    match fsc {
        0x00..=0x03 => "address size fault",
        0x04..=0x07 => "translation fault (address not mapped)",
        0x09..=0x0b => "access flag fault",
        0x0d..=0x0f => "permission fault",
        0x10 => "synchronous external abort",
        0x21 => "alignment fault",
        0x30 => "TLB conflict abort",
        _ => "other fault",
    }
}

/// The translation level a fault status code names (0..3), when it names one.
pub fn fault_level(esr: u64) -> Option<u64> {
    let fsc = esr & 0x3f;
    matches!(fsc, 0x00..=0x0f).then_some(fsc & 0x3)
}

/// For a data abort: true when the faulting access was a write (ISS.WnR).
pub fn abort_was_write(esr: u64) -> bool {
    exception_class(esr) & !1 == 0x24 && esr & (1 << 6) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_abort_translation_fault_on_write() {
        // EC=0x25, IL=1, WnR=1, DFSC=0b000111 (level 3 translation fault).
        let esr = (0x25 << 26) | (1 << 25) | (1 << 6) | 0x07;
        assert_eq!(exception_class_name(esr), "Data Abort from the same EL");
        assert!(is_abort(esr));
        assert!(abort_was_write(esr));
        assert_eq!(
            fault_status_name(esr),
            "translation fault (address not mapped)"
        );
        assert_eq!(fault_level(esr), Some(3));
    }

    #[test]
    fn permission_fault_read_is_not_a_write() {
        let esr = (0x25 << 26) | 0x0f;
        assert!(!abort_was_write(esr));
        assert_eq!(fault_status_name(esr), "permission fault");
    }

    #[test]
    fn non_aborts_are_named() {
        assert_eq!(
            exception_class_name(0),
            "Unknown reason (undefined instruction)"
        );
        assert_eq!(exception_class_name(0x3c << 26), "BRK instruction");
        assert!(!is_abort(0x3c << 26));
        assert!(!abort_was_write(0x3c << 26 | 1 << 6));
        assert_eq!(
            exception_class_name(0x3b << 26),
            "Reserved or unhandled exception class"
        );
    }
}
