//! The shell's commands and its read-eval loop, on the kernel (chapter 13, "The shell").
//!
//! `COMMANDS` is the whole command set: adding a command is adding one entry there. `cpus`
//! prints one row per CPU from `CPU_COLUMNS`, so a subsystem with something to say per CPU
//! (interrupt counts, timer ticks) adds a column there. Output is collected a line at a time and
//! written to the console in one piece, so a line from the shell and a log line from another CPU
//! never mix within a line.

use alloc::vec;
use core::fmt::{self, Write};
use core::sync::atomic::Ordering;

use super::command::{self, BadUsage, Command, Outcome, print};
use super::line::{Feed, LineEditor, Terminal};
use super::{LINE_MAX, PROMPT};
use crate::arch::aarch64::layout;
use crate::drivers::gic_affinity;
use crate::drivers::mailbox::BoardQuery;
use crate::platform::revision::MemorySize;
use crate::platform::{EnableMethod, Platform, PsciConduit, Region};
use crate::{HEAP, console, ktest, logger, mm, percpu, power};

/// How many log lines `log` shows when not told.
const LOG_LINES_DEFAULT: usize = 20;

/// The shell's state: what commands need, and the line being printed.
pub struct Shell {
    platform: &'static Platform<'static>,
    run_demo: fn(&str),
    out: [u8; 256],
    len: usize,
}

impl Shell {
    /// Write what has been collected so far to the console.
    pub(super) fn flush(&mut self) {
        let text = core::str::from_utf8(&self.out[..self.len]).unwrap_or("");
        if !text.is_empty() {
            console::write_line(text);
        }
        self.len = 0;
    }
}

impl Terminal for Shell {
    /// Collect text, and send it to the console at each line's end (or when the buffer fills),
    /// so that every console write is a whole line whenever possible.
    fn write(&mut self, text: &str) {
        for piece in text.split_inclusive('\n') {
            if self.len + piece.len() > self.out.len() {
                self.flush();
            }
            if piece.len() > self.out.len() {
                console::write_line(piece);
                continue;
            }
            self.out[self.len..self.len + piece.len()].copy_from_slice(piece.as_bytes());
            self.len += piece.len();
            if piece.ends_with('\n') {
                self.flush();
            }
        }
    }
}

/// Run the shell on this CPU, forever. `run_demo` runs one of the demos `kernel_main` has.
pub fn run(platform: &'static Platform<'static>, run_demo: fn(&str)) -> ! {
    log::info!(target: "shell",
        "type help for the commands; Backspace erases a character, Ctrl-U the line, Ctrl-R redraws it"
    );
    let mut shell = Shell {
        platform,
        run_demo,
        out: [0; 256],
        len: 0,
    };
    let mut editor: LineEditor<LINE_MAX> = LineEditor::new();
    loop {
        shell.write(PROMPT);
        shell.flush();
        loop {
            let byte = console::read_byte_blocking();
            match editor.feed(byte, &mut shell) {
                Feed::Editing => {}
                Feed::Redraw => {
                    shell.write(PROMPT);
                    shell.write(editor.line());
                }
                Feed::Cancelled => break,
                Feed::Done => {
                    command::execute(COMMANDS, &mut shell, editor.line());
                    editor.clear();
                    break;
                }
            }
            shell.flush();
        }
        shell.flush();
    }
}

