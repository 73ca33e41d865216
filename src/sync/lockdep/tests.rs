use super::*;
use std::string::ToString;

/// The caller's location: a distinct site per call expression.
#[track_caller]
fn here() -> Site {
    Location::caller()
}

/// A fresh validator per test, so tests run in parallel without sharing state.
fn validator() -> &'static Lockdep {
    Box::leak(Box::new(Lockdep::new()))
}

fn addr<T>(x: &T) -> usize {
    x as *const T as usize
}

#[test]
fn irq_safe_and_unsafe_use_is_reported_once_with_both_sites() {
    let v = validator();
    static CONSOLE: LockClass = LockClass::named("console");
    static TIMER: LockClass = LockClass::named("timer");
    let (lock, timer) = (1usize, 2usize);

    // Only ever in hardirq, or only with IRQs off: consistent, nothing to say.
    assert_eq!(
        v.acquire(&TIMER, timer, 0, Context::HARDIRQ, Kind::Spin, here()),
        None
    );
    v.release(&TIMER, timer, 0);
    assert_eq!(
        v.acquire(&TIMER, timer, 1, Context::TASK_IRQS_OFF, Kind::Spin, here()),
        None
    );
    v.release(&TIMER, timer, 1);

    let task_site = here();
    assert_eq!(
        v.acquire(&CONSOLE, lock, 0, Context::TASK, Kind::Spin, task_site),
        None
    );
    assert_eq!(v.release(&CONSOLE, lock, 0), None);
    let irq_site = here();
    let report = v
        .acquire(&CONSOLE, lock, 2, Context::HARDIRQ, Kind::Spin, irq_site)
        .expect("IRQ-safe + IRQ-unsafe must be reported");
    v.release(&CONSOLE, lock, 2);
    let Report::InconsistentIrqUsage {
        class,
        in_hardirq,
        with_irqs_on,
        cpu,
    } = report
    else {
        panic!("wrong report: {report}");
    };
    assert_eq!(class.name, "console");
    assert_eq!(
        in_hardirq,
        Usage {
            site: irq_site,
            cpu: 2
        }
    );
    assert_eq!(
        with_irqs_on,
        Usage {
            site: task_site,
            cpu: 0
        }
    );
    assert_eq!(cpu, 2);
    let text = report.to_string();
    assert!(text.contains("inconsistent lock state"), "{text}");
    assert!(text.contains("IRQ-safe and IRQ-unsafe"), "{text}");
    assert!(text.contains(&irq_site.to_string()) && text.contains(&task_site.to_string()));
    assert!(!report.is_fatal());

    // Once: not again, not even with warnings re-armed.
    v.rearm();
    for ctx in [Context::TASK, Context::HARDIRQ, Context::TASK] {
        assert_eq!(v.acquire(&CONSOLE, lock, 1, ctx, Kind::Spin, here()), None);
        v.release(&CONSOLE, lock, 1);
    }
}

#[test]
fn recursive_locking_is_reported_before_the_spin() {
    let v = validator();
    static A: LockClass = LockClass::named("a");
    let (a1, a2) = (0x100usize, 0x200usize);
    let first = here();
    assert_eq!(v.acquire(&A, a1, 3, Context::TASK, Kind::Spin, first), None);
    // Another CPU may wait for it: that is contention, not recursion.
    assert_eq!(
        v.acquire(&A, a1, 1, Context::TASK_IRQS_OFF, Kind::Spin, here()),
        None
    );
    v.release(&A, a1, 1);
    // Another lock of the same class on this CPU is not recursion either.
    assert_eq!(
        v.acquire(&A, a2, 3, Context::TASK, Kind::Spin, here()),
        None
    );
    v.release(&A, a2, 3);

    let again = here();
    let report = v
        .acquire(&A, a1, 3, Context::TASK, Kind::Spin, again)
        .expect("taking a held lock again must be reported");
    assert!(report.is_fatal());
    let Report::RecursiveLocking {
        first: held,
        site,
        cpu,
        lock,
        ..
    } = report
    else {
        panic!("wrong report: {report}");
    };
    assert_eq!((held.site, site, cpu, lock), (first, again, 3, a1));
    let text = report.to_string();
    assert!(text.contains("recursive locking") && text.contains(&first.to_string()));
    assert!(text.contains(&again.to_string()), "{text}");
    // The fatal attempt was not recorded: one release empties the stack.
    assert_eq!(v.release(&A, a1, 3), None);
    assert_eq!(v.held(3).count(), 0);
}

