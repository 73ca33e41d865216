//! Boot the kernel under QEMU in every configuration quartet supports and check what it prints.
//!
//! Each run goes through tools/qemu-run (the same script `make run` uses) with a timeout, so a
//! hang fails the test instead of stalling CI. The contract lines checked are the ones the
//! kernel promises: `smp: N/M CPUs online` exactly once, and in test mode one `test ...` line per
//! test closed by `N passed, M failed`, with QEMU's exit status 0 only when M is 0. A run that
//! does not end by itself (the shell) is watched until the shell's prompt, never only until the
//! `smp:` line: a crash just after that line would go unseen.
//!
//! The images must be built first: `make test` does that (`make image rpi4`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use quartet::config::MAX_CPUS;

/// Generous: a busy 2-core CI machine runs two guests at once. The slowest run (the whole
/// in-kernel suite on 8 vCPUs) takes about a minute there; 120 s was once too little when a
/// test's host load made it slow (the litmus lockstep, since fixed), so a hang must take 4 min
/// to be declared one. The suite as a whole stays far inside CI's limit either way.
const TIMEOUT: Duration = Duration::from_secs(240);
/// What the contract line contains.
const CONTRACT: &str = " CPUs online (counter";

#[derive(Clone, Copy, PartialEq)]
enum Board {
    Virt,
    Rpi4,
}

struct Boot<'a> {
    board: Board,
    env: &'a [(&'a str, &'a str)],
    bootargs: &'a str,
    dtb: Option<PathBuf>,
}

struct Run {
    output: String,
    status: Option<i32>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn image(board: Board) -> PathBuf {
    let path = root().join(match board {
        Board::Virt => "build/virt/kernel8.img",
        Board::Rpi4 => "build/rpi4/kernel8.img",
    });
    assert!(
        path.exists(),
        "{} is missing: build it with `make image rpi4` (make test does)",
        path.display()
    );
    path
}

/// tools/qemu-run with none of the Makefile's machine knobs leaking in from the environment.
fn qemu_command() -> Command {
    let mut cmd = Command::new(root().join("tools/qemu-run"));
    for var in [
        "SMP",
        "MEM",
        "CPU",
        "GIC",
        "EL2",
        "VIRT_OPTS",
        "BOOTARGS",
        "RPI_DTB",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn boot(b: Boot<'_>) -> Run {
    let mut cmd = qemu_command();
    cmd.arg("--board")
        .arg(if b.board == Board::Virt {
            "virt"
        } else {
            "rpi4"
        })
        .arg("--image")
        .arg(image(b.board))
        .arg("--timeout")
        .arg(TIMEOUT.as_secs().to_string())
        .env("BOOTARGS", b.bootargs);
    if let Some(dtb) = &b.dtb {
        cmd.arg("--dtb").arg(dtb);
    }
    for (k, v) in b.env {
        cmd.env(k, v);
    }
    run_command(cmd, None)
}

fn run_command(mut cmd: Command, stop_after: Option<&str>) -> Run {
    use std::os::unix::process::CommandExt;
    // Its own process group, so that ending the run ends QEMU too, not only the wrapper.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut guard = KillOnDrop(cmd.spawn().expect("tools/qemu-run starts"));
    let child = &mut guard.0;
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx.send(l)))
    });
    std::thread::spawn(move || {
        BufReader::new(err)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx2.send(l)))
    });
    let start = Instant::now();
    let mut output = String::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let stop = stop_after.is_some_and(|p| line_body(&line).contains(p));
                output.push_str(line.trim_end_matches('\r'));
                output.push('\n');
                if stop {
                    // Let the line's neighbours arrive, then end the run.
                    std::thread::sleep(Duration::from_millis(300));
                    while let Ok(l) = rx.try_recv() {
                        output.push_str(l.trim_end_matches('\r'));
                        output.push('\n');
                    }
                    return Run {
                        output,
                        status: None,
                    };
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        assert!(
            start.elapsed() < TIMEOUT + Duration::from_secs(15),
            "QEMU outlived its timeout:\n{output}"
        );
    }
    let status = child.wait().expect("qemu-run exits").code();
    Run { output, status }
}

/// Ends the whole process group of a run (the wrapper script, `timeout` and QEMU) when the
/// run is over or the test panics, so no guest outlives its test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        // Never drop the `--`: procps-ng's kill reads `kill -KILL -12345` as the option `-1`
        // and sends SIGKILL to pid -1, which is every process it may signal.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

/// The text of a log line after `[time] cpuN LEVEL `, or the whole line for other lines.
fn line_body(line: &str) -> &str {
    match parse_log_line(line) {
        Some((_, _, body)) => body,
        None => line,
    }
}

/// Split `[    0.012345] cpu2 INFO  smp: message` into (cpu, level, "smp: message").
fn parse_log_line(line: &str) -> Option<(&str, &str, &str)> {
    let rest = line.strip_prefix('[')?;
    let (time, rest) = rest.split_once("] ")?;
    let (secs, micros) = time.trim_start().split_once('.')?;
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || micros.len() != 6
        || !micros.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let (cpu, rest) = rest.split_once(' ')?;
    let id = cpu.strip_prefix("cpu")?;
    if !(id == "?" || (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))) {
        return None;
    }
    let level = rest.get(..5)?;
    if !["ERROR", "WARN ", "INFO ", "DEBUG", "TRACE"].contains(&level) {
        return None;
    }
    let body = rest.get(6..)?;
    let (subsystem, _) = body.split_once(": ")?;
    if subsystem.is_empty() || subsystem.contains(' ') {
        return None;
    }
    Some((cpu, level.trim_end(), body))
}

/// Every line the kernel printed is a log line, a test line, or the closing line: concurrent
/// output from several CPUs never mixed within a line.
/// Every line fragment in `expected` appears somewhere in the run's output.
fn assert_output_has(run: &Run, expected: &[&str]) {
    for fragment in expected {
        assert!(
            run.output.contains(fragment),
            "missing {fragment:?} in:\n{}",
            run.output
        );
    }
}

fn assert_lines_well_formed(run: &Run) {
    for line in run.output.lines() {
        let ok = parse_log_line(line).is_some()
            || line.starts_with("qemu-system-aarch64: warning:")
            || line.starts_with("qemu-system-aarch64: terminating on signal")
            || (line.starts_with("test ")
                && (line.ends_with(" ... ok") || line.contains(" ... FAILED: ")))
            || closing_counts(line).is_some();
        assert!(
            ok,
            "malformed or interleaved line {line:?} in:\n{}",
            run.output
        );
    }
}

/// `N passed, M failed`, alone on its line.
fn closing_counts(line: &str) -> Option<(usize, usize)> {
    let (p, f) = line.split_once(" passed, ")?;
    Some((p.parse().ok()?, f.strip_suffix(" failed")?.parse().ok()?))
}

fn smp_lines(run: &Run) -> Vec<(usize, usize)> {
    run.output
        .lines()
        .filter_map(|l| line_body(l).strip_prefix("smp: "))
        .filter_map(|rest| {
            let (counts, tail) = rest.split_once(" CPUs online")?;
            let _ = tail;
            let (n, m) = counts.split_once('/')?;
            Some((n.parse().ok()?, m.parse().ok()?))
        })
        .collect()
}

fn assert_online(run: &Run, online: usize, listed: usize) {
    assert_eq!(
        smp_lines(run),
        vec![(online, listed)],
        "want exactly one `smp: {online}/{listed} CPUs online`:\n{}",
        run.output
    );
}

/// Run `tools/bench --from-log` on a boot's output in a fresh temporary directory, as
/// `make bench` does after a run; the directory and what the tool printed.
fn tools_bench_from_log(run: &Run, name: &str) -> (PathBuf, String) {
    let out = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let log = out.join("raw.log");
    std::fs::write(&log, &run.output).unwrap();
    let tool = Command::new(root().join("tools/bench"))
        .arg("--from-log")
        .arg(&log)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run tools/bench");
    let printed = String::from_utf8_lossy(&tool.stdout).into_owned();
    assert!(
        tool.status.success(),
        "tools/bench failed:\n{printed}\n{}",
        String::from_utf8_lossy(&tool.stderr)
    );
    (out, printed)
}

/// `tools/bench --from-log` on a log made up here: its exit status and what it printed.
fn tools_bench_on_crafted_log(name: &str, log: &str) -> (Option<i32>, String) {
    let out = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("raw.log");
    std::fs::write(&path, log).unwrap();
    let tool = Command::new(root().join("tools/bench"))
        .arg("--from-log")
        .arg(&path)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run tools/bench");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&tool.stdout),
        String::from_utf8_lossy(&tool.stderr)
    );
    let _ = std::fs::remove_dir_all(&out);
    (tool.status.code(), printed)
}

#[test]
fn tools_bench_fails_a_run_that_printed_an_error_or_left_a_suite_without_results() {
    let header = "[    0.066584] cpu0 INFO  bench: 4 CPUs online, counter 1000000000 Hz; numbers are guest time under QEMU TCG unless on hardware\n";
    let results = "bench suite=syscall op=floor iterations=20000 ticks_per_op=961.5 ns_per_op=962 ratio_to_floor=1.00\n\
                   bench suite=syscall op=getpid iterations=20000 ticks_per_op=2511.0 ns_per_op=2511 ratio_to_floor=2.61\n\
                   [    1.200000] cpu0 INFO  bench: suite syscall: 2 results\n";
    let end = "[    1.268640] cpu0 INFO  bench: 2 results in 1.2 s\n";

    let clean = format!("{header}{results}{end}");
    let (status, printed) = tools_bench_on_crafted_log("quartet-bench-clean", &clean);
    assert_eq!(status, Some(0), "a clean log passes:\n{printed}");

    let error =
        "[    1.100000] cpu0 ERROR bench: rcu: rcu at 4 CPUs: no walks completed; no result\n";
    let with_error = format!("{header}{error}{results}{end}");
    let (status, printed) = tools_bench_on_crafted_log("quartet-bench-error", &with_error);
    assert_ne!(
        status,
        Some(0),
        "a run that printed an ERROR fails:\n{printed}"
    );
    assert!(
        printed.contains("no walks completed"),
        "the ERROR line is repeated:\n{printed}"
    );

    let empty_suite = "[    1.150000] cpu0 INFO  bench: suite rcu: 0 results\n";
    let with_empty = format!("{header}{results}{empty_suite}{end}");
    let (status, printed) = tools_bench_on_crafted_log("quartet-bench-empty", &with_empty);
    assert_ne!(status, Some(0), "a suite without results fails:\n{printed}");
    assert!(
        printed.contains("suite rcu produced no results"),
        "{printed}"
    );
}

/// A test-mode run passed: every test line ok, the closing line says 0 failed, status 0.
fn assert_suite_passed(run: &Run) {
    let closing: Vec<_> = run.output.lines().filter_map(closing_counts).collect();
    assert_eq!(
        closing.len(),
        1,
        "want one closing `N passed, M failed` line:\n{}",
        run.output
    );
    let (passed, failed) = closing[0];
    let ok_lines = run
        .output
        .lines()
        .filter(|l| l.starts_with("test ") && l.ends_with(" ... ok"))
        .count();
    assert_eq!(failed, 0, "in-kernel failures:\n{}", run.output);
    assert!(
        passed > 0 && passed == ok_lines,
        "{passed} passed but {ok_lines} ok lines:\n{}",
        run.output
    );
    assert_eq!(run.status, Some(0), "QEMU exit status:\n{}", run.output);
    assert_lines_well_formed(run);
}

