//! The Pi 4's serial chainloader end to end on QEMU raspi4b (chapter 29, "The chainloader
//! loop"): build/rpi4/chainloader/kernel8.img boots as the firmware would boot it, its serial
//! line is a Unix socket, and the test first plays a broken host itself (a corrupt transfer, a
//! truncated one), then lets tools/push send the real Pi 4 kernel, which must start its other
//! three cores from the firmware's spin table and pass the in-kernel tests named in `SUITE`.
//!
//! The kernel's command line reaches a chainloaded kernel the way it reaches one loaded by the
//! firmware: in the device tree's /chosen/bootargs. QEMU writes `-append` there in the tree it
//! gives the chainloader, and the chainloader hands that same tree on in x0; on a board the
//! firmware writes cmdline.txt there. So BOOTARGS="test=..." works unchanged.
//!
//! QEMU's PL011 takes in about one byte for each turn of QEMU's main loop while the guest reads,
//! so a transfer is no faster there than on a board at 115200 baud (about 10 KiB/s): the broken
//! transfers are short, and only the real kernel crosses whole, once. With one host thread per
//! vCPU, the three cores waiting in the spin table keep taking QEMU's big lock and slow each
//! turn down several times over, so this test runs QEMU's round-robin TCG (`TCG=single`).
//!
//! The images must be built first: `make test` does that (`make rpi4 chainloader push-tool`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use quartet::chainload::{self, ACCEPTED, READY, REFUSED, STARTING};

/// The whole run: the real kernel's transfer (two to five minutes at QEMU's pace on a loaded
/// two-core machine), then its boot and the whole in-kernel suite (one to two more).
const TIMEOUT: Duration = Duration::from_secs(900);
/// The in-kernel tests the chainloaded kernel runs: the whole suite but the checks that a
/// deliberately broken lock, RCU, page list or file system is caught. Those need vCPUs that truly
/// run at once, and this test's round-robin TCG takes them in turns (a run of the whole suite here
/// once reported "the broken mutex survived 6 runs"). tests/boot.rs runs them on raspi4b with one
/// host thread per vCPU.
const SUITE: &str = "test=!broken";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn built(path: &str, how: &str) -> PathBuf {
    let p = root().join(path);
    assert!(p.exists(), "{} is missing: {how}", p.display());
    p
}

/// A child that is ended when the test is over or panics: QEMU's whole process group
/// (tools/qemu-run, timeout and QEMU), or push alone, which leads no group of its own.
struct KillOnDrop {
    child: Child,
    whole_group: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.whole_group {
            // `--` matters: procps-ng's kill reads `kill -KILL -12345` as the option `-1`
            // followed by digits, and sends SIGKILL to pid -1, every process it may signal.
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Collect a child's output lines on a channel, stdout and stderr alike.
fn collect(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
    let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
    for pipe in [out, err] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line.trim_end_matches('\r').to_string());
            }
        });
    }
    rx
}

/// QEMU raspi4b booting the chainloader, its console on a Unix socket QEMU listens on; the
/// guest starts when the first client connects.
fn start_qemu(socket: &Path, bootargs: &str) -> (KillOnDrop, mpsc::Receiver<String>) {
    use std::os::unix::process::CommandExt;
    let loader = built(
        "build/rpi4/chainloader/kernel8.img",
        "build it with `make chainloader` (make test does)",
    );
    let _ = std::fs::remove_file(socket);
    let mut cmd = Command::new(root().join("tools/qemu-run"));
    for var in ["SMP", "MEM", "CPU", "GIC", "EL2", "VIRT_OPTS", "RPI_DTB"] {
        cmd.env_remove(var);
    }
    cmd.arg("--board")
        .arg("rpi4")
        .arg("--image")
        .arg(&loader)
        .arg("--serial")
        .arg(format!("unix:{},server=on,wait=on", socket.display()))
        .arg("--timeout")
        .arg(TIMEOUT.as_secs().to_string())
        .env("BOOTARGS", bootargs)
        .env("TCG", "single")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().expect("tools/qemu-run starts");
    let lines = collect(&mut child);
    (
        KillOnDrop {
            child,
            whole_group: true,
        },
        lines,
    )
}

