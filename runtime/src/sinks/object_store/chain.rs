//! Checks of exactly-once commit records, alone and as a chain.
//!
//! Recovery publishes what a record lists and resumes at its `end`, so a
//! record is trusted only once it passes every check here:
//!
//! - its name is its `start`, and its topic and partition are those of the
//!   directory it is in;
//! - `start < end`, and every file's offsets lie in `[start, end)`;
//! - every file lies under the sink's root, outside `_sluice/`, with no `..`
//!   (a local file's hidden name is `.<visible name>.inprogress`, beside it);
//! - its `checksum` (SHA-256 of the record without the checksum, as JSON)
//!   matches. Records written before checksums existed have none and are
//!   accepted on the other checks;
//! - in a chain, each record starts where the previous one ended.
//!
//! A record that fails stops recovery of its partition with an error naming
//! the record, what is wrong and how to repair it ([`broken`]); `sluice lake
//! verify` runs the same checks over a whole sink.

use std::path::{Component, Path as FsPath};

use sha2::{Digest, Sha256};

use super::commit::{Record, Staged};
use super::error::StoreError;
use super::store::Destination;
use crate::delivery::Tp;

/// The checksum a record should carry.
pub(crate) fn checksum(record: &Record) -> String {
    let mut bare = record.clone();
    bare.checksum = None;
    let json = serde_json::to_vec(&bare).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// Sets `record.checksum`.
pub fn seal(record: &mut Record) {
    record.checksum = Some(checksum(record));
}

/// Why a commit record cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Defect(pub String);

/// Checks one record found as `<start>.json` in the directory of `tp`.
pub(crate) fn check_record(
    record: &Record,
    name_start: i64,
    tp: &Tp,
    dest: &Destination,
) -> Result<(), Defect> {
    if (record.topic.as_str(), record.partition) != (tp.0.as_str(), tp.1) {
        return Err(Defect(format!(
            "it is for {}/{}, not the partition {}/{} whose directory holds it",
            record.topic, record.partition, tp.0, tp.1
        )));
    }
    if record.start != name_start {
        return Err(Defect(format!(
            "it starts at {}, but its name says {name_start}",
            record.start
        )));
    }
    if record.start >= record.end {
        return Err(Defect(format!(
            "its range [{}, {}) is empty or reversed",
            record.start, record.end
        )));
    }
    if let Some(stored) = &record.checksum {
        let want = checksum(record);
        if *stored != want {
            return Err(Defect(format!(
                "its checksum {stored} does not match its content ({want})"
            )));
        }
    }
    for file in &record.files {
        let (first, last) = file.offsets;
        if first > last || first < record.start || last >= record.end {
            return Err(Defect(format!(
                "a file's offsets {first}..={last} are outside [{}, {})",
                record.start, record.end
            )));
        }
        check_place(&file.staged, dest)?;
    }
    Ok(())
}

/// Checks that `next` continues `prev`.
pub(crate) fn check_link(prev: &Record, next: &Record) -> Result<(), Defect> {
    match next.start.cmp(&prev.end) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(Defect(format!(
            "it starts at {} but the previous record ended at {}: offsets {}..{} are missing (a gap)",
            next.start, prev.end, prev.end, next.start
        ))),
        std::cmp::Ordering::Less => Err(Defect(format!(
            "it starts at {} but the previous record ended at {}: offsets {}..{} are committed twice (an overlap)",
            next.start,
            prev.end,
            next.start,
            prev.end.min(next.end)
        ))),
    }
}

