//! The flat batch encoding of the Sluice plugin contract (`wit/types.wit`).
//!
//! Both sides of the component boundary use this crate: the host builds
//! batches from consumed records and reads plugin results with it, and the
//! guest SDK gives plugin authors a per-event view on top of it. You normally
//! do not use it directly: plugin authors use `sluice-guest`.
//!
//! A batch is one byte buffer (`data`) plus [`STRIDE`] `u32` words per event
//! (`index`) pointing into it. Crossing the boundary then costs two bulk
//! copies per batch, not a guest allocation per field per event.
//!
//! ```
//! use sluice_batch::{BatchBuf, NewEvent};
//! let mut batch = BatchBuf::default();
//! batch.push(&NewEvent {
//!     key: Some(b"k1"),
//!     body: b"hello",
//!     headers: &[("source", b"demo")],
//!     topic: "logs",
//!     partition: 2,
//!     offset: 41,
//!     timestamp: 1_700_000_000_000,
//! });
//! let event = batch.get(0).unwrap();
//! assert_eq!(event.body(), b"hello");
//! assert_eq!(event.header("source"), Some(&b"demo"[..]));
//! assert_eq!((event.topic(), event.partition(), event.offset()), ("logs", 2, 41));
//! ```

use std::fmt;
use std::ops::Range;

/// Number of `u32` words per event in a batch index.
pub const STRIDE: usize = 13;
/// Key length meaning "this event has no key".
pub const NO_KEY: u32 = u32::MAX;
/// Replacement index meaning "no replacement".
pub const NO_REPLACEMENT: u32 = u32::MAX;
/// Timestamp meaning "unknown".
pub const NO_TIMESTAMP: i64 = -1;
/// Words per event in a result's `outcomes` list.
pub const OUTCOME_STRIDE: usize = 3;
/// The most bytes a batch's `data` may hold: every offset and length in the
/// index is a `u32`. The `try_` appenders refuse an event that would go past
/// it; the others panic rather than truncate an offset.
pub const MAX_DATA_BYTES: usize = u32::MAX as usize;

/// Ordinals of the WIT `outcome-kind` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// Pass on unchanged (or the replacement, if any).
    Keep = 0,
    /// Discard on purpose.
    Drop = 1,
    /// Pass on the replacement.
    Modify = 2,
    /// Send to the channel named by the label.
    RouteTo = 3,
    /// Send to the dead-letter channel with the label as reason.
    DeadLetter = 4,
}

impl OutcomeKind {
    /// Decodes an ordinal; `None` for values outside the enum.
    pub fn from_word(word: u32) -> Option<Self> {
        Some(match word {
            0 => Self::Keep,
            1 => Self::Drop,
            2 => Self::Modify,
            3 => Self::RouteTo,
            4 => Self::DeadLetter,
            _ => return None,
        })
    }

    /// The WIT name of the outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Drop => "drop",
            Self::Modify => "modify",
            Self::RouteTo => "route-to",
            Self::DeadLetter => "dead-letter",
        }
    }
}

/// Why a batch or header block does not follow the encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

/// The parts of an event to append to a batch.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    /// Message key, if any.
    pub key: Option<&'a [u8]>,
    /// Payload.
    pub body: &'a [u8],
    /// Headers, in order; names may repeat.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Origin topic.
    pub topic: &'a str,
    /// Origin partition.
    pub partition: i32,
    /// Origin offset.
    pub offset: i64,
    /// Milliseconds since the Unix epoch, or [`NO_TIMESTAMP`].
    pub timestamp: i64,
}

/// An owned flat batch: the `batch` record of the WIT contract.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchBuf {
    /// All variable-length bytes.
    pub data: Vec<u8>,
    /// [`STRIDE`] words per event.
    pub index: Vec<u32>,
}

