//! The shell's line editor: bytes from the UART in, an edited line out (chapter 13, "The shell").
//!
//! A serial terminal sends every key as it is pressed and shows only what the kernel sends back,
//! so the kernel does the editing: it echoes printable characters, erases one with backspace
//! or DEL (by sending "\x08 \x08": back, overwrite with a space, back again), erases the whole
//! line on Ctrl-U, and ends it on CR or LF (a CR LF pair counts once). Everything else is
//! ignored without harm: control characters, bytes above 0x7f, and the escape sequences that
//! arrow and function keys send (ESC [ ... final byte). The buffer is fixed-size; a key that
//! would overflow it rings the bell instead. No allocation, no arch code: host tests feed it
//! random bytes and check that what the terminal shows always matches the buffer.

/// Where the editor's echo goes: the console in the kernel, a string in host tests.
pub trait Terminal {
    fn write(&mut self, text: &str);
}

/// What one byte did to the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Still editing.
    Editing,
    /// Enter: the line is ready in `line()`; call `clear()` before editing the next one.
    Done,
    /// Ctrl-C: the line was abandoned (and cleared); show a fresh prompt.
    Cancelled,
    /// Ctrl-R: something else printed over the line; show the prompt and `line()` again.
    Redraw,
}

pub const BELL: u8 = 0x07;
pub const BACKSPACE: u8 = 0x08;
pub const DELETE: u8 = 0x7f;
pub const CTRL_C: u8 = 0x03;
pub const CTRL_R: u8 = 0x12;
pub const CTRL_U: u8 = 0x15;
pub const ESCAPE: u8 = 0x1b;

/// Where the editor is within an escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Started,
    /// After ESC [ or ESC O: parameters until a final byte in 0x40..=0x7e.
    Sequence,
}

/// A line of at most `N` printable ASCII characters being typed.
pub struct LineEditor<const N: usize> {
    bytes: [u8; N],
    len: usize,
    escape: Escape,
    /// The previous byte was CR, so an LF right after it is the same Enter.
    after_cr: bool,
}

impl<const N: usize> Default for LineEditor<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineEditor<N> {
    pub const fn new() -> Self {
        LineEditor {
            bytes: [0; N],
            len: 0,
            escape: Escape::None,
            after_cr: false,
        }
    }