fn test_run(board: Board, env: &[(&str, &str)]) -> Run {
    boot(Boot {
        board,
        env,
        bootargs: "test",
        dtb: None,
    })
}

/// The process, file-system and big-lock tests under locking strategy `strategy`, on 4 CPUs:
/// every strategy must run the same programs with the same results.
fn assert_strategy_passes(strategy: &str) {
    assert_strategy_passes_with(strategy, "");
}

/// As `assert_strategy_passes`, with more boot arguments; the boot log, for more checks.
fn assert_strategy_passes_with(strategy: &str, more: &str) -> Run {
    let bootargs = format!("test=user_,fs_,biglock locking={strategy} {more}");
    let run = boot(Boot {
        board: Board::Virt,
        env: &[("SMP", "4"), ("GIC", "3")],
        bootargs: &bootargs,
        dtb: None,
    });
    assert_online(&run, 4, 4);
    let announced = format!("INFO  locking: {strategy}: ");
    assert!(
        run.output.lines().any(|l| l.contains(&announced)),
        "the boot log does not announce `{announced}`:\n{}",
        run.output
    );
    assert_suite_passed(&run);
    run
}

#[test]
fn locking_bkl_runs_the_processes_files_and_big_lock_tests_on_4_cpus() {
    let run = assert_strategy_passes_with("bkl", "");
    assert!(
        run.output
            .contains("carries it through a switch, as in Linux 2.0"),
        "locking=bkl carries the lock through switches unless told otherwise:\n{}",
        run.output
    );
}

#[test]
fn locking_bkl_let_go_before_each_switch_runs_the_same_tests_on_4_cpus() {
    let run = assert_strategy_passes_with("bkl", "bklswitch=release");
    assert!(
        run.output
            .contains("let go before each switch and taken back after it, as in Linux 2.2"),
        "bklswitch=release is announced:\n{}",
        run.output
    );
}

#[test]
fn locking_fine_runs_the_processes_files_and_big_lock_tests_on_4_cpus() {
    assert_strategy_passes("fine");
}

#[test]
fn locking_subsystem_runs_the_processes_files_and_big_lock_tests_on_4_cpus() {
    assert_strategy_passes("subsystem");
}

#[test]
fn locking_leader_runs_the_processes_files_and_big_lock_tests_on_4_cpus() {
    assert_strategy_passes("leader");
}

#[test]
fn virt_gicv2_smp1() {
    let run = test_run(Board::Virt, &[("SMP", "1"), ("GIC", "2")]);
    assert_online(&run, 1, 1);
    assert_suite_passed(&run);
}

#[test]
fn virt_gicv2_smp2() {
    let run = test_run(Board::Virt, &[("SMP", "2"), ("GIC", "2")]);
    assert_online(&run, 2, 2);
    assert_suite_passed(&run);
}

#[test]
fn virt_gicv2_smp4() {
    let run = test_run(Board::Virt, &[("SMP", "4"), ("GIC", "2")]);
    assert_online(&run, 4, 4);
    assert_suite_passed(&run);
}

#[test]
fn virt_says_it_has_no_videocore_mailbox_and_goes_on_with_the_device_tree() {
    // virt's tree has no brcm,bcm2835-mbox: one line says so, nothing is asked, and `mem` and
    // `cpus` print no board line (the boot log said it once).
    let mut s = Session::start(&[("SMP", "2")], "");
    assert_output_has(
        &Run {
            output: s.output.clone(),
            status: None,
        },
        &[
            "board: no VideoCore mailbox in the device tree (brcm,bcm2835-mbox); going on with the device tree",
        ],
    );
    let board_lines = s.output.lines().filter(|l| l.contains(" board: ")).count();
    assert_eq!(board_lines, 1, "{}", s.output);
    for command in ["mem", "cpus"] {
        let out = s.command(command);
        assert!(!out.contains("board:"), "{command}:\n{out}");
    }
}

#[test]
fn virt_gicv2_smp8() {
    let run = test_run(Board::Virt, &[("SMP", "8"), ("GIC", "2")]);
    assert_online(&run, 8, 8);
    assert_suite_passed(&run);
}

#[test]
fn virt_cpu_max_runs_the_suite_with_lse_atomics() {
    let run = test_run(Board::Virt, &[("SMP", "4"), ("CPU", "max")]);
    assert!(
        run.output.contains("atomics: LSE instructions"),
        "{}",
        run.output
    );
    assert!(
        run.output
            .contains("test atomics_lse_exact_on_every_cpu ... ok"),
        "{}",
        run.output
    );
    assert_online(&run, 4, 4);
    assert_suite_passed(&run);
}

#[test]
fn virt_cortex_a72_uses_ll_sc_atomics() {
    let run = test_run(Board::Virt, &[("SMP", "4"), ("CPU", "cortex-a72")]);
    assert!(
        run.output.contains("atomics: LL/SC loops"),
        "{}",
        run.output
    );
    assert!(
        run.output
            .contains("test atomics_llsc_exact_on_every_cpu ... ok"),
        "{}",
        run.output
    );
    assert_suite_passed(&run);
}

#[test]
fn virt_gicv3_smp4() {
    let run = test_run(Board::Virt, &[("SMP", "4"), ("GIC", "3")]);
    assert_online(&run, 4, 4);
    assert_suite_passed(&run);
}

#[test]
fn virt_gicv3_more_cpus_than_supported_are_reported_and_left_off() {
    // Four more than the build supports; the shell must still come up on the ones started.
    let smp = (MAX_CPUS + 4).to_string();
    let mut s = Session::start(&[("SMP", &smp), ("GIC", "3")], "");
    let boot = Run {
        output: s.output.clone(),
        status: None,
    };
    assert_online(&boot, MAX_CPUS, MAX_CPUS + 4);
    let said = format!(
        "device tree lists {} CPUs; quartet supports {MAX_CPUS}",
        MAX_CPUS + 4
    );
    assert!(boot.output.contains(&said), "no {said:?}:\n{}", boot.output);
    let cpus = s.command("cpus");
    let summary = format!("{MAX_CPUS} of {MAX_CPUS} CPUs online");
    assert!(cpus.contains(&summary), "{cpus}");
}

/// QEMU virt puts 16 CPUs in each Aff1 cluster: cpu16 is MPIDR 0x100.
fn virt_mpidr(id: usize) -> usize {
    ((id / 16) << 8) | (id % 16)
}

