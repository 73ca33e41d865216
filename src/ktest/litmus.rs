//! Litmus tests: two CPUs, two locations, and an outcome the memory model forbids only when the
//! right barriers are in place (the memory-ordering chapter).
//!
//! - **SB** (store buffering): CPU A `x = 1; r0 = y`, CPU B `y = 1; r1 = x`. Without a barrier,
//!   each store may still sit in its CPU's store buffer when the other CPU loads, so
//!   `r0 == 0 && r1 == 0` can happen. `DMB ISH` between store and load forbids it.
//! - **MP** (message passing): A `data = 1; flag = 1`, B `r0 = flag; r1 = data`. Seeing the flag
//!   but not the data (`r0 == 1 && r1 == 0`) is forbidden with `DMB ISHST`/`DMB ISHLD`, or with
//!   a store-release of the flag and a load-acquire of it.
//!
//! Every iteration uses fresh locations and starts both CPUs together. A compiler fence stands
//! between the accesses in the "no barrier" variants, so what is measured is the CPU, not the
//! compiler. Under QEMU on an x86 host, SB without a barrier shows reorderings and MP does not
//! (as measured on this project's machines, chapter 6); a real Cortex-A72 can show both.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering, compiler_fence};

use super::KTest;
use crate::arch::aarch64::barrier;
use crate::ensure;
use crate::platform::Platform;
use crate::smp;

pub static TESTS: &[KTest] = &[
    KTest {
        name: "litmus_sb_with_dmb_never_reorders",
        run: sb_with_barrier,
    },
    KTest {
        name: "litmus_mp_with_barriers_never_reorders",
        run: mp_with_barriers,
    },
    KTest {
        name: "litmus_mp_with_acquire_release_never_reorders",
        run: mp_with_acquire_release,
    },
    KTest {
        name: "litmus_unfenced_outcomes_are_reported",
        run: unfenced_report,
    },
];

/// Iterations per litmus run: bounded, so a run ends on a busy 2-core host.
pub const ITERATIONS: usize = 20_000;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    SbNone,
    SbDmb,
    MpNone,
    MpBarriers,
    MpAcquireRelease,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::SbNone => "SB, no barrier",
            Variant::SbDmb => "SB, dmb ish",
            Variant::MpNone => "MP, no barrier",
            Variant::MpBarriers => "MP, dmb ishst / dmb ishld",
            Variant::MpAcquireRelease => "MP, stlr / ldar",
        }
    }
}

/// Run `variant` on the first two online CPUs; returns how often the forbidden outcome appeared,
/// or None with fewer than two CPUs.
pub fn run(variant: Variant, iterations: usize) -> Option<usize> {
    let mut cpus = smp::online_cpus();
    let (a, b) = (cpus.next()?, cpus.next()?);
    let fresh = || {
        (0..iterations)
            .map(|_| AtomicU64::new(0))
            .collect::<Vec<_>>()
    };
    let (x, y, r0, r1) = (fresh(), fresh(), fresh(), fresh());
    let arrived = [AtomicU64::new(0), AtomicU64::new(0)];
    smp::on_each_cpu(&|id| {
        let role = if id == a {
            0
        } else if id == b {
            1
        } else {
            return;
        };
        for i in 0..iterations {
            // Both CPUs start iteration i together.
            arrived[role].store(i as u64 + 1, Ordering::Release);
            while arrived[1 - role].load(Ordering::Acquire) < i as u64 + 1 {
                crate::arch::cpu_relax();
            }
            let result = if role == 0 { &r0 } else { &r1 };
            let value = match (variant, role) {
                (Variant::SbNone | Variant::SbDmb, _) => {
                    let (mine, theirs) = if role == 0 {
                        (&x[i], &y[i])
                    } else {
                        (&y[i], &x[i])
                    };
                    mine.store(1, Ordering::Relaxed);
                    if variant == Variant::SbDmb {
                        barrier::smp_mb();
                    } else {
                        compiler_fence(Ordering::SeqCst);
                    }
                    theirs.load(Ordering::Relaxed)
                }
                // MP: x is the data, y the flag. A writes, B reads the flag then the data.
                (_, 0) => {
                    x[i].store(1, Ordering::Relaxed);
                    match variant {
                        Variant::MpBarriers => barrier::smp_wmb(),
                        _ => compiler_fence(Ordering::SeqCst),
                    }
                    if variant == Variant::MpAcquireRelease {
                        barrier::store_release(&y[i], 1);
                    } else {
                        y[i].store(1, Ordering::Relaxed);
                    }
                    0
                }
                (_, _) => {
                    let flag = if variant == Variant::MpAcquireRelease {
                        barrier::load_acquire(&y[i])
                    } else {
                        y[i].load(Ordering::Relaxed)
                    };
                    match variant {
                        Variant::MpBarriers => barrier::smp_rmb(),
                        _ => compiler_fence(Ordering::SeqCst),
                    }
                    let data = x[i].load(Ordering::Relaxed);
                    flag << 1 | data
                }
            };
            result[i].store(value, Ordering::Relaxed);
        }
    });
    let forbidden = (0..iterations)
        .filter(|&i| {
            let (v0, v1) = (r0[i].load(Ordering::Relaxed), r1[i].load(Ordering::Relaxed));
            match variant {
                Variant::SbNone | Variant::SbDmb => v0 == 0 && v1 == 0,
                _ => v1 == 0b10, // flag seen, data not
            }
        })
        .count();
    Some(forbidden)
}

fn report(variant: Variant, forbidden: usize) {
    log::info!(
        "{}: {ITERATIONS} runs, forbidden outcome seen {forbidden} times",
        variant.name()
    );
}

fn must_never_reorder(variants: &[Variant]) -> Result<(), String> {
    for &variant in variants {
        let Some(forbidden) = run(variant, ITERATIONS) else {
            log::info!("litmus needs two CPUs; skipped");
            return Ok(());
        };
        report(variant, forbidden);
        ensure!(
            forbidden == 0,
            "{}: forbidden outcome seen {forbidden} times",
            variant.name()
        );
    }
    Ok(())
}

fn sb_with_barrier(_: &Platform<'static>) -> Result<(), String> {
    must_never_reorder(&[Variant::SbDmb])
}

fn mp_with_barriers(_: &Platform<'static>) -> Result<(), String> {
    must_never_reorder(&[Variant::MpBarriers])
}

fn mp_with_acquire_release(_: &Platform<'static>) -> Result<(), String> {
    must_never_reorder(&[Variant::MpAcquireRelease])
}

/// The unfenced variants, reported and not asserted: whether reordering shows depends on the
/// machine. SB reorders on real Cortex-A72s and under QEMU's multi-threaded TCG on an x86 host
/// (its store buffer), but not when a busy host rarely runs both vCPUs at the same instant, and
/// it has never shown on QEMU's raspi4b here, for a reason not yet established (its vCPUs do
/// run on separate threads). MP shows on real hardware, not under QEMU on x86. Chapter 6
/// discusses the numbers.
fn unfenced_report(_: &Platform<'static>) -> Result<(), String> {
    for variant in [Variant::SbNone, Variant::MpNone] {
        if let Some(forbidden) = run(variant, ITERATIONS) {
            report(variant, forbidden);
        }
    }
    Ok(())
}
