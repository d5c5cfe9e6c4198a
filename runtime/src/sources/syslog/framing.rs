//! Cutting a TCP byte stream into syslog messages (RFC 6587), the framing
//! chosen again for each message by its first byte:
//!
//! - a digit: **octet counting**, `<len> <msg>`: `len` decimal digits, one
//!   space, then exactly `len` bytes;
//! - anything else (normally `<`): **non-transparent framing**, the
//!   message ends at `\n` or at a NUL byte.
//!
//! `\n`, `\r` and NUL between messages are skipped. Digits not followed by
//! a space (or more than 10 of them) are not a length after all: they start
//! a newline-framed message, so a sender's garbage becomes one message (that
//! will not parse) instead of desynchronising the stream.
//!
//! A message longer than the limit is cut to the limit and flagged
//! truncated; the rest of it is skipped and the next message is read as
//! usual. When the stream ends, a message in progress is still handed out
//! (flagged truncated if an octet-counted one is short of its length).

/// Most digits of an octet count.
const MAX_DIGITS: usize = 10;

/// Where the framer is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between messages.
    Start,
    /// Reading an octet count (its digits are in `Framer::frame`).
    Length { len: u64 },
    /// Reading an octet-counted message: `remaining` bytes to go.
    Octets { remaining: u64, truncated: bool },
    /// Reading a message up to `\n` or NUL.
    Line { truncated: bool },
}

/// One message out of a [`Framer`].
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The message, at most the limit long, without its terminator.
    pub bytes: &'a [u8],
    /// Whether it was cut (longer than the limit, or the stream ended
    /// inside it).
    pub truncated: bool,
}

/// Splits one connection's bytes into messages; see the module docs.
#[derive(Debug)]
pub struct Framer {
    max: usize,
    state: State,
    /// The message in progress (at most `max` bytes).
    frame: Vec<u8>,
}

