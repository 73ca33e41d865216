//! The property channel's message: how a question to the VideoCore is laid out in memory, and
//! how its answer is checked before any of it is believed (chapter 29, "Asking the VideoCore").
//!
//! A message is a run of little-endian 32-bit words:
//!
//! ```text
//!   word 0   total size in bytes (header, tags, end tag)
//!   word 1   0 in a request; 0x8000_0000 in a successful answer, 0x8000_0001 on a parse error
//!   then, per tag:
//!            tag id
//!            size of the value buffer in bytes (the larger of the question and the answer)
//!            0 in a request; in an answer bit 31 set and the answer's length in bits 0..30
//!            the value buffer, padded to whole words
//!   last     the end tag, 0
//! ```
//!
//! The firmware overwrites the buffer in place. Everything here is plain word shuffling, so the
//! host tests build messages, play the firmware's part, and feed back broken answers.

/// The property channel of the ARM-to-VideoCore mailbox.
pub const CHANNEL: u8 = 8;

pub const TAG_FIRMWARE_REVISION: u32 = 0x0000_0001;
pub const TAG_BOARD_MODEL: u32 = 0x0001_0001;
pub const TAG_BOARD_REVISION: u32 = 0x0001_0002;
pub const TAG_BOARD_SERIAL: u32 = 0x0001_0004;
pub const TAG_ARM_MEMORY: u32 = 0x0001_0005;
pub const TAG_CLOCK_RATE: u32 = 0x0003_0002;
/// The clock id of the UART's reference clock, for TAG_CLOCK_RATE.
pub const CLOCK_UART: u32 = 2;

const REQUEST: u32 = 0;
const SUCCESS: u32 = 0x8000_0000;
const PARSE_ERROR: u32 = 0x8000_0001;
const ANSWERED: u32 = 1 << 31;

/// Why a message could not be built, or its answer not believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// The tags do not fit in the buffer.
    TooLong,
    /// The answer still says "request": the firmware never processed it.
    NotProcessed,
    /// The firmware answered 0x8000_0001: it could not parse the request.
    FirmwareParseError,
    /// A response code neither request, success nor parse error.
    UnknownCode(u32),
    /// The answer's size word no longer matches the request's.
    SizeChanged { sent: u32, got: u32 },
}

/// Why one tag's answer is unusable (the message as a whole may still be fine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagError {
    /// Bit 31 of the tag's indicator is clear: the firmware did not answer this tag (it does not
    /// know it, or gave up before it).
    NotAnswered,
    /// The firmware answered fewer bytes than the tag's answer needs.
    Short { got: u32, need: u32 },
    /// The firmware wanted to answer more than the value buffer holds: the answer was cut.
    Truncated { wanted: u32, room: u32 },
    /// The tag's header no longer names the tag that was asked: the answer overran it.
    Overwritten { found: u32 },
}

impl core::fmt::Display for MessageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            MessageError::TooLong => f.write_str("the questions do not fit in the message buffer"),
            MessageError::NotProcessed => {
                f.write_str("the answer still reads as a request: the VideoCore did not process it")
            }
            MessageError::FirmwareParseError => {
                f.write_str("the VideoCore answered 0x80000001: it could not parse the request")
            }
            MessageError::UnknownCode(code) => {
                write!(
                    f,
                    "the VideoCore answered with unknown response code {code:#x}"
                )
            }
            MessageError::SizeChanged { sent, got } => write!(
                f,
                "the answer's size word is {got} bytes, the request's was {sent}: the message was overwritten"
            ),
        }
    }
}

impl core::fmt::Display for TagError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            TagError::NotAnswered => f.write_str("not answered"),
            TagError::Short { got, need } => write!(f, "answered {got} bytes, {need} needed"),
            TagError::Truncated { wanted, room } => {
                write!(f, "answer of {wanted} bytes cut to {room}")
            }
            TagError::Overwritten { found } => {
                write!(f, "tag header overwritten (found {found:#x})")
            }
        }
    }
}

/// Where one tag sits in a message, to find its answer again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    id: u32,
    /// Word index of the tag id.
    at: usize,
    /// Words of value buffer.
    value_words: usize,
}

/// A request being written into `words`.
pub struct Request<'a> {
    words: &'a mut [u32],
    /// Words used so far, the end tag not counted.
    len: usize,
}

impl<'a> Request<'a> {
    /// Start a request in `words` (which must hold at least the header and the end tag).
    pub fn new(words: &'a mut [u32]) -> Result<Self, MessageError> {
        if words.len() < 3 {
            return Err(MessageError::TooLong);
        }
        words[1] = REQUEST;
        Ok(Request { words, len: 2 })
    }