impl BatchBuf {
    /// An empty batch with room for `events` events of `bytes` bytes in all.
    pub fn with_capacity(events: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            index: Vec::with_capacity(events * STRIDE),
        }
    }

    /// Wraps buffers received from the other side, checking every range.
    pub fn from_parts(data: Vec<u8>, index: Vec<u32>) -> Result<Self, FormatError> {
        let batch = Self { data, index };
        batch.validate()?;
        Ok(batch)
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.index.len() / STRIDE
    }

    /// Whether the batch holds no events.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.index.clear();
    }

    /// The `i`th event, if there is one.
    pub fn get(&self, i: usize) -> Option<EventRef<'_>> {
        let words = self.index.get(i * STRIDE..(i + 1) * STRIDE)?;
        Some(EventRef {
            data: &self.data,
            words,
        })
    }

    /// Iterates over the events in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EventRef<'_>> + '_ {
        self.index.chunks_exact(STRIDE).map(|words| EventRef {
            data: &self.data,
            words,
        })
    }

    /// Total bytes of payload data held (keys, bodies, headers, topics).
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// The bytes `event` adds to [`BatchBuf::data`].
    pub fn encoded_size(event: &NewEvent<'_>) -> usize {
        let headers: usize = event
            .headers
            .iter()
            .map(|(name, value)| 8 + name.len() + value.len())
            .sum();
        event.key.map_or(0, <[u8]>::len) + event.body.len() + headers + event.topic.len()
    }

    /// Whether `extra` more bytes still fit in `data`.
    fn check_room(&self, extra: usize) -> Result<(), FormatError> {
        match self.data.len().checked_add(extra) {
            Some(total) if total <= MAX_DATA_BYTES => Ok(()),
            _ => Err(FormatError(format!(
                "an event of {extra} bytes does not fit in a batch holding {} bytes (at most {MAX_DATA_BYTES})",
                self.data.len()
            ))),
        }
    }

    /// Appends an event, unless it would take `data` past
    /// [`MAX_DATA_BYTES`] (then nothing is appended).
    pub fn try_push(&mut self, event: &NewEvent<'_>) -> Result<(), FormatError> {
        self.check_room(Self::encoded_size(event))?;
        self.push_unchecked(event);
        Ok(())
    }

    /// Appends an event; panics past [`MAX_DATA_BYTES`] (see
    /// [`BatchBuf::try_push`]).
    pub fn push(&mut self, event: &NewEvent<'_>) {
        if let Err(e) = self.try_push(event) {
            panic!("{e}");
        }
    }

    fn push_unchecked(&mut self, event: &NewEvent<'_>) {
        let key = event.key.map(|k| self.append(k));
        let body = self.append(event.body);
        let start = self.data.len();
        encode_headers(event.headers.iter().copied(), &mut self.data);
        let headers = word(start)..word(self.data.len());
        let topic = self.append(event.topic.as_bytes());
        self.push_entry(
            key,
            body,
            headers,
            topic,
            event.partition,
            event.offset,
            event.timestamp,
        );
    }

    /// Appends a copy of `event`, optionally overriding its origin with `origin`
    /// (used by the host to keep the origin of a replaced event); panics past
    /// [`MAX_DATA_BYTES`].
    pub fn push_ref(&mut self, event: &EventRef<'_>, origin: Option<&EventRef<'_>>) {
        let origin_topic = origin.unwrap_or(event).topic_bytes().len();
        if let Err(e) = self.check_room(event.size() - event.topic_bytes().len() + origin_topic) {
            panic!("{e}");
        }
        let key = event.key().map(|k| self.append(k));
        let body = self.append(event.body());
        let headers = self.append(event.header_block());
        let origin = origin.unwrap_or(event);
        let topic = self.append(origin.topic_bytes());
        self.push_entry(
            key,
            body,
            headers,
            topic,
            origin.partition(),
            origin.offset(),
            event.timestamp(),
        );
    }

    /// Appends a copy of `event` with extra headers added after its own;
    /// panics past [`MAX_DATA_BYTES`].
    pub fn push_with_headers(&mut self, event: &EventRef<'_>, extra: &[(&str, &[u8])]) {
        let added: usize = extra.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
        if let Err(e) = self.check_room(event.size() + added) {
            panic!("{e}");
        }
        let key = event.key().map(|k| self.append(k));
        let body = self.append(event.body());
        let start = self.data.len();
        self.data.extend_from_slice(event.header_block());
        encode_headers(extra.iter().copied(), &mut self.data);
        let headers = word(start)..word(self.data.len());
        let topic = self.append(event.topic_bytes());
        self.push_entry(
            key,
            body,
            headers,
            topic,
            event.partition(),
            event.offset(),
            event.timestamp(),
        );
    }

    /// Appends `bytes`; the caller checked there is room.
    fn append(&mut self, bytes: &[u8]) -> Range<u32> {
        let start = word(self.data.len());
        self.data.extend_from_slice(bytes);
        start..word(self.data.len())
    }

    #[allow(clippy::too_many_arguments)]
    fn push_entry(
        &mut self,
        key: Option<Range<u32>>,
        body: Range<u32>,
        headers: Range<u32>,
        topic: Range<u32>,
        partition: i32,
        offset: i64,
        timestamp: i64,
    ) {
        let (key_off, key_len) = match key {
            Some(r) => (r.start, r.end - r.start),
            None => (0, NO_KEY),
        };
        // Partition, offset and timestamp are stored bit for bit: an i32 as
        // one word, an i64 as its low and high words.
        self.index.extend_from_slice(&[
            key_off,
            key_len,
            body.start,
            body.end - body.start,
            headers.start,
            headers.end - headers.start,
            topic.start,
            topic.end - topic.start,
            partition as u32,
            offset as u64 as u32,
            ((offset as u64) >> 32) as u32,
            timestamp as u64 as u32,
            ((timestamp as u64) >> 32) as u32,
        ]);
    }

    /// Checks that the index is whole, every range lies inside `data`, every
    /// topic is UTF-8 and every header block parses.
    pub fn validate(&self) -> Result<(), FormatError> {
        if !self.index.len().is_multiple_of(STRIDE) {
            return Err(FormatError(format!(
                "index holds {} words, not a multiple of {STRIDE}",
                self.index.len()
            )));
        }
        let len = self.data.len() as u64;
        for (i, words) in self.index.chunks_exact(STRIDE).enumerate() {
            let check = |what: &str, off: u32, n: u32| {
                if off as u64 + n as u64 > len {
                    Err(FormatError(format!(
                        "event {i}: {what} range {off}+{n} exceeds data of {len} bytes"
                    )))
                } else {
                    Ok(())
                }
            };
            if words[1] != NO_KEY {
                check("key", words[0], words[1])?;
            }
            check("body", words[2], words[3])?;
            check("headers", words[4], words[5])?;
            check("topic", words[6], words[7])?;
            let event = EventRef {
                data: &self.data,
                words,
            };
            std::str::from_utf8(event.topic_bytes())
                .map_err(|_| FormatError(format!("event {i}: topic is not utf-8")))?;
            for header in event.headers() {
                header.map_err(|e| FormatError(format!("event {i}: {e}")))?;
            }
        }
        Ok(())
    }
}

