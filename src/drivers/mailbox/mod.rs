//! The VideoCore mailbox: how the Arm cores ask the Pi's GPU firmware about the board
//! (chapter 29, "Asking the VideoCore").
//!
//! On a Raspberry Pi the VideoCore boots first and keeps running its firmware beside the Arm
//! cores. It knows what the device tree cannot say for sure: the board's revision code (model,
//! memory size, maker), how much of the RAM it left to the Arm cores, the UART's real clock. The
//! Arm side asks through a mailbox, a pair of small hardware FIFOs between the two processors:
//!
//! 1. Write a message (property.rs) into RAM, in a buffer aligned to 16 bytes.
//! 2. Push the message to memory (clean the cache lines): the VideoCore reads RAM directly and
//!    never looks in the Arm's caches.
//! 3. Write the buffer's address *as the VideoCore sees it* (a bus address, through the
//!    device tree's `dma-ranges`), with the channel number in its low 4 bits, into mailbox 1.
//! 4. Wait, for a bounded time, until mailbox 0 returns the same word: the firmware has
//!    rewritten the buffer in place with its answers.
//! 5. Drop the stale cached copies of the buffer (invalidate), and only then read the answers.
//!
//! The register protocol (steps 3 and 4) is plain MMIO and is tested on the host against a fake
//! register block; the message format is in property.rs. Steps 2 and 5 are cache instructions,
//! in src/arch/aarch64/cpu.rs; `ask_board` puts all the steps together on the target.

pub mod property;

use core::fmt;

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, WriteOnly};

use self::property::{
    Answer, CLOCK_UART, MessageError, Request, TAG_ARM_MEMORY, TAG_BOARD_MODEL, TAG_BOARD_REVISION,
    TAG_BOARD_SERIAL, TAG_CLOCK_RATE, TAG_FIRMWARE_REVISION, Tag, TagError,
};
use crate::platform::Region;

register_bitfields! {
    u32,
    STATUS [
        /// No room for another word.
        FULL OFFSET(31) NUMBITS(1) [],
        /// No word waiting.
        EMPTY OFFSET(30) NUMBITS(1) []
    ]
}

register_structs! {
    /// Mailbox 0 carries words from the VideoCore to the Arm, mailbox 1 from the Arm to the
    /// VideoCore; each has a status register with FULL and EMPTY.
    pub MailboxRegisters {
        (0x00 => read: ReadOnly<u32>),
        (0x04 => _reserved0),
        (0x18 => read_status: ReadOnly<u32, STATUS::Register>),
        (0x1c => _reserved1),
        (0x20 => write: WriteOnly<u32>),
        (0x24 => _reserved2),
        (0x38 => write_status: ReadOnly<u32, STATUS::Register>),
        (0x3c => @END),
    }
}

/// How long the firmware gets to answer, in milliseconds. It answers these questions in
/// microseconds; a mailbox that has not answered after this will not.
pub const ANSWER_TIMEOUT_MS: u64 = 100;

/// Why an exchange through the mailbox failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxError {
    /// The buffer's bus address has some of its low 4 bits set: they would be read as the channel.
    Misaligned(u32),
    /// Mailbox 1 stayed full: the VideoCore is not taking words.
    SendTimeout,
    /// No word naming our buffer and channel came back in time. `discarded` other words (for
    /// other channels or buffers) were read and dropped meanwhile.
    AnswerTimeout { discarded: u32 },
}

impl fmt::Display for MailboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MailboxError::Misaligned(bus) => write!(
                f,
                "the message's bus address {bus:#x} is not 16-byte aligned"
            ),
            MailboxError::SendTimeout => write!(
                f,
                "its Arm-to-VideoCore mailbox stayed full for {ANSWER_TIMEOUT_MS} ms"
            ),
            MailboxError::AnswerTimeout { discarded: 0 } => {
                write!(f, "no answer within {ANSWER_TIMEOUT_MS} ms")
            }
            MailboxError::AnswerTimeout { discarded } => write!(
                f,
                "no answer within {ANSWER_TIMEOUT_MS} ms ({discarded} words that were not its answer dropped)"
            ),
        }
    }
}

/// A mailbox at a mapped MMIO address.
pub struct Mailbox {
    regs: *const MailboxRegisters,
}

impl Mailbox {
    /// # Safety
    /// `base` must be the address of a BCM2835-style mailbox's registers, mapped as Device
    /// memory, and nothing else may use the mailbox while this value does.
    pub const unsafe fn new(base: usize) -> Self {
        Mailbox {
            regs: base as *const MailboxRegisters,
        }
    }

