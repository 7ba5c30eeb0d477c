//! A local-directory object store that fsyncs what it writes.
//!
//! `object_store`'s `LocalFileSystem` writes a temporary file and renames
//! it into place, which survives a crash of the process (the data is in the
//! page cache) but not a power loss. With `strata dev --fsync` every
//! written object and its directory are fsynced before the write counts as
//! durable, so an acknowledged record survives power loss too.

use std::fmt;
use std::path::PathBuf;

use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// `LocalFileSystem` plus file and directory fsync after every put.
#[derive(Debug)]
pub struct SyncedLocalStore {
    inner: LocalFileSystem,
    root: PathBuf,
}

impl SyncedLocalStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> object_store::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| object_store::Error::Generic {
            store: "local",
            source: Box::new(e),
        })?;
        Ok(Self {
            inner: LocalFileSystem::new_with_prefix(&root)?,
            root,
        })
    }

    async fn sync(&self, location: &Path) -> object_store::Result<()> {
        let file = self.root.join(location.as_ref());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            if let Some(dir) = file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "local",
            source: Box::new(e),
        })?
        .map_err(|e| object_store::Error::Generic {
            store: "local",
            source: Box::new(e),
        })
    }
}

impl fmt::Display for SyncedLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SyncedLocalStore({})", self.root.display())
    }
}

#[async_trait::async_trait]
impl ObjectStore for SyncedLocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.sync(location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        // Strata writes segments with single puts; multipart uploads (large
        // exports) are not on the acknowledged-write path.
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;

    use super::*;

    #[tokio::test]
    async fn put_then_get_round_trips_and_create_mode_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SyncedLocalStore::new(dir.path()).unwrap();
        let key = Path::from("segments/ab/x.seg");
        let create = PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        store
            .put_opts(&key, PutPayload::from_static(b"hello"), create.clone())
            .await
            .unwrap();
        let got = store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"hello");
        let again = store
            .put_opts(&key, PutPayload::from_static(b"other"), create)
            .await;
        assert!(
            matches!(again, Err(object_store::Error::AlreadyExists { .. })),
            "{again:?}"
        );
    }
}
