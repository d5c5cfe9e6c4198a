//! An in-memory store that misbehaves as some real stores do, for tests of
//! how the sink copes: one that ignores create-only PUTs (overwrites
//! instead), as a store without conditional writes does, and one that
//! refuses every write, as a bucket without write permission does.

/// How a [`Misbehaving`] store misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Misbehaviour {
    /// Create-only PUTs overwrite.
    IgnoresConditions,
    /// Every PUT and multipart upload is refused: permission denied.
    DeniesWrites,
}

/// An in-memory store with a [`Misbehaviour`].
#[derive(Debug)]
pub(crate) struct Misbehaving(object_store::memory::InMemory, Misbehaviour);

impl Misbehaving {
    /// An empty store misbehaving as `how`.
    pub fn new(how: Misbehaviour) -> Self {
        Self(object_store::memory::InMemory::new(), how)
    }

    fn denied(&self, path: &object_store::path::Path) -> object_store::Result<()> {
        if self.1 == Misbehaviour::DeniesWrites {
            return Err(object_store::Error::PermissionDenied {
                path: path.to_string(),
                source: "AccessDenied: the bucket policy denies writes".into(),
            });
        }
        Ok(())
    }
}

impl std::fmt::Display for Misbehaving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Misbehaving({:?})", self.1)
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for Misbehaving {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        mut opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.denied(location)?;
        if self.1 == Misbehaviour::IgnoresConditions {
            opts.mode = object_store::PutMode::Overwrite;
        }
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.0.get_opts(location, options).await
    }

    async fn delete(&self, location: &object_store::path::Path) -> object_store::Result<()> {
        self.0.delete(location).await
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.0.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
    ) -> object_store::Result<()> {
        self.0.copy(from, to).await
    }

    async fn copy_if_not_exists(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
    ) -> object_store::Result<()> {
        self.0.copy_if_not_exists(from, to).await
    }
}

#[async_trait::async_trait]
impl object_store::multipart::MultipartStore for Misbehaving {
    async fn create_multipart(
        &self,
        path: &object_store::path::Path,
    ) -> object_store::Result<object_store::MultipartId> {
        self.denied(path)?;
        self.0.create_multipart(path).await
    }

    async fn put_part(
        &self,
        path: &object_store::path::Path,
        id: &object_store::MultipartId,
        part_idx: usize,
        data: object_store::PutPayload,
    ) -> object_store::Result<object_store::multipart::PartId> {
        self.0.put_part(path, id, part_idx, data).await
    }

    async fn complete_multipart(
        &self,
        path: &object_store::path::Path,
        id: &object_store::MultipartId,
        parts: Vec<object_store::multipart::PartId>,
    ) -> object_store::Result<object_store::PutResult> {
        self.0.complete_multipart(path, id, parts).await
    }

    async fn abort_multipart(
        &self,
        path: &object_store::path::Path,
        id: &object_store::MultipartId,
    ) -> object_store::Result<()> {
        self.0.abort_multipart(path, id).await
    }
}
