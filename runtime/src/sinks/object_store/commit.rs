//! Exactly-once output: the commit log kept beside the files.
//!
//! In exactly-once mode (`exactly_once = true`) every file stays invisible
//! until a **commit record** names it: a local file stays `.<name>.inprogress`,
//! an object stays an uncompleted multipart upload. Under the sink's URL:
//!
//! ```text
//! _sluice/commits/<topic>+<partition>/<start, 20 digits>.json   one per commit
//! _sluice/commits/<topic>+<partition>/HEAD                      a hint: a published record
//! _sluice/staging/<topic>+<partition>/<first>-<id>.json         one per file being written
//! ```
//!
//! Readers (Hive, Spark, Trino, DuckDB) skip `_`- and `.`-prefixed names, so
//! none of this is visible as data.
//!
//! A record covers the offsets `[start, end)` of one partition and lists the
//! files holding them. Records chain: each starts where the previous ended,
//! and is created with a conditional PUT (`If-None-Match: *`; a hard link
//! locally), so two writers that both believe they own a partition cannot both
//! extend the chain from the same point — the loser sees a conflict instead
//! of writing a duplicate. Creating the record *is* the commit: once it
//! exists, its files are published (multipart uploads completed, local files
//! renamed), which is idempotent and is redone by recovery after a crash.
//!
//! **Recovery** (on every assignment of a partition, before reading it):
//! read `HEAD`, list the records from there on, publish the files of each,
//! move `HEAD` to the last one, and return its `end`: the position the
//! source resumes at. A crash before a record exists leaves only staging
//! intents and invisible uploads; the data is read again from the position.
//! Those leftovers are removed after the next commit of the partition, once
//! the chain has moved past their offsets (no writer can commit them then:
//! its record name would already exist). Removing them earlier could pull
//! the upload from under a writer that has not yet learnt it lost the
//! partition, and then succeeds in creating its record.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::error::StoreError;
use super::store::Destination;
use crate::delivery::{PositionStore, Tp};

/// Where a file is written until it is published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Staged {
    /// A hidden local file, renamed to `visible` when published.
    Local {
        /// `.<name>.inprogress`.
        hidden: PathBuf,
        /// `<name>`.
        visible: PathBuf,
    },
    /// A multipart upload, completed when published.
    Remote {
        /// The object key.
        path: String,
        /// The upload.
        upload_id: String,
    },
}

/// A file whose bytes are all stored, waiting for its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sealed {
    /// Where it is.
    pub staged: Staged,
    /// ETags of the uploaded parts (remote only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// Stored size.
    pub size: u64,
    /// Events it holds.
    pub events: u64,
    /// Offsets of its first and last event.
    pub offsets: (i64, i64),
}

/// One commit of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// First offset covered.
    pub start: i64,
    /// One past the last offset covered: where the next record starts.
    pub end: i64,
    /// The files, published once the record exists.
    pub files: Vec<Sealed>,
    /// Which agent wrote it (host and process), for operators.
    pub agent: String,
    /// SHA-256 of the record without this field, as JSON (see `chain.rs`);
    /// absent in records written before checksums existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// A file being written, recorded before its first byte is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Intent {
    /// Where it is being written.
    pub staged: Staged,
    /// Its first offset.
    pub first_offset: i64,
}

/// How creating a record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The record exists now; the commit happened.
    Yes,
    /// Another writer already committed from this start.
    Conflict,
}

/// The commit log of one sink; see the module docs.
pub(crate) struct CommitLog {
    sink: String,
    dest: Arc<Destination>,
    agent: String,
    positions: Mutex<HashMap<Tp, i64>>,
}

fn tp_dir(topic: &str, partition: i32) -> String {
    let mut dir = String::with_capacity(topic.len() + 12);
    super::path::push_bookkeeping_name(&mut dir, topic.as_bytes(), "unknown");
    dir.push('+');
    dir.push_str(&partition.to_string());
    dir
}

fn record_name(start: i64) -> String {
    format!("{start:020}.json")
}

/// A short stable hash, to make intent names unique per upload.
fn short_hash(s: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..8])
}