    fn regs(&self) -> &MailboxRegisters {
        // SAFETY: `new`'s contract: the address is a mapped mailbox register block.
        unsafe { &*self.regs }
    }

    /// Hand the message at `bus_address` to the VideoCore on `channel`, and wait until it hands
    /// the same word back. `now` reads a counter, and `timeout` is in its ticks: every wait is
    /// bounded, so a VideoCore that never answers costs `timeout`, not the boot.
    ///
    /// The message must already be in memory (cleaned out of the cache), and must not be read
    /// until the cache lines are invalidated again: this function only moves the words.
    pub fn exchange(
        &self,
        channel: u8,
        bus_address: u32,
        now: &mut dyn FnMut() -> u64,
        timeout: u64,
    ) -> Result<(), MailboxError> {
        if bus_address & 0xf != 0 {
            return Err(MailboxError::Misaligned(bus_address));
        }
        let word = bus_address | (channel & 0xf) as u32;
        let r = self.regs();
        let deadline = now().saturating_add(timeout);
        while r.write_status.is_set(STATUS::FULL) {
            if now() >= deadline {
                return Err(MailboxError::SendTimeout);
            }
            crate::arch::cpu_relax();
        }
        r.write.set(word);
        let mut discarded = 0;
        loop {
            if !r.read_status.is_set(STATUS::EMPTY) {
                // A word for another channel (or an old answer) is not ours: read past it.
                if r.read.get() == word {
                    return Ok(());
                }
                discarded += 1;
            }
            // Checked on every round, words or not: a stream of strangers must not hang us.
            if now() >= deadline {
                return Err(MailboxError::AnswerTimeout { discarded });
            }
            crate::arch::cpu_relax();
        }
    }
}

/// What the firmware said about the board; each answer stands or falls on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoardFacts {
    /// The revision code (src/platform/revision.rs decodes it).
    pub revision: Result<u32, TagError>,
    /// The "board model" number, which the Pi 4's firmware leaves at 0: the revision says more.
    pub model: Result<u32, TagError>,
    pub serial: Result<u64, TagError>,
    /// The part of RAM the VideoCore leaves to the Arm cores in the low 1 GiB.
    pub arm_memory: Result<Region, TagError>,
    pub uart_clock_hz: Result<u32, TagError>,
    /// The firmware's build, a Unix time.
    pub firmware_revision: Result<u32, TagError>,
}

/// The board questions, as they sit in a message buffer.
#[derive(Clone, Copy, Debug)]
pub struct BoardRequest {
    /// The message's length in bytes.
    pub bytes: u32,
    tags: [Tag; 6],
}

/// Write every board question into `words` as one message.
pub fn board_request(words: &mut [u32]) -> Result<BoardRequest, MessageError> {
    let mut r = Request::new(words)?;
    let tags = [
        r.add(TAG_BOARD_REVISION, &[], 4)?,
        r.add(TAG_BOARD_MODEL, &[], 4)?,
        r.add(TAG_BOARD_SERIAL, &[], 8)?,
        r.add(TAG_ARM_MEMORY, &[], 8)?,
        r.add(TAG_CLOCK_RATE, &[CLOCK_UART], 8)?,
        r.add(TAG_FIRMWARE_REVISION, &[], 4)?,
    ];
    Ok(BoardRequest {
        bytes: r.finish(),
        tags,
    })
}

/// Read the answers to `request` out of `words`, after the firmware rewrote them.
pub fn board_answer(words: &[u32], request: &BoardRequest) -> Result<BoardFacts, MessageError> {
    let a = Answer::check(words, request.bytes)?;
    let [revision, model, serial, memory, clock, firmware] = request.tags;
    Ok(BoardFacts {
        revision: a.word(revision),
        model: a.word(model),
        serial: a
            .value(serial, 8)
            .map(|v| (v[1] as u64) << 32 | v[0] as u64),
        arm_memory: a
            .value(memory, 8)
            .map(|v| Region::new(v[0] as u64, v[1] as u64)),
        uart_clock_hz: a.value(clock, 8).and_then(|v| {
            // The answer repeats the clock id; another id would be another clock's rate.
            if v[0] == CLOCK_UART {
                Ok(v[1])
            } else {
                Err(TagError::Overwritten { found: v[0] })
            }
        }),
        firmware_revision: a.word(firmware),
    })
}

