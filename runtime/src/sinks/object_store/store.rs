//! Where files go ([`Destination`]) and the single-attempt operations on it.
//!
//! Every operation here is idempotent, so the writer can retry any of them
//! after any failure: local writes are positioned (`write_all_at`), a rename
//! whose source is gone but whose target has the expected length counts as
//! done, multipart parts are uploaded by index, and a completion retried
//! after an ambiguous failure first checks whether the object already exists.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::memory::InMemory;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartId, ObjectStore, PutPayload, RetryConfig};
use url::Url;

use super::config::{ObjectStoreSinkConfig, Scheme};
use super::error::StoreError;

/// Where completed files are made visible.
pub(crate) enum Destination {
    /// A local directory (`file://`): hidden in-progress file, renamed when complete.
    Local(LocalDir),
    /// An object store: one PUT, or a multipart upload completed at roll.
    Remote(RemoteStore),
}

impl Destination {
    /// Builds the destination a validated config names. Makes no network call.
    pub(crate) fn from_config(config: &ObjectStoreSinkConfig) -> Result<Self, StoreError> {
        let (scheme, url) = config
            .parse_url()
            .map_err(|e| StoreError::configuration(e.0))?;
        let label = config.url.clone();
        let prefix = url_prefix(&url)?;
        Ok(match scheme {
            Scheme::File => Self::Local(LocalDir {
                root: url.to_file_path().map_err(|_| {
                    StoreError::configuration(format!(
                        "`url` = {:?} is not an absolute local path",
                        config.url
                    ))
                })?,
                faults: Faults::default(),
            }),
            Scheme::Memory => {
                Self::Remote(RemoteStore::new(Arc::new(InMemory::new()), prefix, label))
            }
            Scheme::S3 => {
                let store = s3_builder(config, &url).build().map_err(|e| {
                    StoreError::configuration(format!("configuring S3 for {:?}: {e}", config.url))
                })?;
                Self::Remote(RemoteStore::new(Arc::new(store), prefix, label))
            }
            Scheme::Gcs => {
                let mut b = GoogleCloudStorageBuilder::from_env()
                    .with_url(url.as_str())
                    .with_retry(client_retry());
                for (key, value) in config.gcs.iter().flatten() {
                    let key = key
                        .parse()
                        .map_err(|e| StoreError::configuration(format!("`gcs.{key}`: {e}")))?;
                    b = b.with_config(key, value);
                }
                let store = b.build().map_err(|e| {
                    StoreError::configuration(format!("configuring GCS for {:?}: {e}", config.url))
                })?;
                Self::Remote(RemoteStore::new(Arc::new(store), prefix, label))
            }
            Scheme::Azure => {
                let mut b = MicrosoftAzureBuilder::from_env()
                    .with_url(url.as_str())
                    .with_retry(client_retry());
                for (key, value) in config.azure.iter().flatten() {
                    let key = key
                        .parse()
                        .map_err(|e| StoreError::configuration(format!("`azure.{key}`: {e}")))?;
                    b = b.with_config(key, value);
                }
                let store = b.build().map_err(|e| {
                    StoreError::configuration(format!(
                        "configuring Azure for {:?}: {e}",
                        config.url
                    ))
                })?;
                Self::Remote(RemoteStore::new(Arc::new(store), prefix, label))
            }
        })
    }
}

