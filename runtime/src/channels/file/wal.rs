//! The write-ahead log's on-disk format: segment files of length-prefixed,
//! checksummed records, each holding one batch.
//!
//! A segment is `<dir>/<id, 20 digits>.wal`: an 8-byte header ([`MAGIC`]),
//! then records back to back. A record is
//!
//! ```text
//! len: u32 LE | crc: u32 LE | payload: len bytes
//! payload = words: u32 LE | index: words × u32 LE | data: the rest
//! ```
//!
//! `crc` is the CRC-32 (IEEE, `crc32fast`) of the `len` bytes followed by the
//! payload, so a damaged length is caught as surely as damaged data. The
//! payload is the batch's flat plugin-contract encoding
//! ([`BatchBuf`](crate::event::BatchBuf): `index` words and `data` bytes)
//! unchanged: no second event encoding, and a record decodes with one copy.
//!
//! Reading a record tells apart a clean end of file, a record cut short
//! (the process died while appending it: the length or payload runs past the
//! end), and a corrupt record (checksum or encoding wrong). An I/O error is
//! none of these: it is returned as such, and callers retry it rather than
//! take good data for damage.
//!
//! After a damaged record, [`resync`] finds where the next whole, valid
//! record starts (a plausible length and word count, then a matching
//! checksum: a false match needs a 32-bit CRC collision), so damage costs
//! the damaged bytes only, never the records after them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::WalError;
use crate::event::BatchBuf;

/// First bytes of every segment: format name and version.
pub(crate) const MAGIC: &[u8; 8] = b"SLWAL\x00\x00\x01";
/// Length of the segment header.
pub(crate) const HEADER_LEN: u64 = MAGIC.len() as u64;
/// Length of a record's `len` and `crc` fields.
pub(crate) const RECORD_HEADER_LEN: u64 = 8;
/// Largest payload a record may declare; anything longer is corruption.
pub(crate) const MAX_PAYLOAD: u64 = u32::MAX as u64;

/// Appends the record of `batch` to `out`, unless its payload would be
/// longer than [`MAX_PAYLOAD`] (then `out` is unchanged).
pub fn encode(batch: &BatchBuf, out: &mut Vec<u8>) -> Result<(), WalError> {
    let payload_len = batch
        .index
        .len()
        .checked_mul(4)
        .and_then(|n| n.checked_add(4 + batch.data.len()))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            WalError::TooLarge(format!(
                "a batch of {} events and {} bytes is larger than a record can hold ({MAX_PAYLOAD} bytes)",
                batch.len(),
                batch.data.len()
            ))
        })?;
    let words = u32::try_from(batch.index.len())
        .map_err(|_| WalError::TooLarge("too many index words".into()))?;
    out.reserve(RECORD_HEADER_LEN as usize + payload_len as usize);
    let start = out.len();
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&words.to_le_bytes());
    for word in &batch.index {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&batch.data);
    let crc = checksum(&out[start..start + 4], &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn checksum(len: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len);
    hasher.update(payload);
    hasher.finalize()
}

/// Decodes a payload whose checksum matched.
pub(crate) fn decode_payload(payload: &[u8]) -> Result<BatchBuf, WalError> {
    let words = payload
        .get(..4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize)
        .ok_or_else(|| WalError::Damaged("payload shorter than its word count".into()))?;
    let index_end = 4 + words
        .checked_mul(4)
        .ok_or_else(|| WalError::Damaged("index word count overflows".into()))?;
    let index_bytes = payload.get(4..index_end).ok_or_else(|| {
        WalError::Damaged(format!("index of {words} words runs past the payload"))
    })?;
    let index = index_bytes
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    let data = payload[index_end..].to_vec();
    BatchBuf::from_parts(data, index).map_err(|e| WalError::Damaged(format!("batch encoding: {e}")))
}

/// What is at a position of a segment.
#[derive(Debug)]
pub enum Read {
    /// A whole, valid record; the next one starts at `next`.
    Record {
        /// The batch it holds.
        batch: BatchBuf,
        /// Where the next record starts.
        next: u64,
    },
    /// Nothing: the position is the end of the data.
    End,
    /// A record cut short: its length or payload runs past `end`.
    Truncated,
    /// A record whose checksum or encoding is wrong.
    Corrupt(String),
}