    /// Add a tag whose question is `values` and whose answer takes `answer_bytes`. The value
    /// buffer is as large as the larger of the two, since the answer overwrites the question.
    pub fn add(
        &mut self,
        id: u32,
        values: &[u32],
        answer_bytes: usize,
    ) -> Result<Tag, MessageError> {
        let value_words = (values.len()).max(answer_bytes.div_ceil(4));
        let at = self.len;
        // Three header words, the value buffer, and room left for the end tag.
        if at + 3 + value_words + 1 > self.words.len() {
            return Err(MessageError::TooLong);
        }
        self.words[at] = id;
        self.words[at + 1] = (value_words * 4) as u32;
        self.words[at + 2] = REQUEST;
        let value = &mut self.words[at + 3..at + 3 + value_words];
        value.fill(0);
        value[..values.len()].copy_from_slice(values);
        self.len = at + 3 + value_words;
        Ok(Tag {
            id,
            at,
            value_words,
        })
    }

    /// Write the end tag and the size; returns the message's length in bytes.
    pub fn finish(self) -> u32 {
        self.words[self.len] = 0;
        let bytes = ((self.len + 1) * 4) as u32;
        self.words[0] = bytes;
        bytes
    }
}

/// An answer that passed the message-level checks.
#[derive(Debug)]
pub struct Answer<'a> {
    words: &'a [u32],
}

impl<'a> Answer<'a> {
    /// Check the header of the answer to a request of `sent` bytes.
    pub fn check(words: &'a [u32], sent: u32) -> Result<Self, MessageError> {
        let (size, code) = (words[0], words[1]);
        match code {
            SUCCESS => {}
            REQUEST => return Err(MessageError::NotProcessed),
            PARSE_ERROR => return Err(MessageError::FirmwareParseError),
            other => return Err(MessageError::UnknownCode(other)),
        }
        if size != sent {
            return Err(MessageError::SizeChanged { sent, got: size });
        }
        Ok(Answer { words })
    }

