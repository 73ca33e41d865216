//! The user programs under Linux (chapter 23): every program in user/ is a static Linux arm64
//! executable, so `qemu-aarch64` runs it as a Linux process on this host. These tests run each
//! one and check its output and how it ended. They pin down what Linux does, system call by
//! system call, which is what quartet's kernel must also do; the boot tests run the same files
//! on quartet.
//!
//! Skipped, with a message, when qemu-aarch64 is not installed (tools/setup installs it:
//! Debian package qemu-user).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[path = "../user/build_programs.rs"]
mod build_programs;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Build the programs once per test run; None (with the reason printed) when qemu-aarch64 is
/// missing.
fn programs_ready() -> Option<()> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let qemu = Command::new("qemu-aarch64").arg("--version").output();
        if qemu.is_err() {
            return Err("qemu-aarch64 is not installed (tools/setup installs qemu-user)".into());
        }
        build_programs::build_rust(&root()).expect("build the user programs");
        build_programs::build_c(&root())
            .expect("build the C program (tools/setup installs gcc-aarch64-linux-gnu)");
        Ok(())
    });
    match ready {
        Ok(()) => Some(()),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Exited(i32),
    Signal(i32),
    TimedOut,
}

struct Run {
    stdout: String,
    stderr: String,
    end: End,
}

/// A fresh empty directory for one test to run its programs in.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quartet-user-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn program_path(name: &str) -> PathBuf {
    if name == "hello-c" {
        build_programs::c_program(&root())
    } else {
        build_programs::rust_program(&root(), name)
    }
}

/// Run `name args` under qemu-aarch64 in `dir`, killing it after `timeout`. Core dumps are off
/// (several programs die of a signal on purpose).
fn run_in(dir: &Path, name: &str, args: &[&str], timeout: Duration) -> Run {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -c 0; exec qemu-aarch64 \"$@\"")
        .arg("sh")
        .arg(program_path(name))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-aarch64");
    let start = Instant::now();
    let end = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break match (status.code(), status.signal()) {
                (Some(code), _) => End::Exited(code),
                (None, Some(sig)) => End::Signal(sig),
                _ => unreachable!("a process ends by exit or signal"),
            };
        }
        if start.elapsed() > timeout {
            child.kill().unwrap();
            child.wait().unwrap();
            break End::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        end,
    }
}