#[test]
fn an_interrupt_taking_a_lock_its_cpu_holds_is_recursion_even_with_warnings_off() {
    let v = validator();
    static B: LockClass = LockClass::named("b");
    // Some earlier warning turned warnings off...
    assert!(v.claim_warning());
    assert!(!v.warnings_on());
    assert_eq!(v.acquire(&B, 7, 0, Context::TASK, Kind::Spin, here()), None);
    // ...but the recursion in the interrupt handler is still caught.
    let r = v.acquire(&B, 7, 0, Context::HARDIRQ, Kind::Spin, here());
    match r {
        Some(Report::RecursiveLocking {
            in_hardirq: true,
            first,
            ..
        }) => assert!(!first.in_hardirq),
        other => panic!("expected recursion in hardirq, got {other:?}"),
    }
    assert!(r.unwrap().to_string().contains("in hardirq"));
}

#[test]
fn try_lock_is_never_recursion_and_adds_no_edge_to_itself() {
    let v = validator();
    static A: LockClass = LockClass::named("a");
    static B: LockClass = LockClass::named("b");
    let ctx = Context::TASK_IRQS_OFF;
    assert_eq!(v.acquire(&A, 1, 0, ctx, Kind::Spin, here()), None);
    assert_eq!(v.acquire(&B, 2, 0, ctx, Kind::Try, here()), None);
    assert!(
        !v.has_edge(&A, &B),
        "a try-lock never waits, so A -> B cannot deadlock"
    );
    v.release(&B, 2, 0);
    v.release(&A, 1, 0);
    // B (tried) held while spinning on A: that one can wait, so B -> A is an edge.
    assert_eq!(v.acquire(&B, 2, 0, ctx, Kind::Try, here()), None);
    assert_eq!(v.acquire(&A, 1, 0, ctx, Kind::Spin, here()), None);
    assert!(v.has_edge(&B, &A));
}

#[test]
fn ab_ba_is_reported_at_the_first_inversion_with_both_edges() {
    let v = validator();
    static A: LockClass = LockClass::named("a");
    static B: LockClass = LockClass::named("b");
    let ctx = Context::TASK_IRQS_OFF;
    let (a_site, b_site) = (here(), here());
    // Consistent order, many times, on several CPUs: silence.
    for round in 0..100 {
        let cpu = round % 4;
        assert_eq!(v.acquire(&A, 1, cpu, ctx, Kind::Spin, a_site), None);
        assert_eq!(v.acquire(&B, 2, cpu, ctx, Kind::Spin, b_site), None);
        assert_eq!(v.release(&B, 2, cpu), None);
        assert_eq!(v.release(&A, 1, cpu), None);
    }
    assert!(v.has_edge(&A, &B) && !v.has_edge(&B, &A));

    // The first B-then-A, long before two CPUs actually meet in it.
    let (b2, a2) = (here(), here());
    assert_eq!(v.acquire(&B, 2, 1, ctx, Kind::Spin, b2), None);
    let report = v
        .acquire(&A, 1, 1, ctx, Kind::Spin, a2)
        .expect("the inversion must be reported at once");
    let Report::LockOrderCycle {
        cpu,
        edges,
        len,
        total,
    } = report
    else {
        panic!("wrong report: {report}");
    };
    assert_eq!((cpu, len, total), (1, 2, 2));
    let new = edges[0].unwrap();
    assert_eq!((new.from.name, new.to.name), ("b", "a"));
    assert_eq!(
        (new.held_since, new.taken_at, new.cpu),
        (Some(b2), Some(a2), 1)
    );
    let old = edges[1].unwrap();
    assert_eq!((old.from.name, old.to.name), ("a", "b"));
    assert_eq!(
        (old.held_since, old.taken_at, old.cpu),
        (Some(a_site), Some(b_site), 0)
    );
    let text = report.to_string();
    for s in [a_site, b_site, a2, b2] {
        assert!(text.contains(&s.to_string()), "{s} missing from:\n{text}");
    }
    assert!(text.contains("circular locking dependency"), "{text}");
    assert!(text.contains("cycle: `b` -> `a` -> `b`"), "{text}");
    v.release(&A, 1, 1);
    v.release(&B, 2, 1);

    // Reported once: the same inversion again is silent even after a re-arm.
    v.rearm();
    assert_eq!(v.acquire(&B, 2, 2, ctx, Kind::Spin, here()), None);
    assert_eq!(v.acquire(&A, 1, 2, ctx, Kind::Spin, here()), None);
}