    /// The answer to `tag`: its first `need` bytes, as words.
    pub fn value(&self, tag: Tag, need: usize) -> Result<&'a [u32], TagError> {
        let found = self.words[tag.at];
        if found != tag.id {
            return Err(TagError::Overwritten { found });
        }
        let indicator = self.words[tag.at + 2];
        if indicator & ANSWERED == 0 {
            return Err(TagError::NotAnswered);
        }
        let length = indicator & !ANSWERED;
        let room = (tag.value_words * 4) as u32;
        if length > room {
            return Err(TagError::Truncated {
                wanted: length,
                room,
            });
        }
        if (length as usize) < need {
            return Err(TagError::Short {
                got: length,
                need: need as u32,
            });
        }
        let start = tag.at + 3;
        Ok(&self.words[start..start + need.div_ceil(4)])
    }

    /// A one-word answer.
    pub fn word(&self, tag: Tag) -> Result<u32, TagError> {
        self.value(tag, 4).map(|v| v[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Play the firmware: answer each tag of a request in place with `answer(id, question)`,
    /// which gives the answer's words (None: leave the tag unanswered), then mark the message
    /// answered.
    fn firmware(words: &mut [u32], mut answer: impl FnMut(u32, &[u32]) -> Option<Vec<u32>>) {
        let mut at = 2;
        while words[at] != 0 {
            let (id, room) = (words[at], words[at + 1] as usize);
            let question = words[at + 3..at + 3 + room / 4].to_vec();
            if let Some(value) = answer(id, &question) {
                let bytes = value.len() * 4;
                let fits = value.len().min(room / 4);
                words[at + 3..at + 3 + fits].copy_from_slice(&value[..fits]);
                words[at + 2] = ANSWERED | bytes as u32;
            }
            at += 3 + room / 4;
        }
        words[1] = SUCCESS;
    }

    fn board_request(words: &mut [u32]) -> (u32, [Tag; 3]) {
        let mut r = Request::new(words).unwrap();
        let revision = r.add(TAG_BOARD_REVISION, &[], 4).unwrap();
        let memory = r.add(TAG_ARM_MEMORY, &[], 8).unwrap();
        let clock = r.add(TAG_CLOCK_RATE, &[CLOCK_UART], 8).unwrap();
        (r.finish(), [revision, memory, clock])
    }

    #[test]
    fn a_request_is_laid_out_as_the_firmware_reads_it() {
        let mut words = [0xdead_beef; 32];
        let (bytes, _) = board_request(&mut words);
        #[rustfmt::skip]
        let expected = [
            bytes, 0,
            TAG_BOARD_REVISION, 4, 0, 0,
            TAG_ARM_MEMORY, 8, 0, 0, 0,
            TAG_CLOCK_RATE, 8, 0, CLOCK_UART, 0,
            0,
        ];
        assert_eq!(bytes as usize, expected.len() * 4);
        assert_eq!(words[..expected.len()], expected);
    }

    #[test]
    fn answers_are_read_back_per_tag() {
        let mut words = [0; 32];
        let (bytes, [revision, memory, clock]) = board_request(&mut words);
        firmware(&mut words, |id, question| match id {
            TAG_BOARD_REVISION => Some(vec![0xb03115]),
            TAG_ARM_MEMORY => Some(vec![0, 0x3c00_0000]),
            TAG_CLOCK_RATE => Some(vec![question[0], 48_000_000]),
            _ => None,
        });
        let answer = Answer::check(&words, bytes).unwrap();
        assert_eq!(answer.word(revision), Ok(0xb03115));
        assert_eq!(answer.value(memory, 8), Ok(&[0, 0x3c00_0000][..]));
        assert_eq!(answer.value(clock, 8), Ok(&[CLOCK_UART, 48_000_000][..]));
    }

    #[test]
    fn a_tag_the_firmware_does_not_know_is_not_answered_and_the_rest_still_are() {
        let mut words = [0; 32];
        let (bytes, [revision, memory, _]) = board_request(&mut words);
        firmware(&mut words, |id, _| {
            (id == TAG_BOARD_REVISION).then(|| vec![0xc03130])
        });
        let answer = Answer::check(&words, bytes).unwrap();
        assert_eq!(answer.word(revision), Ok(0xc03130));
        assert_eq!(answer.value(memory, 8), Err(TagError::NotAnswered));
    }

    #[test]
    fn short_and_truncated_answers_are_refused() {
        let mut words = [0; 32];
        let (bytes, [revision, memory, _]) = board_request(&mut words);
        firmware(&mut words, |id, _| match id {
            // Two words where four bytes fit: the firmware says it needed 8.
            TAG_BOARD_REVISION => Some(vec![1, 2]),
            // One word where two are needed.
            TAG_ARM_MEMORY => Some(vec![0]),
            _ => None,
        });
        let answer = Answer::check(&words, bytes).unwrap();
        assert_eq!(
            answer.word(revision),
            Err(TagError::Truncated { wanted: 8, room: 4 })
        );
        assert_eq!(
            answer.value(memory, 8),
            Err(TagError::Short { got: 4, need: 8 })
        );
    }

    #[test]
    fn an_error_code_or_an_untouched_buffer_is_no_answer() {
        let mut words = [0; 32];
        let (bytes, _) = board_request(&mut words);
        assert_eq!(
            Answer::check(&words, bytes).unwrap_err(),
            MessageError::NotProcessed
        );
        words[1] = PARSE_ERROR;
        assert_eq!(
            Answer::check(&words, bytes).unwrap_err(),
            MessageError::FirmwareParseError
        );
        words[1] = 0x1234;
        assert_eq!(
            Answer::check(&words, bytes).unwrap_err(),
            MessageError::UnknownCode(0x1234)
        );
        words[1] = SUCCESS;
        words[0] = 12;
        assert_eq!(
            Answer::check(&words, bytes).unwrap_err(),
            MessageError::SizeChanged {
                sent: bytes,
                got: 12
            }
        );
    }

    #[test]
    fn an_answer_that_overran_the_next_tag_header_is_caught() {
        let mut words = [0; 32];
        let (bytes, [revision, memory, _]) = board_request(&mut words);
        firmware(&mut words, |_, _| None);
        // A misbehaving firmware writes past the revision's value buffer into the next header.
        words[revision.at + 4] = 0x5555_5555;
        let answer = Answer::check(&words, bytes).unwrap();
        assert_eq!(
            answer.value(memory, 8),
            Err(TagError::Overwritten { found: 0x5555_5555 })
        );
    }

    #[test]
    fn a_request_that_does_not_fit_is_refused_before_it_is_sent() {
        let mut words = [0; 8];
        let mut r = Request::new(&mut words).unwrap();
        r.add(TAG_BOARD_REVISION, &[], 4).unwrap(); // words 2..6, end tag at 6
        assert_eq!(r.add(TAG_ARM_MEMORY, &[], 8), Err(MessageError::TooLong));
        assert_eq!(r.finish(), 7 * 4);
        assert!(Request::new(&mut [0; 2]).is_err());
    }
}