impl Destination {
    /// Reads bookkeeping object `_sluice/<rel>`, if it exists.
    pub(crate) async fn get_meta(&self, rel: &str) -> Result<Option<Bytes>, StoreError> {
        match self {
            Destination::Local(local) => {
                let path = local.meta_path(rel);
                match tokio::fs::read(&path).await {
                    Ok(b) => Ok(Some(b.into())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(StoreError::local(format!("reading {}", path.display()), &e)),
                }
            }
            Destination::Remote(remote) => {
                let path = remote.meta_path(rel);
                match remote.store().get(&path).await {
                    Ok(r) => r
                        .bytes()
                        .await
                        .map(Some)
                        .map_err(|e| StoreError::remote(format!("reading {path}"), &e)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(StoreError::remote(format!("reading {path}"), &e)),
                }
            }
        }
    }

    /// Writes bookkeeping object `_sluice/<rel>` whole, durably, replacing it.
    pub(crate) async fn put_meta(&self, rel: &str, body: Bytes) -> Result<(), StoreError> {
        match self {
            Destination::Local(local) => {
                let path = local.meta_path(rel);
                Self::put_local(path, body).await
            }
            Destination::Remote(remote) => {
                let path = remote.meta_path(rel);
                remote
                    .store()
                    .put(&path, PutPayload::from(body))
                    .await
                    .map(|_| ())
                    .map_err(|e| StoreError::remote(format!("writing {path}"), &e))
            }
        }
    }

    /// Writes object `name` in rendered directory `dir` whole (a `_SUCCESS`
    /// marker), replacing it.
    pub(crate) async fn put_in(
        &self,
        dir: &str,
        name: &str,
        body: Bytes,
    ) -> Result<(), StoreError> {
        match self {
            Destination::Local(local) => {
                Self::put_local(local.paths(dir, name).visible, body).await
            }
            Destination::Remote(remote) => {
                let (path, _) = remote.path(dir, name);
                remote.put(&path, body).await
            }
        }
    }

    async fn put_local(path: PathBuf, body: Bytes) -> Result<(), StoreError> {
        tokio::task::spawn_blocking(move || {
            super::commit::write_durably(&path, &body, false).map(|_| ())
        })
        .await
        .map_err(|e| StoreError::transient(format!("blocking task: {e}")))?
    }

    /// Makes a sealed file visible (exactly-once mode); idempotent, so
    /// recovery may redo it: a local file already renamed, or an upload
    /// already completed into an object of the same size, counts as done.
    pub(crate) async fn publish(&self, file: &super::commit::Sealed) -> Result<(), StoreError> {
        use super::commit::Staged;
        match (self, &file.staged) {
            (Self::Local(_), Staged::Local { hidden, visible }) => {
                let (hidden, visible, size) = (hidden.clone(), visible.clone(), file.size);
                tokio::task::spawn_blocking(move || {
                    match std::fs::rename(&hidden, &visible) {
                        Ok(()) => {}
                        Err(e)
                            if e.kind() == std::io::ErrorKind::NotFound
                                && std::fs::metadata(&visible).is_ok_and(|m| m.len() == size) => {}
                        Err(e) => {
                            return Err(StoreError::local(
                                format!(
                                    "publishing {}: renaming {}",
                                    visible.display(),
                                    hidden.display()
                                ),
                                &e,
                            ));
                        }
                    }
                    match visible.parent() {
                        Some(dir) => sync_dir(dir).map_err(|e| {
                            StoreError::local(format!("syncing directory {}", dir.display()), &e)
                        }),
                        None => Ok(()),
                    }
                })
                .await
                .map_err(blocking_error)?
            }
            (Self::Remote(remote), Staged::Remote { path, upload_id }) => {
                let path = Path::from(path.as_str());
                if remote
                    .store
                    .head(&path)
                    .await
                    .is_ok_and(|m| m.size == file.size)
                {
                    return Ok(());
                }
                let parts = file
                    .parts
                    .iter()
                    .map(|e| PartId {
                        content_id: e.clone(),
                    })
                    .collect();
                match remote
                    .multipart
                    .complete_multipart(&path, &upload_id.clone(), parts)
                    .await
                {
                    Ok(_) => Ok(()),
                    // Completed concurrently (another agent's recovery).
                    Err(_)
                        if remote
                            .store
                            .head(&path)
                            .await
                            .is_ok_and(|m| m.size == file.size) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(StoreError::remote(format!("publishing {path}"), &e)),
                }
            }
            _ => Err(StoreError::permanent(
                "internal error: staged file and destination kinds differ",
            )),
        }
    }

    /// Whether file `name` in rendered directory `dir` can exist here: an
    /// object key of at most 1024 bytes (S3's limit), or a local path of at
    /// most 4095 bytes whose every name, the in-progress one included, is
    /// at most 255. An error says which limit is exceeded: a permanent
    /// property of the event, which no retry changes.
    pub(crate) fn check_length(&self, dir: &str, name: &str) -> Result<(), StoreError> {
        match self {
            Self::Local(local) => {
                let hidden = format!(".{name}.inprogress");
                if let Some(long) = dir
                    .split('/')
                    .chain([hidden.as_str()])
                    .find(|c| c.len() > MAX_NAME_BYTES)
                {
                    return Err(StoreError::permanent(format!(
                        "the path component `{}…` is {} bytes, over the file system's {MAX_NAME_BYTES}",
                        long.chars().take(40).collect::<String>(),
                        long.len()
                    )));
                }
                let total = local.root.as_os_str().len() + dir.len() + hidden.len() + 2;
                if total > MAX_PATH_BYTES {
                    return Err(StoreError::permanent(format!(
                        "the path is {total} bytes, over the file system's {MAX_PATH_BYTES}"
                    )));
                }
                Ok(())
            }
            Self::Remote(remote) => {
                let total = remote.prefix.len() + dir.len() + name.len() + 2;
                if total > MAX_KEY_BYTES {
                    return Err(StoreError::permanent(format!(
                        "the object key is {total} bytes, over the store's {MAX_KEY_BYTES}"
                    )));
                }
                Ok(())
            }
        }
    }

    /// Removes a staged file that will never be committed, best effort.
    pub async fn discard(&self, staged: &super::commit::Staged) {
        use super::commit::Staged;
        match (self, staged) {
            (Self::Local(_), Staged::Local { hidden, .. }) => {
                let hidden = hidden.clone();
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(hidden)).await;
            }
            (Self::Remote(remote), Staged::Remote { path, upload_id }) => {
                remote
                    .abort_quietly(&Path::from(path.as_str()), &upload_id.clone())
                    .await;
            }
            _ => {}
        }
    }
}

/// The URL's path as an object key prefix (no leading or trailing `/`).
pub(crate) fn url_prefix(url: &Url) -> Result<String, StoreError> {
    Path::from_url_path(url.path())
        .map(|p| p.to_string())
        .map_err(|e| StoreError::configuration(format!("`url` path {:?}: {e}", url.path())))
}

/// The object_store client's own retries stay short: the sink retries every
/// operation itself, with backoff, for as long as the pipeline runs.
fn client_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(60),
        ..RetryConfig::default()
    }
}

