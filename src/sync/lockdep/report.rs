//! What the validator reports, and how each report reads (chapter 12, "The lock validator").
//!
//! A `Report` is plain data: the validator runs inside lock acquisition and cannot allocate.
//! Its `Display` prints one finding in the style of a kernel log, with the sites a reader needs
//! to find the code: both sides of an IRQ conflict, every edge of a cycle, where a lock taken
//! recursively was first taken, and who holds the lock a CPU is stuck on. Only recursion is
//! fatal (`is_fatal`): it is the one report the caller must not go on to spin after.

use core::fmt;

use super::class::ClassInfo;
use super::graph::Edge;
use super::held::Held;
use super::{MAX_CLASSES, MAX_HELD, MAX_REPORT_EDGES, Site};

/// One use of a class: where and on which CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub site: Site,
    pub cpu: usize,
}

/// What the validator found. `Display` gives a multi-line report in the style of a kernel log.
///
/// A cycle report carries its edges inline (about 0.7 KiB): the validator runs inside lock
/// acquisition and must not allocate, so there is no `Box` to put them in.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// The class was taken in hardirq context and also with IRQs enabled.
    InconsistentIrqUsage {
        class: ClassInfo,
        in_hardirq: Usage,
        with_irqs_on: Usage,
        /// The CPU whose acquisition completed the pair.
        cpu: usize,
    },
    /// This CPU is taking a lock it already holds: spinning would never end. Fatal.
    RecursiveLocking {
        first: Held,
        class: ClassInfo,
        lock: usize,
        site: Site,
        cpu: usize,
        in_hardirq: bool,
    },
    /// A new edge closed a cycle in the lock-order graph. `edges[0]` is the new edge; the rest
    /// walk the existing path back to its start. `len` edges are listed out of `total`.
    LockOrderCycle {
        cpu: usize,
        edges: [Option<Edge>; MAX_REPORT_EDGES],
        len: usize,
        total: usize,
    },
    /// The CPU holds `MAX_HELD` locks already; this one is not tracked.
    HeldStackOverflow {
        cpu: usize,
        class: ClassInfo,
        site: Site,
    },
    /// No room for another class; locks of this class go unvalidated.
    ClassTableFull {
        name: &'static str,
        defined_at: Site,
    },
    /// A lock released on a CPU that does not hold it.
    UnlockNotHeld {
        class: ClassInfo,
        lock: usize,
        cpu: usize,
    },
    /// A spin lasted far longer than any sane hold time.
    Stuck {
        class: ClassInfo,
        lock: usize,
        cpu: usize,
        waited_ms: u64,
        holder: Option<Held>,
    },
}

impl Report {
    /// True if the caller must not go on to spin: the lock can never become free.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Report::RecursiveLocking { .. })
    }
}

fn context_name(in_hardirq: bool) -> &'static str {
    if in_hardirq { " in hardirq" } else { "" }
}

fn opt_site(f: &mut fmt::Formatter<'_>, site: Option<Site>) -> fmt::Result {
    match site {
        Some(s) => write!(f, "{s}"),
        None => f.write_str("<site being recorded>"),
    }
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {}: cpu{} took {} at ",
            self.from, self.to, self.cpu, self.to
        )?;
        opt_site(f, self.taken_at)?;
        write!(f, " while holding {} (taken at ", self.from)?;
        opt_site(f, self.held_since)?;
        f.write_str(")")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::InconsistentIrqUsage {
                class,
                in_hardirq,
                with_irqs_on,
                cpu,
            } => {
                writeln!(
                    f,
                    "lockdep: WARNING: inconsistent lock state on cpu{cpu}: {class} is IRQ-safe and IRQ-unsafe"
                )?;
                writeln!(
                    f,
                    "  taken in hardirq context  on cpu{} at {}",
                    in_hardirq.cpu, in_hardirq.site
                )?;
                writeln!(
                    f,
                    "  taken with IRQs enabled   on cpu{} at {}",
                    with_irqs_on.cpu, with_irqs_on.site
                )?;
                write!(
                    f,
                    "  an interrupt arriving while a CPU holds it with IRQs on spins on it forever: \
                     take it with IRQs masked everywhere"
                )
            }
            Report::RecursiveLocking {
                first,
                class,
                lock,
                site,
                cpu,
                in_hardirq,
            } => {
                writeln!(
                    f,
                    "lockdep: BUG: recursive locking on cpu{cpu}: {class} ({lock:#x}) is already held by this CPU"
                )?;
                writeln!(
                    f,
                    "  held since {}{}",
                    first.site,
                    context_name(first.in_hardirq)
                )?;
                writeln!(f, "  taken again at {}{}", site, context_name(*in_hardirq))?;
                write!(
                    f,
                    "  this CPU would spin on itself forever: stopping instead"
                )
            }
            Report::LockOrderCycle {
                cpu,
                edges,
                len,
                total,
            } => {
                writeln!(
                    f,
                    "lockdep: WARNING: possible circular locking dependency (found on cpu{cpu})"
                )?;
                let mut listed = edges.iter().take(*len).flatten();
                if let Some(new) = listed.next() {
                    writeln!(f, "  new dependency      {new}")?;
                }
                for e in listed {
                    writeln!(f, "  existing dependency {e}")?;
                }
                if total > len {
                    writeln!(f, "  ... and {} more dependencies", total - len)?;
                }
                f.write_str("  cycle:")?;
                for e in edges.iter().take(*len).flatten() {
                    write!(f, " {} ->", e.from)?;
                }
                if total > len {
                    f.write_str(" ... ->")?;
                }
                if let Some(Some(first)) = edges.first() {
                    write!(f, " {}", first.from)?;
                }
                writeln!(f)?;
                write!(
                    f,
                    "  CPUs running these paths at the same time can each wait for the next forever"
                )
            }
            Report::HeldStackOverflow { cpu, class, site } => write!(
                f,
                "lockdep: WARNING: cpu{cpu} holds more than {MAX_HELD} locks; {class} taken at {site} is not tracked"
            ),
            Report::ClassTableFull { name, defined_at } => write!(
                f,
                "lockdep: WARNING: lock class table full ({MAX_CLASSES} classes): `{name}` defined at \
                 {defined_at} and any later classes are not validated; raise MAX_CLASSES"
            ),
            Report::UnlockNotHeld { class, lock, cpu } => write!(
                f,
                "lockdep: WARNING: cpu{cpu} releases {class} ({lock:#x}), which it does not hold"
            ),
            Report::Stuck {
                class,
                lock,
                cpu,
                waited_ms,
                holder,
            } => {
                write!(
                    f,
                    "lockdep: BUG: cpu{cpu} spinning for {waited_ms} ms on {class} ({lock:#x})"
                )?;
                match holder {
                    Some(h) => write!(
                        f,
                        "\n  held by cpu{} since {}{}",
                        h.cpu,
                        h.site,
                        context_name(h.in_hardirq)
                    ),
                    None => f.write_str("\n  no CPU's held-lock stack names it (taken untracked?)"),
                }
            }
        }
    }
}