#[test]
fn a_three_lock_cycle_is_found_through_the_graph() {
    let v = validator();
    static A: LockClass = LockClass::named("a");
    static B: LockClass = LockClass::named("b");
    static C: LockClass = LockClass::named("c");
    let ctx = Context::TASK_IRQS_OFF;
    let pair = |x: &LockClass, lx, y: &LockClass, ly, cpu| {
        let r1 = v.acquire(x, lx, cpu, ctx, Kind::Spin, here());
        let r2 = v.acquire(y, ly, cpu, ctx, Kind::Spin, here());
        v.release(y, ly, cpu);
        v.release(x, lx, cpu);
        r1.or(r2)
    };
    assert_eq!(pair(&A, 1, &B, 2, 0), None);
    assert_eq!(pair(&B, 2, &C, 3, 1), None);
    // No pair is inverted, yet C -> A closes a cycle.
    let report = pair(&C, 3, &A, 1, 2).expect("A -> B -> C -> A must be reported");
    let Report::LockOrderCycle {
        edges, len, total, ..
    } = report
    else {
        panic!("wrong report: {report}");
    };
    assert_eq!((len, total), (3, 3));
    let names: Vec<_> = edges[..3]
        .iter()
        .map(|e| (e.unwrap().from.name, e.unwrap().to.name))
        .collect();
    assert_eq!(names, [("c", "a"), ("a", "b"), ("b", "c")]);
    assert!(
        report
            .to_string()
            .contains("cycle: `c` -> `a` -> `b` -> `c`")
    );
}

#[test]
fn the_first_warning_silences_the_rest_until_rearmed() {
    let v = validator();
    static A: LockClass = LockClass::named("a");
    static B: LockClass = LockClass::named("b");
    static IRQ: LockClass = LockClass::named("irq");
    let off = Context::TASK_IRQS_OFF;
    pair_in_order(v, &A, &B, off);
    v.acquire(&B, 2, 0, off, Kind::Spin, here());
    assert!(v.acquire(&A, 1, 0, off, Kind::Spin, here()).is_some());
    v.release(&A, 1, 0);
    v.release(&B, 2, 0);
    assert!(!v.warnings_on());
    // A second bug while warnings are off: not reported...
    v.acquire(&IRQ, 9, 1, Context::HARDIRQ, Kind::Spin, here());
    v.release(&IRQ, 9, 1);
    assert_eq!(
        v.acquire(&IRQ, 9, 1, Context::TASK, Kind::Spin, here()),
        None
    );
    v.release(&IRQ, 9, 1);
    // ...until re-armed: then its next use reports it.
    v.rearm();
    let r = v.acquire(&IRQ, 9, 1, Context::TASK, Kind::Spin, here());
    assert!(
        matches!(r, Some(Report::InconsistentIrqUsage { .. })),
        "{r:?}"
    );
}

