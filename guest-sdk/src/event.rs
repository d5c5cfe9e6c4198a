//! [`Event`]: the per-event view handed to plugin functions.

use sluice_batch::{EventRef, HeaderIter, NO_TIMESTAMP};

/// One event of the batch being processed.
///
/// Reading is zero-copy: until you change something, every accessor borrows
/// from the batch the host sent. A change is kept beside the original and
/// marks the event as modified; the SDK then sends a replacement event to the
/// host. An event that is not modified costs no copy and no allocation.
///
/// The origin (topic, partition, offset) is read-only: the host keeps the
/// original's for replacements.
#[derive(Debug)]
pub struct Event<'a> {
    orig: EventRef<'a>,
    /// `Some(new key)` once the key was set or cleared.
    key: Option<Option<Vec<u8>>>,
    /// The new body, once set.
    body: Option<Vec<u8>>,
    /// All headers, copied out of the batch on the first header change.
    headers: Option<Vec<(String, Vec<u8>)>>,
    timestamp: i64,
    modified: bool,
}

impl<'a> Event<'a> {
    /// A view of `orig`, unmodified.
    pub(crate) fn new(orig: EventRef<'a>) -> Self {
        Self {
            orig,
            key: None,
            body: None,
            headers: None,
            timestamp: orig.timestamp(),
            modified: false,
        }
    }

    /// The key, if the event has one.
    pub fn key(&self) -> Option<&[u8]> {
        match &self.key {
            Some(key) => key.as_deref(),
            None => self.orig.key(),
        }
    }

    /// The payload.
    pub fn body(&self) -> &[u8] {
        match &self.body {
            Some(body) => body,
            None => self.orig.body(),
        }
    }

    /// The payload as text; `None` if it is not UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(self.body()).ok()
    }

    /// The value of the first header named `name` (names are case-sensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The value of the first header named `name` as text; `None` if absent
    /// or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// All headers in order, as `(name, value)`. Names may repeat.
    pub fn headers(&self) -> Headers<'_> {
        match &self.headers {
            Some(list) => Headers(HeadersInner::Owned(list.iter())),
            None => Headers(HeadersInner::Batch(self.orig.headers())),
        }
    }

    /// The topic the event was consumed from.
    pub fn topic(&self) -> &'a str {
        self.orig.topic()
    }

    /// The partition the event was consumed from.
    pub fn partition(&self) -> i32 {
        self.orig.partition()
    }

    /// The offset of the event in its partition.
    pub fn offset(&self) -> i64 {
        self.orig.offset()
    }

    /// Milliseconds since the Unix epoch; `None` when unknown.
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }

    /// Whether anything was changed.
    pub fn is_modified(&self) -> bool {
        self.modified
    }

    /// Replaces the payload.
    pub fn set_body(&mut self, body: impl Into<Vec<u8>>) {
        self.body = Some(body.into());
        self.modified = true;
    }

    /// Replaces (or adds) the key.
    pub fn set_key(&mut self, key: impl Into<Vec<u8>>) {
        self.key = Some(Some(key.into()));
        self.modified = true;
    }

    /// Removes the key.
    pub fn clear_key(&mut self) {
        if self.key().is_some() {
            self.key = Some(None);
            self.modified = true;
        }
    }

    /// Sets header `name` to `value`: replaces the first header of that name
    /// (removing any later ones of the same name) or appends a new one.
    pub fn set_header(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        let value = value.into();
        let headers = self.headers_mut();
        match headers.iter().position(|(n, _)| n == name) {
            Some(first) => {
                headers[first].1 = value;
                let mut i = 0;
                headers.retain(|(n, _)| {
                    i += 1;
                    i - 1 <= first || n != name
                });
            }
            None => headers.push((name.to_owned(), value)),
        }
        self.modified = true;
    }

    /// Removes every header named `name`; returns whether there was one.
    pub fn remove_header(&mut self, name: &str) -> bool {
        if self.header(name).is_none() {
            return false;
        }
        self.headers_mut().retain(|(n, _)| n != name);
        self.modified = true;
        true
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch.
    pub fn set_timestamp(&mut self, millis: i64) {
        self.timestamp = millis;
        self.modified = true;
    }

    /// The raw timestamp word (`-1` for unknown).
    pub(crate) fn raw_timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The original, as received from the host.
    pub(crate) fn original(&self) -> &EventRef<'a> {
        &self.orig
    }

    fn headers_mut(&mut self) -> &mut Vec<(String, Vec<u8>)> {
        let orig = self.orig;
        self.headers.get_or_insert_with(|| {
            orig.headers()
                .map_while(Result::ok)
                .map(|(n, v)| (n.to_owned(), v.to_vec()))
                .collect()
        })
    }
}

/// Iterator over the headers of an [`Event`], from [`Event::headers`].
#[derive(Debug, Clone)]
pub struct Headers<'e>(HeadersInner<'e>);

#[derive(Debug, Clone)]
enum HeadersInner<'e> {
    Batch(HeaderIter<'e>),
    Owned(std::slice::Iter<'e, (String, Vec<u8>)>),
}

impl<'e> Iterator for Headers<'e> {
    type Item = (&'e str, &'e [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            // The host validates header blocks; a malformed one just ends here.
            HeadersInner::Batch(iter) => iter.next()?.ok(),
            HeadersInner::Owned(iter) => iter.next().map(|(n, v)| (n.as_str(), v.as_slice())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_batch::{BatchBuf, NewEvent};

    fn batch() -> BatchBuf {
        let mut b = BatchBuf::default();
        b.push(&NewEvent {
            key: Some(b"k"),
            body: b"body",
            headers: &[("a", b"1"), ("b", b"2"), ("a", b"3")],
            topic: "t",
            partition: 1,
            offset: 9,
            timestamp: NO_TIMESTAMP,
        });
        b
    }

    #[test]
    fn reads_without_modifying() {
        let b = batch();
        let e = Event::new(b.get(0).unwrap());
        assert_eq!(e.key(), Some(&b"k"[..]));
        assert_eq!(e.body_str(), Some("body"));
        assert_eq!(e.header_str("a"), Some("1"));
        assert_eq!(e.headers().count(), 3);
        assert_eq!((e.topic(), e.partition(), e.offset()), ("t", 1, 9));
        assert_eq!(e.timestamp(), None);
        assert!(!e.is_modified());
    }

    #[test]
    fn set_header_replaces_all_of_a_name() {
        let b = batch();
        let mut e = Event::new(b.get(0).unwrap());
        e.set_header("a", "x");
        let all: Vec<_> = e.headers().collect();
        assert_eq!(all, vec![("a", &b"x"[..]), ("b", &b"2"[..])]);
        e.set_header("c", "y");
        assert_eq!(e.header_str("c"), Some("y"));
        assert!(e.is_modified());
    }

    #[test]
    fn remove_header_only_modifies_when_present() {
        let b = batch();
        let mut e = Event::new(b.get(0).unwrap());
        assert!(!e.remove_header("zzz"));
        assert!(!e.is_modified());
        assert!(e.remove_header("a"));
        assert_eq!(e.headers().collect::<Vec<_>>(), vec![("b", &b"2"[..])]);
        assert!(e.is_modified());
    }

    #[test]
    fn key_and_timestamp_changes() {
        let b = batch();
        let mut e = Event::new(b.get(0).unwrap());
        e.clear_key();
        assert_eq!(e.key(), None);
        e.set_timestamp(5);
        assert_eq!(e.timestamp(), Some(5));
        e.set_key("n");
        assert_eq!(e.key(), Some(&b"n"[..]));
    }
}
