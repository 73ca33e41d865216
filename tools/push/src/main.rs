//! quartet-push: the host end of the Raspberry Pi 4's serial chainloader (chapter 29, "The
//! chainloader loop"). `make push TTY=/dev/ttyUSB0` runs it.
//!
//! It is a terminal to the board that watches what the board prints. Each time the loader
//! announces itself (it does after every reset), push sends the kernel file, read afresh so a
//! kernel rebuilt since the last reset is the one that goes, with a progress bar, and then goes
//! on as a terminal: keys go to the board, the board's output to the screen, Ctrl-] leaves.
//! The protocol is src/chainload.rs, compiled here from the same file the loader uses.
//!
//! The line can be a serial device, or, for QEMU's raspi4b, a pty (`-serial pty`) or a socket
//! (`-serial tcp:...,server=on` or `unix:...,server=on`): the tests drive the real loader in
//! QEMU through the same code that drives a board.

// The loader's half of the protocol (`serve`, `receive`) is not used on this side.
#[allow(dead_code)]
#[path = "../../../src/chainload.rs"]
mod protocol;

use std::io::{IsTerminal, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: quartet-push [--baud N] TTY KERNEL
  TTY     /dev/ttyUSB0, /dev/ttyACM0  a USB-serial adapter wired to the Pi's GPIO14/15
          /dev/pts/N                  a pty (QEMU -serial pty)
          tcp:HOST:PORT, unix:PATH    a socket QEMU listens on (-serial tcp:...,server=on)
  KERNEL  the Image to send, e.g. build/rpi4/kernel8.img
  --baud  the serial speed (115200, the loader's); ignored for ptys and sockets
Sends KERNEL each time the chainloader announces itself, then is a terminal; Ctrl-] leaves.";

/// Ctrl-], as telnet and picocom's cousins use it: leave.
const QUIT_KEY: u8 = 0x1d;
/// How long the loader may take to accept or refuse the size a request names.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// After this many refusals in a row push stops sending: something is wrong that resending
/// will not fix (a kernel too big, a wrong file, a bad cable).
const MAX_REFUSALS_IN_A_ROW: u32 = 3;

enum Event {
    Board(Vec<u8>),
    BoardGone(String),
    Keys(Vec<u8>),
}

struct Args {
    tty: String,
    kernel: String,
    baud: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut baud = 115_200;
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--baud" => {
                let v = args.next().ok_or("--baud needs a number")?;
                baud = v.parse().map_err(|_| format!("--baud {v}: not a number"))?;
            }
            _ => positional.push(arg),
        }
    }
    match <[String; 2]>::try_from(positional) {
        Ok([tty, kernel]) => Ok(Args { tty, kernel, baud }),
        Err(_) => Err(USAGE.to_string()),
    }
}

/// The two ends of the line: what the board says, and where keys and kernels go.
type LineEnds = (Box<dyn Read + Send>, Box<dyn Write + Send>);

/// Open the line: a reader (moved to its own thread) and a writer.
fn open_line(tty: &str, baud: u32) -> Result<LineEnds, String> {
    if let Some(addr) = tty.strip_prefix("tcp:") {
        let stream = connect_with_retry(tty, || std::net::TcpStream::connect(addr))?;
        let _ = stream.set_nodelay(true);
        let reader = stream.try_clone().map_err(|e| e.to_string())?;
        return Ok((Box::new(reader), Box::new(stream)));
    }
    if let Some(path) = tty.strip_prefix("unix:") {
        let stream = connect_with_retry(tty, || std::os::unix::net::UnixStream::connect(path))?;
        let reader = stream.try_clone().map_err(|e| e.to_string())?;
        return Ok((Box::new(reader), Box::new(stream)));
    }
    let port = serialport::new(tty, baud)
        .data_bits(serialport::DataBits::Eight)
        .parity(serialport::Parity::None)
        .stop_bits(serialport::StopBits::One)
        .flow_control(serialport::FlowControl::None)
        .timeout(Duration::from_millis(200))
        .open()
        .map_err(|e| {
            format!("cannot open {tty}: {e} (is it the right device? on Debian your user must be in the dialout group)")
        })?;
    let reader = port
        .try_clone()
        .map_err(|e| format!("cannot share {tty} between reader and writer: {e}"))?;
    Ok((Box::new(SerialReader(reader)), Box::new(SerialWriter(port))))
}

