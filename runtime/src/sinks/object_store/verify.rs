//! `sluice lake verify`: checks an exactly-once sink's commit chains against
//! the files readers see.
//!
//! For every partition under `_sluice/commits/` it reads every record in
//! order and runs the checks of `chain.rs` on each (name, partition, range,
//! paths, checksum) and on each link (gaps, overlaps). Then it compares the
//! files the records name with the visible files under the sink's root
//! (everything outside `_sluice/` whose name does not start with `.`):
//!
//! - a file named by a record but not visible is *unpublished*: normal for
//!   the newest record of a partition for a moment (its files are published
//!   just after it is created, or by the next owner's recovery), a problem
//!   for any older one;
//! - a visible file named by no record is *uncommitted*: exactly-once
//!   output never has one (another writer, or a manual copy, put it there).
//!
//! It only reads; the exit status is 0 when nothing is wrong.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use futures::TryStreamExt;

use super::ObjectStoreSinkConfig;
use super::commit::{CommitLog, Staged};
use super::error::StoreError;
use super::store::Destination;

/// What `sluice lake verify` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Partitions with at least one record.
    pub partitions: usize,
    /// Records read.
    pub records: usize,
    /// Events the records cover.
    pub events: u64,
    /// One line per partition: its range and record count.
    pub chains: Vec<String>,
    /// Everything wrong, one line each; empty when the sink is sound.
    pub problems: Vec<String>,
    /// Files of the newest record of a partition not visible yet.
    pub pending: Vec<String>,
}

impl Report {
    /// The report as printed.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.chains {
            let _ = writeln!(out, "{line}");
        }
        for line in &self.pending {
            let _ = writeln!(out, "pending: {line}");
        }
        for line in &self.problems {
            let _ = writeln!(out, "problem: {line}");
        }
        let _ = writeln!(
            out,
            "{} partitions, {} records, {} events; {} problems",
            self.partitions,
            self.records,
            self.events,
            self.problems.len()
        );
        out
    }
}

/// Verifies the sink configured by `config` (named `sink`); see the module docs.
pub async fn verify(sink: &str, config: &ObjectStoreSinkConfig) -> Result<Report, StoreError> {
    if !config.exactly_once {
        return Err(StoreError::configuration(format!(
            "sink `{sink}` is not exactly-once: it keeps no commit records to verify"
        )));
    }
    let dest = Arc::new(Destination::from_config(config)?);
    let log = CommitLog::new(sink, dest.clone());
    let mut report = Report::default();
    let mut named = BTreeSet::new();
    for (dir, names) in log.chains().await? {
        let (records, problems) = log.verify_chain(&dir, &names).await?;
        report.problems.extend(problems);
        let Some(last) = records.last() else {
            continue;
        };
        report.partitions += 1;
        report.records += records.len();
        let events: u64 = records
            .iter()
            .flat_map(|r| &r.files)
            .map(|f| f.events)
            .sum();
        report.events += events;
        report.chains.push(format!(
            "{dir}: offsets [{}, {}) in {} records, {events} events",
            records[0].start,
            last.end,
            records.len()
        ));
        for (i, record) in records.iter().enumerate() {
            for file in &record.files {
                let key = visible_key(&file.staged);
                if !exists(&dest, &file.staged).await? {
                    let line = format!(
                        "{key} (record {dir}/{:020}.json) is not visible",
                        record.start
                    );
                    if i + 1 == records.len() {
                        report.pending.push(line);
                    } else {
                        report
                            .problems
                            .push(format!("{line}: it is lost or was removed"));
                    }
                }
                named.insert(key);
            }
        }
    }
    for key in visible_files(&dest).await? {
        if !named.contains(&key) {
            report.problems.push(format!(
                "{key} is visible but in no commit record (not written by this sink's exactly-once commits)"
            ));
        }
    }
    Ok(report)
}

/// How a file is named in reports and compared with the listing.
fn visible_key(staged: &Staged) -> String {
    match staged {
        Staged::Local { visible, .. } => visible.display().to_string(),
        Staged::Remote { path, .. } => path.clone(),
    }
}

async fn exists(dest: &Destination, staged: &Staged) -> Result<bool, StoreError> {
    match (dest, staged) {
        (Destination::Local(_), Staged::Local { visible, .. }) => Ok(visible.is_file()),
        (Destination::Remote(remote), Staged::Remote { path, .. }) => {
            match remote
                .store()
                .head(&object_store::path::Path::from(path.as_str()))
                .await
            {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(StoreError::remote(format!("reading {path}"), &e)),
            }
        }
        _ => Ok(false),
    }
}

/// Every visible data file under the sink's root.
async fn visible_files(dest: &Destination) -> Result<Vec<String>, StoreError> {
    match dest {
        Destination::Local(local) => {
            let mut out = Vec::new();
            let mut stack = vec![local.root().to_path_buf()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(StoreError::local(format!("listing {}", dir.display()), &e));
                    }
                };
                for entry in entries {
                    let entry = entry
                        .map_err(|e| StoreError::local(format!("listing {}", dir.display()), &e))?;
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    let path = entry.path();
                    if name.starts_with('.') || (dir == local.root() && name == "_sluice") {
                        continue;
                    }
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(path);
                    } else {
                        out.push(path.display().to_string());
                    }
                }
            }
            Ok(out)
        }
        Destination::Remote(remote) => {
            let prefix = object_store::path::Path::from(remote.prefix());
            let metas: Vec<_> = remote
                .store()
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|e| StoreError::remote(format!("listing {prefix}"), &e))?;
            let meta = if remote.prefix().is_empty() {
                "_sluice/".to_owned()
            } else {
                format!("{}/_sluice/", remote.prefix())
            };
            Ok(metas
                .into_iter()
                .map(|m| m.location.to_string())
                .filter(|k| !k.starts_with(&meta))
                .collect())
        }
    }
}