/// A shell session on `smp` GICv3 vCPUs: every CPU in the tree (up to MAX_CPUS) comes online
/// with its MPIDR and cluster in the log and in `cpus`, and the shell answers.
fn assert_gicv3_shell_with_every_cpu(smp: usize) {
    let kept = smp.min(MAX_CPUS);
    let clusters = kept.div_ceil(16);
    let mut s = Session::start(&[("SMP", &smp.to_string()), ("GIC", "3")], "");
    let boot = Run {
        output: s.output.clone(),
        status: None,
    };
    assert_online(&boot, kept, smp);
    assert!(!boot.output.contains(" ERROR "), "{}", boot.output);
    let redistributors = format!("GICv3: {smp} redistributors in 1 region(s)");
    assert!(boot.output.contains(&redistributors), "{}", boot.output);
    // Each CPU's line, in the order the CPUs were started, all before the count line: the boot
    // CPU starts the next CPU only once the last one has logged (`wait_until_announced`).
    let mut last = 0;
    for id in 1..kept {
        let online = format!(
            "cpu{id} online: MPIDR {:#x} (cluster {})",
            virt_mpidr(id),
            id / 16
        );
        let Some(at) = boot.output.find(&online) else {
            panic!("no {online:?}:\n{}", boot.output);
        };
        assert!(at > last, "{online:?} out of order:\n{}", boot.output);
        last = at;
    }
    let count_line = boot
        .output
        .find("CPUs online (counter")
        .expect("the smp: line");
    assert!(
        last < count_line,
        "an online line after the count:\n{}",
        boot.output
    );
    let cpus = s.command("cpus");
    let summary = format!(
        "{kept} of {kept} CPUs online in {clusters} cluster{}",
        if clusters == 1 { "" } else { "s" }
    );
    assert!(cpus.contains(&summary), "no {summary:?}:\n{cpus}");
    for id in 0..kept {
        // A row: the id (with * on the shell's CPU), Online, the MPIDR, the cluster.
        let row = cpus.lines().find(|l| {
            let mut cells = l.split_whitespace();
            cells.next().map(|c| c.trim_end_matches('*')) == Some(&id.to_string())
        });
        let row = row.unwrap_or_else(|| panic!("no row for cpu{id}:\n{cpus}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells[1..4],
            [
                "Online",
                &format!("{:#x}", virt_mpidr(id)),
                &(id / 16).to_string()
            ],
            "{row}"
        );
    }
    s.send(b"poweroff\r");
    s.expect("shell: powering off");
    let (status, output) = s.exit_status();
    assert_eq!(status, Some(0), "{output}");
}

#[test]
fn virt_gicv3_smp16_reaches_the_shell_with_every_cpu() {
    assert_gicv3_shell_with_every_cpu(16);
}

#[test]
fn virt_gicv3_smp64_reaches_the_shell_with_every_cpu_in_four_clusters() {
    assert_gicv3_shell_with_every_cpu(64);
}

/// The IPI and interrupt tests on `smp` GICv3 vCPUs: each IPI kind reaches each CPU alone, in
/// whatever cluster, and on_each_cpu reaches them all.
fn assert_ipis_across_clusters(smp: usize) {
    let kept = smp.min(MAX_CPUS);
    let run = boot(Boot {
        board: Board::Virt,
        env: &[("SMP", &smp.to_string()), ("GIC", "3")],
        bootargs: "test=irq_",
        dtb: None,
    });
    assert_online(&run, kept, smp);
    let reached = format!(
        "reached each of {} other CPUs alone, in {} cluster(s)",
        kept - 1,
        kept.div_ceil(16)
    );
    assert!(
        run.output.contains(&reached),
        "no {reached:?}:\n{}",
        run.output
    );
    assert!(
        run.output
            .contains("test irq_on_each_cpu_runs_once_on_every_cpu ... ok"),
        "{}",
        run.output
    );
    assert_suite_passed(&run);
}

#[test]
fn virt_gicv3_smp64_ipis_reach_each_cpu_in_every_cluster() {
    assert_ipis_across_clusters(64);
}

/// The in-kernel tests of what bring-up and interrupts give every CPU (per-CPU areas, stacks,
/// maps, heap, ticks, IPIs, RCU grace periods), on 16 vCPUs: about 10 s on a 2-core host. The
/// whole suite passes there too (`GIC=3 SMP=16 BOOTARGS=test make run`: 102 of 102 in 4 min 22 s
/// on a quiet 2-core host, 19 minutes with other builds loading it), too long to add to every
/// `make test`: the lock torture tests hand a fair lock from vCPU to vCPU, and each hand-over
/// waits for the host to run the one vCPU whose turn it is.
#[test]
fn virt_gicv3_smp16_runs_the_per_cpu_interrupt_and_rcu_tests() {
    let run = boot(Boot {
        board: Board::Virt,
        env: &[("SMP", "16"), ("GIC", "3")],
        bootargs: "test=smp_,percpu_,mmu_,irq_,heap_,mm_,rcu_",
        dtb: None,
    });
    assert_online(&run, 16, 16);
    assert_suite_passed(&run);
}

#[test]
fn virt_el2_entry_drops_to_el1_and_uses_the_smc_conduit() {
    let run = test_run(Board::Virt, &[("SMP", "4"), ("EL2", "1")]);
    assert_online(&run, 4, 4);
    assert!(
        run.output.contains("entered at EL2, now EL1"),
        "{}",
        run.output
    );
    let secondaries_at_el2 = run
        .output
        .lines()
        .filter(|l| l.contains("online: MPIDR") && l.contains("entered at EL2"))
        .count();
    assert_eq!(secondaries_at_el2, 3, "{}", run.output);
    assert_suite_passed(&run);
}

#[test]
fn virt_secure_on_leaves_the_secure_only_memory_alone() {
    // secure=on adds secram@e000000 with status = "disabled": RAM that only the secure world
    // may touch. Given to the heap, the first write to it aborts.
    let run = test_run(Board::Virt, &[("SMP", "4"), ("VIRT_OPTS", "secure=on")]);
    assert!(
        run.output.contains("boot: memory 0x40000000..0x60000000"),
        "{}",
        run.output
    );
    assert!(
        !run.output.contains("boot: memory 0xe000000"),
        "the disabled secure RAM is not RAM:\n{}",
        run.output
    );
    assert_online(&run, 4, 4);
    assert_suite_passed(&run);
}

#[test]
fn virt_secure_on_started_as_firmware_at_el3_says_it_cannot_run_there() {
    // Without -kernel's boot protocol the CPU starts in its reset state: at EL3 with secure=on.
    // quartet is an EL1 kernel that leaves only EL2, and QEMU offers no PSCI when the guest owns
    // EL3, so the honest outcome is a clear refusal, not a silent hang on the first hvc.
    let mut cmd = qemu_command();
    cmd.args(["--board", "virt", "--timeout", "60", "--reset-elf"])
        .arg(virt_elf())
        .envs([("SMP", "1"), ("VIRT_OPTS", "secure=on")]);
    let run = run_command(cmd, Some("quartet runs at EL1"));
    assert!(
        run.output.contains(
            "ERROR boot: entered at EL3, where secure firmware runs: quartet runs at EL1"
        ),
        "{}",
        run.output
    );
    assert!(!run.output.contains("MMU on"), "{}", run.output);
    assert_lines_well_formed(&run);
}

#[test]
fn raspi4b_spin_table_with_the_real_pi4_device_tree() {
    let run = test_run(Board::Rpi4, &[]);
    assert!(
        run.output.contains("on Raspberry Pi 4 Model B"),
        "model from the DTB:\n{}",
        run.output
    );
    assert!(
        !run.output.contains("rejected"),
        "the Pi 4 device tree must parse:\n{}",
        run.output
    );
    assert!(
        run.output.contains("console PL011 at 0xfe201000"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains(
            "GPIO14/15 switched to the PL011 (ALT0, no pulls) in the GPIO block at 0xfe200000"
        ),
        "{}",
        run.output
    );
    // The armstub page is reserved by the tree's /memreserve/ and by each CPU's release
    // address: one range, listed once.
    let armstub = run
        .output
        .lines()
        .filter(|l| l.contains("boot: reserved 0x0..0x1000 (4 KiB)"))
        .count();
    assert_eq!(armstub, 1, "{}", run.output);
    assert_online(&run, 4, 4);
    assert_suite_passed(&run);
}

#[test]
fn raspi4b_with_a_tree_naming_another_board_leaves_the_pi4_gpio_alone() {
    // The real Pi 4 tree with every "brcm,bcm2711" made "brcm,bcm2712" (the Pi 5's SoC): its
    // UART and GIC are still described (and where raspi4b has them), but it has no BCM2711
    // GPIO block any more. The Pi 4's GPIO address must not be written on such a board.
    let mut blob = std::fs::read(root().join("build/dtb/bcm2711-rpi-4-b.dtb"))
        .expect("the Pi 4 tree: run tools/setup --rpi-dtb");
    for (from, to) in [
        (&b"brcm,bcm2711"[..], &b"brcm,bcm2712"[..]),
        (b"raspberrypi,4-model-b", b"raspberrypi,5-model-b"),
        (b"Raspberry Pi 4 Model B", b"Raspberry Pi 5 Model B"),
    ] {
        let mut at = 0;
        while let Some(found) = blob[at..].windows(from.len()).position(|w| w == from) {
            blob[at + found..at + found + to.len()].copy_from_slice(to);
            at += found + to.len();
        }
    }
    let dir = root().join("target/test-dtbs");
    std::fs::create_dir_all(&dir).unwrap();
    let dtb = dir.join("pi4-named-bcm2712.dtb");
    std::fs::write(&dtb, &blob).unwrap();
    let image = image(Board::Rpi4);
    let s = Session::start_with(
        &with_tree("rpi4", image.as_os_str(), dtb.as_os_str()),
        &[],
        "",
    );
    for expected in [
        "on Raspberry Pi 5 Model B (Raspberry Pi 4 build)",
        "device tree has no GPIO controller (brcm,bcm2711-gpio), and its root compatible names a board other than the Raspberry Pi 4",
        "console PL011 at 0xfe201000",
        "smp: 4/4 CPUs online",
    ] {
        assert!(
            s.output.contains(expected),
            "no {expected:?}:\n{}",
            s.output
        );
    }
    assert!(!s.output.contains("GPIO14/15 switched"), "{}", s.output);
    assert!(!s.output.contains(" ERROR "), "{}", s.output);
}

#[test]
fn raspi4b_without_a_device_tree_falls_back_to_board_defaults() {
    let image = image(Board::Rpi4);
    let run = boot_to_prompt(
        &with_tree("rpi4", image.as_os_str(), "none".as_ref()),
        &[],
        "",
    );
    assert!(
        run.output.contains("no device tree: x0 = 0x100"),
        "{}",
        run.output
    );
    // The mailbox is found only through a tree: without one, no address is guessed.
    assert!(
        run.output.contains(
            "board: no device tree to find a VideoCore mailbox in (brcm,bcm2835-mbox), and none is guessed"
        ),
        "{}",
        run.output
    );
    assert_online(&run, 4, 4);
    assert_lines_well_formed(&run);
}

/// Boot the Pi 4 build on raspi4b with `tree` to the shell's prompt and check what any board
/// of the BCM2711 family must show: the model the tree names, the PL011 console moved onto
/// GPIO14/15, all four cores out of the spin table, and no error on the way.
fn bcm2711_board_reaches_the_prompt(image: &Path, tree: &Path, model: &str) -> Run {
    let run = boot_to_prompt(
        &with_tree("rpi4", image.as_os_str(), tree.as_os_str()),
        &[],
        "",
    );
    assert_output_has(
        &run,
        &[
            &format!("on {model} (Raspberry Pi 4 build)"),
            "console PL011 at 0xfe201000",
            "GPIO14/15 switched to the PL011 (ALT0, no pulls)",
        ],
    );
    assert!(!run.output.contains(" ERROR "), "{}", run.output);
    assert_online(&run, 4, 4);
    assert_lines_well_formed(&run);
    // QEMU's raspi4b answers the property channel as a 2 GiB Pi 4 B (revision code 0xb03115),
    // whichever tree it is given; a tree for another board of the family is said to differ.
    assert_output_has(
        &run,
        &[
            "board: Raspberry Pi 4 Model B rev 1.5, 2 GiB (mailbox)",
            "board: revision code 0xb03115: BCM2711 (4 x Cortex-A72), made by Sony UK; mailbox at 0xfe00b880",
        ],
    );
    let says_differs = run
        .output
        .contains("but the firmware says this is a Raspberry Pi 4 Model B");
    assert_eq!(
        says_differs,
        !model.starts_with("Raspberry Pi 4 Model B"),
        "{model}:\n{}",
        run.output
    );
    run
}

/// The `boot: memory A..B (N MiB)` lines: the RAM the device tree gave.
fn tree_memory_lines(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.split_once("boot: memory ").map(|(_, r)| r.to_string()))
        .collect()
}

#[test]
fn raspi4b_asks_the_videocore_and_mem_reports_the_board_and_its_memory() {
    let image = image(Board::Rpi4);
    let tree = fetched_tree("bcm2711-rpi-4-b.dtb");
    let mut s = Session::start_with(
        &with_tree("rpi4", image.as_os_str(), tree.as_os_str()),
        &[],
        "",
    );
    let boot = s.output.clone();
    // The firmware's ARM memory is QEMU's RAM below its VideoCore memory, which is also what
    // QEMU writes into the tree's /memory@0: the two must be found to agree, range for range.
    let memory = tree_memory_lines(&boot);
    assert_eq!(memory.len(), 1, "{boot}");
    let agree = format!(
        "board: firmware's ARM memory {} is a device-tree range as it stands; the device tree's ranges are used",
        memory[0]
    );
    for expected in [
        "board: Raspberry Pi 4 Model B rev 1.5, 2 GiB (mailbox)",
        // QEMU's firmware model says 3 MHz (a real Pi 4 with init_uart_clock says 48 MHz); the
        // console follows the firmware.
        "board: UART clock 3000000 Hz from the firmware, not the 48000000 Hz",
        "console PL011 at 0xfe201000, 3000000 Hz clock",
        agree.as_str(),
    ] {
        assert!(boot.contains(expected), "no {expected:?}:\n{boot}");
    }
    assert!(!boot.contains(" WARN  board"), "{boot}");
    let mem = s.command("mem");
    let (start, rest) = memory[0].split_once("..").unwrap();
    let end = rest.split(' ').next().unwrap();
    let as_mem_prints = |hex: &str| {
        format!(
            "{:#012x}",
            u64::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap()
        )
    };
    let firmware_line = format!("{}..{}", as_mem_prints(start), as_mem_prints(end));
    let line = mem
        .lines()
        .find(|l| l.starts_with("firmware "))
        .unwrap_or_else(|| panic!("mem has no firmware line:\n{mem}"));
    assert!(
        line.contains(&firmware_line)
            && line.ends_with("ARM memory (mailbox): the same as the device tree's"),
        "{line}"
    );
    assert!(
        mem.contains(
            "board: Raspberry Pi 4 Model B rev 1.5, 2 GiB (mailbox); BCM2711, 4 x Cortex-A72"
        ),
        "{mem}"
    );
    assert!(
        mem.contains("the board has 2 GiB; the device tree gives the Arm cores"),
        "{mem}"
    );
    let cpus = s.command("cpus");
    assert!(
        cpus.contains(
            "board: Raspberry Pi 4 Model B rev 1.5, 2 GiB (mailbox); BCM2711, 4 x Cortex-A72"
        ),
        "{cpus}"
    );
}

#[test]
fn raspi4b_with_a_mailbox_that_never_answers_times_out_and_boots_on() {
    // The real tree with the mailbox moved 0x40 up, past QEMU's mailbox, where reads return 0:
    // a status that is never "empty" and a word that is never the answer. The wait must end at
    // its timeout, say so in one line, and boot must go on with the device tree.
    let mut blob = std::fs::read(fetched_tree("bcm2711-rpi-4-b.dtb")).unwrap();
    let reg = [0x7e, 0x00, 0xb8, 0x80, 0x00, 0x00, 0x00, 0x40];
    let at = blob
        .windows(reg.len())
        .position(|w| w == reg)
        .expect("the mailbox's reg <0x7e00b880 0x40> is in the tree");
    blob[at + 3] = 0xc0;
    let dir = root().join("target/test-dtbs");
    std::fs::create_dir_all(&dir).unwrap();
    let dtb = dir.join("pi4-silent-mailbox.dtb");
    std::fs::write(&dtb, &blob).unwrap();
    let image = image(Board::Rpi4);
    let run = boot_to_prompt(
        &with_tree("rpi4", image.as_os_str(), dtb.as_os_str()),
        &[],
        "",
    );
    assert_output_has(
        &run,
        &["WARN  board: the VideoCore mailbox at 0xfe00b8c0: no answer within 100 ms"],
    );
    assert!(
        run.output.contains("going on with the device tree"),
        "{}",
        run.output
    );
    // No answer, no board facts: the console keeps the board's 48 MHz, the RAM is the tree's.
    assert!(
        run.output
            .contains("console PL011 at 0xfe201000, 48000000 Hz clock"),
        "{}",
        run.output
    );
    assert!(!run.output.contains("(mailbox)"), "{}", run.output);
    assert!(!run.output.contains(" ERROR "), "{}", run.output);
    assert_online(&run, 4, 4);
}

/// A device tree `tools/setup --rpi-dtb` keeps in build/dtb/.
fn fetched_tree(file: &str) -> PathBuf {
    let tree = root().join("build/dtb").join(file);
    assert!(
        tree.exists(),
        "{} is missing: run tools/setup --rpi-dtb",
        tree.display()
    );
    tree
}

#[test]
fn raspi4b_boots_the_pi_400_device_tree_to_the_shell() {
    // The Pi 400 is a Pi 4 in a keyboard: same SoC, same UART and spin table, its own tree.
    let tree = fetched_tree("bcm2711-rpi-400.dtb");
    bcm2711_board_reaches_the_prompt(&image(Board::Rpi4), &tree, "Raspberry Pi 400");
}

#[test]
fn raspi4b_boots_the_compute_module_4_device_tree_to_the_shell() {
    // Mainline describes the CM4 on its IO board; the card carries this tree as
    // bcm2711-rpi-cm4.dtb, the name the firmware asks for on a CM4.
    let tree = fetched_tree("bcm2711-rpi-cm4-io.dtb");
    bcm2711_board_reaches_the_prompt(
        &image(Board::Rpi4),
        &tree,
        "Raspberry Pi Compute Module 4 IO Board",
    );
}

/// The byte offset of the first partition of an MBR disk image, read from its table (the
/// entry at 0x1be, its start sector at +8), so the tests do not take the tool's word for it.
fn first_partition_offset(card: &Path) -> u64 {
    let mut mbr = [0u8; 512];
    use std::io::Read;
    std::fs::File::open(card)
        .and_then(|mut f| f.read_exact(&mut mbr))
        .expect("the card image has a first sector");
    assert_eq!(mbr[510..], [0x55, 0xaa], "no MBR signature");
    let start = u32::from_le_bytes(mbr[0x1be + 8..0x1be + 12].try_into().unwrap());
    u64::from(start) * 512
}

#[test]
fn raspi4b_boots_the_kernel_and_tree_taken_from_the_sd_card_image() {
    // What the firmware would read off the card: build the card, take kernel8.img and the Pi
    // 4's tree back out of its FAT partition with mtools, and boot those.
    let dir = root().join("target/sdcard-test/boot");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let card = dir.join("sdcard.img");
    let made = Command::new(root().join("tools/sdcard-image"))
        .arg("--out")
        .arg(&card)
        .output()
        .expect("tools/sdcard-image runs");
    assert!(
        made.status.success(),
        "tools/sdcard-image failed:\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let fat = format!("{}@@{}", card.display(), first_partition_offset(&card));
    for file in ["kernel8.img", "bcm2711-rpi-4-b.dtb"] {
        let copied = Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-n", "-i", &fat, &format!("::{file}")])
            .arg(dir.join(file))
            .output()
            .expect("mcopy runs (tools/setup --rpi-firmware installs mtools)");
        assert!(
            copied.status.success(),
            "mcopy ::{file}: {}",
            String::from_utf8_lossy(&copied.stderr)
        );
    }
    assert_eq!(
        std::fs::read(dir.join("kernel8.img")).unwrap(),
        std::fs::read(image(Board::Rpi4)).unwrap(),
        "the card's kernel8.img is not the one make rpi4 built"
    );
    bcm2711_board_reaches_the_prompt(
        &dir.join("kernel8.img"),
        &dir.join("bcm2711-rpi-4-b.dtb"),
        "Raspberry Pi 4 Model B",
    );
}

/// build/virt/quartet.elf, the ELF `make image` leaves beside the Image.
fn virt_elf() -> PathBuf {
    let elf = root().join("build/virt/quartet.elf");
    assert!(
        elf.exists(),
        "{} is missing: `make image` writes it",
        elf.display()
    );
    elf
}

#[test]
fn virt_gicv3_elf_kernel_finds_its_tree_at_the_start_of_ram_and_runs_the_suite() {
    // An ELF given to -kernel gets x0 = 0; QEMU writes its tree (1 MiB) at the start of RAM if
    // it fits below the ELF's lowest load address, and puts -append in it.
    let mut cmd = qemu_command();
    cmd.args(["--board", "virt", "--bare-elf"])
        .arg(virt_elf())
        .arg("--timeout")
        .arg(TIMEOUT.as_secs().to_string())
        .envs([("SMP", "4"), ("GIC", "3"), ("BOOTARGS", "test")]);
    let run = run_command(cmd, None);
    assert!(
        run.output
            .contains("boot: device tree at 0x40000000 (1048576 bytes), found at the start of RAM"),
        "{}",
        run.output
    );
    assert!(run.output.contains("irq: GICv3 with"), "{}", run.output);
    assert_online(&run, 4, 4);
    assert_suite_passed(&run);
}

#[test]
fn virt_with_a_tree_listing_cpus_qemu_lacks_names_the_psci_errors_and_runs_on() {
    // A four-CPU tree on a two-CPU machine: PSCI refuses the two that do not exist, by name,
    // and the rest of the machine works.
    let dtb = altered_dtb("four-cpus.dtb", |_| {});
    let image = image(Board::Virt);
    let mut s = Session::start_with(
        &with_tree("virt", image.as_os_str(), dtb.as_os_str()),
        &[("SMP", "2")],
        "",
    );
    let boot = s.output.clone();
    for mpidr in [2, 3] {
        let refusal =
            format!("cpu{mpidr} (MPIDR {mpidr:#x}): PSCI CPU_ON failed: INVALID_PARAMETERS");
        assert!(boot.contains(&refusal), "no {refusal:?}:\n{boot}");
    }
    assert!(boot.contains("smp: 2/4 CPUs online"), "{boot}");
    let cpus = s.command("cpus");
    assert!(cpus.contains("2 of 4 CPUs online"), "{cpus}");
    s.send(b"poweroff\r");
    s.expect("shell: powering off");
    let (status, output) = s.exit_status();
    assert_eq!(status, Some(0), "{output}");
}

/// A copy of QEMU's own virt tree with a change made to it, written where QEMU can load it.
fn altered_dtb(name: &str, alter: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    altered_dtb_of("virt-gicv2-smp4.dtb", name, alter)
}

/// A copy of tests/data/dtb/`original`, changed by `alter`, written as `name`.
fn altered_dtb_of(original: &str, name: &str, alter: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut blob = std::fs::read(root().join("tests/data/dtb").join(original)).unwrap();
    alter(&mut blob);
    let dir = root().join("target/test-dtbs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, blob).unwrap();
    path
}

/// The tree QEMU builds for the virt machine `env` describes, dumped now by the QEMU under test
/// (`-M virt,dumpdtb=`), under a name of the caller's: tests run in parallel.
fn dumped_dtb(name: &str, env: &[(&str, &str)]) -> PathBuf {
    let dir = root().join("target/test-dtbs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let out = qemu_command()
        .args(["--board", "virt", "--timeout", "60", "--dumpdtb"])
        .arg(&path)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("tools/qemu-run starts");
    assert!(
        out.status.success() && path.exists(),
        "QEMU did not dump its tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

#[test]
fn virt_gicv3_runs_the_suite_on_a_tree_qemu_dumped_and_grew_past_2_mib() {
    // QEMU pads a dumped tree to 1 MiB; loading it back with -dtb, it makes room to edit it,
    // and the header's totalsize becomes 2 x (1 MiB + 10000) bytes. All of it is one valid tree.
    let env = [("SMP", "4"), ("GIC", "3")];
    let dtb = dumped_dtb("virt-gicv3-smp4-dumped.dtb", &env);
    let run = boot(Boot {
        board: Board::Virt,
        env: &env,
        bootargs: "test",
        dtb: Some(dtb),
    });
    assert!(
        run.output.contains("boot: device tree at 0x"),
        "{}",
        run.output
    );
    assert!(!run.output.contains("defaults"), "{}", run.output);
    assert!(run.output.contains("irq: GICv3 with"), "{}", run.output);
    assert_online(&run, 4, 4);
    assert_suite_passed(&run);
}

/// The GICv3 virt tree with free space up to 3 MiB: valid, and too big for QEMU to place below
/// an ELF kernel (it grows a -dtb blob to twice that), so an ELF boot with it gets no tree at all.
fn tree_too_big_to_fit_below_the_elf() -> PathBuf {
    altered_dtb_of("virt-gicv3-smp4.dtb", "too-big-for-the-elf.dtb", |b| {
        let total = 3 << 20;
        b.resize(total, 0);
        b[4..8].copy_from_slice(&(total as u32).to_be_bytes());
    })
}

#[test]
fn virt_gicv3_without_any_tree_reads_the_gic_from_the_cpu_and_the_cpus_from_psci() {
    let elf = virt_elf();
    let dtb = tree_too_big_to_fit_below_the_elf();
    let mut s = Session::start_with(
        &[
            "--board".as_ref(),
            "virt".as_ref(),
            "--bare-elf".as_ref(),
            elf.as_os_str(),
            "--dtb".as_ref(),
            dtb.as_os_str(),
        ],
        &[("SMP", "4"), ("GIC", "3")],
        "",
    );
    let boot = s.output.clone();
    for expected in [
        "no device tree: x0 = 0x0 and none at the start of RAM (0x40000000)",
        // The kernel's physical load address, the one QEMU measured the tree against.
        "only if it fits below the kernel at 0x40200000;",
        "GICv3 at the QEMU virt addresses, as this CPU has the GICv3 system-register interface",
        "PSCI AFFINITY_INFO knows 4 of",
        "irq: GICv3 with",
        "smp: 4/4 CPUs online",
    ] {
        assert!(boot.contains(expected), "no {expected:?} in:\n{boot}");
    }
    assert!(!boot.contains(" ERROR "), "{boot}");
    assert!(!boot.contains("PSCI CPU_ON failed"), "{boot}");
    // Not only booted: the machine works. Every CPU ticks, and the shell answers.
    let cpus = s.command("cpus");
    assert!(cpus.contains("4 of 4 CPUs online"), "{cpus}");
    s.send(b"poweroff\r");
    s.expect("shell: powering off");
    let (status, output) = s.exit_status();
    assert_eq!(status, Some(0), "{output}");
}

#[test]
fn virt_notes_a_memory_node_left_at_size_0_and_leaves_it_out() {
    // The secure=on tree's secram@e000000, enabled and with size 0: a memory node its loader
    // did not fill in (the Pi's firmware fills memory@0; U-Boot passing on an unfilled copy
    // leaves the 0), beside memory@40000000, which QEMU fills.
    let dtb = altered_dtb_of("virt-secure-smp4.dtb", "secram-size-0.dtb", |b| {
        let node = find_bytes(b, b"secram@e000000\0", 0);
        let status = find_bytes(b, b"disabled\0", node);
        b[status..status + 9].copy_from_slice(b"okay\0\0\0\0\0");
        let reg = find_bytes(
            b,
            &[0, 0, 0, 0, 0x0e, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
            node,
        );
        b[reg + 12..reg + 16].fill(0);
    });
    let image = image(Board::Virt);
    let s = Session::start_with(
        &with_tree("virt", image.as_os_str(), dtb.as_os_str()),
        &[("SMP", "4")],
        "",
    );
    for expected in [
        "boot: memory node at 0xe000000 has size 0: firmware that fills in the size",
        "boot: memory 0x40000000..0x60000000 (512 MiB)",
        "smp: 4/4 CPUs online",
    ] {
        assert!(
            s.output.contains(expected),
            "no {expected:?}:\n{}",
            s.output
        );
    }
    assert!(!s.output.contains("memory 0xe000000"), "{}", s.output);
}

/// Where `needle` first occurs in `haystack` at or after `from`.
fn find_bytes(haystack: &[u8], needle: &[u8], from: usize) -> usize {
    from + haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:?} not found"))
}

#[test]
fn virt_with_a_tree_missing_its_uart_uses_the_default_uart() {
    let dtb = altered_dtb("no-uart.dtb", |b| {
        let at = b
            .windows(9)
            .position(|w| w == b"arm,pl011")
            .expect("QEMU's tree has a PL011");
        b[at + 4] = b'x';
    });
    // The tree lists 4 CPUs, so QEMU must offer 4 too.
    let image = image(Board::Virt);
    let run = boot_to_prompt(
        &with_tree("virt", image.as_os_str(), dtb.as_os_str()),
        &[("SMP", "4")],
        "",
    );
    assert!(
        run.output.contains("device tree has no enabled PL011 UART"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains("console PL011 at 0x9000000"),
        "{}",
        run.output
    );
    assert_online(&run, 4, 4);
    assert_lines_well_formed(&run);
}

#[test]
fn a_fault_is_reported_in_words_and_ends_the_run() {
    let run = boot(Boot {
        board: Board::Virt,
        env: &[],
        bootargs: "demo=fault",
        dtb: None,
    });
    assert_output_has(
        &run,
        &[
            "Synchronous (current EL, SPx) exception: Data Abort from the same EL",
            "translation fault (address not mapped) (level 3), read access to FAR",
            "FAR lies in the guard page below stack slot 0: a stack overflow",
            "ELR 0x",
            "x0 ",
            "ERROR panic: unhandled exception: Data Abort from the same EL at ELR 0x",
        ],
    );
    assert_eq!(
        run.status,
        Some(3),
        "a fatal exception in demo mode exits with status 3:\n{}",
        run.output
    );
    assert_lines_well_formed(&run);
}

#[test]
fn a_stack_overflow_is_caught_by_the_guard_page_and_reported_from_the_emergency_stack() {
    let run = boot(Boot {
        board: Board::Virt,
        env: &[],
        bootargs: "demo=overflow",
        dtb: None,
    });
    assert_output_has(
        &run,
        &[
            "write access to FAR",
            "FAR lies in the guard page below stack slot 0: a stack overflow",
            "now on this CPU's emergency stack",
            "ERROR panic: unhandled exception: Data Abort from the same EL",
        ],
    );
    // One fault, one report: the vector entry did not fault again on the guard page.
    let reports = run
        .output
        .lines()
        .filter(|l| l.contains("exception: Synchronous"))
        .count();
    assert_eq!(reports, 1, "{}", run.output);
    assert_eq!(run.status, Some(3), "{}", run.output);
    assert_lines_well_formed(&run);
}

/// A thread on a heap stack has no guard page: an interrupt that finds its SP below the stack's
/// bottom is the overflow's report, and must not return to the thread.
#[test]
fn an_interrupt_below_a_threads_stack_reports_the_overflow_once_and_stops() {
    let run = boot(Boot {
        board: Board::Virt,
        env: &[],
        bootargs: "demo=task-overflow",
        dtb: None,
    });
    assert_output_has(
        &run,
        &[
            "ERROR exception: IRQ (current EL, SPx) exception",
            "lies below its stack's bottom",
            "now on this CPU's emergency stack",
            "ERROR panic: stack overflow: an IRQ found SP",
        ],
    );
    assert!(
        !run.output.contains("the overflow went unreported"),
        "the interrupt returned to the thread:\n{}",
        run.output
    );
    let reports = run
        .output
        .lines()
        .filter(|l| l.contains("(current EL, SPx) exception"))
        .count();
    assert_eq!(reports, 1, "{}", run.output);
    assert_eq!(run.status, Some(3), "{}", run.output);
    assert_lines_well_formed(&run);
}

/// A bad user pointer through copy_from_user is EFAULT; the same pointer through a plain load
/// (no exception-table entry, no fixup) is a fatal kernel data abort.
#[test]
fn a_user_copy_without_its_fixup_crashes_the_kernel() {
    let run = boot(Boot {
        board: Board::Virt,
        env: &[],
        bootargs: "demo=uaccess-nofixup",
        dtb: None,
    });
    assert_output_has(
        &run,
        &[
            "demo uaccess-nofixup: copy_from_user(0x0) = EFAULT; the kernel goes on",
            "Synchronous (current EL, SPx) exception: Data Abort from the same EL",
            "ERROR panic: unhandled exception: Data Abort from the same EL at ELR 0x",
        ],
    );
    assert_eq!(run.status, Some(3), "{}", run.output);
    assert_lines_well_formed(&run);
}

#[test]
fn a_quiet_log_level_still_prints_the_contract_line() {
    let run = virt_to_prompt(&[], "loglevel=warn");
    assert_online(&run, 4, 4);
    assert!(
        !run.output.contains(" INFO  boot:"),
        "info lines must be filtered:\n{}",
        run.output
    );
}

#[test]
fn an_allocation_failure_names_its_size_and_ends_the_run() {
    let run = boot(Boot {
        board: Board::Virt,
        env: &[],
        bootargs: "demo=oom",
        dtb: None,
    });
    assert!(
        run.output
            .contains("out of memory: request of 1099511627776 bytes"),
        "{}",
        run.output
    );
    assert!(
        run.output
            .contains("ERROR panic: memory allocation of 1099511627776 bytes failed"),
        "{}",
        run.output
    );
    assert_eq!(run.status, Some(3), "{}", run.output);
    assert_lines_well_formed(&run);
}

#[test]
fn interactive_boot_reaches_the_contract_line_quickly_in_guest_time() {
    let run = virt_to_prompt(&[("SMP", "4")], "");
    assert_online(&run, 4, 4);
    // The counter value is printed so the boot time can be read off; check it is the real one.
    let line = run.output.lines().find(|l| l.contains(CONTRACT)).unwrap();
    let counter: u64 = line
        .split("(counter ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("counter value printed");
    assert!(counter > 0, "{line}");
}

/// `timeout 60 tools/qemu-run` typed at a terminal: `timeout` puts QEMU in a process group of
/// its own, in the terminal's background. `script` gives the run a terminal (a pseudo-terminal
/// whose foreground group is the shell that runs the line). A QEMU that set the terminal's mode
/// from there would be stopped by SIGTTOU and killed by the timeout; qemu-run must prevent it.
#[test]
fn qemu_run_under_timeout_at_a_terminal_is_not_stopped_by_sigttou() {
    let image = image(Board::Virt);
    let line = format!(
        "timeout 60 {} --board virt --image {}; echo qemu-run-status=$?",
        root().join("tools/qemu-run").display(),
        image.display()
    );
    let started = Instant::now();
    let mut cmd = Command::new("script");
    for var in ["SMP", "MEM", "CPU", "GIC", "EL2", "VIRT_OPTS", "RPI_DTB"] {
        cmd.env_remove(var);
    }
    let run = cmd
        .args(["-qec", &line, "/dev/null"])
        .env("SMP", "1")
        .env("BOOTARGS", "test=percpu_")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs a command on a pseudo-terminal");
    let printed = String::from_utf8_lossy(&run.stdout);
    assert!(
        printed.contains("qemu-run-status=0") && printed.contains("passed, 0 failed"),
        "QEMU did not finish by itself ({:.0?}):\n{printed}",
        started.elapsed()
    );
}

/// tools/qemu-run on a copy of the virt image whose modification time is `age` ago.
fn qemu_run_on_an_image_aged(age: Duration, name: &str) -> Run {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("kernel8.img");
    std::fs::copy(image(Board::Virt), &copy).unwrap();
    let file = std::fs::File::options().write(true).open(&copy).unwrap();
    file.set_modified(std::time::SystemTime::now() - age)
        .unwrap();
    drop(file);
    let mut cmd = qemu_command();
    cmd.args(["--board", "virt", "--timeout", "60", "--image"])
        .arg(&copy)
        .env("SMP", "1")
        .env("BOOTARGS", "test=percpu_");
    let run = run_command(cmd, None);
    let _ = std::fs::remove_dir_all(&dir);
    run
}

#[test]
fn qemu_run_warns_when_the_image_is_older_than_the_sources() {
    // Older than every file in the tree: the sources changed after this "build".
    let stale = qemu_run_on_an_image_aged(Duration::from_secs(20 * 365 * 86400), "quartet-stale");
    assert!(
        stale.output.contains("is older than") && stale.output.contains("`make run`"),
        "no warning for a stale image:\n{}",
        stale.output
    );
    assert!(
        stale.output.contains("passed, 0 failed"),
        "it still boots:\n{}",
        stale.output
    );
    let fresh = qemu_run_on_an_image_aged(Duration::ZERO, "quartet-fresh");
    assert!(
        !fresh.output.contains("is older than"),
        "a warning for an image newer than the sources:\n{}",
        fresh.output
    );
}

#[test]
fn log_parser_accepts_kernel_lines_and_rejects_mixed_ones() {
    assert!(parse_log_line("[    0.012345] cpu2 INFO  smp: 4/4 CPUs online").is_some());
    assert!(parse_log_line("[    0.012345] cpu? WARN  boot: x").is_some());
    assert!(
        parse_log_line("[    0.012345] cpu2 INFO  smp: 4/4 CP[    0.0123").is_some(),
        "body content is free"
    );
    assert!(parse_log_line("[    0.01234[    0.012345] cpu1 INFO  x: y").is_none());
    assert!(parse_log_line("cpu2 INFO  smp: x").is_none());
    assert_eq!(closing_counts("10 passed, 0 failed"), Some((10, 0)));
    assert_eq!(closing_counts("test x ... ok"), None);
}

/// The key=value pairs of a `bench ` result line.
fn bench_fields(line: &str) -> std::collections::HashMap<&str, &str> {
    line.strip_prefix("bench ")
        .unwrap_or_else(|| panic!("not a bench line: {line:?}"))
        .split(' ')
        .map(|pair| {
            pair.split_once('=')
                .unwrap_or_else(|| panic!("field {pair:?} is not key=value in {line:?}"))
        })
        .collect()
}

#[test]
fn bench_quick_prints_one_result_per_lock_and_cpu_count_and_tools_bench_reads_them() {
    let run = boot(Boot {
        board: Board::Virt,
        env: &[("SMP", "4"), ("CPU", "max")],
        bootargs: "bench benchquick",
        dtb: None,
    });
    assert_eq!(
        run.status,
        Some(0),
        "bench exits 0 on success:\n{}",
        run.output
    );
    let results: Vec<_> = run
        .output
        .lines()
        .filter(|l| l.starts_with("bench "))
        .map(bench_fields)
        .collect();
    // The system-call suite's lines come from a user program and name operations, not locks.
    let syscall_ops: Vec<&str> = results
        .iter()
        .filter(|r| r["suite"] == "syscall")
        .map(|r| {
            for key in ["op", "ns_per_op", "ratio_to_floor"] {
                assert!(r.contains_key(key), "{key} missing from {r:?}");
            }
            r["op"]
        })
        .collect();
    assert_eq!(
        syscall_ops,
        ["floor", "getpid", "page-fault", "fork-exit-wait", "switch"],
        "the syscall suite's operations"
    );
    // So do the bkl experiment's (bench_bkl_quick_... checks them).
    for r in results
        .iter()
        .filter(|r| r["suite"] != "syscall" && r["suite"] != "bkl" && r["suite"] != "lockstat")
    {
        for key in ["suite", "lock", "cpus", "ops_per_sec", "fairness"] {
            assert!(r.contains_key(key), "{key} missing from {r:?}");
        }
        let rate: f64 = r["ops_per_sec"].parse().expect("ops_per_sec is a number");
        let fairness: f64 = r["fairness"].parse().expect("fairness is a number");
        assert!(rate > 0.0, "{r:?}");
        assert!(
            fairness > 0.0 && fairness <= 1.0,
            "Jain's index out of (0, 1]: {r:?}"
        );
    }
    let has = |suite: &str, lock: &str, cpus: &str| {
        results
            .iter()
            .any(|r| r["suite"] == suite && r["lock"] == lock && r["cpus"] == cpus)
    };
    let locks = [
        "tas",
        "ttas",
        "ticket",
        "mcs",
        "rwlock-write",
        "spin::SpinMutex",
        "spin::TicketMutex",
    ];
    for lock in locks {
        assert!(
            has("uncontended", lock, "1"),
            "no uncontended {lock}:\n{}",
            run.output
        );
        for cpus in ["1", "2", "3", "4"] {
            assert!(
                has("locks", lock, cpus),
                "no {lock} at {cpus} CPUs:\n{}",
                run.output
            );
        }
    }
    for counter in [
        "shared-llsc",
        "shared-lse",
        "percpu-llsc",
        "percpu-lse",
        "percpu-plain",
    ] {
        assert!(
            has("atomics", counter, "4"),
            "no {counter} at 4 CPUs:\n{}",
            run.output
        );
    }

    // tools/bench turns the same output into CSV files (what `make bench` does after a run).
    let (out, printed) = tools_bench_from_log(&run, "quartet-bench");
    let locks_csv = std::fs::read_to_string(out.join("locks.csv")).unwrap();
    assert_eq!(
        locks_csv.lines().count(),
        1 + locks.len() * 4,
        "{locks_csv}"
    );
    assert!(out.join("locks-fairness.svg").exists());
    assert!(printed.contains("Targets, from this run:"), "{printed}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn bench_bkl_quick_reports_every_cpu_count_for_each_kernel_share_with_amdahl() {
    let run = boot(Boot {
        board: Board::Virt,
        env: &[("SMP", "2"), ("CPU", "max")],
        // The 50% runs do the work given here; the 10% runs calibrate their own.
        bootargs: "bench=bkl benchquick locking=bkl bklwork=50:3:20000",
        dtb: None,
    });
    assert_eq!(run.status, Some(0), "bench exits 0:\n{}", run.output);
    let rows: Vec<_> = run
        .output
        .lines()
        .filter(|l| l.starts_with("bench "))
        .map(bench_fields)
        // The test kernel counts lock statistics: each run's top classes follow its line.
        .filter(|r| r["suite"] != "lockstat")
        .collect();
    let num = |r: &std::collections::HashMap<&str, &str>, key: &str| -> f64 {
        r.get(key)
            .unwrap_or_else(|| panic!("{key} missing from {r:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number in {r:?}"))
    };
    let mut seen = Vec::new();
    for r in &rows {
        assert_eq!(r["suite"], "bkl", "{r:?}");
        assert_eq!(
            r["strategy"], "bkl",
            "the strategy the boot asked for: {r:?}"
        );
        for key in ["ops", "ticks", "ops_per_sec", "amdahl_ops_per_sec"] {
            assert!(num(r, key) > 0.0, "{key} in {r:?}");
        }
        for key in ["kernel_share", "kernel_share_1cpu"] {
            assert!(num(r, key) > 0.0 && num(r, key) < 1.0, "{key} in {r:?}");
        }
        assert_eq!(r["runs"], "2", "{r:?}");
        seen.push((r["kernel_pct"], r["cpus"]));
    }
    assert_eq!(
        seen,
        [
            ("10", "1"),
            ("10", "2"),
            ("50", "1"),
            ("50", "2"),
            ("90", "1"),
            ("90", "2")
        ],
        "one line per kernel share and CPU count:\n{}",
        run.output
    );
    assert_eq!((rows[2]["ops"], rows[2]["user_iters"]), ("3", "20000"));
    assert_eq!((rows[3]["ops"], rows[3]["user_iters"]), ("6", "20000"));
    assert_eq!(rows[0]["user_iters"], rows[1]["user_iters"]);
    for pair in rows.chunks(2) {
        let (one, two) = (&pair[0], &pair[1]);
        // Every copy does the one-CPU run's work; the prediction comes from that run.
        assert_eq!(num(two, "ops"), 2.0 * num(one, "ops"), "{pair:?}");
        assert_eq!(num(one, "kernel_share"), num(one, "kernel_share_1cpu"));
        assert_eq!(two["kernel_share_1cpu"], one["kernel_share_1cpu"]);
        assert_eq!(one["amdahl_ops_per_sec"], one["ops_per_sec"]);
        let f = num(one, "kernel_share_1cpu");
        let predicted = num(one, "ops_per_sec") / (f + (1.0 - f) / 2.0);
        let printed = num(two, "amdahl_ops_per_sec");
        assert!(
            (printed - predicted).abs() <= 0.002 * predicted + 0.1,
            "Amdahl at 2 CPUs: printed {printed}, from the 1-CPU line {predicted}: {pair:?}"
        );
    }

    // tools/bench reads the same log: CSV, both charts with their dashed predictions, a table.
    let (out, printed) = tools_bench_from_log(&run, "quartet-bench-bkl");
    let csv = std::fs::read_to_string(out.join("bkl.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 6, "{csv}");
    assert!(
        csv.lines().next().unwrap().contains("amdahl_ops_per_sec"),
        "{csv}"
    );
    for pct in ["10", "50", "90"] {
        let svg = std::fs::read_to_string(out.join(format!("bkl-{pct}.svg"))).unwrap();
        assert!(
            svg.contains("stroke-dasharray"),
            "no dashed prediction in bkl-{pct}.svg"
        );
    }
    assert!(
        printed.contains("mix under each locking strategy"),
        "{printed}"
    );
    assert!(printed.contains("bkl at 2 CPUs within 20%"), "{printed}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// The shell's prompt (src/shell/mod.rs).
const PROMPT: &str = "quartet> ";

/// An interactive run: QEMU's serial console on pipes, so a test can type at the shell and read
/// what it answers, byte by byte (a prompt has no newline to wait for).
struct Session {
    guard: KillOnDrop,
    stdin: std::process::ChildStdin,
    rx: mpsc::Receiver<Vec<u8>>,
    /// Everything printed so far, with the terminal's "\r" dropped.
    output: String,
    /// How much of `output` the last `expect` consumed.
    seen: usize,
    started: Instant,
}

impl Session {
    /// Boot QEMU virt with `bootargs` (none: the shell) and wait for the first prompt.
    fn start(env: &[(&str, &str)], bootargs: &str) -> Session {
        let image = image(Board::Virt);
        Session::start_with(
            &[
                "--board".as_ref(),
                "virt".as_ref(),
                "--image".as_ref(),
                image.as_os_str(),
            ],
            env,
            bootargs,
        )
    }

    /// Boot with these tools/qemu-run arguments and wait for the first prompt.
    fn start_with(args: &[&std::ffi::OsStr], env: &[(&str, &str)], bootargs: &str) -> Session {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        let mut cmd = qemu_command();
        cmd.args(args)
            .arg("--timeout")
            .arg(TIMEOUT.as_secs().to_string())
            .env("BOOTARGS", bootargs)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut guard = KillOnDrop(cmd.spawn().expect("tools/qemu-run starts"));
        let stdin = guard.0.stdin.take().unwrap();
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        for mut pipe in [
            Box::new(guard.0.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(guard.0.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    if tx.send(chunk[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
        }
        let mut session = Session {
            guard,
            stdin,
            rx,
            output: String::new(),
            seen: 0,
            started: Instant::now(),
        };
        session.expect(PROMPT);
        session
    }

    /// Take what QEMU printed; false once both pipes are closed.
    fn pump(&mut self, wait: Duration) -> bool {
        match self.rx.recv_timeout(wait) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).replace('\r', "");
                self.output.push_str(&text);
                true
            }
            Err(mpsc::RecvTimeoutError::Timeout) => true,
            Err(mpsc::RecvTimeoutError::Disconnected) => false,
        }
    }

    /// Wait until `text` appears after what was already consumed; return everything up to and
    /// including it. A panic report ends the wait early (after a few seconds for the rest of
    /// it), since after one in interactive mode the CPU halts and nothing more comes.
    fn expect(&mut self, text: &str) -> String {
        let mut panic_seen: Option<Instant> = None;
        loop {
            if let Some(at) = self.output[self.seen..].find(text) {
                let end = self.seen + at + text.len();
                let got = self.output[self.seen..end].to_string();
                self.seen = end;
                return got;
            }
            if panic_seen.is_none() && self.output[self.seen..].contains(" ERROR panic: ") {
                panic_seen = Some(Instant::now());
            }
            let alive = self.pump(Duration::from_millis(100));
            assert!(
                alive
                    && self.started.elapsed() < TIMEOUT
                    && panic_seen.is_none_or(|t| t.elapsed() < Duration::from_secs(3)),
                "waited in vain for {text:?}; the console said:\n{}",
                self.output
            );
        }
    }

    /// Type `bytes` at the console.
    fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.stdin.write_all(bytes).expect("QEMU reads its stdin");
        self.stdin.flush().unwrap();
    }

    /// Type a command line and return what the shell printed up to the next prompt (the
    /// echoed line included).
    fn command(&mut self, line: &str) -> String {
        self.send(line.as_bytes());
        self.send(b"\r");
        self.expect(PROMPT)
    }

    /// Wait for QEMU to exit by itself; its exit status.
    fn exit_status(mut self) -> (Option<i32>, String) {
        while self.pump(Duration::from_millis(100)) {
            assert!(
                self.started.elapsed() < TIMEOUT + Duration::from_secs(15),
                "QEMU did not exit:\n{}",
                self.output
            );
        }
        let status = self.guard.0.wait().expect("qemu-run exits").code();
        (status, self.output)
    }
}

/// tools/qemu-run's arguments to boot `image` on `board` with the device tree `tree` (a file,
/// or "none" for no tree at all).
fn with_tree<'a>(
    board: &'a str,
    image: &'a std::ffi::OsStr,
    tree: &'a std::ffi::OsStr,
) -> [&'a std::ffi::OsStr; 6] {
    [
        "--board".as_ref(),
        board.as_ref(),
        "--image".as_ref(),
        image,
        "--dtb".as_ref(),
        tree,
    ]
}

/// Boot with these tools/qemu-run arguments until the shell's prompt, and return what was
/// printed before it as a Run (then the machine is stopped). A boot test that stopped at the
/// `smp:` line could not see a crash just after it; one that waits for the prompt does.
fn boot_to_prompt(args: &[&std::ffi::OsStr], env: &[(&str, &str)], bootargs: &str) -> Run {
    let s = Session::start_with(args, env, bootargs);
    let before_prompt = s.seen - PROMPT.len();
    Run {
        output: s.output[..before_prompt].to_string(),
        status: None,
    }
}

/// `boot_to_prompt` on QEMU virt with the Image.
fn virt_to_prompt(env: &[(&str, &str)], bootargs: &str) -> Run {
    let image = image(Board::Virt);
    boot_to_prompt(
        &[
            "--board".as_ref(),
            "virt".as_ref(),
            "--image".as_ref(),
            image.as_os_str(),
        ],
        env,
        bootargs,
    )
}

#[test]
fn shell_lists_commands_rejects_bogus_ones_runs_tests_and_powers_off() {
    let mut s = Session::start(&[("SMP", "4")], "");
    let help = s.command("help");
    for command in [
        "help", "cpus", "irqs", "locks", "lockstat", "mem", "ps", "spawn", "kill", "top", "log",
        "test", "bench", "demo", "poweroff", "reboot",
    ] {
        assert!(
            help.lines()
                .any(|l| l.starts_with(&format!("  {command} "))),
            "help lists no {command}:\n{help}"
        );
    }
    assert!(help.contains("ENDS THE SESSION"), "{help}");

    let bogus = s.command("bogus");
    assert!(
        bogus.contains(
            "bogus: unknown command; the commands are: help cpus irqs locks lockstat mem"
        ),
        "{bogus}"
    );
    assert!(bogus.contains("type help for their usage"), "{bogus}");

    let cpus = s.command("cpus");
    let rows: Vec<_> = cpus
        .lines()
        .filter(|l| l.contains(" Online ") && l.contains("psci (hvc)") && l.contains(" EL1"))
        .collect();
    assert_eq!(rows.len(), 4, "want 4 online CPUs:\n{cpus}");
    assert!(cpus.contains("4 of 4 CPUs online"), "{cpus}");

    let tests = s.command("test percpu_");
    let ok = tests.lines().filter(|l| l.ends_with(" ... ok")).count();
    assert!(ok >= 2, "{tests}");
    assert!(tests.contains(&format!("{ok} passed, 0 failed")), "{tests}");
    // Back at the prompt after the run: the shell still answers.
    let again = s.command("help cpus");
    assert!(again.contains("usage: cpus"), "{again}");

    s.send(b"poweroff\r");
    s.expect("shell: powering off");
    let (status, output) = s.exit_status();
    assert_eq!(status, Some(0), "poweroff exits QEMU with 0:\n{output}");
}

#[test]
fn shell_spawns_lists_measures_and_kills_tasks() {
    let mut s = Session::start(&[("SMP", "2")], "");
    let spawned = s.command("spawn spin");
    let pid: u32 = spawned
        .split("as pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in:\n{spawned}"));
    let ps = s.command("ps");
    assert!(
        ps.contains("running now: cpu0 boot/cpu0 (0)"),
        "the shell runs on cpu0:\n{ps}"
    );
    let spin_row = ps
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{pid} ")) && l.ends_with(" spin"))
        .unwrap_or_else(|| panic!("ps lists no spin task {pid}:\n{ps}"));
    assert!(
        spin_row.contains("Running") || spin_row.contains("Runnable"),
        "{spin_row}"
    );
    // The hog keeps one CPU busy: top must see a CPU near 100 %.
    let top = s.command("top");
    let loads: Vec<u32> = top
        .lines()
        .filter_map(|l| l.split('%').next()?.split_whitespace().nth(1)?.parse().ok())
        .collect();
    assert_eq!(loads.len(), 2, "one row per CPU:\n{top}");
    assert!(
        loads.iter().any(|&l| l >= 80),
        "the spinning CPU is busy:\n{top}"
    );
    let killed = s.command(&format!("kill {pid}"));
    assert!(
        killed.contains(&format!("task {pid} exited with status 0; reaped")),
        "{killed}"
    );
    let ps = s.command("ps");
    assert!(
        !ps.lines().any(|l| l.ends_with(" spin")),
        "reaped, so gone:\n{ps}"
    );
    let bogus = s.command("spawn bogus");
    assert!(
        bogus.contains("no demo task \"bogus\"") && bogus.contains("pingpong"),
        "{bogus}"
    );
    let none = s.command("kill 9999");
    assert!(none.contains("no task 9999"), "{none}");
    // A well-formed PID that names no task is not a usage error.
    let none = s.command("kill 424242");
    assert!(none.contains("no task 424242"), "{none}");
    assert!(!none.contains("usage:"), "{none}");
    s.send(b"poweroff\r");
    s.expect("shell: powering off");
    let (status, output) = s.exit_status();
    assert_eq!(status, Some(0), "{output}");
}

/// The RUNTIME column of `ps` for task `pid`, in ms.
fn ps_runtime_ms(ps: &str, pid: u32) -> u64 {
    let row = ps
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{pid} ")))
        .unwrap_or_else(|| panic!("ps lists no task {pid}:\n{ps}"));
    row.split_whitespace()
        .find_map(|w| w.strip_suffix("ms")?.parse().ok())
        .unwrap_or_else(|| panic!("no RUNTIME in {row:?}"))
}

/// Two hogs on two CPUs: the one an idle CPU pulled runs there alone and is never switched
/// away, so only the time since it was switched in says how long it has run. `ps` must count
/// that, or its RUNTIME stands still while the task spins.
#[test]
fn shell_ps_runtime_counts_the_running_tasks_current_slice() {
    let mut s = Session::start(&[("SMP", "2")], "");
    let pids: Vec<u32> = (0..2)
        .map(|_| {
            let spawned = s.command("spawn spin");
            spawned
                .split("as pid ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no pid in:\n{spawned}"))
        })
        .collect();
    let before = s.command("ps");
    // `top 1` keeps the shell asleep for a second of guest time while both hogs run.
    s.command("top 1");
    let after = s.command("ps");
    for &pid in &pids {
        let (was, is) = (ps_runtime_ms(&before, pid), ps_runtime_ms(&after, pid));
        assert!(
            is >= was + 500,
            "spin {pid} ran through `top 1` but its RUNTIME went from {was}ms to {is}ms:\n\
             {before}\n{after}"
        );
    }
    s.send(b"poweroff\r");
    s.expect("shell: powering off");
}

#[test]
fn shell_edits_lines_and_explains_bad_arguments() {
    let mut s = Session::start(&[("SMP", "2")], "");
    // A typo mended with DEL, and with backspace: the command that runs is the mended one.
    let cpus = s.command("cpuz\x7fs");
    assert!(cpus.contains("2 of 2 CPUs online"), "{cpus}");
    let mem = s.command("reboot\x15me\x08\x08mem");
    assert!(mem.contains("heap use:"), "Ctrl-U and backspace:\n{mem}");
    assert!(!mem.contains("rebooting"), "{mem}");
    // An arrow key's escape sequence and stray control bytes are ignored.
    let help = s.command("\x1b[A\x1b[Dhelp\t log\x00");
    assert!(help.contains("usage: log [lines]"), "{help}");
    // An over-long line rings the bell for every key past the limit, then runs what fits.
    let long = s.command(&"a".repeat(130));
    assert_eq!(long.matches('\x07').count(), 10, "{long:?}");
    assert!(
        long.contains(&format!("{}: unknown command", "a".repeat(120))),
        "{long}"
    );
    // Bad arguments: what was wrong, then the usage.
    let demo = s.command("demo nope");
    assert!(demo.contains("there is no demo \"nope\""), "{demo}");
    assert!(demo.contains("usage: demo <name>"), "{demo}");
    // One list of demos: `help demo` names the very ones `demo nope` offers.
    let names = |text: &str, before: &str| -> Vec<String> {
        let line = text.lines().find(|l| l.contains(before)).unwrap_or("");
        let after = &line[line.find(before).map_or(0, |i| i + before.len())..];
        let list = after.split(':').next().unwrap_or("");
        list.split(", ")
            .flat_map(|part| part.split(" or "))
            .map(str::to_string)
            .collect()
    };
    let help_demo = s.command("help demo");
    let in_help = names(&help_demo, "  ");
    let offered = names(&demo, "the demos are ");
    assert!(in_help.len() > 1, "{help_demo}");
    assert_eq!(
        in_help, offered,
        "help demo:\n{help_demo}\ndemo nope:\n{demo}"
    );
    // The shell's bench runs with the lock validator on, and says what that costs.
    let bench = s.command("bench no-such-suite");
    assert!(
        bench.contains("WARN  bench: the lock validator is on") && bench.contains("`make bench`"),
        "{bench}"
    );
    assert!(bench.contains("no suite name contains"), "{bench}");
    let log = s.command("log many");
    assert!(log.contains("\"many\" is not a number"), "{log}");
    assert!(log.contains("usage: log [lines]"), "{log}");
    let count = s.command("cpus 4");
    assert!(count.contains("cpus: takes no arguments, got 1"), "{count}");
    // The log history holds the boot's lines.
    let log = s.command("log 50");
    assert!(log.contains("smp: 2/2 CPUs online"), "{log}");
    assert!(log.contains("shell: type help"), "{log}");
    // Reboot: PSCI SYSTEM_RESET; tools/qemu-run passes -no-reboot, so QEMU exits.
    s.send(b"reboot\r");
    s.expect("shell: rebooting");
    let (status, output) = s.exit_status();
    assert_eq!(status, Some(0), "{output}");
    assert!(!output.contains("reboot: PSCI"), "{output}");
}

#[test]
fn shell_demo_fault_reports_and_halts() {
    let mut s = Session::start(&[("SMP", "2")], "");
    s.send(b"demo fault\r");
    s.expect("demo: this ends the session");
    s.expect("ERROR panic: unhandled exception: Data Abort from the same EL");
    // Interactive mode: the CPU halts with the report on screen; QEMU keeps running.
    s.send(b"help\r");
    let quiet_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet_until {
        assert!(
            s.pump(Duration::from_millis(100)),
            "QEMU exited:\n{}",
            s.output
        );
    }
    assert!(!s.output[s.seen..].contains("commands:"), "{}", s.output);
}

#[test]
fn virt_gicv3_smp8() {
    let run = test_run(Board::Virt, &[("SMP", "8"), ("GIC", "3")]);
    assert_online(&run, 8, 8);
    assert!(run.output.contains("irq: GICv3 with"), "{}", run.output);
    assert!(
        run.output.contains("10+ ticks on each of 8 CPUs"),
        "{}",
        run.output
    );
    assert_suite_passed(&run);
}

/// A run that ends in a panic report: its exit status and output.
fn fatal_demo(name: &str) -> Run {
    let bootargs = format!("demo={name}");
    let run = boot(Boot {
        board: Board::Virt,
        env: &[("SMP", "4")],
        bootargs: &bootargs,
        dtb: None,
    });
    assert_eq!(
        run.status,
        Some(3),
        "a panic ends a demo run with status 3:\n{}",
        run.output
    );
    run
}

/// The stop IPI, the fourth kind, across clusters: a panic on cpu1 of 32 GICv3 vCPUs stops all
/// 31 others, in both clusters, with the one "all but self" SGI1R write.
#[test]
fn a_panic_on_32_cpus_stops_every_other_cpu_in_both_clusters() {
    let smp = 32.min(MAX_CPUS);
    let run = boot(Boot {
        board: Board::Virt,
        env: &[("SMP", &smp.to_string()), ("GIC", "3")],
        bootargs: "demo=panic",
        dtb: None,
    });
    assert_eq!(run.status, Some(3), "{}", run.output);
    for cpu in (0..smp).filter(|&cpu| cpu != 1) {
        let stopped = format!("cpu1 ERROR panic: cpu{cpu} stopped at PC 0x");
        assert!(
            run.output.contains(&stopped),
            "cpu{cpu} (MPIDR {:#x}) was not stopped:\n{}",
            virt_mpidr(cpu),
            run.output
        );
    }
}

#[test]
fn a_panic_stops_every_other_cpu_first_and_prints_a_backtrace() {
    let run = fatal_demo("panic");
    assert!(
        run.output
            .contains("cpu1 ERROR panic: demo panic on cpu1 (at src/main.rs:"),
        "{}",
        run.output
    );
    let frames = run
        .output
        .lines()
        .filter(|l| l.contains("cpu1 ERROR panic:   #"))
        .count();
    assert!(
        frames >= 3,
        "a backtrace of {frames} frames:\n{}",
        run.output
    );
    for cpu in [0, 2, 3] {
        assert!(
            run.output
                .contains(&format!("cpu1 ERROR panic: cpu{cpu} stopped at PC 0x")),
            "cpu{cpu} was not stopped:\n{}",
            run.output
        );
    }
    // tools/symbolize names the frames: the panicking closure is in run_demo.
    let mut symbolize = Command::new(root().join("tools/symbolize"))
        .arg("--elf")
        .arg(root().join("build/virt/quartet.elf"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tools/symbolize");
    use std::io::Write;
    symbolize
        .stdin
        .take()
        .unwrap()
        .write_all(run.output.as_bytes())
        .unwrap();
    let named = symbolize.wait_with_output().unwrap();
    let named = String::from_utf8_lossy(&named.stdout);
    assert!(
        named
            .lines()
            .any(|l| l.contains("panic:   #") && l.contains("run_demo")),
        "no frame in run_demo:\n{named}"
    );
}

#[test]
fn the_classic_irq_deadlock_is_reported_instead_of_hanging() {
    let run = fatal_demo("irq-deadlock");
    for expected in [
        "lockdep: BUG: recursive locking on cpu0: `demo: plain, shared with the tick`",
        "taken again at src/ktest/irqlock.rs",
        "in hardirq",
        "ERROR panic: lockdep: cpu0 would spin forever on a lock it holds",
    ] {
        assert!(
            run.output.contains(expected),
            "no {expected:?}:\n{}",
            run.output
        );
    }
}

#[test]
fn shell_irqs_and_locks_show_interrupts_and_the_validator() {
    let mut s = Session::start(&[("SMP", "4"), ("GIC", "3")], "");
    // Let a few ticks pass on every CPU.
    std::thread::sleep(Duration::from_millis(300));
    let irqs = s.command("irqs");
    let timer = irqs
        .lines()
        .find(|l| l.trim_end().ends_with("timer"))
        .unwrap_or_else(|| panic!("no timer row:\n{irqs}"));
    let counts: Vec<u64> = timer
        .split_whitespace()
        .skip(1)
        .take(4)
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| panic!("count {n:?} in {timer:?}"))
        })
        .collect();
    assert!(counts.iter().all(|&n| n > 0), "every CPU ticks: {timer}");
    assert!(irqs.contains("GICv3"), "{irqs}");
    assert!(irqs.contains("uart rx"), "{irqs}");
    let cpus = s.command("cpus");
    assert!(cpus.contains("ticks") && cpus.contains("irqs"), "{cpus}");
    let locks = s.command("locks");
    assert!(locks.contains("validator on"), "{locks}");
    assert!(
        locks.lines().any(|l| l.starts_with("console ")),
        "the console lock is a known class:\n{locks}"
    );
    // Lock statistics: the console lock has been taken (every line printed takes it).
    let stats = s.command("lockstat");
    assert!(stats.contains("bounces"), "{stats}");
    let console = stats
        .lines()
        .find(|l| l.starts_with("console "))
        .unwrap_or_else(|| panic!("no console row:\n{stats}"));
    let acquired: u64 = console
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(acquired > 0, "{console}");
    let reset = s.command("lockstat reset");
    assert!(reset.contains("lock statistics reset"), "{reset}");
    let bad = s.command("lockstat everything");
    assert!(bad.contains("usage"), "{bad}");
    s.send(b"poweroff\r");
    s.expect("shell: powering off");
    let (status, output) = s.exit_status();
    assert_eq!(status, Some(0), "{output}");
}

/// A newc cpio archive (the format the kernel's src/fs/cpio.rs reads), built here so the tests
/// need no `cpio` tool: (name, mode, data) entries, then the trailer.
fn newc_archive(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let pad = |out: &mut Vec<u8>| out.resize(out.len().next_multiple_of(4), 0);
    for &(name, mode, data) in entries.iter().chain([("TRAILER!!!", 0, &b""[..])].iter()) {
        out.extend_from_slice(b"070701");
        let fields = [
            1,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad(&mut out);
        out.extend_from_slice(data);
        pad(&mut out);
    }
    out
}

/// Write `bytes` where QEMU can load them as an initrd.
fn initrd_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = root().join("target/test-initrds");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A session on QEMU virt booted with `initrd` as its initramfs.
fn session_with_initrd(initrd: &std::path::Path) -> Session {
    let image = image(Board::Virt);
    Session::start_with(
        &[
            "--board".as_ref(),
            "virt".as_ref(),
            "--image".as_ref(),
            image.as_os_str(),
            "--initrd".as_ref(),
            initrd.as_os_str(),
        ],
        &[("SMP", "4")],
        "",
    )
}

#[test]
fn an_initramfs_is_unpacked_at_boot_and_ls_and_cat_show_it() {
    let greeting = b"Hello from the initramfs!\nSecond line.\n";
    let archive = newc_archive(&[
        ("etc", 0o040755, b""),
        ("etc/motd", 0o100644, greeting),
        ("bin/data", 0o100644, &[b'x'; 5000]),
        ("bin/link", 0o120777, b"data"),
    ]);
    let path = initrd_file("good.cpio", &archive);
    let mut s = session_with_initrd(&path);
    let line = format!("({} bytes): 2 files, 1 directories unpacked", archive.len());
    assert!(
        s.output.contains(" INFO  fs: initramfs 0x") && s.output.contains(&line),
        "no unpack line with {line:?}:\n{}",
        s.output
    );
    assert!(
        s.output.contains("skipping \"bin/link\""),
        "the symlink's skip is not reported:\n{}",
        s.output
    );
    let ls = s.command("ls");
    for entry in ["d         0 bin/", "d         0 etc/"] {
        assert!(ls.contains(entry), "ls has no {entry:?}:\n{ls}");
    }
    let ls_bin = s.command("ls /bin");
    assert!(ls_bin.contains("-      5000 data"), "{ls_bin}");
    let cat = s.command("cat /etc/motd");
    assert!(
        cat.contains("Hello from the initramfs!\nSecond line.\n"),
        "{cat}"
    );
    let missing = s.command("cat /etc/nothing");
    assert!(
        missing.contains("cat: /etc/nothing: ENOENT (2)"),
        "{missing}"
    );
    let not_dir = s.command("ls /etc/motd/x");
    assert!(not_dir.contains("ENOTDIR (20)"), "{not_dir}");
}

#[test]
fn a_malformed_initramfs_is_refused_with_where_and_why_and_the_shell_still_starts() {
    let mut archive = newc_archive(&[
        ("first", 0o100644, b"kept\n"),
        ("second", 0o100644, b"lost"),
    ]);
    // Damage the second header's magic.
    let second = archive
        .windows(6)
        .enumerate()
        .filter(|(_, w)| *w == b"070701")
        .nth(1)
        .unwrap()
        .0;
    archive[second + 5] = b'9';
    let path = initrd_file("bad-magic.cpio", &archive);
    let mut s = session_with_initrd(&path);
    let why = format!(
        "refused: at offset {second:#x}: bad magic \"070709\" (a newc archive's headers start with 070701 or 070702); kept what came before: 1 files, 0 directories"
    );
    assert!(
        s.output.contains(" ERROR fs: initramfs 0x") && s.output.contains(&why),
        "no refusal saying {why:?}:\n{}",
        s.output
    );
    let cat = s.command("cat /first");
    assert!(cat.contains("kept\n"), "{cat}");
}

/// A user program built by `make` (build.rs builds the user crate and the C program).
fn built_user_program(path: &str) -> Vec<u8> {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; `make image` builds the user programs (the C one needs gcc-aarch64-linux-gnu, which tools/setup installs)",
            file.display()
        )
    })
}

#[test]
fn user_programs_from_the_image_and_the_initramfs_run_from_the_shell() {
    let hello_c = built_user_program("target/user/c/hello-c");
    let hello = built_user_program("target/user/aarch64-unknown-none/release/hello");
    let archive = newc_archive(&[
        ("bin", 0o040755, b""),
        ("bin/hello-c", 0o100755, &hello_c),
        ("bin/hello", 0o100755, &hello),
        ("etc", 0o040755, b""),
        ("etc/notes", 0o100644, b"not a program\n"),
    ]);
    let path = initrd_file("programs.cpio", &archive);
    let mut s = session_with_initrd(&path);
    let c = s.command("run /bin/hello-c one");
    assert!(
        c.contains("hello from C, pid ") && c.contains(", argc 2\n  one\n"),
        "the C program from the initramfs did not run:\n{c}"
    );
    assert!(c.contains("hello-c exited with status 0"), "{c}");
    let rust = s.command("run /bin/hello");
    assert!(
        rust.contains("hello from pid ") && rust.contains("hello exited with status 0"),
        "{rust}"
    );
    let embedded = s.command("run fork-tree");
    assert!(
        embedded.contains("all right") && embedded.contains("exited with status 0"),
        "{embedded}"
    );
    let progs = s.command("progs");
    for listed in ["hello", "bad-forkbomb", "/bin/hello-c"] {
        assert!(
            progs.contains(listed),
            "progs does not list {listed}:\n{progs}"
        );
    }
    assert!(
        !progs.contains("/etc/notes"),
        "progs lists a text file:\n{progs}"
    );
    let refused = s.command("run /etc/notes");
    assert!(
        refused.contains("run: /etc/notes: not a program quartet can run: "),
        "{refused}"
    );
    let missing = s.command("run nosuchprogram");
    assert!(
        missing.contains("run: nosuchprogram: cannot read the program: ENOENT"),
        "{missing}"
    );
    let segv = s.command("run bad-read-kernel");
    assert!(
        segv.contains("killed by SIGSEGV")
            && segv.contains("bad-read-kernel killed by SIGSEGV (11)"),
        "{segv}"
    );
    // Ctrl-C reaches a foreground program that never enters the kernel, as SIGINT.
    s.send(b"run bad-loop\r");
    s.expect("looping forever");
    s.send(b"\x03");
    let ended = s.expect(PROMPT);
    assert!(ended.contains("bad-loop killed by SIGINT (2)"), "{ended}");
    // A background loop shows in ps with user time, and kill ends it.
    let started = s.command("run bad-loop &");
    let pid: u32 = started
        .split('[')
        .nth(1)
        .and_then(|r| r.split(']').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no [pid] in {started:?}"));
    let ps = s.command("ps");
    assert!(
        ps.contains("user processes:") && ps.contains("bad-loop"),
        "{ps}"
    );
    let killed = s.command(&format!("kill {pid}"));
    assert!(
        killed.contains(&format!("sent SIGKILL to process {pid}")),
        "{killed}"
    );
    let mut gone = false;
    for _ in 0..50 {
        if s.command("ps").contains("no user processes") {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(gone, "the killed background process is still listed");
}
