//! The generic timer's EL1 virtual timer, one per CPU (the timer chapter).
//!
//! Each CPU has its own: a down-counter (TVAL) that fires its PPI when it reaches zero, or
//! more exactly when the counter passes the compare value (CVAL). It stays asserted until the
//! next deadline is programmed, so the handler's first job is to set the next one. quartet
//! uses the virtual timer, as Linux does: EL1 may always use it, and boot.rs zeroes CNTVOFF so
//! virtual and physical time agree.
//!
//! The same counter also drives the *event stream* (the spin-locks chapter, "Waiting quietly"):
//! each time a chosen bit of the counter rises, every WFE on the CPU wakes. quartet turns it on
//! at about 10 kHz on every CPU, so a WFE whose wake-up never comes (a missed event, a bug)
//! sleeps about 100 us rather than until the next interrupt. The arithmetic is plain and
//! host-tested; only the register accesses are target-only.

#[cfg(target_os = "none")]
use aarch64_cpu::registers::{
    CNTKCTL_EL1, CNTV_CTL_EL0, CNTV_CVAL_EL0, CNTVCT_EL0, ReadWriteable, Readable, Writeable,
};

/// How often the event stream wakes WFE: 10 kHz, Linux's choice. Far below the rate at which
/// waiters look anyway, far above the 100 Hz tick.
pub const EVENT_STREAM_HZ: u64 = 10_000;

/// The counter bit (CNTKCTL_EL1.EVNTI, 0 to 15) whose rising edge makes the event stream for a
/// counter of `counter_hz`. Bit n rises once every 2^(n+1) ticks, so this picks the power of
/// two nearest to `counter_hz / EVENT_STREAM_HZ` ticks.
pub const fn event_stream_bit(counter_hz: u64) -> u8 {
    let ideal = counter_hz / EVENT_STREAM_HZ;
    if ideal <= 2 {
        return 0; // as fast as the stream goes: every second tick
    }
    let below = 63 - ideal.leading_zeros(); // 2^below <= ideal < 2^(below + 1)
    let rounded = if ideal - (1 << below) > (2 << below) - ideal {
        below + 1
    } else {
        below
    };
    let bit = rounded - 1;
    if bit > 15 { 15 } else { bit as u8 }
}

/// Counter ticks between two events when the stream is driven by counter bit `bit`.
pub const fn event_stream_period(bit: u8) -> u64 {
    2 << bit
}

#[cfg(target_os = "none")]
/// Fire `ticks` counter ticks from now, and enable the timer's interrupt.
pub fn arm_in(ticks: u64) {
    CNTV_CVAL_EL0.set(CNTVCT_EL0.get().wrapping_add(ticks));
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    settle();
}

#[cfg(target_os = "none")]
/// Fire `ticks` after the previous deadline, not after now: a late handler does not make the
/// tick drift. If the next deadline is already past (a long stall), restart from now.
pub fn rearm_periodic(ticks: u64) {
    let next = CNTV_CVAL_EL0.get().wrapping_add(ticks);
    let now = CNTVCT_EL0.get();
    if next <= now {
        arm_in(ticks);
    } else {
        CNTV_CVAL_EL0.set(next);
        settle();
    }
}

/// Make a new compare value take effect before the handler goes on. A write to a system
/// register is only guaranteed to be seen by later instructions after a context
/// synchronisation event; without the ISB the timer may still be asserting its (level)
/// interrupt from the old deadline when the handler writes EOI, the GIC then finds it pending
/// again, and the CPU takes the same tick twice. QEMU applies the write at once, so only real
/// hardware can show the double tick.
#[cfg(target_os = "none")]
fn settle() {
    super::barrier::isb();
}

#[cfg(target_os = "none")]
/// Stop the timer (and its interrupt).
pub fn stop() {
    CNTV_CTL_EL0.modify(CNTV_CTL_EL0::ENABLE::CLEAR);
}

#[cfg(target_os = "none")]
/// True if the timer condition is met (the interrupt is, or would be, asserted).
pub fn pending() -> bool {
    CNTV_CTL_EL0.is_set(CNTV_CTL_EL0::ISTATUS)
}

/// Turn the event stream on for this CPU (every CPU calls this once, early): an event every
/// `event_stream_period(event_stream_bit(CNTFRQ))` ticks, on the rising edge of that bit of
/// the virtual counter.
#[cfg(target_os = "none")]
pub fn enable_event_stream() {
    let bit = event_stream_bit(super::cpu::counter_frequency());
    CNTKCTL_EL1.modify(
        CNTKCTL_EL1::EVNTIS::CntVct0_15
            + CNTKCTL_EL1::EVNTI.val(bit as u64)
            + CNTKCTL_EL1::EVNTDIR::ZeroToOne
            + CNTKCTL_EL1::EVNTEN::Enable
            // User programs may read the virtual counter and its frequency (CNTVCT_EL0,
            // CNTFRQ_EL0), as on Linux, so they can time themselves without a system call.
            + CNTKCTL_EL1::EL0VCTEN::SET,
    );
    super::barrier::isb();
}

/// This CPU's event-stream period in counter ticks, or None while the stream is off.
#[cfg(target_os = "none")]
pub fn event_stream_period_here() -> Option<u64> {
    CNTKCTL_EL1
        .is_set(CNTKCTL_EL1::EVNTEN)
        .then(|| event_stream_period(CNTKCTL_EL1.read(CNTKCTL_EL1::EVNTI) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period_us(counter_hz: u64) -> u64 {
        event_stream_period(event_stream_bit(counter_hz)) * 1_000_000 / counter_hz
    }

    #[test]
    fn the_event_stream_runs_near_10_khz_on_the_counters_we_meet() {
        // QEMU virt's 62.5 MHz: 6,250 ticks wanted, 8,192 is the nearest power of two.
        assert_eq!(event_stream_bit(62_500_000), 12);
        assert_eq!(period_us(62_500_000), 131);
        // The Pi 4's 54 MHz: 5,400 wanted, 4,096 nearest.
        assert_eq!(event_stream_bit(54_000_000), 11);
        assert_eq!(period_us(54_000_000), 75);
        // 19.2 MHz (many other boards): 1,920 wanted, 2,048 nearest.
        assert_eq!(event_stream_bit(19_200_000), 10);
        assert_eq!(period_us(19_200_000), 106);
    }

    #[test]
    fn the_trigger_bit_stays_in_its_four_bits() {
        // A 1 GHz counter (Armv8.6 and later) would want bit 16: the field stops at 15.
        assert_eq!(event_stream_bit(1_000_000_000), 15);
        assert_eq!(event_stream_bit(u64::MAX), 15);
        // Nonsense or tiny frequencies get the fastest stream, not an overflow.
        assert_eq!(event_stream_bit(0), 0);
        assert_eq!(event_stream_bit(30_000), 0);
        assert_eq!(event_stream_period(0), 2);
    }
}