/// An S3 client: environment first, then the `[s3]` table on top.
pub(crate) fn s3_builder(config: &ObjectStoreSinkConfig, url: &Url) -> AmazonS3Builder {
    let mut b = AmazonS3Builder::from_env()
        .with_url(url.as_str())
        .with_retry(client_retry());
    let options = config.s3.clone().unwrap_or_default();
    if let Some(region) = &options.region {
        b = b.with_region(region);
    }
    if let Some(endpoint) = &options.endpoint {
        b = b.with_endpoint(endpoint.trim_end_matches('/'));
    }
    if let (Some(id), Some(secret)) = (&options.access_key_id, &options.secret_access_key) {
        b = b.with_access_key_id(id).with_secret_access_key(secret);
    }
    if let Some(token) = &options.session_token {
        b = b.with_token(token);
    }
    if options.allow_http {
        b = b.with_allow_http(true);
    }
    // Exactly-once commit records are created with `If-None-Match: *`.
    b = b.with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch);
    if options.forbid_overwrite() {
        b = b.with_http_connector(super::oss::ForbidOverwriteConnector);
    }
    b = b.with_virtual_hosted_style_request(!options.path_style);
    // object_store expects a virtual-hosted endpoint to include the bucket.
    if !options.path_style
        && let (Some(endpoint), Some(bucket)) = (
            b.get_config_value(&AmazonS3ConfigKey::Endpoint),
            url.host_str(),
        )
    {
        b = b.with_endpoint(bucket_endpoint(&endpoint, bucket));
    }
    b
}

/// `https://oss-cn-hangzhou.aliyuncs.com` → `https://bucket.oss-cn-hangzhou.aliyuncs.com`.
fn bucket_endpoint(endpoint: &str, bucket: &str) -> String {
    let Ok(mut url) = Url::parse(endpoint) else {
        return endpoint.to_owned();
    };
    let Some(host) = url.host_str().map(str::to_owned) else {
        return endpoint.to_owned();
    };
    if !host.starts_with(&format!("{bucket}."))
        && url.set_host(Some(&format!("{bucket}.{host}"))).is_err()
    {
        return endpoint.to_owned();
    }
    url.as_str().trim_end_matches('/').to_owned()
}