fn pair_in_order(v: &Lockdep, a: &LockClass, b: &LockClass, ctx: Context) {
    assert_eq!(v.acquire(a, 1, 0, ctx, Kind::Spin, here()), None);
    assert_eq!(v.acquire(b, 2, 0, ctx, Kind::Spin, here()), None);
    v.release(b, 2, 0);
    v.release(a, 1, 0);
}

#[test]
fn locks_released_out_of_order_leave_the_right_ones_held() {
    let v = validator();
    static A: LockClass = LockClass::named("a");
    static B: LockClass = LockClass::named("b");
    static C: LockClass = LockClass::named("c");
    static D: LockClass = LockClass::named("d");
    let ctx = Context::TASK_IRQS_OFF;
    for (class, lock) in [(&A, 1), (&B, 2), (&C, 3)] {
        assert_eq!(v.acquire(class, lock, 5, ctx, Kind::Spin, here()), None);
    }
    assert_eq!(v.release(&B, 2, 5), None);
    let held: Vec<_> = v.held(5).map(|h| (h.class.name, h.lock)).collect();
    assert_eq!(held, [("a", 1), ("c", 3)]);
    assert_eq!(v.acquire(&D, 4, 5, ctx, Kind::Spin, here()), None);
    assert!(v.has_edge(&A, &D) && v.has_edge(&C, &D));
    assert!(!v.has_edge(&B, &D), "B was released before D was taken");
    for (class, lock) in [(&A, 1), (&D, 4), (&C, 3)] {
        assert_eq!(v.release(class, lock, 5), None);
    }
    assert_eq!(v.held(5).count(), 0);
    // Releasing what this CPU does not hold is a bug of its own.
    let r = v.release(&A, 1, 5).expect("unbalanced unlock");
    assert!(
        matches!(
            r,
            Report::UnlockNotHeld {
                lock: 1,
                cpu: 5,
                ..
            }
        ),
        "{r}"
    );
}

#[test]
fn a_full_held_stack_is_reported_and_nothing_panics() {
    let v = validator();
    static MANY: LockClass = LockClass::named("many");
    let ctx = Context::TASK_IRQS_OFF;
    for lock in 0..MAX_HELD {
        assert_eq!(v.acquire(&MANY, lock, 0, ctx, Kind::Spin, here()), None);
    }
    let site = here();
    let r = v.acquire(&MANY, MAX_HELD, 0, ctx, Kind::Spin, site);
    assert_eq!(
        r,
        Some(Report::HeldStackOverflow {
            cpu: 0,
            class: r.map(|_| v.info(0)).unwrap(),
            site
        })
    );
    assert!(r.unwrap().to_string().contains("more than 16 locks"));
    assert_eq!(
        v.acquire(&MANY, MAX_HELD + 1, 0, ctx, Kind::Spin, here()),
        None
    );
    // All of them come back, untracked ones included, without an "unlock not held".
    v.rearm();
    for lock in (0..MAX_HELD + 2).rev() {
        assert_eq!(v.release(&MANY, lock, 0), None, "lock {lock}");
    }
    assert_eq!(v.held(0).count(), 0);
}