/// Every command, in the order `help` lists them.
static COMMANDS: &[Command<Shell>] = &[
    Command {
        name: "help",
        args: "[command]",
        about: "list the commands, or show one command's usage",
        min_args: 0,
        max_args: 1,
        run: help,
    },
    Command {
        name: "cpus",
        args: "",
        about: "each CPU: state, MPIDR, how it was started, the EL it entered at",
        min_args: 0,
        max_args: 0,
        run: cpus,
    },
    Command {
        name: "irqs",
        args: "",
        about: "interrupts taken, per interrupt and per CPU (like /proc/interrupts)",
        min_args: 0,
        max_args: 0,
        run: irqs,
    },
    Command {
        name: "locks",
        args: "",
        about: "the lock validator: on or off, its reports, and every lock class it knows",
        min_args: 0,
        max_args: 0,
        run: locks,
    },
    Command {
        name: "lockstat",
        args: "[reset]",
        about: "lock statistics per class: contentions, wait and hold times, bounces (chapter 9)",
        min_args: 0,
        max_args: 1,
        run: super::lockstat::lockstat,
    },
    Command {
        name: "mem",
        args: "",
        about: "RAM and reserved regions, the kernel image, heap ranges and use",
        min_args: 0,
        max_args: 0,
        run: mem,
    },
    Command {
        name: "ps",
        args: "",
        about: "every task: PID, CPU, state, policy, switches, run time (chapter 15)",
        min_args: 0,
        max_args: 0,
        run: super::tasks::ps,
    },
    Command {
        name: "run",
        args: "<program|/path> [args] [&]",
        about: "run a user program (progs lists them); Ctrl-C stops it; & runs it in the background",
        min_args: 1,
        max_args: 8,
        run: super::programs::run_program,
    },
    Command {
        name: "progs",
        args: "",
        about: "the user programs: embedded in the kernel, and executables in the file system",
        min_args: 0,
        max_args: 0,
        run: super::programs::progs,
    },
    Command {
        name: "spawn",
        args: "<spin|sleepy|churn|pingpong>",
        about: "start a demo task (spawn alone lists them)",
        min_args: 0,
        max_args: 1,
        run: super::tasks::spawn,
    },
    Command {
        name: "kill",
        args: "<pid>",
        about: "end a user process (SIGKILL), or ask a kernel task to stop and reap it",
        min_args: 1,
        max_args: 1,
        run: super::tasks::kill,
    },
    Command {
        name: "top",
        args: "[seconds]",
        about: "per-CPU load, queue length, switches and wakeups over 1 s (or the seconds given)",
        min_args: 0,
        max_args: 1,
        run: super::tasks::top,
    },
    Command {
        name: "ls",
        args: "[path]",
        about: "list a directory of the ramfs (/ without a path): kind, size, name",
        min_args: 0,
        max_args: 1,
        run: super::files::ls,
    },
    Command {
        name: "cat",
        args: "<path>",
        about: "print a file of the ramfs",
        min_args: 1,
        max_args: 1,
        run: super::files::cat,
    },
    Command {
        name: "log",
        args: "[lines]",
        about: "the last log lines again (20 unless told)",
        min_args: 0,
        max_args: 1,
        run: log_lines,
    },
    Command {
        name: "test",
        args: "[name]",
        about: "run the in-kernel tests whose name contains `name` (all without)",
        min_args: 0,
        max_args: 1,
        run: test,
    },
    Command {
        name: "bench",
        args: "[quick] [name]",
        about: "run the benchmarks whose name contains `name`; quick: 20x shorter",
        min_args: 0,
        max_args: 2,
        run: bench,
    },
    Command {
        name: "demo",
        args: "<name>",
        about: super::DEMO_ABOUT,
        min_args: 1,
        max_args: 1,
        run: demo,
    },
    Command {
        name: "poweroff",
        args: "",
        about: "power the machine off (QEMU exits with status 0)",
        min_args: 0,
        max_args: 0,
        run: poweroff,
    },
    Command {
        name: "reboot",
        args: "",
        about: "restart the machine through PSCI (QEMU with -no-reboot exits)",
        min_args: 0,
        max_args: 0,
        run: reboot,
    },
];

fn help(sh: &mut Shell, args: &[&str]) -> Outcome {
    match args.first() {
        None => {
            sh.write("commands:\n");
            command::print_help(sh, COMMANDS);
            sh.write(
                "keys: Backspace/DEL erase a character, Ctrl-U the line, Ctrl-C abandons it, \
                 Ctrl-R redraws it\n",
            );
            Ok(())
        }
        Some(name) => match COMMANDS.iter().find(|c| c.name == *name) {
            Some(c) => {
                command::print_usage(sh, c);
                print(sh, format_args!("  {}\n", c.about));
                Ok(())
            }
            None => {
                print(sh, format_args!("help: there is no command {:?}\n", name));
                Err(BadUsage)
            }
        },
    }
}

/// A short piece of text on the stack: one cell of a table.
pub struct Cell {
    bytes: [u8; 48],
    len: usize,
}

impl Cell {
    pub fn of(args: fmt::Arguments<'_>) -> Cell {
        let mut cell = Cell {
            bytes: [0; 48],
            len: 0,
        };
        let _ = cell.write_fmt(args);
        cell
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

impl Write for Cell {
    /// Keeps what fits, in whole characters.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut buf = [0u8; 4];
            let encoded = c.encode_utf8(&mut buf).as_bytes();
            if self.len + encoded.len() > self.bytes.len() {
                break;
            }
            self.bytes[self.len..self.len + encoded.len()].copy_from_slice(encoded);
            self.len += encoded.len();
        }
        Ok(())
    }
}

