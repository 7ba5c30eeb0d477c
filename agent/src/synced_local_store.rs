//! A local-directory object store that fsyncs what it writes.
//!
//! `object_store`'s `LocalFileSystem` writes a temporary file and renames
//! it into place, which survives a crash of the process (the data is in the
//! page cache) but not a power loss. With `--fsync` every written object
//! (single PUT, multipart upload or copy) and every directory on its path
//! up to the store's root are fsynced before the write counts as durable:
//! the file's data, the rename that named it, and the entries of any
//! directory the write created. So an acknowledged record, and a Parquet
//! file the catalog points at, survive power loss too.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

/// Sees every path fsynced, in order (tests).
type SyncObserver = Arc<dyn Fn(&std::path::Path) + Send + Sync>;

/// `LocalFileSystem` plus file and directory fsync after every write.
pub struct SyncedLocalStore {
    inner: LocalFileSystem,
    syncer: Syncer,
}

/// Fsyncs a written object and the directories above it.
#[derive(Clone)]
struct Syncer {
    root: PathBuf,
    observer: Option<SyncObserver>,
}

impl Syncer {
    /// The file at `location`, then each directory from its parent up to
    /// the root: a write may have created any of them, and a new entry is
    /// durable only once the directory holding it is synced.
    fn targets(&self, location: &Path) -> Vec<PathBuf> {
        let file = self.root.join(location.as_ref());
        let mut targets = vec![file.clone()];
        let mut dir = file.parent();
        while let Some(d) = dir {
            targets.push(d.to_path_buf());
            if d == self.root {
                break;
            }
            dir = d.parent();
        }
        targets
    }

    async fn sync(&self, location: &Path) -> object_store::Result<()> {
        let targets = self.targets(location);
        let observer = self.observer.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            for target in &targets {
                std::fs::File::open(target)?.sync_all()?;
                if let Some(observe) = &observer {
                    observe(target);
                }
            }
            Ok(())
        })
        .await
        .map_err(generic)?
        .map_err(generic)
    }
}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic {
        store: "local",
        source: Box::new(e),
    }
}

impl SyncedLocalStore {
    /// A store rooted at `root` (created if missing, and made durable in
    /// its parent).
    pub fn new(root: impl Into<PathBuf>) -> object_store::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(generic)?;
        let root = root.canonicalize().map_err(generic)?;
        if let Some(parent) = root.parent() {
            std::fs::File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(generic)?;
        }
        Ok(Self {
            inner: LocalFileSystem::new_with_prefix(&root)?,
            syncer: Syncer {
                root,
                observer: None,
            },
        })
    }

    /// Calls `observer` with every path fsynced (tests).
    #[cfg(test)]
    fn observed(mut self, observer: SyncObserver) -> Self {
        self.syncer.observer = Some(observer);
        self
    }
}

impl fmt::Debug for SyncedLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncedLocalStore")
            .field("root", &self.syncer.root)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SyncedLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SyncedLocalStore({})", self.syncer.root.display())
    }
}

/// A multipart upload whose completion fsyncs the assembled file and its
/// directories.
#[derive(Debug)]
struct SyncedUpload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
    syncer: Syncer,
}

impl fmt::Debug for Syncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Syncer")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl MultipartUpload for SyncedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let result = self.inner.complete().await?;
        self.syncer.sync(&self.location).await?;
        Ok(result)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
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
        self.syncer.sync(location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        // Compacted Parquet files are uploaded in parts: the catalog points
        // at them once swapped in, so they must be as durable as segments.
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SyncedUpload {
            inner,
            location: location.clone(),
            syncer: self.syncer.clone(),
        }))
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
        self.inner.copy_opts(from, to, options).await?;
        self.syncer.sync(to).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use object_store::ObjectStoreExt;

    use super::*;

    /// A store that records what it fsyncs.
    fn recording(root: &std::path::Path) -> (SyncedLocalStore, Arc<Mutex<Vec<PathBuf>>>) {
        let synced = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&synced);
        let store = SyncedLocalStore::new(root).unwrap().observed(Arc::new(
            move |path: &std::path::Path| {
                seen.lock().unwrap().push(path.to_path_buf());
            },
        ));
        (store, synced)
    }

    /// The file and every directory from it up to the root, in that order.
    fn chain(root: &std::path::Path, key: &str) -> Vec<PathBuf> {
        let root = root.canonicalize().unwrap();
        let mut paths = vec![root.join(key)];
        let mut dir = root.join(key).parent().unwrap().to_path_buf();
        loop {
            paths.push(dir.clone());
            if dir == root {
                return paths;
            }
            dir = dir.parent().unwrap().to_path_buf();
        }
    }

    #[tokio::test]
    async fn a_put_into_new_directories_syncs_the_file_and_every_directory_up_to_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let (store, synced) = recording(dir.path());
        let key = "segments/ab/cd/x.seg";
        store
            .put(&Path::from(key), PutPayload::from_static(b"data"))
            .await
            .unwrap();
        assert_eq!(*synced.lock().unwrap(), chain(dir.path(), key));
    }

    #[tokio::test]
    async fn a_multipart_upload_is_synced_when_it_completes_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let (store, synced) = recording(dir.path());
        let key = "parquet/t/0/00-01-x.parquet";
        let mut upload = store.put_multipart(&Path::from(key)).await.unwrap();
        upload
            .put_part(PutPayload::from(vec![7u8; 1024]))
            .await
            .unwrap();
        upload
            .put_part(PutPayload::from(vec![8u8; 1024]))
            .await
            .unwrap();
        assert!(
            synced.lock().unwrap().is_empty(),
            "nothing synced before completion"
        );
        upload.complete().await.unwrap();
        assert_eq!(*synced.lock().unwrap(), chain(dir.path(), key));
        let got = store
            .get(&Path::from(key))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.len(), 2048);
    }

    #[tokio::test]
    async fn a_copy_syncs_its_destination() {
        let dir = tempfile::tempdir().unwrap();
        let (store, synced) = recording(dir.path());
        store
            .put(&Path::from("a/x"), PutPayload::from_static(b"data"))
            .await
            .unwrap();
        synced.lock().unwrap().clear();
        store
            .copy(&Path::from("a/x"), &Path::from("b/c/y"))
            .await
            .unwrap();
        assert_eq!(*synced.lock().unwrap(), chain(dir.path(), "b/c/y"));
    }

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
