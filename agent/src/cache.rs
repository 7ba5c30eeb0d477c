//! The block cache in front of object storage.
//!
//! Objects are immutable, so they are cached as aligned blocks of `block_bytes`
//! keyed by (object key, block index) in a foyer [`HybridCache`]: a memory tier,
//! plus a disk tier when [`CacheConfig::disk_dir`] is set. A read fetches the
//! blocks that cover its range; concurrent misses for one block share ONE
//! ranged GET (foyer's `get_or_fetch` is single-flight), and the fetched block
//! is cached so the next read of it is a hit. Errors are never cached.
//!
//! Written objects can be put in the cache directly ([`BlockCache::insert_object`]),
//! so the tail of a partition is served without any GET.

use std::fmt;
use std::future::Future;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, Code, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCacheBuilderPhaseStorage, Source,
};
use futures::{StreamExt, TryStreamExt, stream};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

/// Default size of a cached block: 1 MiB.
pub const DEFAULT_BLOCK_BYTES: u64 = 1024 * 1024;
/// Largest accepted block size: 64 MiB.
pub const MAX_BLOCK_BYTES: u64 = 64 * 1024 * 1024;

const MIB: usize = 1024 * 1024;
/// Upper bound of the foyer disk region (its eviction unit) size.
const MAX_DISK_REGION_BYTES: usize = 16 * MIB;
/// Blocks of one read fetched concurrently.
const MAX_CONCURRENT_BLOCKS: usize = 8;
/// Memory charged per entry on top of key and data (bookkeeping estimate).
const ENTRY_OVERHEAD_BYTES: usize = 64;
/// Largest length accepted when decoding an entry from disk.
const MAX_DECODED_LEN: u64 = MAX_BLOCK_BYTES;

/// Sizes and location of the block cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    /// Capacity of the memory tier in bytes.
    pub memory_bytes: usize,
    /// Capacity of the disk tier in bytes; 0 disables the disk tier.
    pub disk_bytes: usize,
    /// Directory of the disk tier; `None` disables the disk tier.
    pub disk_dir: Option<PathBuf>,
    /// Size of a cached block in bytes, in `1..=MAX_BLOCK_BYTES`.
    pub block_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 256 * MIB,
            disk_bytes: 0,
            disk_dir: None,
            block_bytes: DEFAULT_BLOCK_BYTES,
        }
    }
}

impl CacheConfig {
    /// The disk tier directory, if the disk tier is enabled.
    fn disk(&self) -> Option<&std::path::Path> {
        self.disk_dir.as_deref().filter(|_| self.disk_bytes > 0)
    }

    fn validate(&self) -> Result<(), CacheError> {
        if self.block_bytes == 0 || self.block_bytes > MAX_BLOCK_BYTES {
            return Err(CacheError::Config(format!(
                "block_bytes must be in 1..={MAX_BLOCK_BYTES}, got {}",
                self.block_bytes
            )));
        }
        if self.disk().is_some() {
            let region = self.disk_region_bytes();
            if self.disk_bytes < 2 * region {
                return Err(CacheError::Config(format!(
                    "disk_bytes must be at least {} for block_bytes {}, got {}",
                    2 * region,
                    self.block_bytes,
                    self.disk_bytes
                )));
            }
        }
        Ok(())
    }

    /// Size of a foyer disk region: at most 16 MiB, at least room for two blocks.
    fn disk_region_bytes(&self) -> usize {
        let two_blocks = usize::try_from(self.block_bytes)
            .unwrap_or(usize::MAX)
            .saturating_mul(2);
        MAX_DISK_REGION_BYTES
            .min(self.disk_bytes / 4)
            .max(two_blocks)
            .next_multiple_of(4096)
    }

    /// Memory shards: up to 8, each holding at least ~4 blocks.
    fn memory_shards(&self) -> usize {
        let block = usize::try_from(self.block_bytes).unwrap_or(usize::MAX);
        (self.memory_bytes / block.saturating_mul(4)).clamp(1, 8)
    }
}

/// Errors of the block cache.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The object store failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] Arc<object_store::Error>),
    /// The requested range is not inside the object.
    #[error("range {start}..{end} is outside object {key} of {object_size} bytes")]
    InvalidRange {
        /// Object key.
        key: String,
        /// Start of the requested range.
        start: u64,
        /// End of the requested range.
        end: u64,
        /// Size of the object given by the caller.
        object_size: u64,
    },
    /// A block has a different size than `object_size` implies.
    #[error("block {block} of {key}: expected {expected} bytes, got {actual}")]
    BlockSize {
        /// Object key.
        key: String,
        /// Block index.
        block: u64,
        /// Expected block size.
        expected: u64,
        /// Actual block size.
        actual: u64,
    },
    /// The configuration is invalid.
    #[error("invalid cache config: {0}")]
    Config(String),
    /// The cache itself (foyer) failed.
    #[error("cache: {0}")]
    Cache(#[source] foyer::Error),
}

