//! The shell's `lockstat`: the lock statistics table, most contended classes first (chapter 9,
//! "Lock statistics"); `lockstat reset` starts a new measurement.

use super::command::{BadUsage, Outcome, print};
use super::commands::Shell;
use super::line::Terminal;
use crate::sync::lockstat;

/// Rows shown: the classes that matter are the first few.
const TOP: usize = 15;

/// A duration in the unit that keeps it short: `850ns`, `12.3us`, `4.56ms`, `1.20s`.
struct Short(u64);

impl core::fmt::Display for Short {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let ns = self.0;
        let text = if ns < 1_000 {
            alloc::format!("{ns}ns")
        } else if ns < 1_000_000 {
            alloc::format!("{:.1}us", ns as f64 / 1e3)
        } else if ns < 1_000_000_000 {
            alloc::format!("{:.2}ms", ns as f64 / 1e6)
        } else {
            alloc::format!("{:.2}s", ns as f64 / 1e9)
        };
        f.pad(&text)
    }
}

pub fn lockstat(sh: &mut Shell, args: &[&str]) -> Outcome {
    if !lockstat::ENABLED {
        sh.write("lock statistics are not built into this kernel (cargo feature `lockstat`)\n");
        return Ok(());
    }
    match args {
        [] => {}
        ["reset"] => {
            lockstat::reset();
            sh.write("lock statistics reset\n");
            return Ok(());
        }
        _ => return Err(BadUsage),
    }
    let mut stats = lockstat::snapshot();
    lockstat::sort_by_contention(&mut stats);
    print(
        sh,
        format_args!(
            "{} classes taken since boot or `lockstat reset`; the {} most contended:\n",
            stats.len(),
            TOP.min(stats.len())
        ),
    );
    sh.write(
        "class                      acquired contended  wait-total  wait-max  hold-total  hold-max  bounces\n",
    );
    for s in stats.iter().take(TOP) {
        let mut label = s.label();
        if label.len() > 26 {
            // Keep the end: for an unnamed class that is the file and line.
            let mut from = label.len() - 25;
            while !label.is_char_boundary(from) {
                from += 1;
            }
            label = alloc::format!("~{}", &label[from..]);
        }
        print(
            sh,
            format_args!(
                "{label:<26} {:>9} {:>9} {:>11} {:>9} {:>11} {:>9} {:>8}\n",
                s.acquisitions,
                s.contentions,
                Short(s.wait_total_ns),
                Short(s.wait_max_ns),
                Short(s.hold_total_ns),
                Short(s.hold_max_ns),
                s.bounces
            ),
        );
    }
    Ok(())
}