#[test]
fn a_full_class_table_is_reported_once_and_its_locks_go_unchecked() {
    let v = validator();
    #[rustfmt::skip]
    let sites: [Site; MAX_CLASSES + 2] = [
        here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
        here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
        here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
        here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
        here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
        here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
    ];
    let classes: Vec<LockClass> = sites.iter().map(|&s| LockClass::at("", s)).collect();
    let ctx = Context::TASK_IRQS_OFF;
    for (i, class) in classes[..MAX_CLASSES].iter().enumerate() {
        assert_eq!(v.acquire(class, i, 0, ctx, Kind::Spin, here()), None);
        assert_eq!(v.release(class, i, 0), None);
    }
    assert_eq!(v.classes().count(), MAX_CLASSES);
    let full = LockClass::at("one too many", sites[MAX_CLASSES]);
    let r = v.acquire(&full, 99, 0, ctx, Kind::Spin, here());
    let Some(Report::ClassTableFull { name, defined_at }) = r else {
        panic!("expected a full table report, got {r:?}");
    };
    assert_eq!((name, defined_at), ("one too many", sites[MAX_CLASSES]));
    assert!(r.unwrap().to_string().contains("raise MAX_CLASSES"));
    v.rearm();
    // Once only, and the untracked locks are neither checked nor complained about.
    let last = &classes[MAX_CLASSES + 1];
    assert_eq!(v.acquire(last, 100, 0, ctx, Kind::Spin, here()), None);
    assert_eq!(v.acquire(last, 100, 0, ctx, Kind::Spin, here()), None);
    assert_eq!(v.release(last, 100, 0), None);
    assert_eq!(v.release(&full, 99, 0), None);
    assert_eq!(v.untracked_classes(), 2);
    // A class already in the table still works.
    assert_eq!(v.acquire(&classes[3], 3, 0, ctx, Kind::Spin, here()), None);
    assert!(
        v.acquire(&classes[3], 3, 0, ctx, Kind::Spin, here())
            .unwrap()
            .is_fatal()
    );
}

#[test]
fn locks_made_by_one_line_share_a_class() {
    let v = validator();
    #[track_caller]
    fn make() -> LockClass {
        LockClass::new()
    }
    let sites: Vec<LockClass> = (0..3).map(|_| make()).collect();
    for (i, c) in sites.iter().enumerate() {
        v.acquire(c, i, 0, Context::TASK, Kind::Spin, here());
    }
    let stats: Vec<_> = v.classes().collect();
    assert_eq!(stats.len(), 1, "one constructor call site, one class");
    assert_eq!(stats[0].acquired, 3);
    assert!(
        stats[0]
            .class
            .to_string()
            .starts_with("`lock@src/sync/lockdep/tests.rs:")
    );
}

#[test]
fn a_stuck_spin_names_the_holder_and_its_site() {
    let v = validator();
    static RQ: LockClass = LockClass::named("runqueue");
    let held_at = here();
    assert_eq!(
        v.acquire(&RQ, 0x40, 1, Context::TASK_IRQS_OFF, Kind::Spin, held_at),
        None
    );
    // cpu2 registers its attempt, spins, and after 1500 ms asks who is in the way.
    assert_eq!(
        v.acquire(&RQ, 0x40, 2, Context::TASK_IRQS_OFF, Kind::Spin, here()),
        None
    );
    // So does cpu0: without the owner's id, its stack would be searched first.
    assert_eq!(
        v.acquire(&RQ, 0x40, 0, Context::TASK_IRQS_OFF, Kind::Spin, here()),
        None
    );
    v.note_contended(&RQ);
    let guess = v.stuck_report(&RQ, 0x40, 2, 1500, None).unwrap();
    assert!(matches!(
        guess,
        Report::Stuck {
            holder: Some(Held { cpu: 0, .. }),
            ..
        }
    ));
    let r = v.stuck_report(&RQ, 0x40, 2, 1500, Some(1)).unwrap();
    let Report::Stuck {
        holder: Some(h), ..
    } = r
    else {
        panic!("no holder in {r}");
    };
    assert_eq!((h.cpu, h.site, h.lock), (1, held_at, 0x40));
    let text = r.to_string();
    assert!(
        text.contains("cpu2 spinning for 1500 ms on `runqueue`"),
        "{text}"
    );
    assert!(
        text.contains(&std::format!("held by cpu1 since {held_at}")),
        "{text}"
    );
    let stats = v.classes().next().unwrap();
    assert_eq!((stats.acquired, stats.contended), (3, 1));
}