/// A borrowed view of one event of a [`BatchBuf`] (or of raw batch parts).
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    data: &'a [u8],
    words: &'a [u32],
}

impl<'a> EventRef<'a> {
    /// Views event `i` of raw batch parts. `None` when out of range; a range
    /// outside `data` reads as empty, so a malformed index never panics.
    pub fn at(data: &'a [u8], index: &'a [u32], i: usize) -> Option<Self> {
        let words = index.get(i * STRIDE..(i + 1) * STRIDE)?;
        Some(Self { data, words })
    }

    fn slice(&self, off: u32, len: u32) -> &'a [u8] {
        let start = off as usize;
        self.data
            .get(start..start.saturating_add(len as usize))
            .unwrap_or_default()
    }

    /// The key, if the event has one.
    pub fn key(&self) -> Option<&'a [u8]> {
        (self.words[1] != NO_KEY).then(|| self.slice(self.words[0], self.words[1]))
    }

    /// The payload.
    pub fn body(&self) -> &'a [u8] {
        self.slice(self.words[2], self.words[3])
    }

    /// The encoded header block.
    pub fn header_block(&self) -> &'a [u8] {
        self.slice(self.words[4], self.words[5])
    }

    /// Iterates over headers in order; an item is an error if the block is malformed.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            rest: self.header_block(),
        }
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers()
            .map_while(Result::ok)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The origin topic as bytes.
    pub fn topic_bytes(&self) -> &'a [u8] {
        self.slice(self.words[6], self.words[7])
    }

    /// The origin topic (empty if not UTF-8; batches from the host always are).
    pub fn topic(&self) -> &'a str {
        std::str::from_utf8(self.topic_bytes()).unwrap_or("")
    }

    /// The origin partition.
    pub fn partition(&self) -> i32 {
        self.words[8] as i32
    }

    /// The origin offset.
    pub fn offset(&self) -> i64 {
        (self.words[9] as u64 | (self.words[10] as u64) << 32) as i64
    }

    /// Milliseconds since the Unix epoch, or [`NO_TIMESTAMP`].
    pub fn timestamp(&self) -> i64 {
        (self.words[11] as u64 | (self.words[12] as u64) << 32) as i64
    }

    /// Bytes this event occupies in `data`.
    pub fn size(&self) -> usize {
        let key = if self.words[1] == NO_KEY {
            0
        } else {
            self.words[1] as usize
        };
        // Summed as usize: ranges of a validated batch may overlap, so the
        // sum can exceed u32 even though each length fits.
        key + self.words[3] as usize + self.words[5] as usize + self.words[7] as usize
    }
}