/// A socket QEMU listens on may not be there yet while QEMU starts: try for ten seconds.
fn connect_with_retry<T>(
    what: &str,
    mut connect: impl FnMut() -> std::io::Result<T>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match connect() {
            Ok(stream) => return Ok(stream),
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(format!("cannot connect to {what}: {e}")),
        }
    }
}

/// A serial port's read times out when nothing arrives; here that only means "read again".
struct SerialReader(Box<dyn serialport::SerialPort>);

impl Read for SerialReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                other => return other,
            }
        }
    }
}

/// A serial port's write times out while the port's buffer is full; wait for room instead.
struct SerialWriter(Box<dyn serialport::SerialPort>);

impl Write for SerialWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.0.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                other => return other,
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The terminal in raw mode while push runs (keys go to the board one by one, unechoed), put
/// back as it was when push leaves.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawTerminal(None);
        }
        let Ok(saved) = tcgetattr(libc_stdin()) else {
            return RawTerminal(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        match tcsetattr(libc_stdin(), SetArg::TCSANOW, &raw) {
            Ok(()) => RawTerminal(Some(saved)),
            Err(_) => RawTerminal(None),
        }
    }

    fn is_raw(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                libc_stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

fn libc_stdin() -> i32 {
    use std::os::fd::AsRawFd;
    std::io::stdin().as_raw_fd()
}

/// Whether the last byte the board printed ended a line, so push's own lines start on one.
static AT_LINE_START: AtomicBool = AtomicBool::new(true);

/// push's own messages, on stderr, as whole lines even while the terminal is raw.
fn note(raw: bool, message: &str) {
    let nl = if raw { "\r\n" } else { "\n" };
    let start = if AT_LINE_START.load(Ordering::Relaxed) {
        ""
    } else {
        nl
    };
    let _ = write!(std::io::stderr(), "{start}push: {message}{nl}");
    AT_LINE_START.store(true, Ordering::Relaxed);
}

/// Watches the board's output for the loader's announcement and lines, across chunk edges.
#[derive(Default)]
struct Watch {
    tail: Vec<u8>,
}

impl Watch {
    /// Feed `bytes`; the complete lines and whether [`protocol::READY`] was seen.
    fn feed(&mut self, bytes: &[u8]) -> (Vec<String>, bool) {
        let ready_before = self.tail.len().saturating_sub(protocol::READY.len() - 1);
        self.tail.extend_from_slice(bytes);
        let ready = self.tail[ready_before..]
            .windows(protocol::READY.len())
            .any(|w| w == protocol::READY);
        let mut lines = Vec::new();
        while let Some(nl) = self.tail.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.tail.drain(..=nl).collect();
            lines.push(String::from_utf8_lossy(&line).trim_end().to_string());
        }
        (lines, ready)
    }
}

enum Outcome {
    /// Everything went out; the loader's verdict comes as a line later.
    Sent,
    Refused,
    Quit,
    Gone(String),
}

/// The loader's verdicts: how many kernels it started, and its refusals since the last start.
#[derive(Default)]
struct Verdicts {
    kernels_started: u32,
    refusals_in_a_row: u32,
}

impl Verdicts {
    fn started(&mut self) {
        self.kernels_started += 1;
        self.refusals_in_a_row = 0;
    }

    fn refused(&mut self, raw: bool) {
        self.refusals_in_a_row += 1;
        if self.gave_up() {
            note(
                raw,
                &format!(
                    "the loader refused {} times in a row; not sending again until push restarts",
                    self.refusals_in_a_row
                ),
            );
        }
    }

    fn gave_up(&self) -> bool {
        self.refusals_in_a_row >= MAX_REFUSALS_IN_A_ROW
    }
}

struct Session {
    events: Receiver<Event>,
    writer: Box<dyn Write + Send>,
    quit: Arc<AtomicBool>,
    watch: Watch,
    raw: bool,
}

impl Session {
    fn show(&self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
        if let Some(&last) = bytes.last() {
            AT_LINE_START.store(last == b'\n', Ordering::Relaxed);
        }
    }

    /// Wait for a board line that contains one of `wanted`; print everything meanwhile.
    fn wait_for_line(&mut self, wanted: &[&str]) -> Result<String, Outcome> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Board(bytes)) => {
                    self.show(&bytes);
                    let (lines, _) = self.watch.feed(&bytes);
                    if let Some(l) = lines
                        .into_iter()
                        .find(|l| wanted.iter().any(|w| l.contains(w)))
                    {
                        return Ok(l);
                    }
                }
                Ok(Event::Keys(keys)) => {
                    if keys.contains(&QUIT_KEY) {
                        return Err(Outcome::Quit);
                    }
                }
                Ok(Event::BoardGone(why)) => return Err(Outcome::Gone(why)),
                Err(RecvTimeoutError::Timeout) => {
                    note(
                        self.raw,
                        &format!(
                            "the loader did not answer within {} s",
                            ANSWER_TIMEOUT.as_secs()
                        ),
                    );
                    return Err(Outcome::Refused);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Outcome::Gone("the reader stopped".into()));
                }
            }
        }
    }

    /// One transfer of the kernel file, as the protocol has it.
    fn push(&mut self, path: &str) -> Outcome {
        let kernel = match std::fs::read(path) {
            Ok(k) => k,
            Err(e) => {
                note(self.raw, &format!("cannot read {path}: {e}"));
                return Outcome::Refused;
            }
        };
        let Ok(size) = u32::try_from(kernel.len()) else {
            note(self.raw, &format!("{path} is larger than 4 GiB"));
            return Outcome::Refused;
        };
        note(
            self.raw,
            &format!("the chainloader asks for a kernel: sending {path} ({size} bytes)"),
        );
        if let Err(e) = self.writer.write_all(&protocol::request(size)) {
            return Outcome::Gone(e.to_string());
        }
        let _ = self.writer.flush();
        match self.wait_for_line(&[protocol::ACCEPTED, protocol::REFUSED]) {
            Ok(l) if l.contains(protocol::REFUSED) => return Outcome::Refused,
            Ok(_) => {}
            Err(outcome) => return outcome,
        }
        let started = Instant::now();
        let mut progress = Progress::new(kernel.len());
        for chunk in kernel.chunks(1024) {
            if self.quit.load(Ordering::Relaxed) {
                progress.finish();
                return Outcome::Quit;
            }
            if let Err(e) = self.writer.write_all(chunk) {
                progress.finish();
                return Outcome::Gone(e.to_string());
            }
            progress.add(chunk.len());
        }
        let crc = protocol::crc32(&kernel);
        if let Err(e) = self.writer.write_all(&crc.to_le_bytes()) {
            return Outcome::Gone(e.to_string());
        }
        let _ = self.writer.flush();
        progress.finish();
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        note(
            self.raw,
            &format!(
                "sent {size} bytes and crc32 {crc:#010x} in {secs:.1} s ({:.1} KiB/s)",
                size as f64 / 1024.0 / secs
            ),
        );
        // The bytes may still be on their way (in the host's buffers, or a socket's), so
        // the loader's verdict can take a while: the main loop reads it when it comes.
        Outcome::Sent
    }
}