impl From<object_store::Error> for CacheError {
    fn from(error: object_store::Error) -> Self {
        Self::ObjectStore(Arc::new(error))
    }
}

impl CacheError {
    /// Whether retrying the same read may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::ObjectStore(error) => is_retryable_store_error(error),
            Self::Cache(_) => true,
            Self::InvalidRange { .. } | Self::BlockSize { .. } | Self::Config(_) => false,
        }
    }

    /// Whether the object does not exist (deleted: a reader holding a
    /// stale chunk list looks the chunks up again).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::ObjectStore(error) if matches!(**error, object_store::Error::NotFound { .. }))
    }

    /// Recovers our own error from a foyer error that wraps a failed fetch.
    fn from_foyer(error: foyer::Error) -> Self {
        match error.downcast_ref::<CacheError>() {
            Some(ours) => ours.clone(),
            None => Self::Cache(error),
        }
    }
}

fn is_retryable_store_error(error: &object_store::Error) -> bool {
    use object_store::Error as E;
    !matches!(
        error,
        E::NotFound { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::NotImplemented { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::UnknownConfigurationKey { .. }
    )
}

/// Counters of the block cache, per block lookup. A lookup that waited on
/// another reader's in-flight GET counts as a miss, but only one GET is issued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Block lookups served from memory or disk.
    pub hits: u64,
    /// Of `hits`, those served from the disk tier.
    pub disk_hits: u64,
    /// Block lookups that needed a GET from the object store.
    pub misses: u64,
    /// Ranged GETs issued to the object store (including failed ones).
    pub gets: u64,
    /// Bytes received from the object store.
    pub bytes_fetched: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
    gets: AtomicU64,
    bytes_fetched: AtomicU64,
}

impl Counters {
    fn record_lookup(&self, source: Source) {
        let counter = match source {
            Source::Outer => &self.misses,
            Source::Memory => &self.hits,
            Source::Disk => {
                self.disk_hits.fetch_add(1, Ordering::Relaxed);
                &self.hits
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
            bytes_fetched: self.bytes_fetched.load(Ordering::Relaxed),
        }
    }
}

/// Cache key: one aligned block of one object. The block size is part of the
/// key so that blocks recovered from disk after a change of `block_bytes` are
/// never mistaken for blocks of the new size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BlockKey {
    object: Arc<str>,
    block_bytes: u64,
    index: u64,
}

/// Cache value: the raw bytes of one block.
#[derive(Clone)]
struct BlockData(Bytes);

impl fmt::Debug for BlockData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockData({} bytes)", self.0.len())
    }
}

fn encode_bytes(bytes: &[u8], writer: &mut impl Write) -> foyer::Result<()> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    writer
        .write_all(&len.to_le_bytes())
        .and_then(|()| writer.write_all(bytes))
        .map_err(foyer::Error::io_error)
}

fn decode_bytes(reader: &mut impl Read) -> foyer::Result<Vec<u8>> {
    let len = decode_u64(reader)?;
    if len > MAX_DECODED_LEN {
        let message = format!("cached entry of {len} bytes is too large");
        return Err(foyer::Error::new(foyer::ErrorKind::Parse, message));
    }
    let len = usize::try_from(len)
        .map_err(|e| foyer::Error::new(foyer::ErrorKind::Parse, e.to_string()))?;
    let mut buf = vec![0; len];
    reader
        .read_exact(&mut buf)
        .map_err(foyer::Error::io_error)?;
    Ok(buf)
}

fn decode_u64(reader: &mut impl Read) -> foyer::Result<u64> {
    let mut buf = [0; 8];
    reader
        .read_exact(&mut buf)
        .map_err(foyer::Error::io_error)?;
    Ok(u64::from_le_bytes(buf))
}

