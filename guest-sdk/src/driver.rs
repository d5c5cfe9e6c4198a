//! The per-batch driver: calls the plugin function once per event and writes
//! the flat result. The same code runs in the wasm build and in
//! [`crate::testing`].
//!
//! Hot path: an event the function keeps without changing it costs one
//! [`Event`] on the stack and three outcome words; nothing is copied or
//! allocated per event. A plugin with a prepare function costs one more
//! allocation per batch: the list of events the prepare function sees.

use std::collections::BTreeMap;

use sluice_batch::{
    BatchBuf, EventRef, NO_REPLACEMENT, NewEvent, OUTCOME_STRIDE, OutcomeKind, STRIDE,
};

use crate::{Error, Event, Handler, Outcome};

/// A batch result in the parts of the WIT `batch-result` record.
#[derive(Debug, Default)]
pub(crate) struct RawResult {
    /// [`OUTCOME_STRIDE`] words per input event.
    pub outcomes: Vec<u32>,
    /// Replacement events.
    pub replacements: BatchBuf,
    /// Route names and dead-letter reasons, without duplicates.
    pub labels: Vec<String>,
}

/// Runs `handler` over every event of the batch `(data, index)`, after its
/// prepare function if it has one ([`Handler::PREPARES`]).
pub(crate) fn process<H: Handler>(
    data: &[u8],
    index: &[u32],
    mut handler: H,
) -> Result<RawResult, Error> {
    if !index.len().is_multiple_of(STRIDE) {
        return Err(Error::new(format!(
            "reading batch: index holds {} words, not a multiple of {STRIDE}",
            index.len()
        )));
    }
    let events = index.len() / STRIDE;
    let mut outcomes = Vec::with_capacity(events * OUTCOME_STRIDE);
    let mut replacements = BatchBuf::default();
    let mut labels = Labels::default();
    // Lookup values prefetched for this batch are forgotten when it ends.
    let _scope = crate::lookup::BatchScope::begin();
    // With a prepare function, it sees every event first; the plugin
    // function then gets the same (unmodified) views one by one.
    let mut prepared: Option<Vec<Event<'_>>> = None;
    if H::PREPARES {
        let all: Vec<Event<'_>> = (0..events)
            .map_while(|i| EventRef::at(data, index, i).map(Event::new))
            .collect();
        handler.prepare(&all)?;
        prepared = Some(all);
    }
    let mut step = |event: &mut Event<'_>| -> Result<(), Error> {
        let outcome = handler.handle(event)?;
        let (kind, label, replaced) = match outcome {
            Outcome::Keep if event.is_modified() => (OutcomeKind::Modify, 0, true),
            Outcome::Keep => (OutcomeKind::Keep, 0, false),
            Outcome::Drop => (OutcomeKind::Drop, 0, false),
            Outcome::RouteTo(name) => (
                OutcomeKind::RouteTo,
                labels.intern(name),
                event.is_modified(),
            ),
            Outcome::DeadLetter(reason) => (OutcomeKind::DeadLetter, labels.intern(reason), false),
        };
        let replacement = if replaced {
            let at = replacements.len() as u32;
            push_replacement(&mut replacements, event);
            at
        } else {
            NO_REPLACEMENT
        };
        outcomes.extend_from_slice(&[kind as u32, label, replacement]);
        Ok(())
    };
    if let Some(all) = prepared {
        for mut event in all {
            step(&mut event)?;
        }
    } else {
        for i in 0..events {
            let Some(orig) = EventRef::at(data, index, i) else {
                break;
            };
            step(&mut Event::new(orig))?;
        }
    }
    Ok(RawResult {
        outcomes,
        replacements,
        labels: labels.list,
    })
}