/// A progress bar on stderr, drawn over itself with "\r"; nothing when stderr is no terminal.
struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    drawn: Option<Instant>,
    visible: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            started: Instant::now(),
            drawn: None,
            visible: std::io::stderr().is_terminal(),
        }
    }

    fn add(&mut self, n: usize) {
        self.done += n;
        let due = self
            .drawn
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if self.visible && (due || self.done == self.total) {
            self.draw();
            self.drawn = Some(Instant::now());
        }
    }

    fn draw(&self) {
        const WIDTH: usize = 40;
        let filled = WIDTH * self.done / self.total.max(1);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let _ = write!(
            std::io::stderr(),
            "\r[{}{}] {:3}% {}/{} KiB {:.1} KiB/s ",
            "#".repeat(filled),
            " ".repeat(WIDTH - filled),
            100 * self.done / self.total.max(1),
            self.done / 1024,
            self.total / 1024,
            self.done as f64 / 1024.0 / secs
        );
    }

    fn finish(&mut self) {
        if self.visible && self.drawn.is_some() {
            let _ = write!(std::io::stderr(), "\r\n");
        }
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    std::process::exit(run(&args));
}

fn run(args: &Args) -> i32 {
    let (mut reader, writer) = match open_line(&args.tty, args.baud) {
        Ok(line) => line,
        Err(e) => {
            eprintln!("push: {e}");
            return 1;
        }
    };
    let terminal = RawTerminal::enter();
    let raw = terminal.is_raw();
    note(
        raw,
        &format!(
            "on {}: waiting for the chainloader (reset the board if it is running a kernel){}",
            args.tty,
            if raw { "; Ctrl-] leaves" } else { "" }
        ),
    );

    let (tx, events) = mpsc::channel::<Event>();
    let quit = Arc::new(AtomicBool::new(false));
    spawn_board_reader(&mut reader, tx.clone());
    spawn_key_reader(tx, quit.clone());

    let mut session = Session {
        events,
        writer,
        quit,
        watch: Watch::default(),
        raw,
    };
    let mut verdicts = Verdicts::default();
    while let Ok(event) = session.events.recv() {
        match event {
            Event::Board(bytes) => {
                session.show(&bytes);
                let (lines, ready) = session.watch.feed(&bytes);
                for line in &lines {
                    if line.contains(protocol::STARTING) {
                        verdicts.started();
                    } else if line.contains(protocol::REFUSED) {
                        verdicts.refused(raw);
                    }
                }
                if !ready || verdicts.gave_up() {
                    continue;
                }
                match session.push(&args.kernel) {
                    Outcome::Sent => {}
                    Outcome::Refused => verdicts.refused(raw),
                    Outcome::Quit => break,
                    Outcome::Gone(why) => {
                        note(raw, &format!("the line closed: {why}"));
                        break;
                    }
                }
            }
            Event::Keys(keys) => {
                if let Some(at) = keys.iter().position(|&k| k == QUIT_KEY) {
                    let _ = session.writer.write_all(&keys[..at]);
                    break;
                }
                if session.writer.write_all(&keys).is_err() {
                    break;
                }
                let _ = session.writer.flush();
            }
            Event::BoardGone(why) => {
                note(raw, &format!("the line closed: {why}"));
                break;
            }
        }
    }
    drop(terminal);
    if verdicts.kernels_started > 0 { 0 } else { 1 }
}

fn spawn_board_reader(reader: &mut Box<dyn Read + Send>, tx: Sender<Event>) {
    let mut reader = std::mem::replace(reader, Box::new(std::io::empty()));
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => {
                    let _ = tx.send(Event::BoardGone("end of file".into()));
                    return;
                }
                Ok(n) => {
                    if tx.send(Event::Board(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Event::BoardGone(e.to_string()));
                    return;
                }
            }
        }
    });
}

fn spawn_key_reader(tx: Sender<Event>, quit: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 256];
        // At the end of stdin (no terminal: a test, a pipe) push goes on with the board alone.
        while let Ok(n @ 1..) = stdin.read(&mut buf) {
            if buf[..n].contains(&QUIT_KEY) {
                quit.store(true, Ordering::Relaxed);
            }
            if tx.send(Event::Keys(buf[..n].to_vec())).is_err() {
                return;
            }
        }
    });
}