/// Whether a staged file lies where the sink writes.
fn check_place(staged: &Staged, dest: &Destination) -> Result<(), Defect> {
    match (staged, dest) {
        (Staged::Local { hidden, visible }, Destination::Local(local)) => {
            let root = local.root();
            for p in [hidden, visible] {
                if !p.is_absolute()
                    || p.components().any(|c| matches!(c, Component::ParentDir))
                    || !p.starts_with(root)
                    || p.strip_prefix(root)
                        .is_ok_and(|rel| rel.starts_with("_sluice"))
                {
                    return Err(Defect(format!(
                        "it names {}, outside the sink's directory {} (or inside `_sluice/`)",
                        p.display(),
                        root.display()
                    )));
                }
            }
            let name = visible.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let expected =
                FsPath::new(visible.parent().unwrap_or(root)).join(format!(".{name}.inprogress"));
            if name.is_empty() || *hidden != expected {
                return Err(Defect(format!(
                    "its hidden file {} is not the in-progress name of {}",
                    hidden.display(),
                    visible.display()
                )));
            }
            Ok(())
        }
        (Staged::Remote { path, .. }, Destination::Remote(remote)) => {
            let prefix = remote.prefix();
            let rel = if prefix.is_empty() {
                Some(path.as_str())
            } else {
                path.strip_prefix(prefix).and_then(|r| r.strip_prefix('/'))
            };
            match rel {
                Some(rel)
                    if !rel.is_empty()
                        && !rel
                            .split('/')
                            .any(|s| s.is_empty() || s == "." || s == "..")
                        && !rel.starts_with("_sluice/") =>
                {
                    Ok(())
                }
                _ => Err(Defect(format!(
                    "it names the object {path}, outside the sink's prefix `{prefix}` (or inside `_sluice/`)"
                ))),
            }
        }
        _ => Err(Defect(
            "it names a local file for an object store, or an object for a local directory".into(),
        )),
    }
}