/// One column of `cpus`: a heading, a width, and the value for logical CPU `id`.
///
/// This is the hook for whatever else a CPU has to report. Interrupt counts or timer ticks, for
/// example, become one more entry in `CPU_COLUMNS`:
/// `CpuColumn { heading: "irqs", width: 8, value: |_, id| Cell::of(format_args!("{}", count(id))) }`.
pub struct CpuColumn {
    pub heading: &'static str,
    pub width: usize,
    pub value: fn(&Platform<'static>, usize) -> Cell,
}

/// The columns of `cpus`, left to right.
pub static CPU_COLUMNS: &[CpuColumn] = &[
    CpuColumn {
        heading: "cpu",
        width: 5,
        value: |_, id| {
            let shell_cpu = percpu::current_id() == Some(id);
            Cell::of(format_args!("{id}{}", if shell_cpu { "*" } else { "" }))
        },
    },
    CpuColumn {
        heading: "state",
        width: 10,
        value: |_, id| Cell::of(format_args!("{:?}", percpu::cpu(id).state())),
    },
    CpuColumn {
        heading: "MPIDR",
        width: 8,
        value: |p, id| Cell::of(format_args!("{:#x}", p.cpus.as_slice()[id].mpidr)),
    },
    CpuColumn {
        heading: "cluster",
        width: 7,
        value: |p, id| {
            Cell::of(format_args!(
                "{}",
                gic_affinity::ClusterName(p.cpus.as_slice()[id].mpidr)
            ))
        },
    },
    CpuColumn {
        heading: "started by",
        width: 18,
        value: |p, id| match (p.cpus.as_slice()[id].method, p.psci) {
            (EnableMethod::Psci, Some(PsciConduit::Hvc)) => Cell::of(format_args!("psci (hvc)")),
            (EnableMethod::Psci, Some(PsciConduit::Smc)) => Cell::of(format_args!("psci (smc)")),
            (EnableMethod::Psci, None) => Cell::of(format_args!("psci (no firmware)")),
            (EnableMethod::SpinTable { release_addr }, _) => {
                Cell::of(format_args!("spin-table {release_addr:#x}"))
            }
            (EnableMethod::Unknown, _) => Cell::of(format_args!("unknown")),
        },
    },
    CpuColumn {
        heading: "entry",
        width: 6,
        value: |_, id| {
            let area = percpu::cpu(id);
            if area.is_online() {
                Cell::of(format_args!("EL{}", area.entry_el.load(Ordering::Relaxed)))
            } else {
                Cell::of(format_args!("-"))
            }
        },
    },
    CpuColumn {
        heading: "ticks",
        width: 8,
        value: |_, id| Cell::of(format_args!("{}", crate::irq::tick::ticks_on(id))),
    },
    CpuColumn {
        heading: "irqs",
        width: 8,
        value: |_, id| Cell::of(format_args!("{}", crate::irq::total_on(id))),
    },
    CpuColumn {
        heading: "calls run",
        width: 9,
        value: |_, id| {
            Cell::of(format_args!(
                "{}",
                percpu::cpu(id).calls_run.load(Ordering::Relaxed)
            ))
        },
    },
];

fn cpus(sh: &mut Shell, _: &[&str]) -> Outcome {
    let p = sh.platform;
    // Each cell padded to its column's width, but no trailing blanks at the end of a row.
    let last = CPU_COLUMNS.len() - 1;
    let cell = |sh: &mut Shell, i: usize, text: &str| {
        let w = if i == last { 0 } else { CPU_COLUMNS[i].width };
        print(sh, format_args!("{text:<w$}"));
        sh.write(if i == last { "\n" } else { " " });
    };
    for (i, column) in CPU_COLUMNS.iter().enumerate() {
        cell(sh, i, column.heading);
    }
    for id in 0..p.cpus.len() {
        for (i, column) in CPU_COLUMNS.iter().enumerate() {
            cell(sh, i, (column.value)(p, id).as_str());
        }
    }
    let online = percpu::all_cpus().filter(|c| c.is_online()).count();
    let cpus = p.cpus.as_slice();
    let clusters = (0..cpus.len())
        .filter(|&i| {
            let here = gic_affinity::cluster(cpus[i].mpidr);
            !cpus[..i]
                .iter()
                .any(|c| gic_affinity::cluster(c.mpidr) == here)
        })
        .count();
    print(
        sh,
        format_args!(
            "{online} of {} CPUs online in {clusters} cluster{}; * runs the shell; calls run: work from on_each_cpu\n",
            p.cpus.len(),
            if clusters == 1 { "" } else { "s" }
        ),
    );
    board_line(sh);
    if p.cpus_in_tree > p.cpus.len() {
        print(
            sh,
            format_args!(
                "the device tree lists {} CPUs; quartet keeps {} and leaves the rest off\n",
                p.cpus_in_tree,
                p.cpus.len()
            ),
        );
    }
    let locking = crate::proc::locking::strategy();
    print(
        sh,
        format_args!("locking={}: {}\n", locking.name(), locking.describe()),
    );
    if locking == crate::proc::locking::Strategy::Leader {
        print(
            sh,
            format_args!(
                "  {} system calls and faults handed to cpu0 so far\n",
                crate::proc::locking::handoffs()
            ),
        );
    }
    for lock in crate::proc::locking::BIG_LOCKS {
        let (acquired, contended, waited) = lock.stats();
        if acquired > 0 {
            let freq = crate::arch::counter_frequency().max(1);
            print(
                sh,
                format_args!(
                    "  {:<12} taken {acquired}, found held {contended}, waited {} us\n",
                    lock.name(),
                    waited * 1_000_000 / freq
                ),
            );
        }
    }
    Ok(())
}

/// A size in the unit that reads best: MiB from 10 MiB, KiB from 10 KiB or for whole KiB.
fn size(bytes: u64) -> Cell {
    if bytes >= 10 << 20 {
        Cell::of(format_args!("{} MiB", bytes >> 20))
    } else if bytes >= 10 << 10 || (bytes > 0 && bytes.is_multiple_of(1024)) {
        Cell::of(format_args!("{} KiB", bytes >> 10))
    } else {
        Cell::of(format_args!("{bytes} bytes"))
    }
}

fn region_line(sh: &mut Shell, what: &str, r: Region, note: &str) {
    print(
        sh,
        format_args!(
            "{what:<9} {:#012x}..{:#012x} {:>9}  {note}\n",
            r.start,
            r.end(),
            size(r.size).as_str()
        ),
    );
}

fn irqs(sh: &mut Shell, _: &[&str]) -> Outcome {
    let Some(gic) = crate::drivers::gic::get() else {
        sh.write("irqs: there is no interrupt controller; quartet runs without interrupts\n");
        return Ok(());
    };
    let online: vec::Vec<usize> = crate::smp::online_cpus().collect();
    print(
        sh,
        format_args!(
            "GICv{}, {} lines\n{:>6}",
            gic.version(),
            gic.lines(),
            "INTID"
        ),
    );
    for id in &online {
        print(
            sh,
            format_args!("{:>11}", Cell::of(format_args!("cpu{id}")).as_str()),
        );
    }
    sh.write("  name\n");
    for (intid, name) in crate::irq::registered() {
        print(sh, format_args!("{intid:>6}"));
        for &id in &online {
            print(sh, format_args!("{:>11}", crate::irq::count_on(intid, id)));
        }
        print(sh, format_args!("  {name}\n"));
    }
    for (label, count) in [
        ("SPU", crate::irq::spurious_on as fn(usize) -> u64),
        ("UNH", crate::irq::unhandled_on),
    ] {
        print(sh, format_args!("{label:>6}"));
        for &id in &online {
            print(sh, format_args!("{:>11}", count(id)));
        }
        print(
            sh,
            format_args!(
                "  {}\n",
                if label == "SPU" {
                    "spurious (nothing to acknowledge)"
                } else {
                    "no handler"
                }
            ),
        );
    }
    Ok(())
}

fn locks(sh: &mut Shell, _: &[&str]) -> Outcome {
    use crate::sync::lockdep;
    use crate::sync::spinlock::validate;
    let (reports, last) = validate::reports();
    print(
        sh,
        format_args!(
            "validator {}; {reports} report(s) so far{}\n",
            if validate::active() {
                "on"
            } else {
                "off (bootargs nolockdep or bench)"
            },
            if reports > 0 {
                alloc::format!(", the last: {last:?}")
            } else {
                alloc::string::String::new()
            }
        ),
    );
    print(sh, format_args!("{}\n", lockdep::SUMMARY_HEADER));
    for class in lockdep::classes() {
        print(sh, format_args!("{class}\n"));
    }
    Ok(())
}

/// On a board with a VideoCore mailbox, what its firmware says the board is (chapter 29).
/// Nothing on one without (QEMU virt): the boot log says that once.
fn board_line(sh: &mut Shell) {
    let p = sh.platform;
    if matches!(p.firmware, BoardQuery::NoMailbox | BoardQuery::NoTree) {
        return;
    }
    print(sh, format_args!("board: {}", p.firmware));
    if let Some(revision) = p.firmware.revision().filter(|r| r.is_new_style()) {
        let processor = revision.processor();
        print(
            sh,
            format_args!("; {}, {}", processor.name(), processor.cores()),
        );
    }
    sh.write("\n");
}

fn mem(sh: &mut Shell, _: &[&str]) -> Outcome {
    let p = sh.platform;
    board_line(sh);
    for r in p.memory.as_slice() {
        region_line(sh, "RAM", *r, "from the device tree");
    }
    if let Some(verdict) = p.memory_verdict() {
        let note = alloc::format!("ARM memory (mailbox): {}", verdict.short());
        region_line(sh, "firmware", verdict.arm(), &note);
        let in_tree: u64 = p.memory.as_slice().iter().map(|r| r.size).sum();
        if let Some(mib) = p.firmware.revision().and_then(|r| r.memory_mib()) {
            print(
                sh,
                format_args!(
                    "the board has {}; the device tree gives the Arm cores {} of it, and those ranges are used\n",
                    MemorySize(mib),
                    size(in_tree).as_str()
                ),
            );
        }
    }
    // The platform keeps each reserved range once, however often the tree names it.
    for r in p.reserved.as_slice() {
        region_line(sh, "reserved", *r, "never handed out");
    }
    let l = layout::kernel_layout();
    // Physical, as every range above; the line after the heap says where it runs.
    let image = Region::new(
        mm::virt_to_phys(l.kernel_start) as u64,
        (l.kernel_end - l.kernel_start) as u64,
    );
    let note = Cell::of(format_args!(
        "image {}, then stacks and page tables",
        size((l.image_end - l.kernel_start) as u64).as_str()
    ));
    region_line(sh, "kernel", image, note.as_str());
    // The heap and the page frames got exactly these ranges at boot (kernel_main's init_heap).
    let (heap, frames) = mm::heap::heap_and_frame_ranges(p, image);
    for r in heap.as_slice() {
        region_line(sh, "heap", *r, "buddy allocator");
    }
    for r in frames.as_slice() {
        region_line(sh, "frames", *r, "page frames, per-CPU lists");
    }
    let stats = &HEAP.stats;
    let (total, in_use) = (HEAP.bytes_total() as u64, HEAP.bytes_in_use() as u64);
    print(
        sh,
        format_args!(
            "heap use: {} of {} requested and not yet freed ({} bytes); {} allocations, {} frees, {} failed\n",
            size(in_use).as_str(),
            size(total).as_str(),
            in_use,
            stats.allocations.load(Ordering::Relaxed),
            stats.frees.load(Ordering::Relaxed),
            stats.failures.load(Ordering::Relaxed)
        ),
    );
    sh.write("(requested bytes: the buddy allocator rounds each block up to a power of two)\n");
    print(
        sh,
        format_args!(
            "addresses above are physical; the kernel reaches physical P at virtual P + {:#x} (the linear map): the kernel runs at {:#x}\n",
            mm::LINEAR_MAP_OFFSET,
            l.kernel_start
        ),
    );
    page_frames(sh);
    Ok(())
}

/// The page-frame allocator's counts: free in the global allocator, waiting on each CPU's
/// list, handed out. Pages per process: `AddressSpace::pages_in_use`, shown by `ps` once
/// processes exist.
fn page_frames(sh: &mut Shell) {
    let s = mm::frames::stats();
    print(
        sh,
        format_args!(
            "page frames: {} total, {} free, {} on per-CPU lists, {} in use ({})\n",
            s.total,
            s.free,
            s.cached_total(),
            s.in_use,
            size((s.in_use * mm::frames::PAGE_SIZE) as u64).as_str()
        ),
    );
    sh.write("per-CPU lists:");
    for cpu in percpu::all_cpus().filter(|c| c.is_online()) {
        print(sh, format_args!(" cpu{} {}", cpu.id, s.cached[cpu.id]));
    }
    print(
        sh,
        format_args!(
            " (up to {} pages each, moved {} at a time)\n",
            mm::frames::HIGH,
            mm::frames::BATCH
        ),
    );
    let (asids, of, rollovers) = mm::addrspace::asid_stats();
    print(
        sh,
        format_args!("ASIDs: {asids} of {of} taken in this generation, {rollovers} roll-overs\n"),
    );
    let processes = crate::proc::processes();
    if !processes.is_empty() {
        sh.write("pages per process:");
        for p in processes {
            print(
                sh,
                format_args!(" {} ({}) {}", p.pid, p.name(), p.pages_in_use()),
            );
        }
        sh.write("\n");
    }
    let fs = crate::fs::root().usage();
    print(
        sh,
        format_args!("file system: {} pages of file contents\n", fs.pages),
    );
}

fn log_lines(sh: &mut Shell, args: &[&str]) -> Outcome {
    let wanted = match args.first() {
        None => LOG_LINES_DEFAULT,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                print(
                    sh,
                    format_args!("log: {:?} is not a number of lines (1 or more)\n", n),
                );
                return Err(BadUsage);
            }
        },
    };
    let mut copy = vec![0u8; logger::HISTORY_BYTES];
    let len = logger::recent_lines(wanted, &mut copy);
    match core::str::from_utf8(&copy[..len]) {
        Ok(text) => sh.write(text),
        Err(_) => sh.write("log: the history holds invalid UTF-8\n"),
    }
    let shown = copy[..len].iter().filter(|&&b| b == b'\n').count();
    if shown < wanted {
        print(
            sh,
            format_args!(
                "({shown} lines: all the log kept; it holds the last {} KiB)\n",
                logger::HISTORY_BYTES >> 10
            ),
        );
    }
    Ok(())
}

