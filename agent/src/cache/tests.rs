use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use super::*;

/// An in-memory store that counts GETs.
#[derive(Debug, Default)]
struct CountingStore {
    inner: InMemory,
    gets: AtomicU64,
}

impl CountingStore {
    fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        // Give concurrent readers a chance to pile up behind this GET.
        tokio::task::yield_now().await;
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

/// Deterministic xorshift64 generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn object(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 31 % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn memory_config(block_bytes: u64) -> CacheConfig {
    CacheConfig {
        memory_bytes: 64 * MIB,
        disk_bytes: 0,
        disk_dir: None,
        block_bytes,
    }
}

async fn setup(config: CacheConfig, key: &Path, data: &Bytes) -> (Arc<CountingStore>, BlockCache) {
    let store = Arc::new(CountingStore::default());
    store.put(key, data.clone().into()).await.unwrap();
    let cache = BlockCache::open(config, store.clone()).await.unwrap();
    (store, cache)
}

fn len(data: &Bytes) -> u64 {
    data.len() as u64
}

fn expect(data: &Bytes, range: Range<u64>) -> &[u8] {
    &data[range.start as usize..range.end as usize]
}

#[tokio::test]
async fn random_ranges_return_exact_bytes() {
    let key = Path::from("segments/ab/random.seg");
    let data = object(10_357);
    let (_store, cache) = setup(memory_config(1_000), &key, &data).await;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..500 {
        let start = rng.below(len(&data) + 1);
        let end = start + rng.below(len(&data) - start + 1);
        let got = cache.read(&key, len(&data), start..end).await.unwrap();
        assert_eq!(&got[..], expect(&data, start..end), "range {start}..{end}");
    }
    for range in [
        0..len(&data),
        999..1_001,
        1_000..2_000,
        10_000..10_357,
        5..5,
    ] {
        let got = cache.read(&key, len(&data), range.clone()).await.unwrap();
        assert_eq!(&got[..], expect(&data, range));
    }
    assert_eq!(cache.stats().gets, 11, "each block fetched once");
    assert_eq!(cache.stats().bytes_fetched, len(&data));
}

#[tokio::test]
async fn second_read_is_a_hit() {
    let key = Path::from("o");
    let data = object(4_096);
    let (store, cache) = setup(memory_config(1_024), &key, &data).await;
    cache.read(&key, len(&data), 10..20).await.unwrap();
    cache.read(&key, len(&data), 100..200).await.unwrap();
    let stats = cache.stats();
    assert_eq!(
        (stats.misses, stats.hits, stats.gets, store.gets()),
        (1, 1, 1, 1)
    );
}

#[tokio::test]
async fn concurrent_cold_reads_issue_one_get() {
    let key = Path::from("o");
    let data = object(4_096);
    let (store, cache) = setup(memory_config(4_096), &key, &data).await;
    let reads = (0..16u64).map(|i| cache.read(&key, len(&data), i * 10..i * 10 + 100));
    let results = futures::future::join_all(reads).await;
    for (i, result) in (0u64..).zip(results) {
        assert_eq!(&result.unwrap()[..], expect(&data, i * 10..i * 10 + 100));
    }
    assert_eq!(store.gets(), 1);
    assert_eq!(cache.stats().gets, 1);
}

#[tokio::test]
async fn inserted_object_reads_without_get() {
    let key = Path::from("segments/00/written.seg");
    let data = object(5_000);
    let store = Arc::new(CountingStore::default());
    let cache = BlockCache::open(memory_config(1_024), store.clone())
        .await
        .unwrap();
    cache.insert_object(&key, &data);
    let got = cache.read(&key, len(&data), 0..len(&data)).await.unwrap();
    assert_eq!(got, data);
    let got = cache.read(&key, len(&data), 4_095..4_999).await.unwrap();
    assert_eq!(&got[..], expect(&data, 4_095..4_999));
    assert_eq!(store.gets(), 0);
    assert_eq!(cache.stats().misses, 0);
}

#[tokio::test]
async fn out_of_range_reads_are_errors() {
    let key = Path::from("o");
    let data = object(100);
    let (store, cache) = setup(memory_config(64), &key, &data).await;
    for range in [
        0..101,
        100..101,
        Range { start: 50, end: 40 },
        u64::MAX - 1..u64::MAX,
    ] {
        let error = cache.read(&key, 100, range).await.unwrap_err();
        assert!(matches!(error, CacheError::InvalidRange { .. }), "{error}");
        assert!(!error.is_retryable());
    }
    assert_eq!(cache.read(&key, 100, 100..100).await.unwrap(), Bytes::new());
    assert_eq!(store.gets(), 0);
}

#[tokio::test]
async fn errors_are_not_cached() {
    let key = Path::from("late");
    let data = object(100);
    let store = Arc::new(CountingStore::default());
    let cache = BlockCache::open(memory_config(64), store.clone())
        .await
        .unwrap();
    let error = cache.read(&key, 100, 0..10).await.unwrap_err();
    assert!(matches!(error, CacheError::ObjectStore(_)), "{error}");
    assert!(!error.is_retryable(), "not found is final");
    store.put(&key, data.clone().into()).await.unwrap();
    let got = cache.read(&key, 100, 0..10).await.unwrap();
    assert_eq!(&got[..], expect(&data, 0..10));
    assert_eq!(store.gets(), 2);
}