/// Iterator over an encoded header block.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Result<(&'a str, &'a [u8]), FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = (|| {
            let name = take_prefixed(&mut self.rest)?;
            let name = std::str::from_utf8(name)
                .map_err(|_| FormatError("header name is not utf-8".into()))?;
            let value = take_prefixed(&mut self.rest)?;
            Ok((name, value))
        })();
        if result.is_err() {
            self.rest = &[];
        }
        Some(result)
    }
}

/// A position in `data` as an index word; every appender checked the room
/// first, so this cannot fail.
fn word(n: usize) -> u32 {
    u32::try_from(n).expect("batch data past MAX_DATA_BYTES (checked before appending)")
}

fn take_prefixed<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], FormatError> {
    if rest.len() < 4 {
        return Err(FormatError("header block truncated in a length".into()));
    }
    let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if rest.len() - 4 < n {
        return Err(FormatError(format!(
            "header block truncated: {n} bytes announced, {} left",
            rest.len() - 4
        )));
    }
    let (value, tail) = rest[4..].split_at(n);
    *rest = tail;
    Ok(value)
}

/// Appends the encoding of `headers` to `out`.
pub fn encode_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    out: &mut Vec<u8>,
) {
    for (name, value) in headers {
        out.extend_from_slice(&word(name.len()).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&word(value.len()).to_le_bytes());
        out.extend_from_slice(value);
    }
}

/// One decoded entry of a result's `outcomes` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeEntry {
    /// What to do with the event.
    pub kind: OutcomeKind,
    /// Index into `labels` (route-to, dead-letter).
    pub label: u32,
    /// Index into `replacements`, or [`NO_REPLACEMENT`].
    pub replacement: u32,
}