fn test(sh: &mut Shell, args: &[&str]) -> Outcome {
    let filter = args.first().copied().unwrap_or("");
    sh.flush();
    let (passed, failed) = ktest::run(sh.platform, filter);
    if passed + failed == 0 {
        sh.write("test: run `test` alone to see every test's name\n");
        return Err(BadUsage);
    }
    Ok(())
}

/// The bootargs plus `benchquick`, made once, for `bench quick` (bench reads its scale there).
static QUICK_BOOTARGS: spin::Once<&'static str> = spin::Once::new();

fn bench(sh: &mut Shell, args: &[&str]) -> Outcome {
    let (quick, filter) = match args {
        [] => (false, ""),
        ["quick"] => (true, ""),
        ["quick", name] => (true, *name),
        [name] => (false, *name),
        [_, _] => {
            sh.write("bench: with two arguments, the first must be `quick`\n");
            return Err(BadUsage);
        }
        _ => return Err(BadUsage),
    };
    let mut platform = *sh.platform;
    if quick {
        platform.bootargs = QUICK_BOOTARGS
            .call_once(|| alloc::format!("{} benchquick", sh.platform.bootargs).leak());
    }
    sh.flush();
    if crate::bench::run(&platform, filter) == 0 {
        return Err(BadUsage);
    }
    Ok(())
}

fn demo(sh: &mut Shell, args: &[&str]) -> Outcome {
    let name = args[0];
    if !super::DEMOS.contains(&name) {
        print(
            sh,
            format_args!(
                "demo: there is no demo {:?}; the demos are {}\n",
                name,
                super::DEMO_NAMES
            ),
        );
        return Err(BadUsage);
    }
    sh.write("demo: this ends the session; the report stays on screen and the CPU halts\n");
    sh.flush();
    (sh.run_demo)(name);
    // A demo that returns did not demonstrate anything; it has said why.
    Ok(())
}

fn poweroff(sh: &mut Shell, _: &[&str]) -> Outcome {
    sh.flush();
    log::info!(target: "shell", "powering off");
    power::exit(0)
}

fn reboot(sh: &mut Shell, _: &[&str]) -> Outcome {
    sh.flush();
    log::info!(target: "shell", "rebooting");
    let why = power::reboot();
    log::warn!(target: "shell", "reboot: {why}; the shell goes on");
    Ok(())
}