/// What asking the board came to, kept in the `Platform` for the log and the shell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BoardQuery {
    /// Not asked: the platform was described before the kernel's map had the mailbox.
    #[default]
    NotAsked,
    /// There is no device tree to find a mailbox in; none is guessed.
    NoTree,
    /// The device tree lists no mailbox (compatible brcm,bcm2835-mbox): QEMU virt.
    NoMailbox,
    /// The message buffer lies where the VideoCore cannot address it (outside `dma-ranges`).
    Unreachable { buffer: u64 },
    /// Someone else was using the message buffer.
    Busy,
    /// The mailbox at `at` did not take the message or did not answer it.
    Failed { at: u64, error: MailboxError },
    /// The mailbox answered, but the message as a whole is not an answer.
    Refused { at: u64, error: MessageError },
    /// The firmware at `at` answered.
    Answered { at: u64, facts: BoardFacts },
}

impl BoardQuery {
    /// The answers, if the firmware gave any.
    pub fn facts(&self) -> Option<&BoardFacts> {
        match self {
            BoardQuery::Answered { facts, .. } => Some(facts),
            _ => None,
        }
    }

    /// The decoded revision code, if the firmware gave one.
    pub fn revision(&self) -> Option<crate::platform::revision::Revision> {
        self.facts()
            .and_then(|f| f.revision.ok())
            .map(crate::platform::revision::Revision)
    }
}

/// One line about the board for the log and the shell: what the firmware says it is, or why
/// there is no answer (then the device tree is all quartet goes by).
impl fmt::Display for BoardQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const GO_ON: &str = "going on with the device tree";
        match *self {
            BoardQuery::NotAsked => write!(f, "the VideoCore was not asked; {GO_ON}"),
            BoardQuery::NoTree => f.write_str(
                "no device tree to find a VideoCore mailbox in (brcm,bcm2835-mbox), and none is guessed; going on with the board defaults",
            ),
            BoardQuery::NoMailbox => write!(
                f,
                "no VideoCore mailbox in the device tree (brcm,bcm2835-mbox); {GO_ON}"
            ),
            BoardQuery::Unreachable { buffer } => write!(
                f,
                "the mailbox message buffer at {buffer:#x} is outside the VideoCore's view of RAM (dma-ranges); {GO_ON}"
            ),
            BoardQuery::Busy => write!(f, "the mailbox message buffer is in use; {GO_ON}"),
            BoardQuery::Failed { at, error } => {
                write!(f, "the VideoCore mailbox at {at:#x}: {error}; {GO_ON}")
            }
            BoardQuery::Refused { at, error } => {
                write!(f, "the VideoCore mailbox at {at:#x}: {error}; {GO_ON}")
            }
            BoardQuery::Answered { facts, .. } => match facts.revision {
                Ok(code) => write!(f, "{} (mailbox)", crate::platform::revision::Revision(code)),
                Err(e) => write!(f, "the firmware's revision code: {e}; {GO_ON}"),
            },
        }
    }
}

#[cfg(target_os = "none")]
pub use self::target::ask_board;

#[cfg(target_os = "none")]
mod target {
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::arch::aarch64::cpu;
    use crate::mm::{phys_to_virt, virt_to_phys};

    const WORDS: usize = 64;

    /// The message buffer: aligned to 64 bytes, a whole number of Cortex-A72 cache lines, so
    /// cleaning and invalidating it touches nothing else. It is in the kernel image, which the
    /// Pi's firmware loads at 0x80000, inside the VideoCore's 1 GiB view of RAM.
    #[repr(C, align(64))]
    struct MessageBuffer(UnsafeCell<[u32; WORDS]>);

    // SAFETY: only the holder of IN_USE touches the buffer.
    unsafe impl Sync for MessageBuffer {}

    static BUFFER: MessageBuffer = MessageBuffer(UnsafeCell::new([0; WORDS]));
    static IN_USE: AtomicBool = AtomicBool::new(false);