/// Appends the current state of `event` to `out`, with the original's origin.
fn push_replacement(out: &mut BatchBuf, event: &Event<'_>) {
    let headers: Vec<(&str, &[u8])> = event.headers().collect();
    let orig = event.original();
    out.push(&NewEvent {
        key: event.key(),
        body: event.body(),
        headers: &headers,
        topic: orig.topic(),
        partition: orig.partition(),
        offset: orig.offset(),
        timestamp: event.raw_timestamp(),
    });
}

/// Labels of a result, each stored once.
#[derive(Default)]
struct Labels {
    list: Vec<String>,
    /// Built once there are more labels than a linear scan handles well.
    /// (Not a `HashMap`: its random seed would import `wasi:random`.)
    map: BTreeMap<String, u32>,
}

impl Labels {
    const SCAN: usize = 8;

    fn intern(&mut self, label: std::borrow::Cow<'static, str>) -> u32 {
        if self.list.len() <= Self::SCAN {
            if let Some(i) = self.list.iter().position(|l| *l == label) {
                return i as u32;
            }
        } else if let Some(&i) = self.map.get(label.as_ref()) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(label.into_owned());
        if self.list.len() > Self::SCAN {
            if self.map.is_empty() {
                self.map = self.list.iter().cloned().zip(0..).collect();
            } else {
                self.map.insert(self.list[i as usize].clone(), i);
            }
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_batch::{NO_TIMESTAMP, decode_outcomes};

    fn batch(bodies: &[&str]) -> BatchBuf {
        let mut b = BatchBuf::default();
        for (i, body) in bodies.iter().enumerate() {
            b.push(&NewEvent {
                key: None,
                body: body.as_bytes(),
                headers: &[("h", b"v")],
                topic: "t",
                partition: 0,
                offset: i as i64,
                timestamp: NO_TIMESTAMP,
            });
        }
        b
    }

    fn run(
        bodies: &[&str],
        f: impl FnMut(&mut Event<'_>) -> Result<Outcome, Error>,
    ) -> Result<RawResult, Error> {
        let b = batch(bodies);
        process(&b.data, &b.index, f)
    }

    #[test]
    fn unmodified_keep_has_no_replacement() {
        let r = run(&["a", "b"], |_| Ok(Outcome::Keep)).unwrap();
        assert_eq!(r.outcomes, [0, 0, NO_REPLACEMENT, 0, 0, NO_REPLACEMENT]);
        assert!(r.replacements.is_empty());
        assert!(r.replacements.data.is_empty());
        assert!(r.labels.is_empty());
    }

    #[test]
    fn modified_keep_becomes_modify_with_replacement() {
        let r = run(&["a", "b"], |e| {
            if e.body() == b"b" {
                e.set_body("B");
                e.set_header("x", "y");
            }
            Ok(Outcome::Keep)
        })
        .unwrap();
        let entries = decode_outcomes(&r.outcomes, 2, r.replacements.len(), 0).unwrap();
        assert_eq!(entries[0].kind, OutcomeKind::Keep);
        assert_eq!(entries[1].kind, OutcomeKind::Modify);
        let rep = r.replacements.get(entries[1].replacement as usize).unwrap();
        assert_eq!(rep.body(), b"B");
        assert_eq!(rep.header("h"), Some(&b"v"[..]));
        assert_eq!(rep.header("x"), Some(&b"y"[..]));
        assert_eq!(rep.offset(), 1);
        assert!(r.replacements.validate().is_ok());
    }

    #[test]
    fn drop_ignores_changes() {
        let r = run(&["a"], |e| {
            e.set_body("z");
            Ok(Outcome::Drop)
        })
        .unwrap();
        assert_eq!(r.outcomes, [OutcomeKind::Drop as u32, 0, NO_REPLACEMENT]);
        assert!(r.replacements.is_empty());
    }

    #[test]
    fn route_to_dedups_labels_and_carries_changes() {
        let r = run(&["a", "b", "c"], |e| {
            if e.body() == b"b" {
                e.set_body("B");
            }
            let route = if e.body() == b"c" { "other" } else { "main" };
            Ok(Outcome::route_to(route))
        })
        .unwrap();
        assert_eq!(r.labels, ["main", "other"]);
        let entries = decode_outcomes(&r.outcomes, 3, r.replacements.len(), 2).unwrap();
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.kind, e.label))
                .collect::<Vec<_>>(),
            [
                (OutcomeKind::RouteTo, 0),
                (OutcomeKind::RouteTo, 0),
                (OutcomeKind::RouteTo, 1)
            ]
        );
        assert_eq!(entries[0].replacement, NO_REPLACEMENT);
        assert_eq!(entries[1].replacement, 0);
        assert_eq!(r.replacements.get(0).unwrap().body(), b"B");
    }