#[test]
fn the_summary_lists_usage_and_edges() {
    let v = validator();
    static OUTER: LockClass = LockClass::named("outer");
    static INNER: LockClass = LockClass::named("inner");
    v.acquire(&OUTER, 1, 0, Context::TASK, Kind::Spin, here());
    v.acquire(&INNER, 2, 0, Context::TASK, Kind::Spin, here());
    v.release(&INNER, 2, 0);
    v.release(&OUTER, 1, 0);
    v.acquire(&INNER, 2, 1, Context::TASK_IRQS_OFF, Kind::Spin, here());
    let stats: Vec<_> = v.classes().collect();
    assert_eq!(stats.len(), 2);
    let (o, i) = (stats[0], stats[1]);
    assert_eq!(
        (o.class.name, o.acquired, o.edges_out, o.edges_in),
        ("outer", 1, 1, 0)
    );
    assert_eq!(
        (i.class.name, i.acquired, i.edges_out, i.edges_in),
        ("inner", 2, 0, 1)
    );
    assert!(o.irq_unsafe && !o.irq_safe);
    let line = o.to_string();
    assert!(line.starts_with("outer ") && line.contains(" U "), "{line}");
    assert!(SUMMARY_HEADER.starts_with("class"));
}

#[test]
fn cpus_in_threads_taking_locks_in_one_order_get_no_reports() {
    static V: Lockdep = Lockdep::new();
    static A: LockClass = LockClass::named("a");
    static B: LockClass = LockClass::named("b");
    static C: LockClass = LockClass::named("c");
    static LOCKS: [std::sync::Mutex<u64>; 3] = [const { std::sync::Mutex::new(0) }; 3];
    const ROUNDS: usize = 3000;
    let classes = [&A, &B, &C];
    let handles: Vec<_> = (0..4)
        .map(|cpu| {
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    // A subset of A, B, C in that order; released in a round-dependent order.
                    let take: Vec<usize> = (0..3)
                        .filter(|i| (round + cpu) >> i & 1 == 1 || *i == 1)
                        .collect();
                    let ctx = if round % 3 == 0 {
                        Context::HARDIRQ
                    } else {
                        Context::TASK_IRQS_OFF
                    };
                    let mut guards = Vec::new();
                    for &i in &take {
                        let lock = &LOCKS[i];
                        let r = V.acquire(classes[i], addr(lock), cpu, ctx, Kind::Spin, here());
                        assert_eq!(r, None, "false report on cpu{cpu}");
                        guards.push((i, lock.lock().unwrap()));
                    }
                    if round % 2 == 0 {
                        guards.reverse();
                    }
                    for (i, mut g) in guards {
                        *g += 1;
                        assert_eq!(V.release(classes[i], addr(&LOCKS[i]), cpu), None);
                    }
                }
                assert_eq!(V.held(cpu).count(), 0);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(V.warnings_on(), "nothing was reported");
    assert!(V.has_edge(&A, &B) && V.has_edge(&B, &C) && V.has_edge(&A, &C));
    assert!(!V.has_edge(&B, &A) && !V.has_edge(&C, &B) && !V.has_edge(&C, &A));
    let total: u64 = V.classes().map(|s| s.acquired).sum();
    let locked: u64 = LOCKS.iter().map(|l| *l.lock().unwrap()).sum();
    assert_eq!(total, locked);
    assert!(V.classes().all(|s| s.irq_safe && !s.irq_unsafe));
}

#[test]
fn the_kernel_functions_reach_the_global_validator() {
    const { assert!(ENABLED, "on in test builds") };
    static K: LockClass = LockClass::named("kernel-global");
    let k = 0xdead_0000;
    assert_eq!(
        acquire(&K, k, 7, Context::TASK_IRQS_OFF, Kind::Spin, here()),
        None
    );
    assert_eq!(held(7).next().map(|h| h.lock), Some(k));
    assert!(classes().any(|s| s.class.name == "kernel-global"));
    assert_eq!(release(&K, k, 7), None);
}

/// Chapter 12's examples through one validator, each report printed as the chapter shows it
/// (`cargo test --lib the_chapters_examples -- --nocapture`): an AB-BA order on two CPUs, a
/// class used in hardirq context and with IRQs on, an interrupt taking a lock its CPU holds,
/// and a spin that lasted 1500 ms.
#[test]
fn the_chapters_examples_report_what_the_chapter_shows() {
    let v = validator();
    static ACCOUNTS: LockClass = LockClass::named("accounts");
    static AUDIT: LockClass = LockClass::named("audit");
    static CONSOLE: LockClass = LockClass::named("console");
    let (accounts, audit, console) = (0x1000, 0x2000, 0x3000);
    let mut reports = Vec::new();
    let mut take = |class, lock, cpu, ctx, site| {
        if let Some(r) = v.acquire(class, lock, cpu, ctx, Kind::Spin, site) {
            std::println!("{r}");
            reports.push(r);
        }
    };
    take(&ACCOUNTS, accounts, 0, Context::TASK_IRQS_OFF, here());
    take(&AUDIT, audit, 0, Context::TASK_IRQS_OFF, here());
    v.release(&AUDIT, audit, 0);
    v.release(&ACCOUNTS, accounts, 0);
    take(&AUDIT, audit, 1, Context::TASK_IRQS_OFF, here());
    take(&ACCOUNTS, accounts, 1, Context::TASK_IRQS_OFF, here());
    v.release(&ACCOUNTS, accounts, 1);
    v.release(&AUDIT, audit, 1);
    v.rearm();
    take(&CONSOLE, console, 0, Context::TASK, here());
    v.release(&CONSOLE, console, 0);
    take(&CONSOLE, console, 2, Context::HARDIRQ, here());
    v.release(&CONSOLE, console, 2);
    take(&CONSOLE, console, 0, Context::TASK, here());
    take(&CONSOLE, console, 0, Context::HARDIRQ, here());
    take(&AUDIT, audit, 3, Context::TASK_IRQS_OFF, here());
    let stuck = v.stuck_report(&AUDIT, audit, 0, 1500, Some(3)).unwrap();
    std::println!("{stuck}");
    std::println!("{SUMMARY_HEADER}");
    for class in v.classes() {
        std::println!("{class}");
    }
    assert!(
        matches!(
            reports[..],
            [
                Report::LockOrderCycle {
                    cpu: 1,
                    total: 2,
                    ..
                },
                Report::InconsistentIrqUsage { cpu: 2, .. },
                Report::RecursiveLocking {
                    cpu: 0,
                    in_hardirq: true,
                    ..
                },
            ]
        ),
        "{reports:?}"
    );
    assert!(matches!(
        stuck,
        Report::Stuck {
            holder: Some(Held { cpu: 3, .. }),
            ..
        }
    ));
    let acquired: Vec<_> = v.classes().map(|c| (c.class.name, c.acquired)).collect();
    assert_eq!(acquired, [("accounts", 2), ("audit", 3), ("console", 4)]);
}

/// The search for a holder reads only the stacks of CPUs that ever took a lock, and finds one
/// on the highest CPU id as on the lowest.
#[test]
fn the_holder_search_reaches_every_cpu_that_took_a_lock() {
    let v = Lockdep::new();
    static QUEUE: LockClass = LockClass::named("queue");
    let top = crate::config::MAX_CPUS - 1;
    let held_at = here();
    assert_eq!(
        v.acquire(&QUEUE, 0x80, top, Context::TASK, Kind::Spin, held_at),
        None
    );
    assert_eq!(
        v.cpus_seen.load(Ordering::Relaxed),
        crate::cpumask::CpuMask::only(top)
    );
    let h = v.holder(0x80, None, 0).expect("the holder on the last CPU");
    assert_eq!((h.cpu, h.site), (top, held_at));
    assert_eq!(v.holder(0x80, None, top), None, "the asker is skipped");
    // A CPU id past the limit is not tracked, and not a crash.
    assert_eq!(
        v.acquire(&QUEUE, 0x88, top + 1, Context::TASK, Kind::Spin, here()),
        None
    );
    assert_eq!(v.cpus_seen.load(Ordering::Relaxed).count(), 1);
}