#[tokio::test]
async fn wrong_object_size_is_an_error_not_a_panic() {
    let key = Path::from("o");
    let data = object(100);
    let (_store, cache) = setup(memory_config(64), &key, &data).await;
    // The object is 100 bytes; claiming 120 asks for bytes past its end.
    let error = cache.read(&key, 120, 70..80).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    // A cached block shorter than the claimed size is caught too.
    let written = Path::from("written");
    cache.insert_object(&written, &data);
    let error = cache.read(&written, 120, 70..80).await.unwrap_err();
    assert!(matches!(error, CacheError::BlockSize { .. }), "{error}");
}

fn disk_config(dir: &std::path::Path, memory_blocks: usize, block_bytes: u64) -> CacheConfig {
    CacheConfig {
        memory_bytes: memory_blocks * block_bytes as usize,
        disk_bytes: 8 * MIB,
        disk_dir: Some(dir.to_path_buf()),
        block_bytes,
    }
}

/// Reads the whole object block by block and checks every byte.
async fn read_all_blocks(cache: &BlockCache, key: &Path, data: &Bytes, block: u64) {
    for start in (0..len(data)).step_by(block as usize) {
        let end = (start + block).min(len(data));
        let got = cache.read(key, len(data), start..end).await.unwrap();
        assert_eq!(&got[..], expect(data, start..end), "block at {start}");
    }
}

#[tokio::test]
async fn disk_tier_serves_blocks_evicted_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let key = Path::from("segments/ff/disk.seg");
    let data = object(16 * 4_096);
    let store = Arc::new(CountingStore::default());
    let cache = BlockCache::open(disk_config(dir.path(), 3, 4_096), store.clone())
        .await
        .unwrap();
    assert!(cache.inner.cache.is_hybrid());
    cache.insert_object(&key, &data);
    cache.inner.cache.storage().wait().await;
    read_all_blocks(&cache, &key, &data, 4_096).await;
    read_all_blocks(&cache, &key, &data, 4_096).await;
    let stats = cache.stats();
    assert_eq!(store.gets(), 0);
    assert!(
        stats.disk_hits >= 13,
        "most blocks come back from disk: {stats:?}"
    );
    cache.close().await;
}

#[tokio::test]
async fn fetched_blocks_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let key = Path::from("o");
    let data = object(16 * 4_096);
    let (store, cache) = setup(disk_config(dir.path(), 3, 4_096), &key, &data).await;
    read_all_blocks(&cache, &key, &data, 4_096).await;
    assert_eq!(store.gets(), 16);
    cache.inner.cache.storage().wait().await;
    read_all_blocks(&cache, &key, &data, 4_096).await;
    assert_eq!(store.gets(), 16, "second pass served by memory and disk");
    assert!(cache.stats().disk_hits > 0);
    cache.close().await;
}

#[tokio::test]
async fn disk_tier_is_recovered_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let key = Path::from("o");
    let data = object(16 * 4_096);
    let (store, cache) = setup(disk_config(dir.path(), 3, 4_096), &key, &data).await;
    cache.insert_object(&key, &data);
    cache.close().await;
    drop(cache);

    let reopened = BlockCache::open(disk_config(dir.path(), 3, 4_096), store.clone())
        .await
        .unwrap();
    read_all_blocks(&reopened, &key, &data, 4_096).await;
    assert!(
        store.gets() <= 3,
        "only blocks that were in memory are fetched: {}",
        store.gets()
    );
    reopened.close().await;
    drop(reopened);

    // Blocks of another size are never mistaken for the new ones.
    let resized = BlockCache::open(disk_config(dir.path(), 3, 8_192), store.clone())
        .await
        .unwrap();
    let before = store.gets();
    read_all_blocks(&resized, &key, &data, 8_192).await;
    assert_eq!(store.gets() - before, 8);
    resized.close().await;
}

#[tokio::test]
async fn memory_only_when_disk_is_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let config = CacheConfig {
        disk_bytes: 0,
        ..disk_config(dir.path(), 3, 4_096)
    };
    let cache = BlockCache::open(config, Arc::new(InMemory::new()))
        .await
        .unwrap();
    assert!(!cache.inner.cache.is_hybrid());
    cache.close().await;
}

#[tokio::test]
async fn invalid_configs_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let zero_block = memory_config(0);
    let tiny_disk = CacheConfig {
        disk_bytes: MIB,
        ..disk_config(dir.path(), 3, DEFAULT_BLOCK_BYTES)
    };
    for config in [zero_block, tiny_disk, memory_config(MAX_BLOCK_BYTES + 1)] {
        let error = BlockCache::open(config, store.clone()).await.unwrap_err();
        assert!(matches!(error, CacheError::Config(_)), "{error}");
    }
}

#[test]
fn entries_round_trip_through_code() {
    let key = BlockKey {
        object: Arc::from("segments/ab/ü.seg"),
        block_bytes: DEFAULT_BLOCK_BYTES,
        index: 42,
    };
    let value = BlockData(object(1_000));
    let mut buf = Vec::new();
    key.encode(&mut buf).unwrap();
    value.encode(&mut buf).unwrap();
    assert_eq!(buf.len(), key.estimated_size() + value.estimated_size());
    let mut reader = &buf[..];
    assert_eq!(BlockKey::decode(&mut reader).unwrap(), key);
    assert_eq!(BlockData::decode(&mut reader).unwrap().0, value.0);
}

#[test]
fn store_errors_are_classified() {
    let generic = object_store::Error::Generic {
        store: "test",
        source: "connection reset".into(),
    };
    assert!(CacheError::from(generic).is_retryable());
    let denied = object_store::Error::PermissionDenied {
        path: "p".into(),
        source: "no".into(),
    };
    assert!(!CacheError::from(denied).is_retryable());
}