    /// The line so far (only printable ASCII is ever stored, so it is always valid UTF-8).
    pub fn line(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    /// Start a new, empty line.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Take one byte from the terminal, echo what it changed, and say what happened.
    pub fn feed(&mut self, byte: u8, term: &mut impl Terminal) -> Feed {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.escape {
            Escape::Started => {
                self.escape = if byte == b'[' || byte == b'O' {
                    Escape::Sequence
                } else {
                    Escape::None
                };
                return Feed::Editing;
            }
            Escape::Sequence => {
                // Parameter and intermediate bytes continue the sequence; a final byte (or
                // anything unexpected) ends it. Either way the byte is not text.
                if !(0x20..=0x3f).contains(&byte) {
                    self.escape = Escape::None;
                }
                return Feed::Editing;
            }
            Escape::None => {}
        }
        match byte {
            b'\r' => {
                self.after_cr = true;
                term.write("\n");
                Feed::Done
            }
            b'\n' if after_cr => Feed::Editing,
            b'\n' => {
                term.write("\n");
                Feed::Done
            }
            BACKSPACE | DELETE => {
                if self.len > 0 {
                    self.len -= 1;
                    term.write("\x08 \x08");
                }
                Feed::Editing
            }
            CTRL_U => {
                for _ in 0..self.len {
                    term.write("\x08 \x08");
                }
                self.len = 0;
                Feed::Editing
            }
            CTRL_C => {
                self.len = 0;
                term.write("^C\n");
                Feed::Cancelled
            }
            CTRL_R => {
                term.write("\n");
                Feed::Redraw
            }
            ESCAPE => {
                self.escape = Escape::Started;
                Feed::Editing
            }
            0x20..=0x7e => {
                if self.len == N {
                    term.write("\x07");
                } else {
                    self.bytes[self.len] = byte;
                    self.len += 1;
                    let echo = [byte];
                    term.write(core::str::from_utf8(&echo).unwrap_or(""));
                }
                Feed::Editing
            }
            // Tab, other control characters, bytes above 0x7f: not part of a command.
            _ => Feed::Editing,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A terminal that keeps what the user would see on the current line, as a real one does:
    /// BS moves the cursor left, a character overwrites, "\n" starts a new line.
    #[derive(Default)]
    struct Screen {
        line: Vec<u8>,
        cursor: usize,
        lines_ended: usize,
        bells: usize,
        raw: String,
    }

    impl Terminal for Screen {
        fn write(&mut self, text: &str) {
            self.raw.push_str(text);
            for b in text.bytes() {
                match b {
                    b'\n' => {
                        self.line.clear();
                        self.cursor = 0;
                        self.lines_ended += 1;
                    }
                    BACKSPACE => self.cursor = self.cursor.saturating_sub(1),
                    BELL => self.bells += 1,
                    _ => {
                        assert!((0x20..=0x7e).contains(&b), "echoed a raw byte {b:#x}");
                        if self.cursor == self.line.len() {
                            self.line.push(b);
                        } else {
                            self.line[self.cursor] = b;
                        }
                        self.cursor += 1;
                    }
                }
            }
        }
    }

    impl Screen {
        /// The visible line without trailing blanks (erased characters leave spaces behind).
        fn visible(&self) -> String {
            String::from_utf8(self.line.clone())
                .unwrap()
                .trim_end()
                .to_string()
        }
    }

    fn type_all(ed: &mut LineEditor<16>, screen: &mut Screen, bytes: &[u8]) -> Vec<Feed> {
        bytes.iter().map(|&b| ed.feed(b, screen)).collect()
    }

    #[test]
    fn typed_characters_are_stored_and_echoed() {
        let (mut ed, mut s) = (LineEditor::<16>::new(), Screen::default());
        let feeds = type_all(&mut ed, &mut s, b"help");
        assert!(feeds.iter().all(|f| *f == Feed::Editing));
        assert_eq!(ed.line(), "help");
        assert_eq!(s.raw, "help");
        assert_eq!(ed.feed(b'\r', &mut s), Feed::Done);
        assert_eq!(ed.line(), "help");
        assert_eq!(s.raw, "help\n");
    }

    #[test]
    fn backspace_and_delete_erase_one_character_and_stop_at_the_start() {
        let (mut ed, mut s) = (LineEditor::<16>::new(), Screen::default());
        type_all(&mut ed, &mut s, b"cpuz\x08s");
        assert_eq!(ed.line(), "cpus");
        assert_eq!(s.visible(), "cpus");
        type_all(&mut ed, &mut s, b"\x7f\x7f\x7f\x7f\x7f\x7f");
        assert_eq!(ed.line(), "");
        assert_eq!(s.visible(), "");
        assert_eq!(s.cursor, 0, "no backspace past the start of the line");
    }

    #[test]
    fn ctrl_u_erases_the_whole_line() {
        let (mut ed, mut s) = (LineEditor::<16>::new(), Screen::default());
        type_all(&mut ed, &mut s, b"reboot\x15mem");
        assert_eq!(ed.line(), "mem");
        assert_eq!(s.visible(), "mem");
    }

    #[test]
    fn cr_lf_is_one_enter_but_lf_alone_also_ends_a_line() {
        let (mut ed, mut s) = (LineEditor::<16>::new(), Screen::default());
        assert_eq!(
            type_all(&mut ed, &mut s, b"a\r\n"),
            [Feed::Editing, Feed::Done, Feed::Editing]
        );
        ed.clear();
        assert_eq!(
            type_all(&mut ed, &mut s, b"b\n"),
            [Feed::Editing, Feed::Done]
        );
        assert_eq!(ed.line(), "b");
        ed.clear();
        // Two Enters in a row are two (empty) lines.
        assert_eq!(type_all(&mut ed, &mut s, b"\r\r"), [Feed::Done, Feed::Done]);
        assert_eq!(s.lines_ended, 4);
    }

    #[test]
    fn an_over_long_line_rings_the_bell_and_keeps_what_fits() {
        let (mut ed, mut s) = (LineEditor::<16>::new(), Screen::default());
        type_all(&mut ed, &mut s, b"0123456789abcdefXYZ");
        assert_eq!(ed.line(), "0123456789abcdef");
        assert_eq!(s.bells, 3);
        // Backspace makes room again.
        type_all(&mut ed, &mut s, b"\x08!");
        assert_eq!(ed.line(), "0123456789abcde!");
        assert_eq!(s.visible(), "0123456789abcde!");
    }

    #[test]
    fn control_bytes_high_bytes_and_escape_sequences_are_ignored() {
        let (mut ed, mut s) = (LineEditor::<16>::new(), Screen::default());
        // Up arrow (ESC [ A), F5 (ESC [ 1 5 ~), Home in application mode (ESC O H), a tab, a
        // NUL, UTF-8 for "é", and ESC followed by an ordinary letter (alt-x).
        type_all(
            &mut ed,
            &mut s,
            b"l\x1b[Ao\x1b[15~g\x1bOH\t\x00\xc3\xa9\x1bx",
        );
        assert_eq!(ed.line(), "log");
        assert_eq!(s.visible(), "log");
    }

    #[test]
    fn ctrl_c_abandons_and_ctrl_r_asks_for_a_redraw() {
        let (mut ed, mut s) = (LineEditor::<16>::new(), Screen::default());
        type_all(&mut ed, &mut s, b"demo fa");
        assert_eq!(ed.feed(CTRL_R, &mut s), Feed::Redraw);
        assert_eq!(ed.line(), "demo fa", "redraw keeps the line");
        assert_eq!(ed.feed(CTRL_C, &mut s), Feed::Cancelled);
        assert_eq!(ed.line(), "");
    }

    /// A small deterministic generator, so a failure can be replayed from its seed.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_bytes_never_panic_and_the_screen_always_matches_the_buffer() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..2_000 {
            let (mut ed, mut s) = (LineEditor::<16>::new(), Screen::default());
            let len = (rng.next() % 200) as usize;
            for _ in 0..len {
                let r = rng.next();
                // Bias towards the interesting bytes so they meet each other often.
                let byte = match r % 8 {
                    0 => [
                        BACKSPACE, DELETE, CTRL_U, ESCAPE, b'[', b'\r', b'\n', CTRL_C, CTRL_R,
                    ][(r >> 8) as usize % 9],
                    1 => (r >> 8) as u8 | 0x80,
                    2 => (r >> 8) as u8 & 0x1f,
                    _ => b'a' + (r >> 8) as u8 % 26,
                };
                match ed.feed(byte, &mut s) {
                    Feed::Done => ed.clear(),
                    // The terminal is on a fresh line: the shell prints the line again.
                    Feed::Redraw => {
                        let line = ed.line().to_string();
                        s.write(&line);
                    }
                    Feed::Editing | Feed::Cancelled => {}
                }
                assert!(ed.line().len() <= 16);
                assert!(ed.line().bytes().all(|b| (0x20..=0x7e).contains(&b)));
                assert_eq!(s.cursor, ed.line().len(), "round {round}: cursor");
                assert_eq!(
                    &s.line[..s.cursor],
                    ed.line().as_bytes(),
                    "round {round}: screen and buffer differ"
                );
            }
        }
    }
}