    /// Ask the firmware behind `mailbox` (the device tree's, if any) about the board.
    pub fn ask_board(mailbox: Option<&crate::platform::Mailbox>) -> BoardQuery {
        let Some(mailbox) = mailbox else {
            return BoardQuery::NoMailbox;
        };
        if IN_USE
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return BoardQuery::Busy;
        }
        let answer = ask_with_buffer(mailbox);
        IN_USE.store(false, Ordering::Release);
        answer
    }

    fn ask_with_buffer(mailbox: &crate::platform::Mailbox) -> BoardQuery {
        let at = mailbox.regs.start;
        let start = BUFFER.0.get() as usize;
        let end = start + WORDS * 4;
        let phys = virt_to_phys(start) as u64;
        let Some(bus) = mailbox.dma.bus_address(phys, (WORDS * 4) as u64) else {
            return BoardQuery::Unreachable { buffer: phys };
        };
        // SAFETY: IN_USE is ours, so no one else holds a reference to the buffer.
        let words = unsafe { &mut *BUFFER.0.get() };
        let request = match board_request(words) {
            Ok(request) => request,
            Err(error) => return BoardQuery::Refused { at, error },
        };
        // Step 2: the VideoCore reads RAM, not our cache.
        cpu::clean_dcache_range(start, end);
        // SAFETY: the platform's mailbox region is mapped as Device memory by the kernel's map
        // (Platform::mmio_regions), and the boot CPU alone asks, before the others start.
        let device = unsafe { Mailbox::new(phys_to_virt(at as usize)) };
        let timeout = cpu::counter_frequency() * ANSWER_TIMEOUT_MS / 1000;
        let sent = device.exchange(property::CHANNEL, bus, &mut || cpu::counter(), timeout);
        // Step 5, even after a timeout: the firmware may still write the buffer later, and a
        // stale line must not outlive this call. Nothing was stored to it since the clean.
        // SAFETY: the buffer is whole cache lines of its own, untouched since the clean.
        unsafe { cpu::invalidate_after_device_write(start, end) };
        if let Err(error) = sent {
            return BoardQuery::Failed { at, error };
        }
        // Read what the VideoCore wrote, word by word from memory: the compiler must not reuse
        // the values it remembers writing.
        let mut answer = [0u32; WORDS];
        for (i, slot) in answer.iter_mut().enumerate() {
            // SAFETY: in bounds of the buffer, which IN_USE gives us alone.
            *slot = unsafe { core::ptr::read_volatile(words.as_ptr().add(i)) };
        }
        match board_answer(&answer, &request) {
            Ok(facts) => BoardQuery::Answered { at, facts },
            Err(error) => BoardQuery::Refused { at, error },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake register block in ordinary memory: the test sets the status words and the read
    /// word, and looks at what the driver wrote.
    #[repr(C, align(16))]
    struct FakeRegisters([u32; 16]);

    const READ: usize = 0; // offset 0x00
    const READ_STATUS: usize = 0x18 / 4;
    const WRITE: usize = 0x20 / 4;
    const WRITE_STATUS: usize = 0x38 / 4;
    const FULL: u32 = 1 << 31;
    const EMPTY: u32 = 1 << 30;

    /// Run `exchange` against `regs` with a clock that ticks once per reading, and return the
    /// result and how many times the clock was read.
    fn exchange_with(
        regs: &mut FakeRegisters,
        bus: u32,
        timeout: u64,
    ) -> (Result<(), MailboxError>, u64) {
        // SAFETY: `regs` is a live, aligned block the size of the register struct.
        let mailbox = unsafe { Mailbox::new(regs.0.as_ptr() as usize) };
        let mut ticks = 0u64;
        let result = mailbox.exchange(
            property::CHANNEL,
            bus,
            &mut || {
                ticks += 1;
                ticks
            },
            timeout,
        );
        (result, ticks)
    }

    #[test]
    fn the_word_sent_is_the_bus_address_with_the_channel_and_its_echo_ends_the_wait() {
        let mut regs = FakeRegisters([0; 16]);
        regs.0[READ] = 0xc008_0000 | 8;
        let (result, _) = exchange_with(&mut regs, 0xc008_0000, 1000);
        assert_eq!(result, Ok(()));
        assert_eq!(regs.0[WRITE], 0xc008_0008);
    }

    #[test]
    fn a_silent_videocore_times_out_instead_of_hanging() {
        let mut regs = FakeRegisters([0; 16]);
        regs.0[READ_STATUS] = EMPTY;
        let (result, ticks) = exchange_with(&mut regs, 0xc008_0000, 50);
        assert_eq!(result, Err(MailboxError::AnswerTimeout { discarded: 0 }));
        assert!(
            (50..60).contains(&ticks),
            "the wait read the clock {ticks} times"
        );
    }

    #[test]
    fn a_full_mailbox_times_out_without_writing() {
        let mut regs = FakeRegisters([0; 16]);
        regs.0[WRITE_STATUS] = FULL;
        regs.0[WRITE] = 0x1234;
        let (result, _) = exchange_with(&mut regs, 0xc008_0000, 50);
        assert_eq!(result, Err(MailboxError::SendTimeout));
        assert_eq!(
            regs.0[WRITE], 0x1234,
            "nothing may be written to a full mailbox"
        );
    }

    #[test]
    fn an_answer_on_another_channel_or_for_another_buffer_is_not_ours() {
        // The fake's read word never changes, so the driver sees the stranger again and again
        // and must keep refusing it until the deadline.
        for stranger in [0xc008_0000 | 9, 0xc009_0000 | 8] {
            let mut regs = FakeRegisters([0; 16]);
            regs.0[READ] = stranger;
            let (result, _) = exchange_with(&mut regs, 0xc008_0000, 20);
            assert!(
                matches!(result, Err(MailboxError::AnswerTimeout { discarded }) if discarded > 0),
                "{stranger:#x}: {result:?}"
            );
        }
    }

    #[test]
    fn a_misaligned_buffer_is_refused_before_anything_is_written() {
        let mut regs = FakeRegisters([0; 16]);
        let (result, _) = exchange_with(&mut regs, 0xc008_0004, 20);
        assert_eq!(result, Err(MailboxError::Misaligned(0xc008_0004)));
        assert_eq!(regs.0[WRITE], 0);
    }

    /// Answer a board request in place as firmware would: `answer(tag id)` gives the value words.
    fn answer_in_place(words: &mut [u32], answer: impl Fn(u32) -> Option<Vec<u32>>) {
        let mut at = 2;
        while words[at] != 0 {
            let room = words[at + 1] as usize;
            if let Some(v) = answer(words[at]) {
                words[at + 3..at + 3 + v.len()].copy_from_slice(&v);
                words[at + 2] = (1 << 31) | (v.len() * 4) as u32;
            }
            at += 3 + room / 4;
        }
        words[1] = 0x8000_0000;
    }

    #[test]
    fn board_answers_become_facts() {
        let mut words = [0u32; 64];
        let request = board_request(&mut words).unwrap();
        answer_in_place(&mut words, |tag| match tag {
            TAG_BOARD_REVISION => Some(vec![0xb03115]),
            TAG_BOARD_MODEL => Some(vec![0]),
            TAG_BOARD_SERIAL => Some(vec![0x89ab_cdef, 0x0123_4567]),
            TAG_ARM_MEMORY => Some(vec![0, 0x3b40_0000]),
            TAG_CLOCK_RATE => Some(vec![CLOCK_UART, 48_000_000]),
            _ => None,
        });
        let facts = board_answer(&words, &request).unwrap();
        assert_eq!(facts.revision, Ok(0xb03115));
        assert_eq!(facts.serial, Ok(0x0123_4567_89ab_cdef));
        assert_eq!(facts.arm_memory, Ok(Region::new(0, 0x3b40_0000)));
        assert_eq!(facts.uart_clock_hz, Ok(48_000_000));
        assert_eq!(facts.firmware_revision, Err(TagError::NotAnswered));
        let query = BoardQuery::Answered {
            at: 0xfe00_b880,
            facts,
        };
        assert_eq!(
            query.to_string(),
            "Raspberry Pi 4 Model B rev 1.5, 2 GiB (mailbox)"
        );
    }

    #[test]
    fn a_clock_answer_for_another_clock_is_refused() {
        let mut words = [0u32; 64];
        let request = board_request(&mut words).unwrap();
        answer_in_place(&mut words, |tag| {
            (tag == TAG_CLOCK_RATE).then(|| vec![3, 600_000_000])
        });
        let facts = board_answer(&words, &request).unwrap();
        assert_eq!(facts.uart_clock_hz, Err(TagError::Overwritten { found: 3 }));
    }

    #[test]
    fn without_an_answer_the_board_line_says_so_and_names_the_device_tree() {
        let lines = [
            BoardQuery::NoMailbox.to_string(),
            BoardQuery::Failed {
                at: 0xfe00_b880,
                error: MailboxError::AnswerTimeout { discarded: 0 },
            }
            .to_string(),
            BoardQuery::Refused {
                at: 0xfe00_b880,
                error: MessageError::FirmwareParseError,
            }
            .to_string(),
        ];
        assert_eq!(
            lines[0],
            "no VideoCore mailbox in the device tree (brcm,bcm2835-mbox); going on with the device tree"
        );
        assert_eq!(
            lines[1],
            "the VideoCore mailbox at 0xfe00b880: no answer within 100 ms; going on with the device tree"
        );
        assert_eq!(
            lines[2],
            "the VideoCore mailbox at 0xfe00b880: the VideoCore answered 0x80000001: it could not parse the request; going on with the device tree"
        );
    }
}