impl CommitLog {
    /// The log of sink `sink` writing to `dest`.
    pub fn new(sink: &str, dest: Arc<Destination>) -> Self {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        Self {
            sink: sink.to_owned(),
            dest,
            agent: format!("{host}/{}", std::process::id()),
            positions: Mutex::new(HashMap::new()),
        }
    }

    /// This agent's name, as written into records.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The committed position recovery found for `tp` (or the last commit).
    pub fn position(&self, tp: &Tp) -> Option<i64> {
        self.positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tp)
            .copied()
    }

    fn set_position(&self, tp: &Tp, end: i64) {
        self.positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tp.clone(), end);
    }

    /// Records that a file is being written (before any of it is stored).
    pub(crate) async fn write_intent(
        &self,
        topic: &str,
        partition: i32,
        intent: &Intent,
    ) -> Result<String, StoreError> {
        let id = match &intent.staged {
            Staged::Local { hidden, .. } => short_hash(&hidden.to_string_lossy()),
            Staged::Remote { upload_id, path } => short_hash(&format!("{path}\0{upload_id}")),
        };
        let rel = format!(
            "staging/{}/{:020}-{id}.json",
            tp_dir(topic, partition),
            intent.first_offset
        );
        let body = serde_json::to_vec(intent)
            .map_err(|e| StoreError::permanent(format!("encoding intent: {e}")))?;
        self.put(&rel, body.into()).await?;
        Ok(rel)
    }

    /// Checks that the store refuses to create an object that exists: the
    /// commit of a record rests on it (two agents that both think they own
    /// a partition must not both commit). Creates `_sluice/probe/<nonce>`
    /// twice with different contents; the second must be refused. Run when
    /// an exactly-once sink starts; an error says the store cannot give
    /// exactly-once.
    pub(crate) async fn probe_conditional_create(&self) -> Result<(), StoreError> {
        let nonce = format!(
            "{}-{}",
            short_hash(&self.agent),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let rel = format!("probe/{nonce}");
        let first = self
            .create_if_absent(&rel, Bytes::from_static(b"first"))
            .await;
        let second = match first {
            Ok(Created::Yes) => {
                self.create_if_absent(&rel, Bytes::from_static(b"second"))
                    .await
            }
            Ok(Created::Conflict) => Err(StoreError::transient(
                "the probe object existed before it was created",
            )),
            Err(e) => Err(e),
        };
        let _ = self.delete(&rel).await;
        match second {
            Ok(Created::Conflict) => Ok(()),
            Ok(Created::Yes) => Err(StoreError::permanent(format!(
                "the store overwrote an existing object on a create-only PUT (`If-None-Match: *`, \
                 probed at {}): it does not support conditional writes, so two agents could both \
                 commit the same offsets; exactly_once cannot be guaranteed on it (use an \
                 at-least-once sink, or a store that honours conditional PUT: AWS S3, MinIO, \
                 GCS, Azure, Alibaba OSS with x-oss-forbid-overwrite)",
                self.describe(&rel)
            ))),
            Err(e) => Err(e.context("probing conditional writes")),
        }
    }

    fn describe(&self, rel: &str) -> String {
        match &*self.dest {
            Destination::Local(local) => local.meta_path(rel).display().to_string(),
            Destination::Remote(remote) => remote.meta_path(rel).to_string(),
        }
    }

    /// Creates the record: the commit. Then its files may be published.
    pub async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let rel = format!(
            "commits/{}/{}",
            tp_dir(&record.topic, record.partition),
            record_name(record.start)
        );
        let mut record = record.clone();
        super::chain::seal(&mut record);
        let body = serde_json::to_vec_pretty(&record)
            .map_err(|e| StoreError::permanent(format!("encoding record: {e}")))?;
        self.create_if_absent(&rel, body.into()).await
    }

    /// After a record's files are published: moves `HEAD`, removes the
    /// record's intents and every older leftover of the partition, and
    /// remembers the new position.
    pub(crate) async fn after_publish(&self, record: &Record) -> Result<(), StoreError> {
        let dir = tp_dir(&record.topic, record.partition);
        self.put(
            &format!("commits/{dir}/HEAD"),
            Bytes::from(record.start.to_string()),
        )
        .await?;
        self.set_position(&(record.topic.clone(), record.partition), record.end);
        self.clean_staging(&dir, record).await
    }

    /// Removes staging intents of the partition below `record.end`; uploads
    /// or hidden files not in `record` are aborted (leftovers of crashes and
    /// of writers that lost the partition; they can never be committed now).
    async fn clean_staging(&self, dir: &str, record: &Record) -> Result<(), StoreError> {
        let names = self.list(&format!("staging/{dir}"), None).await?;
        for name in names {
            let first: i64 = name
                .split('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(i64::MAX);
            if first >= record.end {
                continue;
            }
            let rel = format!("staging/{dir}/{name}");
            let Some(body) = self.get(&rel).await? else {
                continue;
            };
            match serde_json::from_slice::<Intent>(&body) {
                Ok(intent) if !record.files.iter().any(|f| f.staged == intent.staged) => {
                    info!(sink = %self.sink, staged = ?intent.staged, "removing an uncommitted leftover");
                    self.dest.discard(&intent.staged).await;
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(sink = %self.sink, intent = %rel, error = %e, "unreadable staging intent; removing it")
                }
            }
            self.delete(&rel).await?;
        }
        Ok(())
    }

    /// Recovery of one partition; see the module docs.
    pub(crate) async fn recover_tp(&self, tp: &Tp) -> Result<Option<i64>, StoreError> {
        let dir = tp_dir(&tp.0, tp.1);
        let head = self
            .get(&format!("commits/{dir}/HEAD"))
            .await?
            .and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse::<i64>().ok());
        let after = head.map(record_name);
        let mut names: Vec<String> = self
            .list(&format!("commits/{dir}"), after.as_deref())
            .await?
            .into_iter()
            .filter(|n| n.ends_with(".json"))
            .collect();
        if let Some(h) = &after {
            names.insert(0, h.clone());
        }
        names.sort();
        names.dedup();
        let mut last: Option<Record> = None;
        for name in names {
            let rel = format!("commits/{dir}/{name}");
            let Some(body) = self.get(&rel).await? else {
                continue;
            };
            let record = self.read_record(&rel, &name, &body, tp, last.as_ref())?;
            for file in &record.files {
                self.dest.publish(file).await?;
            }
            last = Some(record);
        }
        let Some(record) = last else {
            return Ok(None);
        };
        if head != Some(record.start) {
            self.put(
                &format!("commits/{dir}/HEAD"),
                Bytes::from(record.start.to_string()),
            )
            .await?;
        }
        self.set_position(tp, record.end);
        info!(sink = %self.sink, topic = %tp.0, partition = tp.1, position = record.end, "committed output recovered");
        Ok(Some(record.end))
    }

    /// Parses and checks record `name` (at `rel`) of partition `tp`, which
    /// follows `prev` in the chain; see `chain.rs`.
    fn read_record(
        &self,
        rel: &str,
        name: &str,
        body: &[u8],
        tp: &Tp,
        prev: Option<&Record>,
    ) -> Result<Record, StoreError> {
        let broken = |why: &str| super::chain::broken(rel, &self.sink, why);
        let start: i64 = name
            .strip_suffix(".json")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| broken("its name is not `<start>.json`"))?;
        let record: Record = serde_json::from_slice(body)
            .map_err(|e| broken(&format!("it is not a commit record ({e})")))?;
        super::chain::check_record(&record, start, tp, &self.dest).map_err(|e| broken(&e.0))?;
        if let Some(prev) = prev {
            super::chain::check_link(prev, &record).map_err(|e| broken(&e.0))?;
        }
        Ok(record)
    }

    /// Every partition directory under `_sluice/commits/` and its record
    /// names, sorted (for `sluice lake verify`).
    pub async fn chains(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let mut out = Vec::new();
        for dir in self.list_dirs("commits").await? {
            let mut names: Vec<String> = self
                .list(&format!("commits/{dir}"), None)
                .await?
                .into_iter()
                .filter(|n| n.ends_with(".json"))
                .collect();
            names.sort();
            out.push((dir, names));
        }
        out.sort();
        Ok(out)
    }

    /// Reads and checks every record of one partition directory, in order:
    /// the records that pass, and a description of each problem.
    pub(crate) async fn verify_chain(
        &self,
        dir: &str,
        names: &[String],
    ) -> Result<(Vec<Record>, Vec<String>), StoreError> {
        let tp = dir
            .rsplit_once('+')
            .and_then(|(t, p)| Some((t.to_owned(), p.parse::<i32>().ok()?)))
            .ok_or_else(|| {
                StoreError::permanent(format!(
                    "_sluice/commits/{dir} is not a `<topic>+<partition>` directory"
                ))
            })?;
        let (mut good, mut problems) = (Vec::new(), Vec::new());
        let mut prev: Option<Record> = None;
        for name in names {
            let rel = format!("commits/{dir}/{name}");
            let Some(body) = self.get(&rel).await? else {
                continue;
            };
            let record: Record = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("_sluice/{rel}: not a commit record ({e})"));
                    continue;
                }
            };
            let start: Option<i64> = name.strip_suffix(".json").and_then(|n| n.parse().ok());
            let mut tp_here = tp.clone();
            // A topic whose name was sanitised in the directory name: take
            // the record's own, the other checks still apply.
            if tp_here.0 != record.topic && tp_dir(&record.topic, record.partition) == dir {
                tp_here.0 = record.topic.clone();
            }
            if let Err(e) =
                super::chain::check_record(&record, start.unwrap_or(i64::MIN), &tp_here, &self.dest)
            {
                problems.push(format!("_sluice/{rel}: {e}"));
            }
            if let Some(prev) = &prev
                && let Err(e) = super::chain::check_link(prev, &record)
            {
                problems.push(format!("_sluice/{rel}: {e}"));
            }
            prev = Some(record.clone());
            good.push(record);
        }
        Ok((good, problems))
    }

    // Plain operations on `_sluice/…` under the destination.

    async fn get(&self, rel: &str) -> Result<Option<Bytes>, StoreError> {
        self.dest.get_meta(rel).await
    }

    async fn put(&self, rel: &str, body: Bytes) -> Result<(), StoreError> {
        self.dest.put_meta(rel, body).await
    }

    async fn create_if_absent(&self, rel: &str, body: Bytes) -> Result<Created, StoreError> {
        match &*self.dest {
            Destination::Local(local) => {
                let path = local.meta_path(rel);
                tokio::task::spawn_blocking(move || write_durably(&path, &body, true))
                    .await
                    .map_err(|e| StoreError::transient(format!("blocking task: {e}")))?
            }
            Destination::Remote(remote) => {
                let path = remote.meta_path(rel);
                let opts = super::oss::mark(PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                });
                match remote
                    .store()
                    .put_opts(&path, PutPayload::from(body.clone()), opts)
                    .await
                {
                    Ok(_) => Ok(Created::Yes),
                    Err(object_store::Error::AlreadyExists { .. }) => {
                        // A retry after an ambiguous failure finds its own record.
                        match self.get(rel).await? {
                            Some(existing) if existing == body => Ok(Created::Yes),
                            _ => Ok(Created::Conflict),
                        }
                    }
                    Err(e) => Err(StoreError::remote(format!("creating {path}"), &e)),
                }
            }
        }
    }

    async fn delete(&self, rel: &str) -> Result<(), StoreError> {
        match &*self.dest {
            Destination::Local(local) => {
                let path = local.meta_path(rel);
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(StoreError::local(
                        format!("removing {}", path.display()),
                        &e,
                    )),
                }
            }
            Destination::Remote(remote) => {
                let path = remote.meta_path(rel);
                match remote.store().delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(StoreError::remote(format!("removing {path}"), &e)),
                }
            }
        }
    }

    /// Names in directory `rel` (sorted), only those after `after` if given.
    /// Names of the directories directly under `_sluice/<rel>`.
    async fn list_dirs(&self, rel: &str) -> Result<Vec<String>, StoreError> {
        match &*self.dest {
            Destination::Local(local) => {
                let path = local.meta_path(rel);
                match std::fs::read_dir(&path) {
                    Ok(entries) => Ok(entries
                        .filter_map(|e| e.ok())
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                    Err(e) => Err(StoreError::local(format!("listing {}", path.display()), &e)),
                }
            }
            Destination::Remote(remote) => {
                let prefix = remote.meta_path(rel);
                let listed = remote
                    .store()
                    .list_with_delimiter(Some(&prefix))
                    .await
                    .map_err(|e| StoreError::remote(format!("listing {prefix}"), &e))?;
                Ok(listed
                    .common_prefixes
                    .into_iter()
                    .filter_map(|p| p.filename().map(str::to_owned))
                    .collect())
            }
        }
    }

    async fn list(&self, rel: &str, after: Option<&str>) -> Result<Vec<String>, StoreError> {
        let mut names = match &*self.dest {
            Destination::Local(local) => {
                let path = local.meta_path(rel);
                match std::fs::read_dir(&path) {
                    Ok(entries) => entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| !n.starts_with('.'))
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => {
                        return Err(StoreError::local(format!("listing {}", path.display()), &e));
                    }
                }
            }
            Destination::Remote(remote) => {
                let prefix = remote.meta_path(rel);
                let metas: Vec<_> = match after {
                    Some(a) => {
                        let offset = Path::from(format!("{prefix}/{a}"));
                        remote
                            .store()
                            .list_with_offset(Some(&prefix), &offset)
                            .try_collect()
                            .await
                    }
                    None => remote.store().list(Some(&prefix)).try_collect().await,
                }
                .map_err(|e| StoreError::remote(format!("listing {prefix}"), &e))?;
                metas
                    .into_iter()
                    .filter_map(|m| m.location.filename().map(str::to_owned))
                    .collect()
            }
        };
        if let Some(a) = after {
            names.retain(|n| n.as_str() > a);
        }
        names.sort();
        Ok(names)
    }
}

