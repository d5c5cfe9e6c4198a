//! A record's headers, read through librdkafka's C API with keys as bytes.
//!
//! rdkafka's `Headers` accessor turns every key into a `&str` and panics on
//! one that is not UTF-8. Any producer with write access to a topic can send
//! such a key, and since the record is read again after a restart, that
//! panic would put the agent in a crash loop. Here keys stay bytes; the
//! source decides what to do with one it cannot represent (it dead-letters
//! the record, see [`escape_key`]).

use std::ffi::CStr;
use std::fmt::Write as _;

use rdkafka::bindings as rdsys;
use rdkafka::message::BorrowedMessage;

/// Calls `f` with each header of `message` as (key, value) byte slices, in
/// order; a header without a value gets an empty one.
pub(crate) fn for_each<'a>(
    message: &'a BorrowedMessage<'a>,
    mut f: impl FnMut(&'a [u8], &'a [u8]),
) {
    let mut headers: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `message.ptr()` is the live librdkafka message `message`
    // borrows; the headers it returns, and every name and value pointer read
    // from them, live as long as the message, i.e. for `'a`.
    unsafe {
        let err = rdsys::rd_kafka_message_headers(message.ptr(), &mut headers);
        if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return;
        }
        let count = rdsys::rd_kafka_header_cnt(headers);
        for idx in 0..count {
            let mut name = std::ptr::null();
            let mut value = std::ptr::null();
            let mut size = 0usize;
            let err =
                rdsys::rd_kafka_header_get_all(headers, idx, &mut name, &mut value, &mut size);
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                continue;
            }
            let key = CStr::from_ptr(name).to_bytes();
            let value: &'a [u8] = if value.is_null() || size == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(value.cast::<u8>(), size)
            };
            f(key, value);
        }
    }
}

/// A header key that is not UTF-8, written as UTF-8 without losing a byte:
/// valid sequences as they are, every invalid byte as `\xNN`. The original
/// bytes also travel in the dead-letter reason (as hex), since this form is
/// ambiguous with a key that really contains `\x`.
pub(crate) fn escape_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    for chunk in key.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_bytes_are_escaped_and_valid_text_kept() {
        assert_eq!(escape_key(b"trace\xffid"), "trace\\xffid");
        assert_eq!(escape_key(b"\xc3\x28"), "\\xc3(");
        assert_eq!(escape_key("näme".as_bytes()), "näme");
    }
}