fn run(name: &str, args: &[&str]) -> Run {
    let dir = scratch(name);
    let r = run_in(&dir, name, args, Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// The number after `word ` in `line`.
fn number_after(line: &str, word: &str) -> i64 {
    let rest = line
        .split(&format!("{word} "))
        .nth(1)
        .unwrap_or_else(|| panic!("no '{word}' in {line:?}"));
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn hello_prints_its_pid_cpu_and_arguments() {
    let Some(()) = programs_ready() else { return };
    let r = run("hello", &["one", "two"]);
    assert_eq!(r.end, End::Exited(0), "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[0].starts_with("hello from pid "), "{}", lines[0]);
    assert!(number_after(lines[0], "pid") > 0);
    assert!(number_after(lines[0], "cpu") >= 0);
    assert!(lines[0].ends_with("argc 3"), "{}", lines[0]);
    assert_eq!(&lines[1..], ["  argv[1] = one", "  argv[2] = two"]);
}

#[test]
fn the_c_program_runs_too() {
    let Some(()) = programs_ready() else { return };
    let r = run("hello-c", &["x"]);
    assert_eq!(r.end, End::Exited(0), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("hello from C, pid "), "{}", r.stdout);
    assert!(r.stdout.ends_with(", argc 2\n  x\n"), "{}", r.stdout);
}

#[test]
fn write_cat_ls_rm_work_on_files() {
    let Some(()) = programs_ready() else { return };
    let dir = scratch("files");
    let t = Duration::from_secs(30);
    std::fs::create_dir(dir.join("sub")).unwrap();
    let w = run_in(&dir, "write", &["notes", "hello", "files"], t);
    assert_eq!(w.end, End::Exited(0), "{}", w.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes")).unwrap(),
        "hello files\n"
    );
    // write truncates.
    run_in(&dir, "write", &["notes", "short"], t);
    let c = run_in(&dir, "cat", &["notes", "notes"], t);
    assert_eq!(
        (c.end, c.stdout.as_str()),
        (End::Exited(0), "short\nshort\n")
    );
    let l = run_in(&dir, "ls", &[], t);
    let mut names: Vec<&str> = l.stdout.lines().collect();
    names.sort();
    assert_eq!((l.end, names), (End::Exited(0), vec!["notes", "sub/"]));
    let r = run_in(&dir, "rm", &["notes"], t);
    assert_eq!(r.end, End::Exited(0), "{}", r.stderr);
    assert!(!dir.join("notes").exists());
    let c = run_in(&dir, "cat", &["notes"], t);
    assert_eq!(c.end, End::Exited(1));
    assert_eq!(c.stderr, "cat: notes: ENOENT (2)\n");
    let l = run_in(&dir, "ls", &["no-such-dir"], t);
    assert_eq!(
        (l.end, l.stderr.as_str()),
        (End::Exited(1), "ls: no-such-dir: ENOENT (2)\n")
    );
    let l = run_in(&dir, "ls", &["sub"], t);
    assert_eq!((l.end, l.stdout.as_str()), (End::Exited(0), ""));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exec_replaces_the_process_with_argv_intact() {
    let Some(()) = programs_ready() else { return };
    // qemu-aarch64 hands execve to the host, so a host program shows what argv arrived.
    let r = run("exec", &["/bin/echo", "replaced", "by echo"]);
    assert_eq!(
        (r.end, r.stdout.as_str()),
        (End::Exited(0), "replaced by echo\n")
    );
    let r = run("exec", &["/no/such/program"]);
    assert_eq!(
        (r.end, r.stderr.as_str()),
        (End::Exited(1), "exec: /no/such/program: ENOENT (2)\n")
    );
}

#[test]
fn fork_tree_checks_every_exit_status() {
    let Some(()) = programs_ready() else { return };
    for (depth, processes) in [(1, 3), (3, 15), (4, 31)] {
        let r = run("fork-tree", &[&depth.to_string()]);
        assert_eq!(r.end, End::Exited(0), "{}{}", r.stdout, r.stderr);
        assert_eq!(
            r.stdout,
            format!(
                "fork-tree: depth {depth}: {processes} processes, {} exit statuses checked, all right\n",
                processes - 1
            )
        );
    }
    let r = run("fork-tree", &["9"]);
    assert_eq!(r.end, End::Exited(2), "depth 9 is refused");
}

#[test]
fn pagetouch_touches_every_page_it_asked_for() {
    let Some(()) = programs_ready() else { return };
    let r = run("pagetouch", &["64"]);
    assert_eq!(r.end, End::Exited(0), "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[0].starts_with("pagetouch: brk ") && lines[0].ends_with(": touched 64 pages"));
    assert!(lines[1].starts_with("pagetouch: mmap ") && lines[1].ends_with(": touched 64 pages"));
    assert_eq!(lines[2], "pagetouch: 128 pages touched in all");
}

#[test]
fn spin_reports_each_second() {
    let Some(()) = programs_ready() else { return };
    let r = run("spin", &["2"]);
    assert_eq!(r.end, End::Exited(0), "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(
        lines[0].contains(": 1/2 s, ") && lines[1].contains(": 2/2 s, "),
        "{}",
        r.stdout
    );
    assert!(number_after(lines[1], "s,") >= number_after(lines[0], "s,"));
}

#[test]
fn mixed_passes_its_checks_and_is_deterministic() {
    let Some(()) = programs_ready() else { return };
    let dir = scratch("mixed");
    // Four at once in one directory, as the stress test runs them, each on its own file.
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=4)
            .map(|seed| {
                let dir = &dir;
                s.spawn(move || {
                    run_in(
                        dir,
                        "mixed",
                        &[&seed.to_string(), "300"],
                        Duration::from_secs(60),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (seed, r) in (1..=4).zip(&runs) {
        assert_eq!(
            r.end,
            End::Exited(0),
            "seed {seed}: {}{}",
            r.stdout,
            r.stderr
        );
        assert!(
            r.stdout.starts_with(&format!("mixed {seed}: pid ")),
            "{}",
            r.stdout
        );
        assert!(r.stdout.ends_with(", all right\n"), "{}", r.stdout);
    }
    // The same seed does the same mix: the summary after the pid is identical.
    let again = run_in(&dir, "mixed", &["3", "300"], Duration::from_secs(60));
    let after_pid = |s: &str| s.splitn(3, ": ").nth(2).unwrap_or_default().to_string();
    assert_eq!(again.end, End::Exited(0));
    assert_eq!(after_pid(&again.stdout), after_pid(&runs[2].stdout));
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "mixed removes its files"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The adversarial programs: what each tries, and what Linux does about it. quartet's boot tests
/// expect the same endings (a signal number here is the signal quartet reports killing it with).
/// SIGSEGV 11, SIGILL 4; exit 3 is "Linux/QEMU did not stop this; see the program's doc".
const ADVERSARIES: &[(&str, &[&str], End, &str)] = &[
    (
        "bad-read-kernel",
        &[],
        End::Signal(11),
        "loading from 0xffffff8040000000",
    ),
    (
        "bad-read-kernel",
        &["2"],
        End::Signal(11),
        "loading from 0xffff000000000000",
    ),
    (
        "bad-write-text",
        &[],
        End::Signal(11),
        "storing into my own code at 0x4",
    ),
    (
        "bad-exec-stack",
        &[],
        End::Signal(11),
        "jumping to a `ret` on the stack",
    ),
    (
        "bad-jump-kernel",
        &[],
        End::Signal(11),
        "jumping to 0xffffff8040200000",
    ),
    (
        "bad-stack-overflow",
        &[],
        End::Signal(11),
        "recursing with 4 KiB frames",
    ),
    ("bad-udf", &[], End::Signal(4), "executing udf #0"),
    (
        "bad-sysreg",
        &[],
        End::Signal(4),
        "reading ttbr1_el1 at EL0",
    ),
    (
        "bad-pointers",
        &[],
        End::Exited(0),
        "every bad pointer got EFAULT",
    ),
    (
        "bad-syscall",
        &[],
        End::Exited(0),
        "number 0xfa0 got ENOSYS",
    ),
    (
        "bad-length",
        &[],
        End::Exited(0),
        "write(1, buf, 0x4000000000000000) -> Err(EFAULT (14))",
    ),
    // QEMU does not check SP alignment; hardware with SCTLR_EL1.SA0 gives SIGBUS (7).
    (
        "bad-unaligned-sp",
        &[],
        End::Exited(3),
        "no fault: this CPU does not check SP alignment",
    ),
    // Bounded on the host: 16 MiB, 12 children (root is exempt from RLIMIT_NPROC).
    (
        "bad-oom",
        &["16"],
        End::Exited(3),
        "took 16 MiB (16 MiB heap) and stopped at the limit",
    ),
    (
        "bad-forkbomb",
        &["12"],
        End::Exited(3),
        "12 forks, stopped at the maximum; killed and reaped 12",
    ),
];

#[test]
fn adversarial_programs_end_as_linux_ends_them() {
    let Some(()) = programs_ready() else { return };
    for (name, args, end, says) in ADVERSARIES {
        let r = run(name, args);
        assert_eq!(&r.end, end, "{name} {args:?}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains(says),
            "{name} {args:?} printed {:?}, not {says:?}",
            r.stdout
        );
        assert!(
            r.stdout.starts_with(&format!("{name}: ")),
            "{name}: {:?}",
            r.stdout
        );
    }
}

#[test]
fn bad_pointers_checks_every_case_with_efault() {
    let Some(()) = programs_ready() else { return };
    let r = run("bad-pointers", &[]);
    let cases: Vec<&str> = r.stdout.lines().filter(|l| l.contains("+64: ")).collect();
    assert_eq!(cases.len(), 5, "{}", r.stdout);
    for line in cases {
        assert!(line.ends_with(": write EFAULT, read EFAULT"), "{line}");
    }
}

#[test]
fn an_endless_loop_runs_until_killed() {
    let Some(()) = programs_ready() else { return };
    let dir = scratch("bad-loop");
    let r = run_in(&dir, "bad-loop", &[], Duration::from_secs(2));
    assert_eq!(r.end, End::TimedOut);
    assert_eq!(r.stdout, "bad-loop: looping forever without system calls\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_program_has_a_test_here() {
    let Some(()) = programs_ready() else { return };
    let source = std::fs::read_to_string(root().join("tests/user_linux.rs")).unwrap();
    for name in build_programs::rust_program_names(&root()) {
        assert!(
            source.contains(&format!("\"{name}\"")),
            "user/src/bin/{name}.rs is not run by any test here"
        );
    }
}

#[test]
fn bench_syscall_reports_every_operation_under_linux_too() {
    let Some(()) = programs_ready() else { return };
    let r = run("bench-syscall", &["200"]);
    assert_eq!(r.end, End::Exited(0), "{}{}", r.stdout, r.stderr);
    let ops: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| {
            assert!(l.starts_with("bench suite=syscall op="), "{l}");
            l.split_whitespace().nth(2).unwrap()
        })
        .collect();
    assert_eq!(
        ops,
        [
            "op=floor",
            "op=getpid",
            "op=page-fault",
            "op=fork-exit-wait",
            "op=switch"
        ]
    );
}

/// The `key=value` fields of mix's result line, after checking it is the only line.
fn mix_fields(r: &Run) -> std::collections::HashMap<String, String> {
    assert_eq!(r.end, End::Exited(0), "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "mix prints one line: {:?}", r.stdout);
    let rest = lines[0]
        .strip_prefix("mix: ")
        .unwrap_or_else(|| panic!("{:?}", lines[0]));
    rest.split(' ')
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("{pair:?} in {rest:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn mix_reports_its_work_and_kernel_share_under_linux_too() {
    let Some(()) = programs_ready() else { return };
    let dir = scratch("mix");
    let light = mix_fields(&run_in(
        &dir,
        "mix",
        &["--kernel-pct", "10", "--ops", "6"],
        Duration::from_secs(60),
    ));
    let heavy = mix_fields(&run_in(
        &dir,
        "mix",
        &["--kernel-pct", "90", "--ops", "30"],
        Duration::from_secs(60),
    ));
    let n = |f: &std::collections::HashMap<String, String>, k: &str| -> f64 {
        f.get(k)
            .unwrap_or_else(|| panic!("{k} missing from {f:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("{k} is not a number in {f:?}"))
    };
    for (f, pct, ops) in [(&light, 10.0, 6.0), (&heavy, 90.0, 30.0)] {
        assert_eq!(n(f, "kernel_pct"), pct, "{f:?}");
        assert_eq!(n(f, "ops"), ops, "{f:?}");
        // Counter readings exceed f64's exact integers: compared as integers.
        let int = |k: &str| f[k].parse::<u64>().unwrap();
        assert_eq!(int("ticks"), int("end") - int("start"), "{f:?}");
        let (kernel, user) = (n(f, "kernel_ticks"), n(f, "user_ticks"));
        assert!(kernel > 0.0 && kernel + user <= n(f, "ticks"), "{f:?}");
        let share = kernel / (kernel + user);
        assert!((n(f, "kernel_share") - share).abs() < 0.001, "{f:?}");
    }
    // The loop was sized from each run's own calibration: 90% asks for far less user work.
    assert!(n(&light, "user_iters") > 10.0 * n(&heavy, "user_iters"));
    assert!(
        n(&heavy, "kernel_share") > n(&light, "kernel_share") + 0.3,
        "10%: {light:?}\n90%: {heavy:?}"
    );
    // Each operation's file was unlinked again.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

    let missing = run_in(
        &dir,
        "mix",
        &["--ops", "1", "--dir", "no-such-dir"],
        Duration::from_secs(60),
    );
    assert_eq!(missing.end, End::Exited(1), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("open (create) failed"),
        "{}",
        missing.stderr
    );
    let bad = run_in(&dir, "mix", &["--kernel-pct", "0"], Duration::from_secs(60));
    assert_eq!(bad.end, End::Exited(2));
    assert!(bad.stderr.contains("1 to 100 percent"), "{}", bad.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