/// The error that stops recovery of a partition at record `rel`.
pub fn broken(rel: &str, sink: &str, why: &str) -> StoreError {
    StoreError::permanent(format!(
        "commit record _sluice/{rel} of sink `{sink}` cannot be trusted: {why}. Recovery of its partition \
         stops here, so nothing is published or read past it. Repair: run `sluice lake verify <config> {sink}` \
         to see the whole chain; restore the record from a backup, or move it and every later record of the \
         partition out of `_sluice/commits/` (their offsets are then read again from the last good record's end)"
    ))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::super::commit::Sealed;
    use super::super::store::RemoteStore;
    use super::*;

    fn local(root: &str) -> Destination {
        let c: super::super::ObjectStoreSinkConfig =
            toml::from_str(&format!("url = \"file://{root}\"\nroll_count = 1")).unwrap();
        Destination::from_config(&c).unwrap()
    }

    fn remote() -> Destination {
        Destination::Remote(RemoteStore::new(
            Arc::new(object_store::memory::InMemory::new()),
            "lake".into(),
            "memory://lake".into(),
        ))
    }

    fn file(hidden: &str, visible: &str, offsets: (i64, i64)) -> Sealed {
        Sealed {
            staged: Staged::Local {
                hidden: PathBuf::from(hidden),
                visible: PathBuf::from(visible),
            },
            parts: vec![],
            size: 1,
            events: 1,
            offsets,
        }
    }

    fn record(start: i64, end: i64, files: Vec<Sealed>) -> Record {
        let mut r = Record {
            topic: "t".into(),
            partition: 0,
            start,
            end,
            files,
            agent: "a".into(),
            checksum: None,
        };
        seal(&mut r);
        r
    }

    fn tp() -> Tp {
        ("t".into(), 0)
    }

    #[test]
    fn a_good_record_passes() {
        let d = local("/lake");
        let r = record(
            10,
            20,
            vec![file(
                "/lake/x/.t+0+10.txt.inprogress",
                "/lake/x/t+0+10.txt",
                (10, 19),
            )],
        );
        check_record(&r, 10, &tp(), &d).unwrap();
    }

    #[test]
    fn every_broken_field_is_named() {
        let d = local("/lake");
        let good = || file("/lake/.f.inprogress", "/lake/f", (10, 19));
        let cases: Vec<(Record, i64, &str)> = vec![
            (record(10, 20, vec![good()]), 11, "its name says"),
            (record(20, 20, vec![]), 20, "empty or reversed"),
            (
                record(
                    10,
                    20,
                    vec![file("/lake/.f.inprogress", "/lake/f", (5, 19))],
                ),
                10,
                "outside [10, 20)",
            ),
            (
                record(10, 20, vec![file("/etc/.f.inprogress", "/etc/f", (10, 19))]),
                10,
                "outside the sink's directory",
            ),
            (
                record(
                    10,
                    20,
                    vec![file(
                        "/lake/../etc/.f.inprogress",
                        "/lake/../etc/f",
                        (10, 19),
                    )],
                ),
                10,
                "outside the sink's directory",
            ),
            (
                record(
                    10,
                    20,
                    vec![file(
                        "/lake/_sluice/.f.inprogress",
                        "/lake/_sluice/f",
                        (10, 19),
                    )],
                ),
                10,
                "inside `_sluice/`",
            ),
            (
                record(
                    10,
                    20,
                    vec![file("/lake/.g.inprogress", "/lake/f", (10, 19))],
                ),
                10,
                "not the in-progress name",
            ),
        ];
        for (r, name, want) in cases {
            let e = check_record(&r, name, &tp(), &d).unwrap_err();
            assert!(e.0.contains(want), "{want}: {e}");
        }
        let mut other = record(10, 20, vec![]);
        other.partition = 3;
        seal(&mut other);
        assert!(
            check_record(&other, 10, &tp(), &d)
                .unwrap_err()
                .0
                .contains("t/3")
        );
        let mut tampered = record(10, 20, vec![]);
        tampered.end = 30;
        assert!(
            check_record(&tampered, 10, &tp(), &d)
                .unwrap_err()
                .0
                .contains("checksum")
        );
        let mut old = record(10, 30, vec![]);
        old.checksum = None;
        check_record(&old, 10, &tp(), &d).expect("records from before checksums pass");
    }

    #[test]
    fn remote_files_stay_under_the_prefix() {
        let d = remote();
        let obj = |path: &str| Sealed {
            staged: Staged::Remote {
                path: path.into(),
                upload_id: "u".into(),
            },
            parts: vec![],
            size: 1,
            events: 1,
            offsets: (0, 0),
        };
        check_record(&record(0, 1, vec![obj("lake/t/f.txt")]), 0, &tp(), &d).unwrap();
        for bad in [
            "other/f.txt",
            "lake/../x",
            "lake/_sluice/commits/x",
            "lakex/f",
            "lake//f",
        ] {
            let e = check_record(&record(0, 1, vec![obj(bad)]), 0, &tp(), &d).unwrap_err();
            assert!(e.0.contains("outside the sink's prefix"), "{bad}: {e}");
        }
    }

    #[test]
    fn links_find_gaps_and_overlaps() {
        let a = record(0, 10, vec![]);
        check_link(&a, &record(10, 20, vec![])).unwrap();
        assert!(
            check_link(&a, &record(12, 20, vec![]))
                .unwrap_err()
                .0
                .contains("gap")
        );
        assert!(
            check_link(&a, &record(5, 20, vec![]))
                .unwrap_err()
                .0
                .contains("overlap")
        );
    }

    /// Fuzz target: commit records and staging intents from any bytes, and
    /// records with any field values, never panic recovery's checks; a
    /// record passes only if its checksum (when present) matches. Longer:
    /// `PROPTEST_CASES=100000 cargo test -p sluice --lib chain::tests::fuzz_`.
    mod fuzz {
        use proptest::prelude::*;

        use super::*;
        use crate::sinks::object_store::commit::Intent;

        proptest! {
            #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn fuzz_records_from_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300), start in any::<i64>()) {
                let d = local("/lake");
                if let Ok(r) = serde_json::from_slice::<Record>(&bytes) {
                    let _ = check_record(&r, start, &tp(), &d);
                }
                let _ = serde_json::from_slice::<Intent>(&bytes);
            }

            #[test]
            fn fuzz_records_with_any_fields(
                start in any::<i64>(),
                end in any::<i64>(),
                first in any::<i64>(),
                last in any::<i64>(),
                visible in "/lake(/[a-z._]{0,4}){0,3}|/[a-z]{0,4}|[a-z./]{0,10}",
                sealed in any::<bool>(),
            ) {
                let d = local("/lake");
                let hidden = std::path::Path::new(&visible)
                    .parent()
                    .map(|p| p.join(format!(".{}.inprogress", std::path::Path::new(&visible).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())))
                    .unwrap_or_default();
                let mut r = Record {
                    topic: "t".into(),
                    partition: 0,
                    start,
                    end,
                    files: vec![file(&hidden.display().to_string(), &visible, (first, last))],
                    agent: "a".into(),
                    checksum: None,
                };
                if sealed {
                    seal(&mut r);
                }
                if check_record(&r, start, &tp(), &d).is_ok() {
                    prop_assert!(start < end && start <= first && first <= last && last < end);
                    prop_assert!(visible.starts_with("/lake/") && !visible.contains("/../"));
                }
                if sealed {
                    let mut tampered = r.clone();
                    tampered.end = tampered.end.wrapping_add(1);
                    prop_assert!(check_record(&tampered, start, &tp(), &d).is_err());
                }
            }
        }
    }
}