impl Framer {
    /// A framer cutting messages at `max` bytes (at least 16).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(16),
            state: State::Start,
            frame: Vec::new(),
        }
    }

    /// Hands every message completed by `chunk` to `emit`, keeping an
    /// incomplete one for the next call.
    pub fn feed(&mut self, mut chunk: &[u8], emit: &mut dyn FnMut(Frame<'_>)) {
        while let [first, ..] = *chunk {
            match self.state {
                State::Start => match first {
                    b'\n' | b'\r' | b'\0' => chunk = &chunk[1..],
                    b'0'..=b'9' => self.state = State::Length { len: 0 },
                    _ => self.state = State::Line { truncated: false },
                },
                State::Length { len } => {
                    if first.is_ascii_digit() && self.frame.len() < MAX_DIGITS {
                        self.frame.push(first);
                        self.state = State::Length {
                            len: len * 10 + u64::from(first - b'0'),
                        };
                        chunk = &chunk[1..];
                    } else if first == b' ' {
                        self.frame.clear();
                        chunk = &chunk[1..];
                        self.state = if len == 0 {
                            State::Start
                        } else {
                            State::Octets {
                                remaining: len,
                                truncated: len > self.max as u64,
                            }
                        };
                    } else {
                        // Not a length: a line starting with these digits.
                        self.state = State::Line { truncated: false };
                    }
                }
                State::Octets {
                    remaining,
                    truncated,
                } => {
                    let n = remaining.min(chunk.len() as u64) as usize;
                    let (part, rest) = chunk.split_at(n);
                    chunk = rest;
                    let remaining = remaining - n as u64;
                    if remaining == 0 && self.frame.is_empty() && !truncated {
                        emit(Frame {
                            bytes: part,
                            truncated,
                        });
                        self.state = State::Start;
                        continue;
                    }
                    let room = self.max - self.frame.len();
                    self.frame.extend_from_slice(&part[..n.min(room)]);
                    self.state = State::Octets {
                        remaining,
                        truncated,
                    };
                    if remaining == 0 {
                        self.emit(truncated, emit);
                    }
                }
                State::Line { truncated } => {
                    let end = chunk.iter().position(|b| matches!(b, b'\n' | b'\0'));
                    let part = &chunk[..end.unwrap_or(chunk.len())];
                    chunk = end.map_or(&[][..], |e| &chunk[e + 1..]);
                    if end.is_some() && self.frame.is_empty() && part.len() <= self.max {
                        emit(Frame {
                            bytes: part,
                            truncated,
                        });
                        self.state = State::Start;
                        continue;
                    }
                    let room = self.max - self.frame.len();
                    self.frame.extend_from_slice(&part[..part.len().min(room)]);
                    let truncated = truncated || part.len() > room;
                    self.state = State::Line { truncated };
                    if end.is_some() {
                        self.emit(truncated, emit);
                    }
                }
            }
        }
    }

    /// The stream ended: hands out the message in progress, if any.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Frame<'_>)) {
        match self.state {
            State::Start => {}
            State::Length { .. } => self.emit(false, emit),
            State::Octets { .. } => self.emit(true, emit),
            State::Line { truncated } => self.emit(truncated, emit),
        }
    }

    fn emit(&mut self, truncated: bool, emit: &mut dyn FnMut(Frame<'_>)) {
        emit(Frame {
            bytes: &self.frame,
            truncated,
        });
        self.frame.clear();
        self.state = State::Start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frames of `chunks` fed one after the other, then finished.
    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut framer = Framer::new(max);
        let mut out = Vec::new();
        let mut emit = |f: Frame<'_>| {
            out.push((String::from_utf8_lossy(f.bytes).into_owned(), f.truncated));
        };
        for chunk in chunks {
            framer.feed(chunk, &mut emit);
        }
        framer.finish(&mut emit);
        out
    }

    fn ok(items: &[&str]) -> Vec<(String, bool)> {
        items.iter().map(|s| (s.to_string(), false)).collect()
    }

    const MIXED: &[u8] =
        b"11 <13>a\nb c d\n<13>line one\r\n<14>nul\x0020 <15>octets\n\x00 too!!!\n\n<1>last";

    #[test]
    fn octet_counting_and_newline_framing_mix_per_message() {
        assert_eq!(
            frames(100, &[MIXED]),
            ok(&[
                "<13>a\nb c d",
                "<13>line one\r",
                "<14>nul",
                "<15>octets\n\0 too!!!\n",
                "<1>last"
            ])
        );
    }

    #[test]
    fn any_split_of_the_stream_gives_the_same_messages() {
        let whole = frames(100, &[MIXED]);
        for at in 0..=MIXED.len() {
            let (a, b) = MIXED.split_at(at);
            assert_eq!(frames(100, &[a, b]), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = MIXED.chunks(1).collect();
        assert_eq!(frames(100, &bytes), whole, "byte by byte");
    }

    #[test]
    fn oversized_messages_are_cut_and_the_stream_goes_on() {
        let mut stream = b"40 <13>".to_vec();
        stream.extend_from_slice(&[b'x'; 36]);
        stream.extend_from_slice(b"<13>0123456789abcdefghijklmnopqrstuvwxyz\n5 <2>ok<3>fine\n");
        let expected = vec![
            ("<13>xxxxxxxxxxxx".to_string(), true),
            ("<13>0123456789ab".to_string(), true),
            ("<2>ok".to_string(), false),
            ("<3>fine".to_string(), false),
        ];
        assert_eq!(frames(16, &[&stream]), expected);
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            assert_eq!(frames(16, &[a, b]), expected, "split at {at}");
        }
        // Exactly the limit is not cut.
        assert_eq!(
            frames(16, &[b"16 0123456789abcdef<1>0123456789ab\n"]),
            ok(&["0123456789abcdef", "<1>0123456789ab"])
        );
    }

    #[test]
    fn digits_without_a_space_start_a_line() {
        assert_eq!(
            frames(100, &[b"123abc\n99999999999 x\n0 <1>x\n"]),
            ok(&["123abc", "99999999999 x", "<1>x"])
        );
    }

    #[test]
    fn the_end_of_the_stream_hands_out_what_is_left() {
        assert_eq!(frames(100, &[b"<1>no newline"]), ok(&["<1>no newline"]));
        assert_eq!(
            frames(100, &[b"20 <1>short"]),
            vec![("<1>short".to_string(), true)]
        );
        assert_eq!(frames(100, &[b"42"]), ok(&["42"]));
        assert_eq!(frames(100, &[b"\n\r\n\0"]), ok(&[]));
        assert_eq!(frames(100, &[]), ok(&[]));
    }
}
