//! `kernel_main`: the boot order of quartet, top to bottom (chapter 1 walks through it).
//!
//! The boot CPU arrives from src/arch/aarch64/boot.rs in the high half, with the MMU on and the
//! early map: the kernel image, the device tree and the board's UART, nothing else. Until step 3
//! switches to the real map it may not touch anything else (no heap, no MMIO beyond that UART).
//! Secondary CPUs arrive at `secondary_main` on the real map.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "quartet is a kernel for aarch64-unknown-none: build it with `make image`, boot it with `make run`."
    );
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod kernel {
    use core::cell::UnsafeCell;
    use core::sync::atomic::Ordering;

    use quartet::arch::aarch64::boot::SecondaryBootBlock;
    use quartet::arch::aarch64::layout::{self, KernelLayout};
    use quartet::arch::aarch64::pagetable::Table;
    use quartet::arch::aarch64::{atomic, cpu, exception, mmu, timer};
    use quartet::config::PAGE_TABLE_POOL;
    use quartet::platform::{self, Platform, Problem, Region};
    use quartet::{HEAP, console, ktest, logger, mm, percpu, power, smp};

    /// The kernel map's tables. Written only by the boot CPU before any other CPU runs.
    struct TablePool(UnsafeCell<[Table; PAGE_TABLE_POOL]>);
    // SAFETY: only kernel_main touches the pool, once, on the boot CPU, before secondaries start.
    unsafe impl Sync for TablePool {}
    static PAGE_TABLES: TablePool =
        TablePool(UnsafeCell::new([const { Table::EMPTY }; PAGE_TABLE_POOL]));

    /// The platform, readable from every CPU once boot has stored it.
    static PLATFORM: spin::Once<Platform<'static>> = spin::Once::new();

    /// `dtb` is what the loader left in x0: a physical address (or 0, or junk).
    #[unsafe(no_mangle)]
    extern "C" fn kernel_main(dtb: usize, entry_el: u64) -> ! {
        let layout = layout::kernel_layout();
        // Until the device tree says otherwise, an early fault report goes to the board's
        // usual UART, through the log without locks.
        console::set_emergency_uart(
            Platform::defaults(platform::Board::compiled())
                .uart
                .regs
                .start,
        );
        logger::init_early();
        if entry_el == 3 {
            // Reached only without a boot protocol (firmware, or QEMU's generic loader with
            // secure=on). boot.rs dropped to EL1 only so this could be said: nobody offers PSCI
            // to a guest that owns EL3, and the firmware's job at EL3 is not quartet's.
            log::error!(target: "boot",
                "entered at EL3, where secure firmware runs: quartet runs at EL1 and leaves only EL2; boot it with -kernel (QEMU enters at EL1, or at EL2 with virtualization=on) or from firmware that enters it at EL2 or EL1; halting"
            );
            cpu::halt();
        }

        // 1. Learn the machine from the device tree, which the early map holds (no heap yet).
        let facts = platform::CpuFacts {
            gic_system_registers: cpu::has_gic_system_registers(),
            entry_el,
        };
        let mut platform = platform::discover(dtb, facts);

        // 2. Build the kernel's map: the linear map of RAM and MMIO, the image by section.
        let plan = mm::paging::plan(&platform, &layout);
        // SAFETY: this is the only reference to the pool, taken once, on the only running CPU.
        let tables = unsafe { &mut *PAGE_TABLES.0.get() };
        let (root, tables_used) = match mm::paging::build(&plan, tables) {
            Ok(built) => built,
            Err(e) => early_fatal(e),
        };

        // 3. Switch TTBR1 from the early map to the kernel's map, then empty TTBR0: no identity
        //    map is left, and the low half waits for user processes.
        let mmu_config = mmu::config(root);
        // SAFETY: the boot CPU, interrupts masked, TTBR0 still the boot trampoline; the plan
        // maps the image (text executable), its stacks, RAM and MMIO at the addresses the
        // early map used.
        unsafe { mmu::switch_kernel_map(&mmu_config) };
        mmu::use_empty_ttbr0();
        console::set_emergency_uart(platform.uart.regs.start);
        exception::install();
        // WFE also wakes every ~100 us, so a wait whose wake-up never comes is short.
        timer::enable_event_stream();
        // On a Pi, ask the VideoCore what board this is, now that the kernel's map has its
        // mailbox, and before the heap takes RAM the VideoCore may have kept (chapter 29).
        let firmware_answers = match platform.source {
            platform::Source::BoardDefaults => quartet::drivers::mailbox::BoardQuery::NoTree,
            platform::Source::DeviceTree { .. } => {
                quartet::drivers::mailbox::ask_board(platform.mailbox.as_ref())
            }
        };
        let firmware_effects = platform.take_firmware_answers(firmware_answers);
        // The CPU decides how atomics are done: one LSE instruction, or an LL/SC loop.
        atomic::select(cpu::has_lse_atomics() && !platform.has_bootarg("nolse"));

        // 4. This CPU's identity, the console and the log.
        let boot_id = platform.logical_id(cpu::mpidr_affinity());
        let me = boot_id.unwrap_or(0);
        percpu::set_possible_cpus(platform.cpus.len());
        percpu::install(me);
        // This CPU takes part in RCU grace periods from now on (src/rcu).
        quartet::rcu::cpu_online(me);
        let area = percpu::this_cpu();
        area.mpidr.store(cpu::mpidr_affinity(), Ordering::Relaxed);
        area.entry_el.store(entry_el, Ordering::Relaxed);
        let (stack_bottom, stack_top) = layout.stack_slot(0);
        area.stack_bottom.store(stack_bottom, Ordering::Relaxed);
        area.stack_top.store(stack_top, Ordering::Relaxed);
        area.mark_boot_cpu_online();
        console::init(&platform);
        logger::set_level(logger::level_from_bootarg(
            platform.bootarg_value("loglevel"),
        ));
        // The lock validator watches every spin lock from here on, except while benchmarking
        // (it would be measured too) or when told not to.
        quartet::sync::spinlock::validate::set_active(
            !platform.has_bootarg("nolockdep") && platform.bootarg_value("bench").is_none(),
        );
        let platform: &'static Platform<'static> = PLATFORM.call_once(|| platform);
        report_boot(platform, dtb, &layout, entry_el, tables_used);
        report_board(platform, firmware_effects);

        // 5. Interrupts: the GIC's distributor, and the handlers every CPU will share. Each CPU
        //    then brings up its own side (smp::interrupts_on_this_cpu), secondaries as they start.
        setup_interrupts(platform);

        // 6. The other CPUs. Nothing here allocates, so the heap can wait: setting it up touches
        //    memory all over RAM, which is slow on a fresh QEMU guest and delays nothing else.
        let testing = platform.has_bootarg("test");
        power::init(
            platform.psci,
            testing || platform.has_bootarg("demo") || platform.has_bootarg("bench"),
        );
        let online = match boot_id {
            Some(boot_id) => smp::start_secondaries(platform, &mmu_config, &layout, boot_id),
            None => {
                log::error!(target: "smp",
                    "the boot CPU's MPIDR {:#x} is not in the device tree; not starting others",
                    cpu::mpidr_affinity()
                );
                1
            }
        };
        smp::report_online(online, platform.cpus_in_tree);
        smp::interrupts_on_this_cpu();
        if quartet::drivers::gic::get().is_some() {
            match console::enable_input_interrupt(platform) {
                Ok(intid) => log::info!(target: "console", "input by interrupt (INTID {intid})"),
                Err(why) => log::warn!(target: "console", "{why}"),
            }
        }

        // 7. The heap, from whatever RAM nobody else claims.
        init_heap(platform, &layout);
        // The boot flow becomes the boot CPU's task 0, and the CPU gets an idle task to run
        // whenever task 0 sleeps (the secondaries' idle loops are their idle tasks).
        quartet::task::init_cpu(percpu::this_cpu().id, false);
        // The file system keeps file contents in page frames; then the initramfs, if the
        // loader left one, goes into it (src/fs/initrd.rs).
        static FILE_PAGES: quartet::fs::FramePages = quartet::fs::FramePages::new();
        quartet::fs::init(&FILE_PAGES);
        quartet::fs::initrd::unpack_at_boot(platform);
        // User processes: the hooks that run them (src/proc/run.rs) and the reaper thread.
        quartet::proc::locking::init(
            platform.bootarg_value("locking"),
            platform.bootarg_value("bklswitch"),
        );
        quartet::proc::run::init();
        log::info!(target: "proc",
            "user processes: {} programs embedded, at most {} processes per user",
            quartet::proc::embedded::programs().len(),
            quartet::proc::PER_USER_PROCESS_LIMIT
        );

        // 8. What bootargs ask for.
        if testing {
            let (_, failed) = ktest::run(platform, platform.bootarg_value("test").unwrap_or(""));
            power::exit(if failed == 0 { 0 } else { 1 });
        }
        if let Some(filter) = platform.bootarg_value("bench") {
            let results = quartet::bench::run(platform, filter);
            power::exit(if results > 0 { 0 } else { 1 });
        }
        if let Some(demo) = platform.bootarg_value("demo") {
            run_demo(demo);
        }
        log::info!(target: "boot", "boot complete; starting the shell. In QEMU, Ctrl-A X quits.");
        quartet::shell::run(platform, run_demo)
    }

    /// The interrupt controller and the shared handlers; without a GIC quartet runs on, without
    /// ticks, IPIs or interrupt-driven input, and says so.
    fn setup_interrupts(platform: &Platform<'static>) {
        let gic = match quartet::irq::init(platform) {
            Ok(gic) => gic,
            Err(why) => {
                log::warn!(target: "irq", "{why}; running without interrupts");
                return;
            }
        };
        let timer = quartet::irq::tick::timer_intid(platform);
        for registered in [quartet::irq::tick::init(platform), smp::ipi::init()] {
            if let Err(e) = registered {
                log::error!(target: "irq", "{e}");
            }
        }
        log::info!(target: "irq",
            "GICv{} with {} interrupt lines; tick {} Hz on INTID {timer}; IPIs are SGIs 0-3",
            gic.version(),
            gic.lines(),
            quartet::irq::tick::TICK_HZ
        );
        if let Some((found, regions)) = gic.redistributors() {
            log::info!(target: "irq",
                "GICv3: {found} redistributors in {regions} region(s), one per CPU; SGIs by ICC_SGI1R_EL1, one write per cluster"
            );
        }
    }

    #[unsafe(no_mangle)]
    extern "C" fn secondary_main(block: &SecondaryBootBlock, entry_el: u64) -> ! {
        // Before anything waits in WFE, as on the boot CPU.
        timer::enable_event_stream();
        smp::secondary_started(block, entry_el)
    }

    fn report_boot(
        p: &Platform<'static>,
        dtb: usize,
        layout: &KernelLayout,
        entry_el: u64,
        tables_used: usize,
    ) {
        log::info!(target: "boot",
            "quartet {} on {} ({} build), entered at EL{}, now EL{}",
            env!("CARGO_PKG_VERSION"),
            p.model,
            p.board.name(),
            entry_el,
            cpu::current_el()
        );
        match p.source {
            platform::Source::DeviceTree { address, size } if address == dtb as u64 => {
                log::info!(target: "boot", "device tree at {address:#x} ({size} bytes)")
            }
            platform::Source::DeviceTree { address, size } => {
                log::info!(target: "boot",
                    "device tree at {address:#x} ({size} bytes), found at the start of RAM: x0 was {dtb:#x}, as for an ELF kernel"
                )
            }
            platform::Source::BoardDefaults => {
                log::warn!(target: "boot", "running on compiled-in {} defaults", p.board.name())
            }
        }
        for problem in p.problems.as_slice() {
            if *problem != Problem::None {
                log::warn!(target: "boot", "{problem}");
            }
        }
        if p.problems.dropped() > 0 {
            log::warn!(target: "boot", "{} more device-tree problems not listed", p.problems.dropped());
        }
        for r in p.memory.as_slice() {
            log::info!(target: "boot", "memory {:#x}..{:#x} ({} MiB)", r.start, r.end(), r.size >> 20);
        }
        for r in p.reserved.as_slice() {
            log::info!(target: "boot", "reserved {:#x}..{:#x} ({} KiB)", r.start, r.end(), r.size.div_ceil(1024));
        }
        log::info!(target: "boot",
            "kernel {:#x}..{:#x}: image {} KiB, MMU on with {} page tables, caches on",
            mm::virt_to_phys(layout.kernel_start),
            mm::virt_to_phys(layout.kernel_end),
            (layout.image_end - layout.kernel_start) / 1024,
            tables_used
        );
        log::info!(target: "mm",
            "kernel at {:#x} (linear map base {:#x}), TTBR0 empty until a process runs; {}-bit ASIDs",
            layout.kernel_start,
            mm::LINEAR_MAP_OFFSET,
            mmu::asid_bits()
        );
        if let Some(conduit) = p.psci {
            let (major, minor) = quartet::arch::aarch64::psci::version(conduit);
            log::info!(target: "psci", "PSCI {major}.{minor} through {conduit:?}");
        }
        log::info!(
            target: "atomics",
            "{}",
            if atomic::uses_lse() {
                "LSE instructions (LDADD, SWP, CAS, LDSET, LDCLR, LDEOR)"
            } else {
                "LL/SC loops (LDXR/STXR); this CPU has no LSE, or bootargs said nolse"
            }
        );
        log::info!(target: "boot",
            "console PL011 at {:#x}, {} Hz clock; counter {} Hz; bootargs \"{}\"",
            p.uart.regs.start,
            p.uart.clock_hz,
            cpu::counter_frequency(),
            p.bootargs
        );
        if let (Some(gpio), true) = (p.gpio, p.uart.is_present()) {
            log::info!(target: "console",
                "GPIO14/15 switched to the PL011 (ALT0, no pulls) in the GPIO block at {:#x}",
                gpio.start
            );
        }
    }

    /// What the firmware said about the board, or why it said nothing (chapter 29).
    fn report_board(p: &Platform<'static>, effects: quartet::platform::FirmwareEffects) {
        use quartet::drivers::mailbox::BoardQuery;
        let query = &p.firmware;
        match query {
            BoardQuery::Answered { .. } | BoardQuery::NoMailbox | BoardQuery::NoTree => {
                log::info!(target: "board", "{query}")
            }
            _ => log::warn!(target: "board", "{query}"),
        }
        let (Some(facts), BoardQuery::Answered { at, .. }) = (query.facts(), query) else {
            return;
        };
        if let Some(revision) = query.revision().filter(|r| r.is_new_style()) {
            // A downstream tree's model reads "Raspberry Pi 4 Model B Rev 1.5", a mainline one
            // "Raspberry Pi 4 Model B": both start with the board type's name.
            if let Some(name) = revision.type_name().filter(|n| !p.model.starts_with(n)) {
                log::warn!(target: "board",
                    "the device tree is for \"{}\", but the firmware says this is a {name}; the devices the tree lists are used as it lists them",
                    p.model
                );
            }
            let processor = revision.processor();
            log::info!(target: "board",
                "revision code {:#08x}: {} ({}), made by {}; mailbox at {at:#x}",
                revision.0,
                processor.name(),
                processor.cores(),
                revision.manufacturer().unwrap_or("an unknown maker")
            );
            if processor != quartet::platform::revision::Processor::Bcm2711 {
                log::warn!(target: "board",
                    "this kernel was built for the BCM2711 (Pi 4, Pi 400, CM4); this board has the {}",
                    processor.name()
                );
            }
        }
        match facts.serial {
            Ok(serial) => log::info!(target: "board", "serial number {serial:#018x}"),
            Err(e) => log::info!(target: "board", "serial number: {e}"),
        }
        match (facts.uart_clock_hz, effects.uart_clock_before) {
            (Ok(hz), Some(before)) => log::info!(target: "board",
                "UART clock {hz} Hz from the firmware, not the {before} Hz the device tree or board default gave: the console's divisors use the firmware's"
            ),
            (Ok(hz), None) if hz == p.uart.clock_hz => {
                log::info!(target: "board", "UART clock {hz} Hz, as the console assumed")
            }
            (Ok(hz), None) => log::warn!(target: "board",
                "the firmware says the UART clock is {hz} Hz, too slow for {} baud; the console keeps {} Hz",
                quartet::platform::CONSOLE_BAUD,
                p.uart.clock_hz
            ),
            (Err(e), _) => log::info!(target: "board", "UART clock: {e}"),
        }
        match (effects.memory, facts.arm_memory) {
            (Some(verdict), _) => log::info!(target: "board", "{verdict}"),
            (None, Err(e)) => log::info!(target: "board",
                "ARM memory: {e}; the device tree's ranges are used"
            ),
            (None, Ok(_)) => {}
        }
    }

    fn init_heap(p: &Platform<'static>, layout: &KernelLayout) {
        // The image ends, for the heap, after the stack slots of the CPUs this machine has: the
        // slots above, reserved for CPUs up to MAX_CPUS, are free RAM here.
        let in_use_end = layout.stacks_in_use_end(p.cpus.len());
        let image = Region::new(
            mm::virt_to_phys(layout.kernel_start) as u64,
            (in_use_end - layout.kernel_start) as u64,
        );
        let (heap, frames) = mm::heap::heap_and_frame_ranges(p, image);
        for region in heap.as_slice() {
            let linear = Region::new(mm::phys_to_virt(region.start as usize) as u64, region.size);
            // SAFETY: the ranges leave out the kernel, its stacks and tables, the DTB, the
            // initrd and every reserved range, and the page frames get other ranges; what
            // remains is RAM that nothing else uses, mapped read-write in the linear map.
            unsafe { HEAP.add_region(linear) };
        }
        log::info!(target: "boot", "heap: {} MiB free for allocation", HEAP.bytes_total() >> 20);
        // The frames' refcount array comes from the heap, so the heap goes first.
        let pages = mm::frames::init(
            frames
                .as_slice()
                .iter()
                .map(|r| (r.start as usize, r.end() as usize)),
        );
        log::info!(target: "mm",
            "{pages} free pages ({} MiB) for page frames, per-CPU lists of up to {} pages",
            pages >> 8,
            mm::frames::HIGH
        );
        let (_, asids, _) = mm::addrspace::asid_stats();
        log::info!(target: "mm", "{asids} ASIDs per generation for user address spaces");
    }

    fn run_demo(name: &str) {
        match name {
            "fault" => {
                log::info!(target: "boot", "demo fault: reading the unmapped guard page below the boot stack");
                let guard = layout::kernel_layout().guard_page(0) as *const u64;
                // SAFETY: deliberately unsound: the read faults, and the report is the demo.
                let value = unsafe { core::ptr::read_volatile(guard) };
                log::error!(target: "boot", "demo fault: the read returned {value:#x}; the guard page is mapped!");
                power::exit(1);
            }
            "oom" => {
                log::info!(target: "boot", "demo oom: asking the heap for 1 TiB");
                let v: alloc::vec::Vec<u8> = alloc::vec::Vec::with_capacity(1 << 40);
                log::error!(target: "boot", "demo oom: got {} bytes; the heap did not fail!", v.capacity());
                power::exit(1);
            }
            "overflow" => {
                log::info!(target: "boot", "demo overflow: recursing until the stack runs into its guard page");
                let depth = overflow_the_stack(0);
                log::error!(target: "boot", "demo overflow: returned from depth {depth}; no guard page?");
                power::exit(1);
            }
            "panic" => {
                log::info!(target: "boot", "demo panic: cpu1 panics while the others work; it stops them first");
                smp::on_each_cpu(&|id| {
                    if id == 1 || smp::online_cpus().count() == 1 {
                        panic!("demo panic on cpu{id}");
                    }
                    loop {
                        core::hint::spin_loop();
                    }
                });
            }
            "irq-deadlock" => quartet::ktest::irqlock::deadlock_demo(),
            "lock-order" => quartet::ktest::biglock::lock_order_demo(),
            "task-overflow" => {
                quartet::ktest::exception::task_overflow_demo();
                power::exit(1);
            }
            "uaccess-nofixup" => {
                quartet::ktest::uaccess::no_fixup_demo();
                power::exit(1);
            }
            other => {
                log::error!(target: "boot", "unknown demo {other:?}; demos are: {}", quartet::shell::DEMO_NAMES)
            }
        }
    }

    /// Recurse with a kilobyte of stack per call, until the guard page stops it.
    fn overflow_the_stack(depth: u64) -> u64 {
        let frame = [depth; 128];
        // black_box keeps the array and the recursion from being optimised away.
        if core::hint::black_box(depth) == u64::MAX {
            return depth;
        }
        overflow_the_stack(core::hint::black_box(&frame)[7] + 1) + frame[3]
    }

    /// A failure before the console lock exists: print raw and stop.
    fn early_fatal(error: quartet::arch::aarch64::pagetable::MapError) -> ! {
        console::emergency_write("quartet: cannot build the kernel map (");
        console::emergency_write(match error {
            quartet::arch::aarch64::pagetable::MapError::OutOfTables => "page table pool exhausted",
            quartet::arch::aarch64::pagetable::MapError::AddressTooHigh(_) => {
                "physical address beyond 48 bits"
            }
            quartet::arch::aarch64::pagetable::MapError::OutsideHalf(_) => {
                "physical memory beyond the 512 GiB linear map"
            }
        });
        console::emergency_write("); halting\n");
        cpu::halt()
    }

    /// A panic is reported as an ERROR line from `panic`, with where and why, on any CPU, even
    /// one that holds the console lock; then power.rs decides whether the run ends.
    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        quartet::fatal::panic(info)
    }

    extern crate alloc;
}
