//! Mode `uuid`: write a random UUID into a header (Flume's `UUIDInterceptor`).

use std::cell::RefCell;

use serde::Deserialize;
use sluice_guest::{Error, Event, Outcome};

/// `mode = "uuid"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UuidConfig {
    /// Header to write.
    #[serde(default = "default_header")]
    header: String,
    /// Leave events that already have the header untouched.
    #[serde(default = "yes")]
    preserve_existing: bool,
    /// Text written before the UUID.
    #[serde(default)]
    prefix: String,
}

fn default_header() -> String {
    "id".to_owned()
}

fn yes() -> bool {
    true
}

impl UuidConfig {
    /// The interceptor.
    pub(crate) fn build(self) -> Result<Uuid, String> {
        if self.header.is_empty() {
            return Err("`header` is empty: name the header to write".into());
        }
        Ok(Uuid {
            header: self.header,
            preserve_existing: self.preserve_existing,
            prefix: self.prefix,
        })
    }
}

/// Sets `header` to `prefix` and a new version 4 UUID.
#[derive(Debug)]
pub(crate) struct Uuid {
    header: String,
    preserve_existing: bool,
    prefix: String,
}

impl Uuid {
    pub(crate) fn apply(&self, event: &mut Event) -> Result<Outcome, Error> {
        if self.preserve_existing && event.header(&self.header).is_some() {
            return Ok(Outcome::Keep);
        }
        let mut id = String::with_capacity(self.prefix.len() + 36);
        id.push_str(&self.prefix);
        push_uuid_v4(&mut id, random_16()?);
        event.set_header(&self.header, id);
        Ok(Outcome::Keep)
    }
}

/// Appends the UUID made of `bytes`, with the version (4) and variant
/// (RFC 4122) bits set, as Java's `UUID.toString` writes it.
fn push_uuid_v4(out: &mut String, mut bytes: [u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

/// Random bytes fetched from the host per refill: 64 UUIDs per host call.
const POOL_BYTES: usize = 1024;

/// Random bytes not handed out yet: `bytes[next..]`.
struct Pool {
    bytes: [u8; POOL_BYTES],
    next: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            bytes: [0; POOL_BYTES],
            next: POOL_BYTES,
        })
    };
}

/// 16 random bytes from the host's secure generator (`wasi:random` in the
/// component, the OS natively). Failing to read them fails the batch.
fn random_16() -> Result<[u8; 16], Error> {
    POOL.with(|pool| {
        let Pool { bytes, next } = &mut *pool.borrow_mut();
        if *next + 16 > POOL_BYTES {
            getrandom::fill(bytes).map_err(|e| {
                Error::new(format!(
                    "mode `uuid`: reading random bytes from the host: {e}"
                ))
            })?;
            *next = 0;
        }
        let taken = &mut bytes[*next..*next + 16];
        let mut out = [0; 16];
        out.copy_from_slice(taken);
        // Never hand out the same bytes twice.
        taken.fill(0);
        *next += 16;
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::tests::{fail, run};
    use sluice_guest::testing::TestEvent;

    /// Whether `s` is a lowercase version 4, RFC 4122 variant UUID.
    fn is_uuid_v4(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 36
            && b.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
            })
            && b[14] == b'4'
            && matches!(b[19], b'8' | b'9' | b'a' | b'b')
    }

    #[test]
    fn formats_like_java() {
        let mut s = String::new();
        push_uuid_v4(&mut s, [0xff; 16]);
        assert_eq!(s, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        s.clear();
        push_uuid_v4(&mut s, [0; 16]);
        assert_eq!(s, "00000000-0000-4000-8000-000000000000");
        s.clear();
        push_uuid_v4(
            &mut s,
            *b"\x12\x34\x56\x78\x9a\xbc\xde\xf0\x12\x34\x56\x78\x9a\xbc\xde\xf0",
        );
        assert_eq!(s, "12345678-9abc-4ef0-9234-56789abcdef0");
    }

    #[test]
    fn writes_distinct_v4_uuids_across_refills() {
        let events: Vec<_> = (0..200).map(|i| TestEvent::new(i.to_string())).collect();
        let out = run(r#"{"mode": "uuid"}"#, &events);
        let ids: HashSet<&str> = out
            .iter()
            .map(|o| o.event.header_str("id").expect("id set"))
            .collect();
        assert_eq!(ids.len(), 200);
        assert!(ids.iter().all(|id| is_uuid_v4(id)), "{ids:?}");
    }

    #[test]
    fn prefix_header_and_preserve_existing() {
        let events = [
            TestEvent::new("a"),
            TestEvent::new("b").with_header("event-id", "kept"),
        ];
        let out = run(
            r#"{"mode": "uuid", "header": "event-id", "prefix": "sl-"}"#,
            &events,
        );
        let id = out[0].event.header_str("event-id").expect("set");
        assert!(id.starts_with("sl-") && is_uuid_v4(&id[3..]), "{id}");
        // preserve_existing defaults to true.
        assert!(!out[1].modified);
        let out = run(
            r#"{"mode": "uuid", "header": "event-id", "preserve_existing": false}"#,
            &events,
        );
        let id = out[1].event.header_str("event-id").expect("set");
        assert!(is_uuid_v4(id), "{id}");
    }

    #[test]
    fn config_errors() {
        assert!(
            fail(r#"{"mode": "uuid", "header": ""}"#).contains("mode `uuid`: `header` is empty")
        );
        assert!(
            fail(r#"{"mode": "uuid", "headerName": "id"}"#).contains("unknown field `headerName`")
        );
    }
}