/// Reads the record at `at` of `file`, whose valid data ends at `end`.
pub(crate) fn read_record(file: &File, at: u64, end: u64) -> io::Result<Read> {
    if at >= end {
        return Ok(Read::End);
    }
    if end - at < RECORD_HEADER_LEN {
        return Ok(Read::Truncated);
    }
    let mut header = [0u8; RECORD_HEADER_LEN as usize];
    file.read_exact_at(&mut header, at)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len < 4 {
        return Ok(Read::Corrupt(format!("record length {len} is too small")));
    }
    let next = at + RECORD_HEADER_LEN + len;
    if next > end {
        return Ok(Read::Truncated);
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, at + RECORD_HEADER_LEN)?;
    let actual = checksum(&header[..4], &payload);
    if actual != crc {
        return Ok(Read::Corrupt(format!(
            "checksum {actual:08x} does not match the stored {crc:08x}"
        )));
    }
    match decode_payload(&payload) {
        Ok(batch) => Ok(Read::Record { batch, next }),
        Err(e) => Ok(Read::Corrupt(e.to_string())),
    }
}

/// The file of segment `id` in `dir`.
pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

/// Ids of the segments in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name.strip_suffix(".wal").and_then(|n| n.parse().ok()) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Whether `file` starts with the segment header.
pub(crate) fn has_header(file: &File) -> io::Result<bool> {
    let mut magic = [0u8; HEADER_LEN as usize];
    match file.read_exact_at(&mut magic, 0) {
        Ok(()) => Ok(&magic == MAGIC),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Result of checking a segment from some position to its end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// End of the last good record (where appending may continue).
    pub good_end: u64,
    /// Length of the file.
    pub len: u64,
    /// Good records from the start position on.
    pub records: u64,
    /// Events in those records.
    pub events: u64,
    /// Damaged ranges followed by good records: (start, end, why).
    pub holes: Vec<(u64, u64, String)>,
    /// Why the bytes from `good_end` on are bad, if they are.
    pub bad: Option<String>,
}

/// Checks every record of `file` from `from` (a record boundary) to its end,
/// resynchronising after damage (see the module docs).
pub fn scan(file: &File, from: u64) -> io::Result<Scan> {
    let len = file.metadata()?.len();
    let mut scan = Scan {
        good_end: from.min(len),
        len,
        ..Default::default()
    };
    let mut at = scan.good_end;
    loop {
        let why = match read_record(file, at, len)? {
            Read::Record { batch, next } => {
                scan.records += 1;
                scan.events += batch.len() as u64;
                scan.good_end = next;
                at = next;
                continue;
            }
            Read::End => return Ok(scan),
            Read::Truncated => "record cut short (length or payload runs past the end)".to_string(),
            Read::Corrupt(why) => why,
        };
        match resync(file, at, len)? {
            Some(next) => {
                scan.holes.push((at, next, why));
                at = next;
            }
            None => {
                scan.bad = Some(why);
                return Ok(scan);
            }
        }
    }
}

/// Where the first whole, valid record after the damaged one at `at`
/// starts, before `end`; `None` if none does.
pub(crate) fn resync(file: &File, at: u64, end: u64) -> io::Result<Option<u64>> {
    if end <= at + 1 {
        return Ok(None);
    }
    let mut bytes = vec![0u8; (end - at - 1) as usize];
    file.read_exact_at(&mut bytes, at + 1)?;
    Ok(find_record(&bytes).map(|i| at + 1 + i as u64))
}

/// The first position in `bytes` where a whole record with a matching
/// checksum and a well-formed index starts.
pub(crate) fn find_record(bytes: &[u8]) -> Option<usize> {
    let word = |i: usize| -> Option<u64> {
        let w = bytes.get(i..i + 4)?;
        Some(u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
    };
    let stride = crate::event::STRIDE as u64;
    (0..bytes.len()).find(|&i| {
        let (Some(len), Some(words)) = (word(i), word(i + 8)) else {
            return false;
        };
        let start = i + RECORD_HEADER_LEN as usize;
        let plausible = len >= 4
            && (start as u64) + len <= bytes.len() as u64
            && words % stride == 0
            && 4 + words * 4 <= len;
        if !plausible {
            return false;
        }
        let payload = &bytes[start..start + len as usize];
        word(i + 4).is_some_and(|crc| u64::from(checksum(&bytes[i..i + 4], payload)) == crc)
            && decode_payload(payload).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::event::NewEvent;

    pub(crate) fn batch(first: i64, n: usize) -> BatchBuf {
        let mut b = BatchBuf::default();
        for i in 0..n {
            let body = format!("event-{}", first + i as i64);
            b.push(&NewEvent {
                key: (i % 2 == 0).then_some(b"k".as_slice()),
                body: body.as_bytes(),
                headers: &[("h", b"v")],
                topic: "t",
                partition: 3,
                offset: first + i as i64,
                timestamp: 1_700_000_000_000,
            });
        }
        b
    }

    fn segment(records: &[BatchBuf]) -> (tempfile::TempDir, File, Vec<u64>) {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 0);
        let mut bytes = MAGIC.to_vec();
        let mut ends = Vec::new();
        for r in records {
            encode(r, &mut bytes).unwrap();
            ends.push(bytes.len() as u64);
        }
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        (dir, File::open(&path).unwrap(), ends)
    }

    #[test]
    fn records_round_trip() {
        let batches = [batch(0, 3), batch(3, 0), batch(3, 100)];
        let (_dir, file, ends) = segment(&batches);
        assert!(has_header(&file).unwrap());
        let len = file.metadata().unwrap().len();
        let mut at = HEADER_LEN;
        for (want, end) in batches.iter().zip(&ends) {
            match read_record(&file, at, len).unwrap() {
                Read::Record { batch, next } => {
                    assert_eq!(&batch, want);
                    assert_eq!(next, *end);
                    at = next;
                }
                other => panic!("expected a record, got {other:?}"),
            }
        }
        assert!(matches!(read_record(&file, at, len).unwrap(), Read::End));
        let s = scan(&file, HEADER_LEN).unwrap();
        assert_eq!(
            (s.records, s.events, s.good_end, s.bad),
            (3, 103, len, None)
        );
    }

    #[test]
    fn a_flipped_byte_anywhere_in_a_record_is_detected() {
        let (dir, _file, ends) = segment(&[batch(0, 2)]);
        let path = segment_path(dir.path(), 0);
        let good = std::fs::read(&path).unwrap();
        for i in HEADER_LEN as usize..ends[0] as usize {
            let mut bytes = good.clone();
            bytes[i] ^= 0x20;
            std::fs::write(&path, &bytes).unwrap();
            let file = File::open(&path).unwrap();
            let s = scan(&file, HEADER_LEN).unwrap();
            assert_eq!(s.records, 0, "flip at byte {i} went unnoticed");
            assert_eq!(s.good_end, HEADER_LEN);
            assert!(s.bad.is_some());
        }
    }

    #[test]
    fn a_cut_record_is_truncated_not_corrupt() {
        let (dir, _file, ends) = segment(&[batch(0, 2), batch(2, 2)]);
        let path = segment_path(dir.path(), 0);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [ends[0] + 1, ends[0] + 7, ends[0] + 9, ends[1] - 1] {
            std::fs::write(&path, &bytes[..cut as usize]).unwrap();
            let file = File::open(&path).unwrap();
            assert!(matches!(
                read_record(&file, ends[0], cut).unwrap(),
                Read::Truncated
            ));
            let s = scan(&file, HEADER_LEN).unwrap();
            assert_eq!((s.records, s.good_end), (1, ends[0]));
            assert!(s.bad.unwrap().contains("cut short"));
        }
    }

    #[test]
    fn segments_are_listed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for id in [10u64, 2, 7] {
            std::fs::write(segment_path(dir.path(), id), MAGIC).unwrap();
        }
        std::fs::write(dir.path().join("checkpoint"), b"x").unwrap();
        assert_eq!(list_segments(dir.path()).unwrap(), vec![2, 7, 10]);
    }
}