impl Code for BlockKey {
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        encode_bytes(self.object.as_bytes(), writer)?;
        writer
            .write_all(&self.block_bytes.to_le_bytes())
            .and_then(|()| writer.write_all(&self.index.to_le_bytes()))
            .map_err(foyer::Error::io_error)
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        let object = String::from_utf8(decode_bytes(reader)?)
            .map_err(|e| foyer::Error::new(foyer::ErrorKind::Parse, "object key").with_source(e))?;
        let block_bytes = decode_u64(reader)?;
        let index = decode_u64(reader)?;
        Ok(Self {
            object: object.into(),
            block_bytes,
            index,
        })
    }

    fn estimated_size(&self) -> usize {
        8 + self.object.len() + 8 + 8
    }
}

impl Code for BlockData {
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        encode_bytes(&self.0, writer)
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        decode_bytes(reader).map(|buf| Self(Bytes::from(buf)))
    }

    fn estimated_size(&self) -> usize {
        8 + self.0.len()
    }
}

/// Block geometry of one object.
#[derive(Debug, Clone, Copy)]
struct Layout {
    block_bytes: u64,
    object_size: u64,
}

impl Layout {
    /// Byte range of block `index`, clamped to the object.
    fn block_range(self, index: u64) -> Range<u64> {
        let start = index.saturating_mul(self.block_bytes).min(self.object_size);
        start..start.saturating_add(self.block_bytes).min(self.object_size)
    }

    /// Indexes of the blocks covering the non-empty `range`.
    fn blocks(self, range: &Range<u64>) -> Range<u64> {
        range.start / self.block_bytes..(range.end - 1) / self.block_bytes + 1
    }
}

/// The object of one read: its cache name and its path for GETs.
#[derive(Debug, Clone)]
struct ObjectRef {
    name: Arc<str>,
    path: Arc<Path>,
}

/// A block cache over an object store. Cheap to clone: clones share the cache.
#[derive(Debug, Clone)]
pub struct BlockCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cache: HybridCache<BlockKey, BlockData>,
    store: Arc<dyn ObjectStore>,
    block_bytes: u64,
    counters: Arc<Counters>,
}

type StorageBuilder = HybridCacheBuilderPhaseStorage<BlockKey, BlockData, foyer::DefaultHasher>;