fn connect(socket: &Path) -> UnixStream {
    let start = Instant::now();
    loop {
        match UnixStream::connect(socket) {
            Ok(s) => return s,
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                panic!("QEMU never listened on {}: {e}", socket.display())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The test's side of the line: it reads what the loader says and sends what a host would.
struct Host {
    stream: UnixStream,
    /// Everything the loader said so far.
    heard: Vec<u8>,
    /// How much of `heard` an `expect` has consumed.
    seen: usize,
}

impl Host {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.heard).into_owned()
    }

    /// Read until `wanted` appears after what was seen; the text up to its end.
    fn expect(&mut self, wanted: &[u8], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = self.heard[self.seen..]
                .windows(wanted.len())
                .position(|w| w == wanted)
            {
                let end = self.seen + at + wanted.len();
                let said = String::from_utf8_lossy(&self.heard[self.seen..end]).into_owned();
                self.seen = end;
                return said;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {:?} within {within:?}; the loader said:\n{}",
                String::from_utf8_lossy(wanted),
                self.text()
            );
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the line closed; the loader said:\n{}", self.text()),
                Ok(n) => self.heard.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading the line: {e}"),
            }
        }
    }

    /// The rest of the line that starts with `prefix`.
    fn expect_line(&mut self, prefix: &str, within: Duration) -> String {
        self.expect(prefix.as_bytes(), within);
        let rest = self.expect(b"\n", within);
        format!("{prefix}{}", rest.trim_end())
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("the loader takes bytes");
    }
}

/// A host tool binary, built the way the Makefile builds it (a no-op when it is up to date).
fn push_tool() -> PathBuf {
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc names its host");
    // The same `cargo` the Makefile runs, so that the two builds agree and neither redoes the
    // other's work.
    let status = Command::new("cargo")
        .current_dir(root())
        .args([
            "build",
            "--release",
            "--manifest-path",
            "tools/push/Cargo.toml",
        ])
        .args(["--target", &host, "--target-dir", "target/push"])
        .status()
        .expect("cargo builds tools/push");
    assert!(status.success(), "tools/push does not build");
    root().join(format!("target/push/{host}/release/quartet-push"))
}