/// Longest object key S3 (and OSS, GCS) accept.
const MAX_KEY_BYTES: usize = 1024;
/// Longest file name on common local file systems.
const MAX_NAME_BYTES: usize = 255;
/// Longest local path (Linux `PATH_MAX` less the terminating NUL).
const MAX_PATH_BYTES: usize = 4095;

/// Test hooks: operations attempted, and injected failures (the next `n`
/// operations fail). Nothing in non-test builds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    #[cfg(test)]
    pub fail_next: Arc<std::sync::atomic::AtomicUsize>,
    #[cfg(test)]
    pub attempts: Arc<std::sync::atomic::AtomicUsize>,
}

impl Faults {
    #[inline]
    fn check(&self, what: &str) -> Result<(), StoreError> {
        #[cfg(test)]
        {
            use std::sync::atomic::Ordering;
            self.attempts.fetch_add(1, Ordering::Relaxed);
            if self
                .fail_next
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(StoreError::transient(format!("{what}: injected failure")));
            }
        }
        let _ = what;
        Ok(())
    }
}

/// A local directory.
pub(crate) struct LocalDir {
    root: PathBuf,
    pub(super) faults: Faults,
}

/// Paths of one local file.
#[derive(Debug, Clone)]
pub(crate) struct LocalPaths {
    /// Its directory.
    pub dir: PathBuf,
    /// `.<name>.inprogress`, where it is written.
    pub hidden: PathBuf,
    /// `<name>`, where it appears when complete.
    pub visible: PathBuf,
}

fn blocking_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::transient(format!("blocking file task failed: {e}"))
}

impl LocalDir {
    /// The directory files are written under.
    pub fn root(&self) -> &FsPath {
        &self.root
    }

    /// Path of `_sluice/<rel>` (exactly-once bookkeeping) under the root.
    pub(crate) fn meta_path(&self, rel: &str) -> PathBuf {
        self.root.join("_sluice").join(rel)
    }

    /// Paths of file `name` in the rendered directory `dir` (sanitised, relative).
    pub fn paths(&self, dir: &str, name: &str) -> LocalPaths {
        let dir = if dir.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir)
        };
        LocalPaths {
            hidden: dir.join(format!(".{name}.inprogress")),
            visible: dir.join(name),
            dir,
        }
    }

    /// Creates (or truncates) the hidden file, creating directories as needed.
    pub async fn create(&self, paths: &LocalPaths) -> Result<Arc<std::fs::File>, StoreError> {
        self.faults.check("creating file")?;
        let paths = paths.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&paths.dir).map_err(|e| {
                StoreError::local(format!("creating directory {}", paths.dir.display()), &e)
            })?;
            std::fs::File::create(&paths.hidden)
                .map(Arc::new)
                .map_err(|e| StoreError::local(format!("creating {}", paths.hidden.display()), &e))
        })
        .await
        .map_err(blocking_error)?
    }

    /// Writes `data` at `offset` (idempotent).
    pub(crate) async fn write_at(
        &self,
        file: &Arc<std::fs::File>,
        hidden: &FsPath,
        data: Bytes,
        offset: u64,
    ) -> Result<(), StoreError> {
        self.faults.check("writing")?;
        let file = file.clone();
        let result = tokio::task::spawn_blocking(move || write_all_at(&file, &data, offset))
            .await
            .map_err(blocking_error)?;
        result.map_err(|e| StoreError::local(format!("writing {}", hidden.display()), &e))
    }

    /// Makes the file durable and visible: fsync, rename, fsync the directory.
    pub async fn commit(
        &self,
        file: &Arc<std::fs::File>,
        paths: &LocalPaths,
        len: u64,
    ) -> Result<(), StoreError> {
        self.faults.check("completing file")?;
        let file = file.clone();
        let paths = paths.clone();
        tokio::task::spawn_blocking(move || {
            file.sync_all().map_err(|e| {
                StoreError::local(format!("syncing {}", paths.hidden.display()), &e)
            })?;
            match std::fs::rename(&paths.hidden, &paths.visible) {
                Ok(()) => {}
                // An earlier attempt renamed it and then failed.
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && std::fs::metadata(&paths.visible).is_ok_and(|m| m.len() == len) => {}
                Err(e) => {
                    return Err(StoreError::local(
                        format!(
                            "renaming {} to {}",
                            paths.hidden.display(),
                            paths.visible.display()
                        ),
                        &e,
                    ));
                }
            }
            sync_dir(&paths.dir).map_err(|e| {
                StoreError::local(format!("syncing directory {}", paths.dir.display()), &e)
            })
        })
        .await
        .map_err(blocking_error)?
    }
}