impl BlockCache {
    /// Opens the cache (and its disk tier, recovering blocks cached there
    /// before). Must run inside a tokio runtime: foyer spawns its fetch and
    /// disk tasks on the current runtime.
    pub async fn open(
        config: CacheConfig,
        store: Arc<dyn ObjectStore>,
    ) -> Result<Self, CacheError> {
        config.validate()?;
        let builder = HybridCacheBuilder::new()
            .with_name("strata-block-cache")
            .with_flush_on_close(false)
            .memory(config.memory_bytes)
            .with_shards(config.memory_shards())
            .with_weighter(|key: &BlockKey, value: &BlockData| {
                key.object.len() + value.0.len() + ENTRY_OVERHEAD_BYTES
            })
            .storage();
        let cache = with_disk(builder, &config)?
            .build()
            .await
            .map_err(CacheError::Cache)?;
        let inner = Inner {
            cache,
            store,
            block_bytes: config.block_bytes,
            counters: Arc::default(),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Bytes `[range.start, range.end)` of object `key` whose total size is
    /// `object_size`. Ranges that are reversed or end past `object_size` are
    /// an [`CacheError::InvalidRange`]. A range inside one block is returned
    /// without copying.
    pub async fn read(
        &self,
        key: &Path,
        object_size: u64,
        range: Range<u64>,
    ) -> Result<Bytes, CacheError> {
        if range.start > range.end || range.end > object_size {
            return Err(CacheError::InvalidRange {
                key: key.to_string(),
                start: range.start,
                end: range.end,
                object_size,
            });
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let layout = Layout {
            block_bytes: self.inner.block_bytes,
            object_size,
        };
        let object = ObjectRef {
            name: Arc::from(key.as_ref()),
            path: Arc::new(key.clone()),
        };
        let blocks = layout.blocks(&range);
        if blocks.end - blocks.start == 1 {
            let block = self.block(&object, layout, blocks.start).await?;
            return Ok(slice_block(&block, layout, blocks.start, &range));
        }
        let parts: Vec<Bytes> = stream::iter(blocks.clone())
            .map(|index| self.block(&object, layout, index))
            .buffered(MAX_CONCURRENT_BLOCKS)
            .try_collect()
            .await?;
        Ok(concat(&parts, layout, blocks.start, &range))
    }

    /// Puts a freshly written object into the cache (write-through), split
    /// into aligned blocks. The blocks are copied so that each cached block
    /// owns exactly the memory it is charged for.
    pub fn insert_object(&self, key: &Path, object: &Bytes) {
        let name: Arc<str> = Arc::from(key.as_ref());
        let block_bytes = usize::try_from(self.inner.block_bytes).unwrap_or(usize::MAX);
        // Each block is copied out of the segment rather than sliced: a
        // slice would keep the whole segment allocation alive while any of
        // its blocks is cached, so the cache's memory bound would not hold
        // under load. The copy costs about 0.1 s of CPU per GiB produced.
        for (index, chunk) in (0u64..).zip(object.chunks(block_bytes)) {
            let key = BlockKey {
                object: name.clone(),
                block_bytes: self.inner.block_bytes,
                index,
            };
            self.inner
                .cache
                .insert(key, BlockData(Bytes::copy_from_slice(chunk)));
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    /// Closes the cache: waits for in-progress disk writes and stops the disk
    /// tier. Memory contents are NOT flushed to disk. Call once, at shutdown,
    /// after readers have stopped. Failures are logged.
    pub async fn close(&self) {
        if let Err(error) = self.inner.cache.close().await {
            tracing::warn!(%error, "closing the block cache failed");
        }
    }

    /// Block `index` of `object`, from the cache or with one GET.
    async fn block(
        &self,
        object: &ObjectRef,
        layout: Layout,
        index: u64,
    ) -> Result<Bytes, CacheError> {
        let range = layout.block_range(index);
        let key = BlockKey {
            object: object.name.clone(),
            block_bytes: layout.block_bytes,
            index,
        };
        let fetch = self.fetch(object.clone(), index, range.clone());
        let entry = self
            .inner
            .cache
            .get_or_fetch(&key, || fetch)
            .await
            .map_err(CacheError::from_foyer)?;
        self.inner.counters.record_lookup(entry.source());
        let data = entry.value().0.clone();
        check_block_size(&object.name, index, range, &data)?;
        Ok(data)
    }

    /// The loader of one block: ONE ranged GET. Runs only on a miss.
    fn fetch(
        &self,
        object: ObjectRef,
        index: u64,
        range: Range<u64>,
    ) -> impl Future<Output = Result<BlockData, CacheError>> + Send + 'static {
        let store = self.inner.store.clone();
        let counters = self.inner.counters.clone();
        async move {
            counters.gets.fetch_add(1, Ordering::Relaxed);
            let data = store.get_range(&object.path, range.clone()).await?;
            let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
            counters.bytes_fetched.fetch_add(len, Ordering::Relaxed);
            check_block_size(&object.name, index, range, &data)?;
            Ok(BlockData(data))
        }
    }
}

/// Adds the disk tier to `builder` if `config` enables it.
fn with_disk(builder: StorageBuilder, config: &CacheConfig) -> Result<StorageBuilder, CacheError> {
    let Some(dir) = config.disk() else {
        return Ok(builder);
    };
    let device = FsDeviceBuilder::new(dir)
        .with_capacity(config.disk_bytes)
        .build()
        .map_err(CacheError::Cache)?;
    let engine = BlockEngineConfig::new(device).with_block_size(config.disk_region_bytes());
    Ok(builder.with_engine_config(engine))
}

fn check_block_size(
    object: &str,
    index: u64,
    expected: Range<u64>,
    data: &Bytes,
) -> Result<(), CacheError> {
    let actual = u64::try_from(data.len()).unwrap_or(u64::MAX);
    let expected = expected.end - expected.start;
    if actual == expected {
        return Ok(());
    }
    Err(CacheError::BlockSize {
        key: object.to_owned(),
        block: index,
        expected,
        actual,
    })
}

/// The part of block `index` (of the checked size) that lies in `range`.
fn slice_block(block: &Bytes, layout: Layout, index: u64, range: &Range<u64>) -> Bytes {
    let block_range = layout.block_range(index);
    let start = range.start.max(block_range.start) - block_range.start;
    let end = range.end.min(block_range.end) - block_range.start;
    // Both are at most the block size, which fits in usize (it is a checked block length).
    block.slice(usize::try_from(start).unwrap_or(0)..usize::try_from(end).unwrap_or(0))
}

/// Concatenates the parts of consecutive blocks, starting at block `first`, lying in `range`.
fn concat(blocks: &[Bytes], layout: Layout, first: u64, range: &Range<u64>) -> Bytes {
    let len = usize::try_from(range.end - range.start).unwrap_or(0);
    let mut out = BytesMut::with_capacity(len);
    for (index, block) in (first..).zip(blocks) {
        out.extend_from_slice(&slice_block(block, layout, index, range));
    }
    out.freeze()
}

#[cfg(test)]
mod tests;