#[test]
fn chainloader_refuses_corrupt_and_truncated_transfers_then_runs_the_kernel_push_sends() {
    let kernel_path = built(
        "build/rpi4/kernel8.img",
        "build it with `make rpi4` (make test does)",
    );
    let kernel = std::fs::read(&kernel_path).unwrap();
    let push = push_tool();
    let dir = root().join("target/chainload-test");
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("serial.sock");
    let (qemu, qemu_lines) = start_qemu(&socket, SUITE);

    let mut host = Host {
        stream: connect(&socket),
        heard: Vec::new(),
        seen: 0,
    };
    let minute = Duration::from_secs(60);
    let banner = host.expect(READY, minute);
    assert!(
        banner.contains("entered at EL2") && banner.contains("device tree at 0x8000000"),
        "{banner}"
    );

    // 1. A corrupt transfer: the start of the real kernel with one bit flipped, sent with the
    //    checksum of the bytes as they should have been.
    let good = &kernel[..16 * 1024];
    let mut corrupt = good.to_vec();
    corrupt[10_000] ^= 0x04;
    host.send(&chainload::request(corrupt.len() as u32));
    let accepted = host.expect_line(ACCEPTED, minute);
    assert_eq!(accepted, "chainloader: receiving 16384 bytes at 0x80000");
    host.send(&corrupt);
    host.send(&chainload::crc32(good).to_le_bytes());
    let refusal = host.expect_line(REFUSED, minute);
    assert_eq!(
        refusal,
        format!(
            "{REFUSED}checksum mismatch: the host sent crc32 {:#010x}, the bytes received give {:#010x}; nothing was run",
            chainload::crc32(good),
            chainload::crc32(&corrupt)
        )
    );
    host.expect(READY, minute);

    // 2. A truncated transfer: the whole kernel announced, a part sent, then nothing.
    host.send(&chainload::request(kernel.len() as u32));
    host.expect_line(ACCEPTED, minute);
    host.send(&kernel[..8 * 1024]);
    let sent_at = Instant::now();
    let refusal = host.expect_line(REFUSED, minute);
    assert_eq!(
        refusal,
        format!(
            "{REFUSED}the transfer stopped after 8192 of {} kernel bytes (nothing for {} ms); nothing was run",
            kernel.len(),
            chainload::BYTE_TIMEOUT_MS
        )
    );
    // It waited for the bytes before giving up on them.
    assert!(
        sent_at.elapsed() >= Duration::from_millis(u64::from(chainload::BYTE_TIMEOUT_MS)),
        "refused after {:?}",
        sent_at.elapsed()
    );
    host.expect(READY, minute);
    // Nothing half-loaded ran: the loader only ever spoke for itself.
    let said = host.text();
    assert!(
        said.lines().all(|l| l.trim().is_empty()
            || l.starts_with("chainloader: ")
            || l.starts_with("[quartet chainloader: ")),
        "{said}"
    );
    drop(host);

    // 3. tools/push, as `make push TTY=unix:...` runs it, sends the real kernel.
    let mut push_child = Command::new(&push)
        .arg(format!("unix:{}", socket.display()))
        .arg(&kernel_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("quartet-push starts");
    let push_lines = collect(&mut push_child);
    let push_child = KillOnDrop {
        child: push_child,
        whole_group: false,
    };
    let mut qemu = qemu;
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = qemu.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "QEMU did not finish");
        std::thread::sleep(Duration::from_millis(200));
    };
    // QEMU has gone, so the line has closed and push ends by itself.
    let mut push_child = push_child;
    let push_deadline = Instant::now() + Duration::from_secs(30);
    while push_child.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < push_deadline,
            "push did not notice the line close"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let output: Vec<String> = push_lines.try_iter().collect();
    let output = output.join("\n");
    let qemu_said: Vec<String> = qemu_lines.try_iter().collect();
    let context = format!("push:\n{output}\nqemu:\n{}", qemu_said.join("\n"));

    for expected in [
        "push: the chainloader asks for a kernel: sending",
        STARTING,
        "(Raspberry Pi 4 build), entered at EL2",
        "smp: 4/4 CPUs online",
    ] {
        assert!(output.contains(expected), "no {expected:?} in\n{context}");
    }
    assert!(
        output.contains(&format!(
            "crc32 {:#010x}); starting the kernel at 0x80000 with x0 = 0x8000000",
            chainload::crc32(&kernel)
        )),
        "{context}"
    );
    // The suite that BOOTARGS asked for ran (so the bootargs reached the kernel), and passed.
    let tests_ok = output
        .lines()
        .filter(|l| l.starts_with("test ") && l.ends_with(" ... ok"))
        .count();
    let closing = output
        .lines()
        .find_map(|l| {
            let (passed, failed) = l.split_once(" passed, ")?;
            Some((
                passed.parse::<usize>().ok()?,
                failed.strip_suffix(" failed")?.parse::<usize>().ok()?,
            ))
        })
        .unwrap_or_else(|| panic!("no `N passed, M failed` line in\n{context}"));
    assert_eq!(closing.1, 0, "in-kernel failures:\n{context}");
    assert!(
        closing.0 > 0 && closing.0 == tests_ok,
        "{} passed but {tests_ok} ok lines:\n{context}",
        closing.0
    );
    assert_eq!(status.code(), Some(0), "QEMU's exit status:\n{context}");
}