    #[test]
    fn dead_letter_sends_the_original() {
        let r = run(&["a", "b"], |e| {
            e.set_body("changed");
            // Same text, built per event: labels are compared by value.
            Ok(Outcome::dead_letter(format!("bad {}", e.topic())))
        })
        .unwrap();
        assert_eq!(r.labels, ["bad t"]);
        assert_eq!(
            r.outcomes,
            [4, 0, NO_REPLACEMENT, 4, 0, NO_REPLACEMENT],
            "dead letters carry no replacement"
        );
        assert!(r.replacements.is_empty());
    }

    #[test]
    fn many_distinct_labels_stay_deduplicated() {
        let bodies: Vec<String> = (0..40).map(|i| (i % 20).to_string()).collect();
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        let r = run(&refs, |e| {
            Ok(Outcome::dead_letter(e.body_str().unwrap_or("").to_owned()))
        })
        .unwrap();
        assert_eq!(r.labels.len(), 20);
        for (i, w) in r.outcomes.chunks_exact(OUTCOME_STRIDE).enumerate() {
            assert_eq!(r.labels[w[1] as usize], (i % 20).to_string());
        }
    }

    #[test]
    fn error_fails_the_batch() {
        let mut calls = 0;
        let err = run(&["a", "b", "c"], |_| {
            calls += 1;
            if calls == 2 {
                Err(Error::new("invalid plugin config: boom"))
            } else {
                Ok(Outcome::Keep)
            }
        })
        .unwrap_err();
        assert_eq!(err.message(), "invalid plugin config: boom");
        assert_eq!(calls, 2, "processing stops at the first error");
    }

    #[test]
    fn plain_outcome_functions_are_handlers() {
        fn keep(_: &mut Event<'_>) -> Outcome {
            Outcome::Keep
        }
        let b = batch(&["a"]);
        assert!(process(&b.data, &b.index, keep).is_ok());
    }