#[cfg(unix)]
fn write_all_at(file: &std::fs::File, data: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(data, offset)
}

#[cfg(not(unix))]
fn write_all_at(file: &std::fs::File, data: &[u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)
}

#[cfg(unix)]
fn sync_dir(dir: &FsPath) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &FsPath) -> std::io::Result<()> {
    Ok(())
}

/// An object store reached through object_store's low-level multipart API,
/// which lets a failed part be retried by index.
pub(crate) struct RemoteStore {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    prefix: String,
    label: String,
    pub(super) faults: Faults,
}

impl RemoteStore {
    /// Wraps `store`; keys start with `prefix`; `label` (the URL) is for logs.
    pub fn new<S: ObjectStore + MultipartStore>(
        store: Arc<S>,
        prefix: String,
        label: String,
    ) -> Self {
        Self {
            store: store.clone(),
            multipart: store,
            prefix,
            label,
            faults: Faults::default(),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &dyn ObjectStore {
        &*self.store
    }

    /// The key prefix objects are written under (no leading or trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Path of `_sluice/<rel>` under the prefix.
    pub(crate) fn meta_path(&self, rel: &str) -> Path {
        Path::from_iter(
            self.prefix
                .split('/')
                .chain(["_sluice"])
                .chain(rel.split('/'))
                .filter(|p| !p.is_empty()),
        )
    }

    /// Aborts a multipart upload, ignoring one that is already gone.
    pub(crate) async fn abort_quietly(&self, path: &Path, id: &MultipartId) {
        if let Err(e) = self.multipart.abort_multipart(path, id).await {
            tracing::debug!("aborting upload of {path}: {e}");
        }
    }

    /// The key of file `name` in rendered directory `dir`, and its display form.
    pub fn path(&self, dir: &str, name: &str) -> (Path, String) {
        let parts = [self.prefix.as_str(), dir, name];
        let joined = parts
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        // Rendered directories are sanitised, so parsing succeeds; otherwise
        // fall back to object_store's encoding rather than failing the file.
        let path = Path::parse(&joined).unwrap_or_else(|_| {
            Path::from_iter(
                self.prefix
                    .split('/')
                    .chain(dir.split('/'))
                    .chain([name])
                    .filter(|p| !p.is_empty()),
            )
        });
        let rel = [dir, name]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let sep = if self.label.ends_with('/') { "" } else { "/" };
        (path, format!("{}{sep}{rel}", self.label))
    }

    /// Uploads a whole object at once.
    pub async fn put(&self, path: &Path, data: Bytes) -> Result<(), StoreError> {
        self.faults.check("uploading")?;
        self.store
            .put(path, PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| StoreError::remote(format!("uploading {path}"), &e))
    }

    /// Starts a multipart upload.
    pub(crate) async fn create_multipart(&self, path: &Path) -> Result<MultipartId, StoreError> {
        self.faults.check("starting multipart upload")?;
        self.multipart
            .create_multipart(path)
            .await
            .map_err(|e| StoreError::remote(format!("starting multipart upload of {path}"), &e))
    }

    /// Uploads part `idx` (0-based).
    pub(crate) async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        idx: usize,
        data: Bytes,
    ) -> Result<PartId, StoreError> {
        self.faults.check("uploading part")?;
        self.multipart
            .put_part(path, id, idx, PutPayload::from(data))
            .await
            .map_err(|e| StoreError::remote(format!("uploading part {} of {path}", idx + 1), &e))
    }

    /// Completes a multipart upload, making the object visible. `retried`:
    /// an earlier attempt failed, maybe after the store completed it.
    pub async fn complete(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: &[PartId],
        size: u64,
        retried: bool,
    ) -> Result<(), StoreError> {
        if retried && self.store.head(path).await.is_ok_and(|m| m.size == size) {
            // Completed by the failed attempt; if not, the object is a copy
            // with the same name and size, hence the same offsets: drop the
            // upload's parts.
            let _ = self.multipart.abort_multipart(path, id).await;
            return Ok(());
        }
        self.faults.check("completing multipart upload")?;
        self.multipart
            .complete_multipart(path, id, parts.to_vec())
            .await
            .map(|_| ())
            .map_err(|e| StoreError::remote(format!("completing multipart upload of {path}"), &e))
    }

    /// Abandons a multipart upload (best effort: stores also expire them).
    pub async fn abort(&self, path: &Path, id: &MultipartId) -> Result<(), StoreError> {
        self.multipart
            .abort_multipart(path, id)
            .await
            .map_err(|e| StoreError::remote(format!("aborting multipart upload of {path}"), &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> ObjectStoreSinkConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn virtual_hosted_endpoints_get_the_bucket() {
        assert_eq!(
            bucket_endpoint("https://oss-cn-hangzhou.aliyuncs.com", "logs"),
            "https://logs.oss-cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            bucket_endpoint("https://logs.oss-cn-hangzhou.aliyuncs.com/", "logs"),
            "https://logs.oss-cn-hangzhou.aliyuncs.com"
        );
    }

    #[test]
    fn s3_builder_honours_the_s3_table() {
        let c = config(
            r#"
            url = "s3://bucket/raw/data"
            roll_count = 1
            [s3]
            endpoint = "http://127.0.0.1:5000/"
            region = "eu-west-1"
            path_style = true
            access_key_id = "AKID"
            secret_access_key = "SECRET"
            allow_http = true
            "#,
        );
        c.validate().unwrap();
        let (_, url) = c.parse_url().unwrap();
        let b = s3_builder(&c, &url);
        let get = |k| b.get_config_value(&k);
        assert_eq!(
            get(AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(get(AmazonS3ConfigKey::Region).as_deref(), Some("eu-west-1"));
        assert_eq!(get(AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("AKID"));
        assert_eq!(
            get(AmazonS3ConfigKey::SecretAccessKey).as_deref(),
            Some("SECRET")
        );
        assert_eq!(
            get(AmazonS3ConfigKey::VirtualHostedStyleRequest).as_deref(),
            Some("false")
        );
        assert_eq!(
            get(AmazonS3ConfigKey::Client(
                object_store::ClientConfigKey::AllowHttp
            ))
            .as_deref(),
            Some("true")
        );
        assert!(b.build().is_ok());
        assert_eq!(url_prefix(&url).unwrap(), "raw/data");

        let c = config(
            r#"
            url = "s3://logs/p"
            roll_count = 1
            [s3]
            endpoint = "https://oss-cn-hangzhou.aliyuncs.com"
            "#,
        );
        let (_, url) = c.parse_url().unwrap();
        let b = s3_builder(&c, &url);
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("https://logs.oss-cn-hangzhou.aliyuncs.com")
        );
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::VirtualHostedStyleRequest)
                .as_deref(),
            Some("true")
        );
    }

    #[test]
    fn remote_paths_join_prefix_dir_and_name() {
        let r = RemoteStore::new(
            Arc::new(InMemory::new()),
            "raw".into(),
            "memory://raw".into(),
        );
        let (p, shown) = r.path("logs/dt=2024-01-01", "logs+0+00000000000000000007.txt");
        assert_eq!(
            p.as_ref(),
            "raw/logs/dt=2024-01-01/logs+0+00000000000000000007.txt"
        );
        assert_eq!(
            shown,
            "memory://raw/logs/dt=2024-01-01/logs+0+00000000000000000007.txt"
        );
        let r = RemoteStore::new(Arc::new(InMemory::new()), String::new(), "memory://".into());
        let (p, shown) = r.path("", "f.txt");
        assert_eq!((p.as_ref(), shown.as_str()), ("f.txt", "memory://f.txt"));
    }

    #[test]
    fn local_paths_hide_the_in_progress_file() {
        let l = LocalDir {
            root: PathBuf::from("/data"),
            faults: Faults::default(),
        };
        let p = l.paths("logs/24-01-01", "logs+0+1.txt");
        assert_eq!(
            p.hidden,
            PathBuf::from("/data/logs/24-01-01/.logs+0+1.txt.inprogress")
        );
        assert_eq!(p.visible, PathBuf::from("/data/logs/24-01-01/logs+0+1.txt"));
    }
}