/// Writes `path` via a temporary file and fsyncs; with `exclusive`, fails
/// with [`Created::Conflict`] if `path` exists (hard link, atomic).
pub(crate) fn write_durably(
    path: &std::path::Path,
    body: &[u8],
    exclusive: bool,
) -> Result<Created, StoreError> {
    use std::io::Write;
    let dir = path
        .parent()
        .ok_or_else(|| StoreError::permanent(format!("{} has no directory", path.display())))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::local(format!("creating {}", dir.display()), &e))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp)
        .map_err(|e| StoreError::local(format!("creating {}", tmp.display()), &e))?;
    f.write_all(body)
        .and_then(|()| f.sync_all())
        .map_err(|e| StoreError::local(format!("writing {}", tmp.display()), &e))?;
    let result = if exclusive {
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(Created::Yes),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if std::fs::read(path).is_ok_and(|existing| existing == body) {
                    Ok(Created::Yes)
                } else {
                    Ok(Created::Conflict)
                }
            }
            Err(e) => Err(StoreError::local(
                format!("creating {}", path.display()),
                &e,
            )),
        }
    } else {
        std::fs::rename(&tmp, path)
            .map(|()| Created::Yes)
            .map_err(|e| StoreError::local(format!("renaming to {}", path.display()), &e))
    };
    let _ = std::fs::remove_file(&tmp);
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    result
}

impl PositionStore for CommitLog {
    fn name(&self) -> &str {
        &self.sink
    }

    fn recover<'a>(
        &'a self,
        tps: &'a [Tp],
    ) -> BoxFuture<'a, Result<HashMap<Tp, i64>, crate::error::BoxError>> {
        Box::pin(async move {
            let mut out = HashMap::new();
            for tp in tps {
                let mut delay = std::time::Duration::from_millis(100);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                loop {
                    match self.recover_tp(tp).await {
                        Ok(Some(p)) => {
                            out.insert(tp.clone(), p);
                            break;
                        }
                        Ok(None) => break,
                        Err(e) if std::time::Instant::now() < deadline => {
                            warn!(sink = %self.sink, topic = %tp.0, partition = tp.1, error = %e, "recovering committed output failed; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(std::time::Duration::from_secs(5));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Ok(out)
        })
    }
}