    #[test]
    fn rejects_a_ragged_index() {
        let b = batch(&["a"]);
        let err = process(&b.data, &b.index[..STRIDE - 1], |_: &mut Event<'_>| {
            Outcome::Keep
        })
        .unwrap_err();
        assert!(err.message().contains("not a multiple"), "{err}");
    }

    /// Counts heap allocations made by the current thread.
    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        pub struct Counting;

        thread_local! {
            pub static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
        }

        // SAFETY: forwards to the system allocator; only counts.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
                // SAFETY: same contract as ours.
                unsafe { System.alloc(layout) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: same contract as ours.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;
    }

    #[test]
    fn keeping_unchanged_events_does_not_allocate_per_event() {
        let bodies: Vec<String> = (0..1000).map(|i| format!("event {i}")).collect();
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        let b = batch(&refs);
        #[derive(serde::Deserialize)]
        struct Empty {}
        crate::config::<Empty>().unwrap(); // parsed once, before counting
        let before = counting::ALLOCATIONS.with(|n| n.get());
        let r = process(&b.data, &b.index, |e: &mut Event<'_>| {
            crate::config::<Empty>()?;
            Ok::<_, Error>(if e.header("h").is_some() && e.body_str().is_some() {
                Outcome::Keep
            } else {
                Outcome::Drop
            })
        })
        .unwrap();
        let allocations = counting::ALLOCATIONS.with(|n| n.get()) - before;
        assert_eq!(r.outcomes.len(), 3000);
        assert_eq!(allocations, 1, "only the outcome list is allocated");
    }

    #[test]
    fn prepare_sees_the_whole_batch_before_the_plugin_function() {
        use std::cell::RefCell;
        let log = RefCell::new(Vec::new());
        let b = batch(&["a", "b", "c"]);
        let r = process(
            &b.data,
            &b.index,
            crate::with_prepare(
                |events: &[Event<'_>]| {
                    let bodies: Vec<String> = events
                        .iter()
                        .map(|e| e.body_str().unwrap_or("").to_owned())
                        .collect();
                    assert!(events.iter().all(|e| !e.is_modified()));
                    log.borrow_mut()
                        .push(format!("prepare {}", bodies.join(",")));
                },
                |e: &mut Event<'_>| {
                    log.borrow_mut()
                        .push(format!("handle {}", e.body_str().unwrap_or("")));
                    if e.body() == b"b" {
                        e.set_body("B");
                    }
                    Outcome::Keep
                },
            ),
        )
        .unwrap();
        assert_eq!(
            log.into_inner(),
            ["prepare a,b,c", "handle a", "handle b", "handle c"]
        );
        let entries = decode_outcomes(&r.outcomes, 3, r.replacements.len(), 0).unwrap();
        assert_eq!(entries[1].kind, OutcomeKind::Modify);
        assert_eq!(r.replacements.get(0).unwrap().body(), b"B");
    }

    #[test]
    fn a_failing_prepare_fails_the_batch_before_any_event() {
        let mut calls = 0;
        let b = batch(&["a", "b"]);
        let err = process(
            &b.data,
            &b.index,
            crate::with_prepare(
                |_: &[Event<'_>]| Err::<(), _>("lookup table `t` denied"),
                |_: &mut Event<'_>| {
                    calls += 1;
                    Outcome::Keep
                },
            ),
        )
        .unwrap_err();
        assert_eq!(err.message(), "lookup table `t` denied");
        assert_eq!(calls, 0);
    }

    #[test]
    fn prefetched_lookups_take_one_host_call_per_batch_and_end_with_it() {
        use crate::{lookup, native_lookup};
        native_lookup::set("t", [("a", "1"), ("c", "3")]);
        let b = batch(&["a", "b", "c", "a"]);
        let handler = || {
            crate::with_prepare(
                |events: &[Event<'_>]| {
                    lookup::prefetch("t", events.iter().filter_map(|e| e.body_str()))
                },
                |e: &mut Event<'_>| -> Result<Outcome, Error> {
                    let value = lookup::get("t", e.body_str().unwrap_or(""))?;
                    e.set_header("v", value.unwrap_or_default());
                    Ok(Outcome::Keep)
                },
            )
        };
        let r = process(&b.data, &b.index, handler()).unwrap();
        let values: Vec<_> = r
            .replacements
            .iter()
            .map(|e| e.header("v").unwrap().to_vec())
            .collect();
        assert_eq!(values, [&b"1"[..], b"", b"3", b"1"]);
        let calls = native_lookup::take_calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].keys, ["a", "b", "c"]);

        // The next batch sees the table as it is then.
        native_lookup::set("t", [("a", "new")]);
        let r = process(&b.data, &b.index, handler()).unwrap();
        assert_eq!(
            r.replacements.get(0).unwrap().header("v"),
            Some(&b"new"[..])
        );
        assert_eq!(native_lookup::take_calls().len(), 1);
        assert_eq!(lookup::get("t", "a").unwrap().as_deref(), Some("new"));
        assert_eq!(native_lookup::take_calls().len(), 1, "not cached after");
    }

    #[test]
    fn empty_batch() {
        let r = process(&[], &[], |_: &mut Event<'_>| Outcome::Keep).unwrap();
        assert!(r.outcomes.is_empty());
    }
}