/// Decodes and checks the outcome words of a result for a batch of `events`
/// events with `replacements` replacements and `labels` labels.
pub fn decode_outcomes(
    words: &[u32],
    events: usize,
    replacements: usize,
    labels: usize,
) -> Result<Vec<OutcomeEntry>, FormatError> {
    if words.len() != events * OUTCOME_STRIDE {
        return Err(FormatError(format!(
            "{} outcome words for {events} events; expected {}",
            words.len(),
            events * OUTCOME_STRIDE
        )));
    }
    words
        .chunks_exact(OUTCOME_STRIDE)
        .enumerate()
        .map(|(i, w)| {
            let kind = OutcomeKind::from_word(w[0])
                .ok_or_else(|| FormatError(format!("event {i}: unknown outcome kind {}", w[0])))?;
            if matches!(kind, OutcomeKind::RouteTo | OutcomeKind::DeadLetter)
                && w[1] as usize >= labels
            {
                return Err(FormatError(format!(
                    "event {i}: label {} out of {labels}",
                    w[1]
                )));
            }
            if w[2] != NO_REPLACEMENT && w[2] as usize >= replacements {
                return Err(FormatError(format!(
                    "event {i}: replacement {} out of {replacements}",
                    w[2]
                )));
            }
            if kind == OutcomeKind::Modify && w[2] == NO_REPLACEMENT {
                return Err(FormatError(format!(
                    "event {i}: modify without a replacement"
                )));
            }
            Ok(OutcomeEntry {
                kind,
                label: w[1],
                replacement: w[2],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_event_past_the_data_limit_is_refused_not_truncated() {
        // Zeroed pages are not touched: this costs address space, not memory.
        let mut batch = BatchBuf {
            data: vec![0; MAX_DATA_BYTES - 10],
            index: Vec::new(),
        };
        let event = NewEvent {
            key: None,
            body: b"twenty bytes of body",
            headers: &[],
            topic: "t",
            partition: 0,
            offset: 0,
            timestamp: NO_TIMESTAMP,
        };
        assert_eq!(BatchBuf::encoded_size(&event), 21);
        let e = batch.try_push(&event).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        assert_eq!(batch.data.len(), MAX_DATA_BYTES - 10, "nothing appended");
        assert!(batch.is_empty());
        let small = NewEvent { body: b"", ..event };
        batch.try_push(&small).unwrap();
        assert_eq!(batch.len(), 1);
    }

    use super::*;

    fn sample() -> BatchBuf {
        let mut b = BatchBuf::default();
        b.push(&NewEvent {
            key: None,
            body: b"one",
            headers: &[],
            topic: "t",
            partition: 0,
            offset: i64::MAX - 1,
            timestamp: NO_TIMESTAMP,
        });
        b.push(&NewEvent {
            key: Some(b""),
            body: b"two",
            headers: &[("a", b"1"), ("b", b""), ("a", b"3")],
            topic: "topic-2",
            partition: -1,
            offset: 7,
            timestamp: 1_600_000_000_123,
        });
        b
    }

    #[test]
    fn round_trips_every_field() {
        let b = sample();
        assert_eq!(b.len(), 2);
        let e0 = b.get(0).unwrap();
        assert_eq!(e0.key(), None);
        assert_eq!(e0.offset(), i64::MAX - 1);
        assert_eq!(e0.timestamp(), NO_TIMESTAMP);
        let e1 = b.get(1).unwrap();
        assert_eq!(e1.key(), Some(&b""[..]));
        assert_eq!(e1.partition(), -1);
        assert_eq!(e1.topic(), "topic-2");
        assert_eq!(e1.header("a"), Some(&b"1"[..]));
        let all: Vec<_> = e1.headers().map(Result::unwrap).collect();
        assert_eq!(
            all,
            vec![("a", &b"1"[..]), ("b", &b""[..]), ("a", &b"3"[..])]
        );
        assert!(b.validate().is_ok());
    }

    #[test]
    fn push_ref_keeps_the_given_origin() {
        let b = sample();
        let mut out = BatchBuf::default();
        out.push_ref(&b.get(1).unwrap(), Some(&b.get(0).unwrap()));
        let e = out.get(0).unwrap();
        assert_eq!(e.body(), b"two");
        assert_eq!(
            (e.topic(), e.partition(), e.offset()),
            ("t", 0, i64::MAX - 1)
        );
        assert_eq!(e.timestamp(), 1_600_000_000_123);
    }

    #[test]
    fn rejects_out_of_range_index() {
        let mut b = sample();
        b.index[3] = 1000;
        let err = b.validate().unwrap_err();
        assert!(err.0.contains("event 0: body range"), "{err}");
        // A view over the bad entry still does not panic.
        assert_eq!(b.get(0).unwrap().body(), b"");
    }

    #[test]
    fn rejects_truncated_header_block() {
        let mut b = sample();
        b.index[STRIDE + 5] -= 1;
        assert!(b.validate().unwrap_err().0.contains("truncated"));
    }

    #[test]
    fn decodes_and_checks_outcomes() {
        let ok = decode_outcomes(&[0, 0, NO_REPLACEMENT, 3, 1, 0], 2, 1, 2).unwrap();
        assert_eq!(ok[1].kind, OutcomeKind::RouteTo);
        assert!(decode_outcomes(&[9, 0, 0], 1, 1, 1).is_err());
        assert!(decode_outcomes(&[2, 0, NO_REPLACEMENT], 1, 0, 0).is_err());
        assert!(decode_outcomes(&[3, 5, NO_REPLACEMENT], 1, 0, 1).is_err());
        assert!(decode_outcomes(&[0, 0], 1, 0, 0).is_err());
    }
}
